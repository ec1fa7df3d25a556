"""heads.png (per-head scores), heads_nmi.png (how alike the heads' assignments are),
confusion.png (the reported head's confusion matrix) and training.png (loss terms and scores
against training time)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from mihead.evaluate import Evaluation
from mihead.files import write_atomically
from mihead.training_log import CurvePoint, head_curves, learning_curve

__all__ = ["plot_confusion", "plot_heads", "plot_heads_nmi", "plot_training"]


def _save(fig: Figure, path: Path) -> None:
    write_atomically(path, lambda tmp: fig.savefig(tmp, format="png"))


def plot_heads(evaluation: Evaluation, path: Path) -> None:
    """Accuracy (when labelled) and NMI(z, z') of each head, the reported head marked."""
    heads = evaluation.heads
    x = np.arange(len(heads))
    fig = Figure(figsize=(max(4.0, 0.6 * len(heads) + 2), 3.2), dpi=120)
    ax = fig.subplots()
    width = 0.4
    if heads[0].acc is not None:
        ax.bar(x - width / 2, [h.acc or 0.0 for h in heads], width, label="accuracy")
        ax.bar(x + width / 2, [h.nmi_zz for h in heads], width, label="NMI(z, z')")
    else:
        ax.bar(x, [h.nmi_zz for h in heads], width, label="NMI(z, z')")
    ax.axvline(evaluation.selected, color="k", ls=":", lw=1, label=f"reported ({evaluation.selection})")
    ax.set_xticks(x)
    ax.set_xlabel("head")
    ax.set_ylim(0, 1.2)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.legend(fontsize=7, loc="upper center", ncol=3, frameon=False)
    ax.set_title("Per-head results")
    fig.tight_layout()
    _save(fig, path)


def plot_heads_nmi(evaluation: Evaluation, path: Path) -> None:
    """The NMI between every pair of heads' assignments, as a matrix with its values: near 1,
    two heads found the same grouping; DHOG's push is meant to keep them apart."""
    table = evaluation.heads_nmi
    heads = len(table)
    side = 0.5 * heads + 2.2
    fig = Figure(figsize=(side + 0.8, side), dpi=120)
    ax = fig.subplots()
    image = ax.imshow(table, cmap="viridis", vmin=0, vmax=1)
    if heads <= 16:
        for i in range(heads):
            for j in range(heads):
                ax.text(j, i, f"{table[i, j]:.2f}", ha="center", va="center", fontsize=6, color="k" if table[i, j] > 0.6 else "w")
    ax.set_xticks(range(heads))
    ax.set_yticks(range(heads))
    ax.set_xlabel("head")
    ax.set_ylabel("head")
    off = table[~np.eye(heads, dtype=bool)]
    mean = f", mean off-diagonal {off.mean():.2f}" if off.size else ""
    ax.set_title(f"NMI between heads' assignments{mean}", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    _save(fig, path)


def plot_confusion(evaluation: Evaluation, path: Path) -> None:
    """Row-normalised confusion of the reported head, clusters ordered by their matched class
    (the mapping its ACC is scored with, which the protocol may have fitted on other images)."""
    table = evaluation.confusion(evaluation.selected)
    assert table is not None
    matched = [c for c, _ in sorted(evaluation.matching(evaluation.selected).items(), key=lambda item: item[1])]
    order = matched + [c for c in range(table.shape[1]) if c not in set(matched)]
    table = table[:, order]
    norm = table / np.maximum(table.sum(1, keepdims=True), 1)
    n = table.shape[0]
    fig = Figure(figsize=(0.45 * table.shape[1] + 2.5, 0.45 * n + 2), dpi=120)
    ax = fig.subplots()
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    names = list(evaluation.classes) if len(evaluation.classes) == n else [str(i) for i in range(n)]
    ax.set_yticks(range(n), names, fontsize=7)
    ax.set_xticks(range(table.shape[1]), [str(c) for c in order], fontsize=7)
    ax.set_xlabel("cluster (ordered by matched class)")
    ax.set_ylabel("class")
    ax.set_title(f"Head {evaluation.selected} ({evaluation.selection})")
    fig.tight_layout()
    _save(fig, path)


def _per_head_once(scores: Axes, records: list[dict[str, Any]], point: CurvePoint, metric: str, name: str) -> None:
    """A run evaluated once: each head's ``metric`` as a bar, the reported head's coloured, as
    a single dot against time would tell nothing."""
    values = [v[0] or 0.0 for v in head_curves(records, metric)]
    colours = ["C0" if h == point.selected else "0.7" for h in range(len(values))]
    bars = scores.bar(range(len(values)), values, color=colours, width=0.6)
    if len(values) <= 16:
        scores.bar_label(bars, fmt="%.2f", fontsize=7)
    scores.bar([], [], color="C0", label="reported head")
    scores.set_xticks(range(len(values)))
    scores.set_xlabel("head")
    when = f"{point.seconds:.0f} s" if point.seconds < 60 else f"{point.seconds / 60:.1f} min"
    scores.set_title(f"{name} per head (evaluated once, after {when})", fontsize=10)


def plot_training(records: list[dict[str, Any]], path: Path) -> None:
    """Each loss term per epoch, and the reported head's accuracy (the best head's dashed; NMI(z,
    z') without labels) at each evaluated epoch, against minutes of training; with more than
    one evaluated epoch, each head's own curve in thin grey lines behind them, and with one,
    each head's score as a bar instead."""
    fig = Figure(figsize=(9, 3.2), dpi=120)
    losses, scores = fig.subplots(1, 2)
    minutes = [r["seconds"] / 60 for r in records]
    for term in records[0]["losses"]:
        losses.plot(minutes, [r["losses"][term] for r in records], marker="o" if len(records) == 1 else None, ms=3, label=term)
    losses.set_xlabel("training minutes")
    losses.xaxis.set_major_locator(MaxNLocator(5))
    losses.set_title("Loss terms (epoch means)")
    losses.legend(fontsize=7, frameon=False)
    curve = learning_curve(records)
    at = [p.seconds / 60 for p in curve]
    labelled = bool(curve) and curve[0].acc is not None
    metric, name = ("acc", "Accuracy") if labelled else ("nmi_zz", "NMI(z, z')")
    if len(curve) == 1:
        _per_head_once(scores, records, curve[0], metric, name)
    else:
        for h, values in enumerate(head_curves(records, metric)):
            scores.plot(at, values, "-", lw=0.7, color="0.6", label="each head" if h == 0 else None, zorder=1)
        if labelled:
            scores.plot(at, [p.acc for p in curve], "o-", ms=3, label="reported head")
            scores.plot(at, [p.best_acc for p in curve], "--", lw=1, label="best head")
            scores.set_title("Accuracy")
        else:
            scores.plot(at, [p.nmi_zz for p in curve], "o-", ms=3, label="reported head")
            scores.set_title("NMI(z, z') (no labels)")
        scores.set_xlabel("training minutes")
        scores.xaxis.set_major_locator(MaxNLocator(5))
    scores.set_ylim(0, 1)
    scores.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    _save(fig, path)
