"""dccm_label: confident pseudo-label cross-entropy (DCCM eq. 7 to 9, 12) against numpy."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from mihead.contracts import ModelOutputs, ObjectiveContext
from mihead_dccm_label import DCCMLabel, DCCMLabelParams

CTX = ObjectiveContext(heads=2, views=3, clusters=4, overclusters=0, feature_channels={})


def numpy_label_loss(z: np.ndarray, ref: np.ndarray, thres: float) -> float:
    total = 0.0
    for i in range(len(z)):
        if ref[i].max() >= thres:
            total += -np.log(z[i, ref[i].argmax()])
    return total / len(z)


def numpy_label_bce(z: np.ndarray, ref: np.ndarray, thres: float) -> float:
    """The authors' released code (WeightedBCE): per sample, the mean over the K clusters of
    the binary cross-entropy against the one-hot label, weighted by confidence, mean over B."""
    total = 0.0
    for i in range(len(z)):
        if ref[i].max() >= thres:
            onehot = np.eye(z.shape[1])[ref[i].argmax()]
            total += -np.mean(onehot * np.log(z[i]) + (1 - onehot) * np.log(1 - z[i]))
    return total / len(z)


@pytest.mark.parametrize("from_original", [False, True])
@pytest.mark.parametrize(("loss", "numpy_loss"), [("cross_entropy", numpy_label_loss), ("bce", numpy_label_bce)])
def test_matches_numpy(from_original: bool, loss: str, numpy_loss: Callable[[np.ndarray, np.ndarray, float], float]) -> None:
    g = torch.Generator().manual_seed(1)
    p = (torch.randn(2, 3, 8, 4, generator=g) * 3).softmax(-1)
    params = DCCMLabelParams(thres2=0.7, from_original=from_original, loss=loss)
    result = DCCMLabel(params, CTX)(ModelOutputs(p, None, {}))
    pn = p.double().numpy()
    per = np.array([[numpy_loss(pn[h, v], pn[h, 0 if from_original else v], 0.7) for v in range(3)] for h in range(2)])
    expected = (per[:, 0] + per[:, 1:].mean(1)).mean() if from_original else per.mean()
    assert 0 < expected
    assert result.item() == pytest.approx(expected, rel=1e-5)


def test_only_confident_samples_contribute() -> None:
    ctx = ObjectiveContext(heads=1, views=2, clusters=2, overclusters=0, feature_channels={})
    confident = torch.tensor([0.95, 0.05])
    unsure = torch.tensor([0.6, 0.4], requires_grad=True)
    p = torch.stack([confident, unsure]).expand(1, 2, 2, 2)
    loss = DCCMLabel(DCCMLabelParams(thres2=0.9), ctx)(ModelOutputs(p, None, {}))
    assert loss.item() == pytest.approx(-np.log(0.95) / 2, rel=1e-5)
    loss.backward()
    assert unsure.grad is not None and torch.all(unsure.grad == 0)


def test_no_confident_sample_gives_zero() -> None:
    ctx = ObjectiveContext(heads=1, views=2, clusters=4, overclusters=0, feature_channels={})
    p = torch.full((1, 2, 5, 4), 0.25)
    assert DCCMLabel(DCCMLabelParams(), ctx)(ModelOutputs(p, None, {})).item() == 0.0


def test_labels_of_view_zero_supervise_the_transformed_view() -> None:
    ctx = ObjectiveContext(heads=1, views=2, clusters=2, overclusters=0, feature_channels={})
    original = torch.tensor([[0.99, 0.01]])
    transformed = torch.tensor([[0.2, 0.8]])  # unconfident, and of the other class
    p = torch.stack([original, transformed])[None]
    loss = DCCMLabel(DCCMLabelParams(thres2=0.9, from_original=True), ctx)(ModelOutputs(p, None, {}))
    assert loss.item() == pytest.approx(-np.log(0.99) - np.log(0.2), rel=1e-5)


def test_bce_is_about_k_over_2_times_smaller_for_confident_samples() -> None:
    """-log p against (1/K)(-log p - sum_{k != y} log(1 - z_k)) ~ 2(-log p)/K near one-hot."""
    k = 10
    z = torch.full((1, 1, 1, k), 0.01 / (k - 1))
    z[..., 0] = 0.99
    ctx = ObjectiveContext(heads=1, views=1, clusters=k, overclusters=0, feature_channels={})
    ce = DCCMLabel(DCCMLabelParams(), ctx)(ModelOutputs(z, None, {})).item()
    bce = DCCMLabel(DCCMLabelParams(loss="bce"), ctx)(ModelOutputs(z, None, {})).item()
    assert ce / bce == pytest.approx(k / 2, rel=0.01)
