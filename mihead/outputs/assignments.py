"""assignments.csv (each evaluation image's cluster in every head) and the CSV of
``mihead predict`` (each new image's), as columns of strings.

assignments.csv: ``id``, ``label`` (the class name; empty without labels), ``cluster`` and
``confidence`` (its probability) of the shown head, ``head_0 .. head_{H-1}`` (every main
head's cluster), ``matched_class`` (with labels: the class the Hungarian matching of the shown
head gives the row's cluster, empty for an unmatched cluster), and ``cluster_size`` (how many
evaluation images the shown head put in the row's cluster). ACC, NMI and ARI of any head can be
recomputed from this file alone.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TextIO

import numpy as np

from mihead.evaluate import Evaluation
from mihead.files import write_atomically
from mihead.run_directory import ASSIGNMENTS_FILE

__all__ = ["assignment_columns", "head_columns", "write_assignments", "write_csv", "write_csv_file"]

Columns = dict[str, list[str]]


def head_columns(assignments: np.ndarray, confidence: np.ndarray, head: int) -> Columns:
    """``cluster`` and ``confidence`` of head ``head``, then ``head_0 .. head_{H-1}``, from
    int64 and float [H, N] arrays."""
    columns = {"cluster": [str(c) for c in assignments[head]], "confidence": [f"{p:.6f}" for p in confidence[head]]}
    for h, row in enumerate(assignments):
        columns[f"head_{h}"] = [str(c) for c in row]
    return columns


def assignment_columns(evaluation: Evaluation, head: int) -> Columns:
    """The columns of assignments.csv for ``evaluation`` shown by head ``head``."""
    labels = evaluation.labels
    n = len(evaluation.ids)
    columns: Columns = {
        "id": list(evaluation.ids),
        "label": [""] * n if labels is None else [evaluation.class_name(int(y)) for y in labels],
        **head_columns(evaluation.assignments, evaluation.confidence, head),
    }
    clusters = evaluation.assignments[head]
    if labels is not None:
        matching = evaluation.matching(head)
        names = {c: evaluation.class_name(y) for c, y in matching.items()}
        columns["matched_class"] = [names.get(int(c), "") for c in clusters]
    sizes = np.bincount(clusters, minlength=evaluation.heads[head].clusters)
    columns["cluster_size"] = [str(s) for s in sizes[clusters]]
    return columns


def write_csv(out: TextIO, columns: Columns) -> None:
    """``columns`` (name -> one string per row) as CSV with a header line."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(zip(*columns.values(), strict=True))


def write_csv_file(path: Path, columns: Columns) -> Path:
    """``columns`` as the CSV file ``path``, written atomically."""

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            write_csv(f, columns)

    return write_atomically(path, write)


def write_assignments(run_dir: Path, evaluation: Evaluation, head: int) -> Path:
    """RUN_DIR/assignments.csv of ``evaluation`` shown by head ``head``."""
    return write_csv_file(run_dir / ASSIGNMENTS_FILE, assignment_columns(evaluation, head))
