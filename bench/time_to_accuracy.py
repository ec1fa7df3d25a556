"""Accuracy against training time of one run directory, as a markdown table for docs/benchmarks.md.

    python bench/time_to_accuracy.py RUN_DIR [--targets 0.5 0.6]

Reads RUN_DIR/metrics.jsonl (every evaluated epoch, ``eval.every``; the run may have been
stopped and resumed any number of times: training seconds add up across commands, evaluation
time is not counted) and prints the epoch time (median, first, fastest), then, per evaluated
epoch, the training minutes, the reported head's ACC and NMI and the best head's ACC; then,
for each target, the first time the reported head reached it. Measurements only; nothing is
asserted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mihead.run_directory import read_metrics
from mihead.training_log import CurvePoint, learning_curve


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def epoch_seconds(records: list[dict[str, Any]]) -> list[float]:
    """Training seconds of each logged epoch: the differences of the cumulative ``seconds``
    (the first epoch's includes warm-up: cuDNN's algorithm search, compilation)."""
    totals = [float(r["seconds"]) for r in records]
    return [b - a for a, b in zip([0.0, *totals[:-1]], totals, strict=True)]


def first_reaching(curve: list[CurvePoint], target: float) -> CurvePoint | None:
    """The first evaluated epoch whose reported head's ACC is at least ``target``."""
    return next((p for p in curve if p.acc is not None and p.acc >= target), None)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--targets", type=float, nargs="*", default=[0.5, 0.6], help="ACC thresholds to time")
    args = parser.parse_args(argv)
    records = [record for _, record in read_metrics(args.run_dir)]
    curve = learning_curve(records)
    if not curve:
        print(f"{args.run_dir}: no evaluated epoch in metrics.jsonl (set eval.every)", file=sys.stderr)
        return 2
    rate = statistics.median(r["images_per_second"] for r in records)
    epochs = epoch_seconds(records)
    print(f"run: {args.run_dir} | {records[-1]['epoch']} epochs, {records[-1]['step']} steps, "
          f"{records[-1]['seconds'] / 60:.1f} training minutes, median {rate:,.0f} images/s")  # fmt: skip
    print(f"epoch time: median {statistics.median(epochs):,.2f} s, first {epochs[0]:,.2f} s, fastest {min(epochs):,.2f} s (training only)")
    print()
    print("| epoch | training min | reported head | ACC | NMI | best head ACC |")
    print("|---:|---:|---:|---:|---:|---:|")
    for p in curve:
        print(f"| {p.epoch} | {p.seconds / 60:.2f} | {p.selected} | {_score(p.acc)} | {_score(p.nmi)} | {_score(p.best_acc)} |")
    print()
    for target in args.targets:
        hit = first_reaching(curve, target)
        if hit is None:
            print(f"ACC >= {target:g}: not reached in {curve[-1].seconds / 60:.2f} training minutes")
        else:
            print(f"ACC >= {target:g}: first at epoch {hit.epoch}, {hit.seconds / 60:.2f} training minutes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
