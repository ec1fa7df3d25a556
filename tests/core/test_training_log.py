"""mihead.training_log: metrics.jsonl read back (a line cut short by a kill skipped) and the
learning curve of its evaluated epochs; plots.plot_training draws it with and without labels."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from matplotlib.figure import Figure

from mihead.outputs import plots
from mihead.outputs.plots import plot_training
from mihead.run_directory import read_metrics
from mihead.training_log import CurvePoint, head_curves, learning_curve


def record(epoch: int, accs: list[float | None] | None, selected: int = 0) -> dict[str, Any]:
    """An epoch's line; ``accs`` per head (None: no labels), or None for an epoch not evaluated."""
    line: dict[str, Any] = {"epoch": epoch, "step": 10 * epoch, "lr": 1e-3, "losses": {"iic": -1.0 - epoch, "dhog_push": 0.1},
                            "images_per_second": 100.0, "seconds": 30.0 * epoch}  # fmt: skip
    if accs is not None:
        heads = [{"index": i, "nmi_zz": 0.5 + i / 10, **({} if a is None else {"acc": a, "nmi": a / 2})} for i, a in enumerate(accs)]
        line["eval"] = {"selected_head": selected, "heads": heads}
    return line


def test_read_metrics_skips_a_line_cut_short(tmp_path: Path) -> None:
    lines = [json.dumps(record(1, None)), json.dumps(record(2, [0.3, 0.4]))]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + '\n{"epoch": 3, "st')
    assert [r for _, r in read_metrics(tmp_path)] == [record(1, None), record(2, [0.3, 0.4])]
    assert [line for line, _ in read_metrics(tmp_path)] == lines
    assert read_metrics(tmp_path / "absent") == []


def test_learning_curve_keeps_evaluated_epochs_with_reported_and_best_heads() -> None:
    records = [record(1, None), record(2, [0.3, 0.45], selected=0), record(3, None), record(4, [0.62, 0.5], selected=1)]
    assert learning_curve(records) == [
        CurvePoint(epoch=2, step=20, seconds=60.0, selected=0, acc=0.3, nmi=0.15, nmi_zz=0.5, best_acc=0.45),
        CurvePoint(epoch=4, step=40, seconds=120.0, selected=1, acc=0.5, nmi=0.25, nmi_zz=0.6, best_acc=0.62),
    ]
    unlabelled = learning_curve([record(1, [None, None], selected=1)])
    assert unlabelled == [CurvePoint(epoch=1, step=10, seconds=30.0, selected=1, acc=None, nmi=None, nmi_zz=0.6, best_acc=None)]


def test_head_curves_follow_each_head_over_the_evaluated_epochs() -> None:
    records = [record(1, None), record(2, [0.3, 0.45]), record(3, None), record(4, [0.62, 0.5])]
    assert head_curves(records, "acc") == [[0.3, 0.62], [0.45, 0.5]]
    assert head_curves(records, "nmi_zz") == [[0.5, 0.5], [0.6, 0.6]]
    assert head_curves([record(1, [None, None])], "acc") == [[None], [None]]
    assert head_curves([record(1, None)], "acc") == []


@pytest.mark.parametrize("accs", [[0.3, 0.4], [None, None]], ids=["labelled", "unlabelled"])
def test_plot_training_writes_a_png(tmp_path: Path, accs: list[float | None]) -> None:
    path = tmp_path / "training.png"
    plot_training([record(1, None), record(2, accs), record(3, accs)], path)
    assert path.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("accs", [[0.3, 0.45, 0.2], [None, None, None]], ids=["labelled", "unlabelled"])
def test_a_run_evaluated_once_draws_each_heads_score_as_a_bar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, accs: list[float | None]
) -> None:
    drawn: list[Figure] = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: drawn.append(fig))
    plot_training([record(1, accs, selected=1)], tmp_path / "training.png")
    losses, scores = drawn[0].axes
    assert all(line.get_marker() == "o" for line in losses.lines)  # one epoch: a dot per term, not an invisible line
    assert not scores.lines  # no single dot against time, no legend entry without a line
    heights = [bar.get_height() for bar in scores.patches]
    assert heights == pytest.approx([0.3, 0.45, 0.2] if accs[0] is not None else [0.5, 0.6, 0.7])
    assert "per head (evaluated once, after 30 s)" in scores.get_title()
    assert [t.get_text() for t in scores.get_legend().get_texts()] == ["reported head"]
    plot_training([record(1, accs)] * 2, tmp_path / "training.png")  # two evaluations: curves against time
    assert len(drawn[1].axes[1].lines) > 0 and not drawn[1].axes[1].patches
