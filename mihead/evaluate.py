"""Cluster assignments of every head on an evaluation split, and their scores under the
recipe's protocol (:mod:`mihead.protocol`).

Under torchrun every rank assigns a contiguous shard of the split's evaluation batches
(:func:`mihead.data.eval_shard`), rank 0 gathers the assignments in image order
(:meth:`mihead.distributed.Ranks.gather`) and scores them; the random views, keyed by image or
by batch start in the split, are those of one process, so the scores and outputs are too."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Sequence

import numpy as np
import torch

from mihead.build import Built
from mihead.contracts import ImageData
from mihead.data import ViewBatches, eval_shard
from mihead.device import autocast
from mihead.distributed import Ranks
from mihead.encoded_views import EncodedViews
from mihead.finite import NumericalError
from mihead.knn import KnnScore
from mihead.metrics import HeadResult, best_matching, confusion, head_result, heads_nmi, select_head
from mihead.model import MultiHeadModel
from mihead.protocol import Protocol
from mihead.recipe import Recipe

__all__ = ["Evaluation", "assign_views", "evaluate", "evaluate_run"]


@torch.no_grad()
def _argmax_views(model: MultiHeadModel, batches: Iterable[torch.Tensor], precision: str) -> tuple[np.ndarray, np.ndarray]:
    """:func:`assign_views` without the check for non-finite probabilities."""
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


def _require_finite(probabilities: np.ndarray) -> None:
    """A NumericalError when a cluster probability float [H, V, N] is NaN or infinite."""
    finite = np.isfinite(probabilities).all(axis=(0, 1))  # per image, over heads and views
    if not finite.all():  # argmax of NaN is arbitrary: no cluster, CSV or gallery is made of it
        raise NumericalError(
            f"the model's cluster probabilities are non-finite for {int((~finite).sum()):,} of {finite.size:,} images "
            "(its weights diverged, or its activations overflow on them); nothing was assigned"
        )


def assign_views(model: MultiHeadModel, batches: Iterable[torch.Tensor], precision: str) -> tuple[np.ndarray, np.ndarray]:
    """Every main head's cluster (argmax) and its probability for each batch of views float
    [V, B, C, H, W]: int64 and float32 [H, V, N], the batches' images in order. A
    NumericalError when a probability is NaN or infinite."""
    clusters, probabilities = _argmax_views(model, batches, precision)
    _require_finite(probabilities)
    return clusters, probabilities


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """Every main head's assignments of one split's images, their scores and the reported head.

    ``assignments`` is int64 [H, N] (head h's cluster of image i, from its evaluation view)
    and ``confidence`` float32 [H, N] (that cluster's probability); ``ids``, ``labels`` (None
    for unlabelled data) and ``classes`` are the split's (:class:`ImageData`). What a run
    directory shows of an evaluation (summary.json, the plots, assignments.csv, the gallery)
    is made from these fields alone, in :mod:`mihead.outputs`.

    Under a protocol that fits on other images than it scores (``fit_on_train``),
    ``fit_heads`` are every head's scores on those images (the head was selected by them) and
    ``mappings`` each head's cluster -> class map fitted there, with which ``heads``' ACC is
    scored; both are None when the scored images fit themselves. ``protocol`` is the
    description recorded in summary.json, ``splits`` the split of each role.
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
    protocol: str = ""
    splits: dict[str, str] = dataclasses.field(default_factory=dict)
    fit_heads: list[HeadResult] | None = None
    mappings: tuple[dict[int, int], ...] | None = None
    embeddings: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)
    encoder_knn: KnnScore | None = None

    @property
    def num_heads(self) -> int:
        return len(self.heads)

    def class_name(self, label: int) -> str:
        """The name of class ``label``: its entry in ``classes``, else the number."""
        return self.classes[label] if 0 <= label < len(self.classes) else str(label)

    def matching(self, head: int) -> dict[int, int]:
        """Head ``head``'s cluster -> class map (Hungarian, the one its ACC is scored with:
        fitted on the protocol's images); a cluster left out has no class. Empty without
        labels. Computed once per head: the plots, assignments.csv and the gallery all ask."""
        if self.mappings is not None:
            return self.mappings[head]
        if self.labels is None:
            return {}
        if head not in self._matchings:
            self._matchings[head] = best_matching(self.labels, self.assignments[head])
        return self._matchings[head]

    @functools.cached_property
    def _matchings(self) -> dict[int, dict[int, int]]:
        """The cluster -> class maps :meth:`matching` has computed, by head."""
        return {}

    @functools.cached_property
    def heads_nmi(self) -> np.ndarray:
        """NMI between every pair of main heads' assignments of the scored images [H, H]
        (computed once: summary.json and heads_nmi.png both show it)."""
        return heads_nmi(self.assignments)

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
            "heads_nmi": [[round(float(v), 6) for v in row] for row in self.heads_nmi],
            "protocol": self.protocol,
            "splits": self.splits,
            **({"fit_heads": [dataclasses.asdict(h) for h in self.fit_heads]} if self.fit_heads is not None else {}),
            **({"encoder_knn": dataclasses.asdict(self.encoder_knn)} if self.encoder_knn is not None else {}),
        }

    def epoch_metrics(self) -> dict[str, object]:
        """The compact form logged in metrics.jsonl each evaluated epoch."""
        return {
            "selected_head": self.selected,
            "heads": [{k: v for k, v in dataclasses.asdict(h).items() if v is not None} for h in self.heads],
        }


