"""The per-head results table printed at the end of a run and by ``mihead eval``."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from mihead.evaluate import Evaluation

__all__ = ["print_results"]


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def print_results(console: Console, evaluation: Evaluation, summary: dict[str, Any]) -> None:
    """One row per head (ACC, NMI, ARI, NMI(z,z'), clusters used of K and the normalised
    entropy of their sizes), the reported head starred (and the best by labels marked), in
    80 columns."""
    caption = f"* reported head (chosen by {evaluation.selection})"
    if evaluation.best is not None and evaluation.best != evaluation.selected:
        caption += "; + best by labels"
    table = Table(title="Per-head results", title_justify="left", caption=caption, caption_justify="left")
    for column in ("head", "ACC", "NMI", "ARI", "NMI(z,z')", "used", "H/logK", ""):
        table.add_column(column, justify="right" if column else "left")
    for h in evaluation.heads:
        mark = "*" if h.index == evaluation.selected else "+" if h.index == evaluation.best else ""
        usage = (f"{h.clusters_used}/{h.clusters}", f"{h.usage_entropy:.2f}")
        cells = (str(h.index), _fmt(h.acc), _fmt(h.nmi), _fmt(h.ari), _fmt(h.nmi_zz), *usage, mark)
        table.add_row(*cells, style="bold" if h.index == evaluation.selected else None)
    console.print(table)
    if evaluation.protocol:
        console.print(f"protocol {evaluation.protocol}", highlight=False)
    chosen = evaluation.heads[evaluation.selected]
    console.print(f"head {evaluation.selected}: ACC {_fmt(chosen.acc)}  NMI {_fmt(chosen.nmi)}  ARI {_fmt(chosen.ari)}")
    if evaluation.encoder_knn is not None:
        console.print(evaluation.encoder_knn.describe(), highlight=False)
    console.print(
        f"trained {summary.get('steps', '?')} steps in {summary.get('seconds', 0):.1f} s"
        f" ({summary.get('images_per_second', 0):,.0f} img/s on {summary.get('device', '?')})"
    )
