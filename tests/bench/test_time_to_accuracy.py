"""bench/time_to_accuracy.py on a written metrics.jsonl: the table's rows and the first epoch
reaching each target; a run with no evaluated epoch exits 2."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest

from benchhelp import load_bench


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_bench("time_to_accuracy")


def write_log(run_dir: Path, accs: list[float | None]) -> None:
    lines = []
    for epoch, acc in enumerate(accs, 1):
        line = {"epoch": epoch, "step": 5 * epoch, "losses": {"iic": -1.0}, "images_per_second": 1000.0, "seconds": 90.0 * epoch}
        if acc is not None:
            line["eval"] = {"selected_head": 1, "heads": [{"acc": 0.9, "nmi": 0.8, "nmi_zz": 0.1}, {"acc": acc, "nmi": acc / 2, "nmi_zz": 0.2}]}
        lines.append(json.dumps(line))
    run_dir.mkdir(exist_ok=True)
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def test_table_and_first_times(bench: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_log(tmp_path, [None, 0.42, None, 0.61, 0.58])
    assert bench.main([str(tmp_path), "--targets", "0.4", "0.6", "0.7"]) == 0
    out = capsys.readouterr().out
    assert "5 epochs, 25 steps, 7.5 training minutes, median 1,000 images/s" in out
    assert "epoch time: median 90.00 s, first 90.00 s, fastest 90.00 s (training only)" in out
    assert "| 2 | 3.00 | 1 | 0.420 | 0.210 | 0.900 |" in out
    assert "| 4 | 6.00 | 1 | 0.610 | 0.305 | 0.900 |" in out
    rows = [line for line in out.splitlines() if line[:3] in {f"| {d}" for d in "0123456789"}]
    assert [row.split("|")[1].strip() for row in rows] == ["2", "4", "5"]  # evaluated epochs only
    assert "ACC >= 0.4: first at epoch 2, 3.00 training minutes" in out
    assert "ACC >= 0.6: first at epoch 4, 6.00 training minutes" in out
    assert "ACC >= 0.7: not reached in 7.50 training minutes" in out


def test_epoch_seconds_are_the_differences_of_the_cumulative_seconds(bench: ModuleType) -> None:
    records = [{"seconds": 14.0}, {"seconds": 22.0}, {"seconds": 31.5}, {"seconds": 40.0}]
    assert bench.epoch_seconds(records) == [14.0, 8.0, 9.5, 8.5]


def test_no_evaluated_epoch_exits_2(bench: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_log(tmp_path, [None, None])
    assert bench.main([str(tmp_path)]) == 2
    assert "no evaluated epoch" in capsys.readouterr().err
