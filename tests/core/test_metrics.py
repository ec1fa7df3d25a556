"""Clustering metrics against brute force and direct formulas, and head selection."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from mihead.metrics import (
    HeadResult,
    best_matching,
    cluster_usage,
    confusion,
    head_result,
    heads_nmi,
    hungarian_accuracy,
    mapped_accuracy,
    select_head,
)


def brute_force_accuracy(labels: np.ndarray, assign: np.ndarray) -> float:
    """Best accuracy over every one-to-one map of clusters to classes."""
    n = max(labels.max(), assign.max()) + 1
    return max(float(np.mean(np.array(perm)[assign] == labels)) for perm in itertools.permutations(range(n)))


def direct_nmi(a: np.ndarray, b: np.ndarray) -> float:
    """I(a; b) / mean(H(a), H(b)) from the contingency table (scikit-learn's default)."""
    table = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(table, (a, b), 1)
    p = table / table.sum()
    pa, pb = p.sum(1), p.sum(0)
    nz = p > 0
    mi = np.sum(p[nz] * np.log(p[nz] / np.outer(pa, pb)[nz]))
    h = lambda q: -np.sum(q[q > 0] * np.log(q[q > 0]))  # noqa: E731
    return float(mi / ((h(pa) + h(pb)) / 2))


def direct_ari(a: np.ndarray, b: np.ndarray) -> float:
    """Hubert and Arabie's adjusted Rand index from pair counts."""
    table = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(table, (a, b), 1)
    pairs = lambda x: x * (x - 1) / 2  # noqa: E731
    index = pairs(table).sum()
    rows, cols = pairs(table.sum(1)).sum(), pairs(table.sum(0)).sum()
    expected = rows * cols / pairs(len(a))
    return float((index - expected) / ((rows + cols) / 2 - expected))


@pytest.mark.parametrize("seed", range(12))
def test_hungarian_accuracy_equals_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    classes, clusters = int(rng.integers(2, 6)), int(rng.integers(2, 6))
    labels = rng.integers(0, classes, 60)
    assign = np.where(rng.random(60) < 0.5, (labels + 1) % clusters, rng.integers(0, clusters, 60))
    assert hungarian_accuracy(labels, assign) == pytest.approx(brute_force_accuracy(labels, assign))


def test_relabelled_perfect_clustering_scores_one() -> None:
    labels = np.arange(50) % 5
    assign = (labels * 3 + 2) % 5  # a permutation of the class ids
    assert hungarian_accuracy(labels, assign) == 1.0
    assert best_matching(labels, assign) == {int((c * 3 + 2) % 5): c for c in range(5)}
    result = head_result(0, assign, assign, assign, labels, 5)
    assert (result.acc, result.nmi, result.ari, result.nmi_zz) == pytest.approx((1.0, 1.0, 1.0, 1.0))


def test_more_clusters_than_classes_leave_some_unmatched() -> None:
    labels = np.array([0, 0, 0, 1, 1, 1])
    assign = np.array([0, 1, 2, 3, 3, 3])
    assert hungarian_accuracy(labels, assign) == pytest.approx(4 / 6)
    assert hungarian_accuracy(labels, assign) == pytest.approx(brute_force_accuracy(labels, assign))


def test_confusion_counts() -> None:
    table = confusion(np.array([0, 1, 1, 2]), np.array([3, 0, 0, 1]), 3, 4)
    assert table.tolist() == [[0, 0, 0, 1], [2, 0, 0, 0], [0, 1, 0, 0]]


@pytest.mark.parametrize("seed", range(5))
def test_nmi_and_ari_match_direct_formulas_and_scikit_learn(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    labels = rng.integers(0, 4, 200)
    assign = np.where(rng.random(200) < 0.6, labels, rng.integers(0, 6, 200))
    a, b = rng.integers(0, 6, 200), rng.integers(0, 6, 200)
    result = head_result(3, assign, a, b, labels, 6)
    assert result.index == 3
    assert result.nmi == pytest.approx(direct_nmi(labels, assign), abs=1e-9)
    assert result.nmi == pytest.approx(normalized_mutual_info_score(labels, assign))
    assert result.ari == pytest.approx(direct_ari(labels, assign), abs=1e-9)
    assert result.ari == pytest.approx(adjusted_rand_score(labels, assign))
    assert result.nmi_zz == pytest.approx(direct_nmi(a, b), abs=1e-9)
    assert result.acc == pytest.approx(hungarian_accuracy(labels, assign))


def test_unlabelled_data_gives_only_nmi_zz() -> None:
    a = np.arange(30) % 3
    result = head_result(0, a, a, (a + 1) % 3, None, 3)
    assert (result.acc, result.nmi, result.ari) == (None, None, None)
    assert result.nmi_zz == pytest.approx(1.0)


def test_cluster_usage_counts_non_empty_clusters_and_normalises_their_entropy() -> None:
    assert cluster_usage(np.arange(40) % 4, 4) == (4, pytest.approx(1.0))  # equal sizes
    assert cluster_usage(np.zeros(40, np.int64), 4) == (1, 0.0)  # one cluster holds everything
    assert cluster_usage(np.arange(40) % 2, 4) == (2, pytest.approx(0.5))  # two of four used equally: log 2 / log 4
    sizes = np.array([30, 6, 3, 1])
    share = sizes / sizes.sum()
    used, entropy = cluster_usage(np.repeat(np.arange(4), sizes), 10)
    assert used == 4 and entropy == pytest.approx(-(share * np.log(share)).sum() / np.log(10))
    result = head_result(0, np.repeat(np.arange(4), sizes), np.arange(40) % 2, np.arange(40) % 2, None, 10)
    assert (result.clusters, result.clusters_used, result.usage_entropy) == (10, 4, pytest.approx(entropy))


def test_select_head_by_nmi_zz_and_by_accuracy() -> None:
    heads = [
        HeadResult(0, acc=0.9, nmi=0.8, ari=0.7, nmi_zz=0.2, clusters=3, clusters_used=3, usage_entropy=1.0),
        HeadResult(1, acc=0.4, nmi=0.5, ari=0.3, nmi_zz=0.95, clusters=3, clusters_used=3, usage_entropy=1.0),
        HeadResult(2, acc=0.6, nmi=0.6, ari=0.5, nmi_zz=0.5, clusters=3, clusters_used=3, usage_entropy=1.0),
    ]
    assert select_head(heads, "nmi_zz") == 1
    assert select_head(heads, "best") == 0


def test_select_best_without_labels_falls_back_to_nmi_zz() -> None:
    heads = [HeadResult(0, None, None, None, 0.3, 2, 2, 1.0), HeadResult(1, None, None, None, 0.7, 2, 2, 1.0)]
    assert select_head(heads, "best") == 1
    assert select_head(heads, "nmi_zz") == 1


def test_mapped_accuracy_uses_the_given_map() -> None:
    labels = np.array([0, 0, 1, 1, 2, 2])
    assign = np.array([1, 1, 0, 2, 2, 3])
    # cluster 1 -> class 0, 0 -> 1, 2 -> 2; cluster 3 has no class
    assert mapped_accuracy(labels, assign, {1: 0, 0: 1, 2: 2}) == pytest.approx(4 / 6)
    assert mapped_accuracy(labels, assign, {0: 0, 1: 1}) == 0.0
    assert hungarian_accuracy(labels, assign) == mapped_accuracy(labels, assign, best_matching(labels, assign))


def test_heads_nmi_against_a_direct_computation() -> None:
    """Every pair's entry is the NMI of the two heads' assignments (the direct contingency
    formula above and scikit-learn agree); symmetric, 1 on the diagonal; a relabelled copy of
    a head scores 1 with it."""
    rng = np.random.default_rng(3)
    first = rng.integers(0, 5, 300)
    assignments = np.stack([first, (first + 2) % 5, rng.integers(0, 5, 300), np.where(rng.random(300) < 0.7, first, 4)])
    table = heads_nmi(assignments)
    assert table.shape == (4, 4)
    np.testing.assert_allclose(np.diag(table), 1.0)
    for i, j in itertools.combinations(range(4), 2):
        assert table[i, j] == table[j, i] == pytest.approx(direct_nmi(assignments[i], assignments[j]))
        assert table[i, j] == pytest.approx(normalized_mutual_info_score(assignments[i], assignments[j]))
    assert table[0, 1] == pytest.approx(1.0) and table[0, 2] < 0.05 and 0.3 < table[0, 3] < 0.95