def _assign(
    model: MultiHeadModel, source: ViewBatches, images: np.ndarray, batch_size: int, precision: str, ranks: Ranks
) -> tuple[np.ndarray, np.ndarray] | None:
    """Every main head's clusters of ``images``' views (the evaluation view, then two fixed
    random ones) int64 [H, 3, N] and their probabilities float32 [H, 3, N]: each rank assigns
    its shard (:func:`mihead.data.eval_shard`) and rank 0 gets the whole split in image order
    (None on the other ranks). Unchecked for finiteness: a rank that stopped here would leave
    the others waiting for its shard."""
    rows = eval_shard(len(images), batch_size, ranks.rank, ranks.world_size)
    clusters, confidence = np.zeros((model.num_heads, 3, 0), np.int64), np.zeros((model.num_heads, 3, 0), np.float32)
    if rows:  # a rank may have no batch of a small split
        batches = (torch.cat([view.unsqueeze(0), pair]) for view, pair in source.eval_batches(images, batch_size, rows))
        clusters, confidence = _argmax_views(model, batches, precision)
    every_cluster, every_confidence = ranks.gather(clusters, axis=2), ranks.gather(confidence, axis=2)
    return None if every_cluster is None or every_confidence is None else (every_cluster, every_confidence)


def _score(
    assign: np.ndarray, pair: np.ndarray, labels: np.ndarray | None, clusters: int, mappings: Sequence[dict[int, int]] | None = None
) -> list[HeadResult]:
    return [
        head_result(h, assign[h], pair[h, 0], pair[h, 1], labels, clusters, None if mappings is None else mappings[h])
        for h in range(len(assign))
    ]


def evaluate(
    model: MultiHeadModel,
    source: ViewBatches,
    data: ImageData,
    *,
    batch_size: int,
    precision: str,
    selection: str,
    fit: ImageData | None = None,
    protocol: Protocol | None = None,
    ranks: Ranks | None = None,
) -> Evaluation | None:
    """Score every head on ``data``; labels, when present, are used here only. With ``fit``
    (other images: the protocol's fitting split), the head is chosen on ``fit`` and, when
    ``fit`` is labelled, each head's cluster-to-class mapping is fitted on it and scores
    ``data``. With several processes (``ranks``), each assigns its shard of the images and
    rank 0 alone scores them: the Evaluation on rank 0, None on the others. A NumericalError
    (non-finite probabilities) is raised on every rank."""
    ranks = ranks or Ranks()
    scored = _assign(model, source, data.images, batch_size, precision, ranks)
    fitted = _assign(model, source, fit.images, batch_size, precision, ranks) if fit is not None else None

    def score() -> Evaluation:  # rank 0's part
        assert scored is not None
        for _, probabilities in (scored, *((fitted,) if fitted is not None else ())):
            _require_finite(probabilities)
        assign, confidence, pair = scored[0][:, 0], scored[1][:, 0], scored[0][:, 1:]
        fit_heads, mappings = None, None
        if fit is not None and fitted is not None:
            fit_assign, fit_pair = fitted[0][:, 0], fitted[0][:, 1:]
            fit_heads = _score(fit_assign, fit_pair, fit.labels, model.clusters)
            if fit.labels is not None and data.labels is not None:
                mappings = tuple(best_matching(fit.labels, fit_assign[h]) for h in range(len(fit_assign)))
        results = _score(assign, pair, data.labels, model.clusters, mappings)
        chooser = fit_heads if fit_heads is not None else results
        mode = selection if chooser[0].acc is not None else "nmi_zz"
        selected = select_head(chooser, mode)
        best = select_head(results, "best") if data.labels is not None else None
        ids = tuple(data.sample_ids())
        fit_labelled = fit is None or fit.labels is not None
        encoded = source if isinstance(source, EncodedViews) else None
        return Evaluation(
            results,
            selected,
            mode,
            best,
            assign,
            confidence,
            ids,
            data.labels,
            data.classes,
            protocol=protocol.describe(fit_labelled) if protocol else "",
            splits=protocol.splits() if protocol else {},
            fit_heads=fit_heads,
            mappings=mappings,
            embeddings=encoded.plain(data.images) if encoded else None,
            encoder_knn=encoded.knn_score(data, fit) if encoded else None,
        )

    return ranks.on_main(score)


def evaluate_run(built: Built, recipe: Recipe, ranks: Ranks | None = None) -> Evaluation | None:
    """A run's evaluation under its protocol: ``built``'s evaluation split scored (with the
    fitting split's mapping and head when they differ), with the recipe's evaluation batch
    size, precision and head selection; sharded over ``ranks`` as :func:`evaluate` says."""
    fit = built.fit_data if built.fit_data is not built.eval_data else None
    return evaluate(
        built.model,
        built.source,
        built.eval_data,
        batch_size=recipe.eval.batch_size,
        precision=recipe.train.precision,
        selection=recipe.eval.selection,
        fit=fit,
        protocol=built.protocol,
        ranks=ranks,
    )
