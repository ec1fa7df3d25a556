"""bench/ablation.py: settings parsed, the training data's NMI(z, z') found under each
protocol, and a tiny ablation run (two settings, two seeds) whose tables, the logged terms'
included, come from its runs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from benchhelp import load_bench

DHOG_DIGITS = Path(__file__).resolve().parents[2] / "recipes" / "dhog_digits.toml"
TINY = ["data.limit=120", "train.batch_size=60", "train.epochs=1", "augment.size=8", "augment.views=2",
        "backbone.widths=[4, 8, 8, 8]", "backbone.final_copies=2", "head.hidden=16", "eval.batch_size=256"]  # fmt: skip


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_bench("ablation")


def test_parse_setting(bench: ModuleType) -> None:
    assert bench.parse_setting("one block: backbone.final_copies=1; train.lr=0.01") == ("one block", ["backbone.final_copies=1", "train.lr=0.01"])
    with pytest.raises(argparse.ArgumentTypeError, match="expected 'NAME:key=value"):
        bench.parse_setting("backbone.final_copies=1")


def _summary(splits: dict[str, str], fit: list[float] | None, scored: list[float]) -> dict[str, Any]:
    summary: dict[str, Any] = {"selected_head": 1, "splits": splits, "heads": [{"nmi_zz": v} for v in scored]}
    if fit is not None:
        summary["fit_heads"] = [{"nmi_zz": v} for v in fit]
    return summary


def test_training_nmi_zz_under_each_protocol(bench: ModuleType) -> None:
    dhog = _summary({"trained": "train", "fitted": "train", "scored": "test"}, [0.1, 0.7], [0.2, 0.5])
    assert bench.training_nmi_zz(dhog) == 0.7
    union = _summary({"trained": "train+test", "fitted": "train+test", "scored": "train+test"}, None, [0.2, 0.5])
    assert bench.training_nmi_zz(union) == 0.5
    split = _summary({"trained": "train", "fitted": "test", "scored": "test"}, None, [0.2, 0.5])
    assert bench.training_nmi_zz(split) is None


def test_tiny_ablation(bench: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [str(DHOG_DIGITS), "--seeds", "2", "--out", str(tmp_path), *[a for kv in TINY for a in ("--set", kv)]]
    assert bench.main(args) == 0
    out = capsys.readouterr().out
    summaries = {(s, seed): json.loads((tmp_path / f"setting{s}" / f"seed{seed}" / "summary.json").read_text()) for s in (0, 1) for seed in (0, 1)}
    recipes = {k: (tmp_path / f"setting{k[0]}" / f"seed{k[1]}" / "recipe.toml").read_text() for k in summaries}
    assert all("seed = 1" in recipes[(s, 1)] for s in (0, 1))
    assert "weight = 0.05" in recipes[(0, 0)] and "weight = 0.0" in recipes[(1, 0)]  # the recipe's alpha, then 0
    for s, name in ((0, "alpha = 0.05"), (1, "alpha = 0")):
        runs = [summaries[(s, 0)], summaries[(s, 1)]]
        accs = [r["acc"] for r in runs]
        row = f"| {name} | unsup. | {np.mean(accs):.4f} ± {np.std(accs, ddof=1):.4f} |"
        assert row in out
        between = [np.asarray(r["heads_nmi"])[~np.eye(5, dtype=bool)].mean() for r in runs]
        zz = [r["heads"][r["selected_head"]]["nmi_zz"] for r in runs]  # digits: trained and scored on all
        assert f"| {name} | {np.mean(zz):.4f} ± {np.std(zz, ddof=1):.4f} | {np.mean(between):.4f} ± {np.std(between, ddof=1):.4f} |" in out
    assert "protocol: split: mapping fitted and head chosen on all" in out
    assert "| setting | ACC of heads 0, 1, ... | dhog_push | iic |" in out
    for s, name in ((0, "alpha = 0.05"), (1, "alpha = 0")):
        logs = [(tmp_path / f"setting{s}" / f"seed{seed}" / "metrics.jsonl").read_text().splitlines() for seed in (0, 1)]
        last = [json.loads(lines[-1])["losses"] for lines in logs]
        per_head = " ".join(f"{np.mean([summaries[(s, seed)]['heads'][h]['acc'] for seed in (0, 1)]):.3f}" for h in range(5))
        cells = [f"{np.mean(v):.4f} ± {np.std(v, ddof=1):.4f}" for v in ([t[k] for t in last] for k in ("dhog_push", "iic"))]
        assert f"| {name} | {per_head} | {' | '.join(cells)} |" in out
    # a second call reads the runs back instead of training them again
    mtimes = {p: p.stat().st_mtime for p in tmp_path.rglob("summary.json")}
    assert bench.main(args) == 0
    assert {p: p.stat().st_mtime for p in tmp_path.rglob("summary.json")} == mtimes
    assert "mihead run" not in capsys.readouterr().out
