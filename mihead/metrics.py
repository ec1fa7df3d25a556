"""Clustering metrics: accuracy under the best cluster-to-class matching, NMI, ARI, and the
choice of the reported head.

Labels enter here only, after training, to score assignments; they never reach training.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

__all__ = [
    "HeadResult",
    "best_matching",
    "cluster_usage",
    "confusion",
    "head_result",
    "heads_nmi",
    "hungarian_accuracy",
    "mapped_accuracy",
    "select_head",
]


def confusion(labels: np.ndarray, assign: np.ndarray, classes: int, clusters: int) -> np.ndarray:
    """Counts [classes, clusters]: how many samples of each class went to each cluster."""
    table = np.zeros((classes, clusters), dtype=np.int64)
    np.add.at(table, (labels, assign), 1)
    return table


def best_matching(labels: np.ndarray, assign: np.ndarray) -> dict[int, int]:
    """The one-to-one cluster -> class map that maximises agreement (Hungarian algorithm)."""
    classes = int(labels.max()) + 1
    clusters = int(assign.max()) + 1
    table = confusion(labels, assign, classes, clusters)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return {int(c): int(r) for r, c in zip(rows, cols, strict=True)}


def mapped_accuracy(labels: np.ndarray, assign: np.ndarray, mapping: dict[int, int]) -> float:
    """Fraction of samples whose cluster maps to their class under ``mapping`` (a cluster
    the mapping leaves out matches no class); the mapping may come from other images."""
    mapped = np.array([mapping.get(a, -1) for a in range(int(assign.max()) + 1)])
    return float(np.mean(mapped[assign] == labels))


def hungarian_accuracy(labels: np.ndarray, assign: np.ndarray) -> float:
    """Fraction of samples whose cluster maps to their class under :func:`best_matching`."""
    return mapped_accuracy(labels, assign, best_matching(labels, assign))


def cluster_usage(assign: np.ndarray, clusters: int) -> tuple[int, float]:
    """How many of ``clusters`` clusters hold at least one sample, and the entropy of the
    cluster sizes divided by log(clusters): 1.0 for equal sizes, 0.0 for one cluster holding
    everything. Together they tell whether a head uses the clusters it was given."""
    sizes = np.bincount(assign, minlength=clusters)
    share = sizes[sizes > 0] / len(assign)
    entropy = float(-(share * np.log(share)).sum())
    return int((sizes > 0).sum()), entropy / float(np.log(clusters))


@dataclasses.dataclass(frozen=True)
class HeadResult:
    """One head's scores (acc, nmi and ari are None for unlabelled data) and how it uses its
    ``clusters``: ``clusters_used`` non-empty ones, ``usage_entropy`` the normalised entropy
    of their sizes (:func:`cluster_usage`)."""

    index: int
    acc: float | None
    nmi: float | None
    ari: float | None
    nmi_zz: float
    clusters: int
    clusters_used: int
    usage_entropy: float


def head_result(
    index: int,
    assign: np.ndarray,
    assign_a: np.ndarray,
    assign_b: np.ndarray,
    labels: np.ndarray | None,
    clusters: int,
    mapping: dict[int, int] | None = None,
) -> HeadResult:
    """Scores of one head of ``clusters`` clusters: its assignments against the labels (ACC
    under ``mapping``, a cluster-to-class map fitted elsewhere, else the Hungarian matching on
    these labels; NMI and ARI need none), ``nmi_zz``, the NMI between its assignments of two
    random augmentations of the same images, and its cluster usage."""
    # scikit-learn scores two constant labellings 1.0; a head that puts everything in one
    # cluster carries no information and must not win the unsupervised head selection
    collapsed = len(np.unique(assign_a)) < 2 or len(np.unique(assign_b)) < 2
    zz = 0.0 if collapsed else float(normalized_mutual_info_score(assign_a, assign_b))
    used, entropy = cluster_usage(assign, clusters)
    if labels is None:
        return HeadResult(index, None, None, None, zz, clusters, used, entropy)
    return HeadResult(
        index,
        hungarian_accuracy(labels, assign) if mapping is None else mapped_accuracy(labels, assign, mapping),
        float(normalized_mutual_info_score(labels, assign)),
        float(adjusted_rand_score(labels, assign)),
        zz,
        clusters,
        used,
        entropy,
    )


def select_head(results: list[HeadResult], selection: str) -> int:
    """Index of the reported head: highest ``nmi_zz`` (unsupervised), or highest accuracy
    (``best``, posthoc by labels; falls back to nmi_zz without labels)."""
    if selection == "best" and results[0].acc is not None:
        return max(results, key=lambda r: r.acc or 0.0).index
    return max(results, key=lambda r: r.nmi_zz).index


def heads_nmi(assignments: np.ndarray) -> np.ndarray:
    """NMI between every pair of heads' assignments int [H, N] -> float [H, H] (symmetric,
    1 on the diagonal): how alike the heads' solutions are (DHOG's Figure 2 point, "without
    cross-head MI minimisation later heads converge to similar solutions")."""
    heads = len(assignments)
    table = np.eye(heads)
    for i in range(heads):
        for j in range(i):
            table[i, j] = table[j, i] = normalized_mutual_info_score(assignments[i], assignments[j])
    return table
