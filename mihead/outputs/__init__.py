"""What a run directory shows of an evaluation, written in one place for ``mihead run`` (at the
end of training) and ``mihead eval``, and read back by ``mihead predict``:

    summary.json       scores of every head and the training facts (:mod:`.summary`)
    heads.png, heads_nmi.png, confusion.png, training.png   the plots (:mod:`.plots`)
    assignments.csv    each evaluation image's cluster in every head (:mod:`.assignments`)
    gallery.png        the shown head's clusters, largest first, and their most confident
                       images; gallery-2.png, ... past one file's size (:mod:`.gallery`)
    embeddings.csv     with a frozen encoder, each image's embedding (:mod:`.embeddings`)

and the per-head table on the terminal (:mod:`.table`). The CSV and the gallery show the
reported head unless another is asked for (``mihead eval RUN_DIR --head N``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from mihead.errors import UsageError
from mihead.evaluate import Evaluation
from mihead.outputs.assignments import write_assignments
from mihead.outputs.embeddings import write_embeddings
from mihead.outputs.gallery import write_gallery
from mihead.outputs.plots import plot_confusion, plot_heads, plot_heads_nmi, plot_training
from mihead.outputs.summary import training_facts, write_summary
from mihead.outputs.table import print_results
from mihead.run_directory import CONFUSION_PLOT, HEADS_NMI_PLOT, HEADS_PLOT, TRAINING_PLOT, read_metrics

__all__ = ["check_head_index", "report", "training_facts", "write_outputs"]


def check_head_index(head: int, heads: int) -> int:
    """``head`` when the run has it, else a one-line UsageError naming the heads it has."""
    if not 0 <= head < heads:
        raise UsageError(f"--head {head}: the run has heads 0 to {heads - 1}")
    return head


def write_outputs(
    run_dir: Path, evaluation: Evaluation, images: np.ndarray, facts: dict[str, Any], *, head: int | None = None, gallery_images: int = 12
) -> dict[str, Any]:
    """Every output file of ``evaluation`` (of ``images``, uint8 [N, H, W, C]) in RUN_DIR,
    with ``facts`` (:func:`training_facts`) in summary.json; assignments.csv and the gallery
    show ``head`` (default: the reported one). Returns the summary."""
    shown = evaluation.selected if head is None else check_head_index(head, evaluation.num_heads)
    summary = write_summary(run_dir, evaluation, facts)
    plot_heads(evaluation, run_dir / HEADS_PLOT)
    plot_heads_nmi(evaluation, run_dir / HEADS_NMI_PLOT)
    if evaluation.labels is not None:
        plot_confusion(evaluation, run_dir / CONFUSION_PLOT)
    records = [record for _, record in read_metrics(run_dir)]
    if records:
        plot_training(records, run_dir / TRAINING_PLOT)
    write_assignments(run_dir, evaluation, shown)
    write_gallery(run_dir, evaluation, images, shown, gallery_images)
    write_embeddings(run_dir, evaluation)
    return summary


def report(
    console: Console, run_dir: Path, evaluation: Evaluation, images: np.ndarray, facts: dict[str, Any], *, head: int | None = None, gallery_images: int = 12
) -> dict[str, Any]:
    """:func:`write_outputs`, then the per-head table on ``console``."""
    summary = write_outputs(run_dir, evaluation, images, facts, head=head, gallery_images=gallery_images)
    print_results(console, evaluation, summary)
    shown = evaluation.selected if head is None else head
    console.print(f"assignments.csv and gallery.png: head {shown}", highlight=False)
    return summary
