"""How good a frozen encoder's features are for the labelled images: the accuracy of a
k-nearest-neighbour classifier on its cached embeddings.

A quick answer to "is this encoder any good for my images?", printed beside the clustering's
ACC: clusters can hardly be better than the classes the features already separate. It is
lightly's weighted kNN (``lightly.utils.benchmarking.knn_predict``: cosine similarity, votes
weighted by exp(similarity / t), Wu et al. 2018), with its bank the protocol's fitting split
when that is another labelled split, else the scored images in two halves, each predicted from
the other. Queries go in chunks, so memory is O(chunk x bank), never N x N.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from mihead import lightly_parts

__all__ = ["KnnScore", "knn_accuracy"]

K = 20
"""Neighbours that vote (DINO's k-NN evaluation uses 20)."""
TEMPERATURE = 0.07
"""Temperature of the votes' weights (DINO's value)."""


@dataclasses.dataclass(frozen=True)
class KnnScore:
    """The kNN accuracy ``acc`` with ``k`` neighbours; ``bank`` says what they were drawn from."""

    acc: float
    k: int
    bank: str

    def describe(self) -> str:
        return f"encoder kNN accuracy {self.acc:.4f} (k = {self.k}, bank: {self.bank})"


def _predict(query: np.ndarray, bank: np.ndarray, bank_labels: np.ndarray, classes: int, k: int, chunk: int) -> np.ndarray:
    knn_predict = lightly_parts.knn_predict()
    assert knn_predict is not None  # knn_accuracy checked
    features = torch.nn.functional.normalize(torch.from_numpy(np.asarray(bank, dtype=np.float32)), dim=1).T.contiguous()
    labels = torch.from_numpy(bank_labels.astype(np.int64))
    out = []
    for start in range(0, len(query), chunk):
        part = torch.nn.functional.normalize(torch.from_numpy(np.asarray(query[start : start + chunk], dtype=np.float32)), dim=1)
        out.append(knn_predict(part, features, labels, classes, k, TEMPERATURE)[:, 0])
    return torch.cat(out).numpy()


def knn_accuracy(
    embeddings: np.ndarray,
    labels: np.ndarray,
    bank: tuple[np.ndarray, np.ndarray] | None = None,
    *,
    bank_name: str = "",
    chunk: int = 1024,
) -> KnnScore | None:
    """The kNN accuracy of ``embeddings`` [N, D] against ``labels`` [N]: predicted from
    ``bank`` (embeddings, labels; ``bank_name`` says which split) when given, else two-fold
    over the images themselves. None, with a warning, where lightly is not installed."""
    if lightly_parts.knn_predict() is None:
        return None
    classes = int(max(labels.max(), bank[1].max() if bank else 0)) + 1
    if bank is not None:
        k = min(K, len(bank[0]))
        predicted = _predict(embeddings, bank[0], bank[1], classes, k, chunk)
        return KnnScore(float((predicted == labels).mean()), k, bank_name)
    order = np.random.default_rng(0).permutation(len(labels))
    halves = order[: len(order) // 2], order[len(order) // 2 :]
    k = min(K, len(halves[0]))
    hits = 0
    for query, known in (halves, halves[::-1]):
        query, known = np.sort(query), np.sort(known)
        hits += int((_predict(embeddings[query], embeddings[known], labels[known], classes, k, chunk) == labels[query]).sum())
    return KnnScore(hits / len(labels), k, "two halves of the scored images")
