"""Cluster assignments of every head on an evaluation split, and their scores."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import numpy as np
import torch

from mihead.build import Built
from mihead.contracts import ImageData
from mihead.data import ViewSource
from mihead.device import autocast
from mihead.metrics import HeadResult, best_matching, confusion, head_result, select_head
from mihead.model import MultiHeadModel
from mihead.recipe import Recipe

__all__ = ["Evaluation", "assign_views", "evaluate", "evaluate_run"]


@torch.no_grad()
def assign_views(model: MultiHeadModel, batches: Iterable[torch.Tensor], precision: str) -> tuple[np.ndarray, np.ndarray]:
    """Every main head's cluster (argmax) and its probability for each batch of views float
    [V, B, C, H, W]: int64 and float32 [H, V, N], the batches' images in order."""
    was_training = model.training
    model.eval()
    clusters, confidence = [], []
    try:
        for views in batches:
            with autocast(views.device, precision):
                probs = model(views).probs  # [H, V, B, K]
            best, index = probs.max(-1)
            clusters.append(index.cpu())
            confidence.append(best.float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(clusters, 2).numpy(), torch.cat(confidence, 2).numpy()


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """Every main head's assignments of one split's images, their scores and the reported head.

    ``assignments`` is int64 [H, N] (head h's cluster of image i, from its evaluation view)
    and ``confidence`` float32 [H, N] (that cluster's probability); ``ids``, ``labels`` (None
    for unlabelled data) and ``classes`` are the split's (:class:`ImageData`). What a run
    directory shows of an evaluation (summary.json, the plots, assignments.csv, the gallery)
    is made from these fields alone, in :mod:`mihead.outputs`.
    """

    heads: list[HeadResult]
    selected: int
    selection: str
    best: int | None
    assignments: np.ndarray
    confidence: np.ndarray
    ids: tuple[str, ...]
    labels: np.ndarray | None
    classes: tuple[str, ...]

    @property
    def num_heads(self) -> int:
        return len(self.heads)

    def class_name(self, label: int) -> str:
        """The name of class ``label``: its entry in ``classes``, else the number."""
        return self.classes[label] if 0 <= label < len(self.classes) else str(label)

    def matching(self, head: int) -> dict[int, int]:
        """Head ``head``'s cluster -> class map (Hungarian, the one its ACC is scored with); a
        cluster left out has no class. Empty without labels."""
        if self.labels is None:
            return {}
        return best_matching(self.labels, self.assignments[head])

    def confusion(self, head: int) -> np.ndarray | None:
        """Counts [classes, clusters] of head ``head`` (None without labels)."""
        if self.labels is None:
            return None
        classes = max(len(self.classes), int(self.labels.max()) + 1)
        return confusion(self.labels, self.assignments[head], classes, self.heads[head].clusters)

    def summary(self) -> dict[str, object]:
        """The metric part of summary.json."""
        chosen = self.heads[self.selected]
        return {
            "acc": chosen.acc,
            "nmi": chosen.nmi,
            "ari": chosen.ari,
            "selected_head": self.selected,
            "selection": self.selection,
            "best_head": self.best,
            "heads": [dataclasses.asdict(h) for h in self.heads],
        }

    def epoch_metrics(self) -> dict[str, object]:
        """The compact form logged in metrics.jsonl each evaluated epoch."""
        return {
            "selected_head": self.selected,
            "heads": [{k: v for k, v in dataclasses.asdict(h).items() if v is not None} for h in self.heads],
        }


def evaluate(
    model: MultiHeadModel,
    source: ViewSource,
    data: ImageData,
    *,
    batch_size: int,
    precision: str,
    selection: str,
) -> Evaluation:
    """Score every head on ``data``; labels, when present, are used here only."""
    batches = (torch.cat([view.unsqueeze(0), pair]) for view, pair in source.eval_batches(data.images, batch_size))
    clusters, confidence = assign_views(model, batches, precision)  # views: evaluation, two fixed random ones
    assign, pair = clusters[:, 0], clusters[:, 1:]
    results = [
        head_result(h, assign[h], pair[h, 0], pair[h, 1], data.labels, model.clusters) for h in range(len(assign))
    ]
    mode = selection if data.labels is not None else "nmi_zz"
    selected = select_head(results, mode)
    best = select_head(results, "best") if data.labels is not None else None
    ids = tuple(data.sample_ids())
    return Evaluation(results, selected, mode, best, assign, confidence[:, 0], ids, data.labels, data.classes)


def evaluate_run(built: Built, recipe: Recipe) -> Evaluation:
    """A run's evaluation: ``built``'s evaluation split, with the recipe's evaluation batch
    size, precision and head selection."""
    return evaluate(
        built.model,
        built.source,
        built.eval_data,
        batch_size=recipe.eval.batch_size,
        precision=recipe.train.precision,
        selection=recipe.eval.selection,
    )
