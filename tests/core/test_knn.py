"""The encoder's kNN accuracy (mihead/knn.py) against a direct computation of the weighted
vote, with a bank and two-fold, in chunks of any size."""

from __future__ import annotations

import numpy as np
import pytest

from mihead.knn import TEMPERATURE, K, knn_accuracy


def direct(query: np.ndarray, bank: np.ndarray, bank_labels: np.ndarray, classes: int, k: int) -> np.ndarray:
    """Each query's class with the largest sum of exp(cosine / t) over its k most similar bank rows."""
    q = query / np.linalg.norm(query, axis=1, keepdims=True)
    b = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    similarity = q @ b.T
    out = []
    for row in similarity:
        nearest = np.argsort(-row, kind="stable")[:k]
        votes = np.zeros(classes)
        np.add.at(votes, bank_labels[nearest], np.exp(row[nearest] / TEMPERATURE))
        out.append(int(np.argmax(votes)))
    return np.array(out)


def data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    centres = rng.normal(size=(4, 16))
    return (centres[labels] + rng.normal(scale=1.2, size=(n, 16))).astype(np.float32), labels


@pytest.mark.parametrize("chunk", [7, 1024])
def test_with_a_bank_it_is_the_weighted_vote(chunk: int) -> None:
    x, y = data(290, 0)
    (query, labels), (bank, bank_labels) = (x[:90], y[:90]), (x[90:], y[90:])
    score = knn_accuracy(query, labels, (bank, bank_labels), bank_name="train", chunk=chunk)
    expected = (direct(query, bank, bank_labels, 4, K) == labels).mean()
    assert score.k == K and score.bank == "train"
    assert score.acc == pytest.approx(expected) and 0.3 < score.acc < 1.0  # neither trivial nor perfect


def test_without_a_bank_each_half_is_predicted_from_the_other() -> None:
    x, labels = data(120, 2)
    order = np.random.default_rng(0).permutation(120)
    a, b = np.sort(order[:60]), np.sort(order[60:])
    hits = (direct(x[a], x[b], labels[b], 4, K) == labels[a]).sum() + (direct(x[b], x[a], labels[a], 4, K) == labels[b]).sum()
    score = knn_accuracy(x, labels)
    assert score.acc == pytest.approx(hits / 120) and score.bank.startswith("two halves")


def test_a_small_bank_votes_with_all_it_has() -> None:
    x, labels = data(30, 3)
    assert knn_accuracy(x, labels).k == 15
