"""Cluster assignments of every head on an evaluation split, and their scores."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from mihead.contracts import Head, ImageData
from mihead.data import ViewSource
from mihead.device import autocast
from mihead.metrics import HeadResult, confusion, head_result, select_head
from mihead.model import MultiHeadModel

__all__ = ["Evaluation", "assign_heads", "evaluate"]


@torch.no_grad()
def assign_heads(
    model: MultiHeadModel, source: ViewSource, images: np.ndarray, batch_size: int, precision: str
) -> tuple[np.ndarray, np.ndarray]:
    """Argmax assignments of every main head: of the evaluation views, int64 [H, N], and of
    two fixed random views, int64 [2, H, N]."""
    was_training = model.training
    model.eval()
    single, pairs = [], []
    try:
        for view, pair in source.eval_batches(images, batch_size):
            with autocast(source.device, precision):
                out = model(torch.cat([view.unsqueeze(0), pair]))
            labels = out.probs.argmax(-1)  # [H, 3, B]
            single.append(labels[:, 0].cpu())
            pairs.append(labels[:, 1:].transpose(0, 1).cpu())
    finally:
        model.train(was_training)
    return torch.cat(single, 1).numpy(), torch.cat(pairs, 2).numpy()


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """Per-head scores, the reported head and its confusion matrix (None without labels)."""

    heads: list[HeadResult]
    selected: int
    selection: str
    best: int | None
    confusion: np.ndarray | None
    classes: tuple[str, ...]

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
    assign, pair = assign_heads(model, source, data.images, batch_size, precision)
    results = [head_result(h, assign[h], pair[0, h], pair[1, h], data.labels) for h in range(len(assign))]
    mode = selection if data.labels is not None else "nmi_zz"
    selected = select_head(results, mode)
    best = select_head(results, "best") if data.labels is not None else None
    table = None
    if data.labels is not None:
        classes = max(len(data.classes), int(data.labels.max()) + 1)
        head = model.heads[selected]
        assert isinstance(head, Head)
        table = confusion(data.labels, assign[selected], classes, head.clusters)
    return Evaluation(results, selected, mode, best, table, data.classes)
