"""The ``iic`` objective against mutual information computed directly with numpy."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from mihead.contracts import ModelOutputs, ObjectiveContext
from mihead.plugins import load_registry


def direct_mi(p: np.ndarray, lamb: float) -> float:
    """sum p log p - lamb sum p log p_i - lamb sum p log p_j, over non-empty cells."""
    pi, pj = p.sum(1, keepdims=True), p.sum(0, keepdims=True)
    nz = p > 0
    rows, cols = np.broadcast_to(pi, p.shape)[nz], np.broadcast_to(pj, p.shape)[nz]
    return float(np.sum(p[nz] * (np.log(p[nz]) - lamb * np.log(rows) - lamb * np.log(cols))))


def direct_mean_mi(probs: torch.Tensor, lamb: float) -> float:
    """Mean over heads and unordered view pairs of the MI of the symmetrised joint table."""
    x = probs.double().numpy()
    values = []
    for h in range(x.shape[0]):
        for v, w in itertools.combinations(range(x.shape[1]), 2):
            joint = np.einsum("bi,bj->ij", x[h, v], x[h, w]) / x.shape[2]
            values.append(direct_mi((joint + joint.T) / 2, lamb))
    return float(np.mean(values))


def make_iic(**params: object) -> torch.nn.Module:
    entry = load_registry(strict=False).get("objective", "iic")
    cls = entry.cls
    context = ObjectiveContext(heads=3, views=4, clusters=5, overclusters=9, feature_channels={})
    return cls(cls.Params(**params), context)


def probs(h: int, v: int, b: int, k: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(h, v, b, k, generator=g).mul(3).softmax(-1)


def test_registered_by_the_mihead_package() -> None:
    entry = load_registry(strict=False).get("objective", "iic")
    assert entry.package == "mihead"


@pytest.mark.parametrize("lamb", [1.0, 1.7])
def test_minus_mean_pairwise_mi_over_heads_and_views(lamb: float) -> None:
    p = probs(3, 4, 32, 5, seed=0)
    loss = make_iic(lamb=lamb)(ModelOutputs(probs=p, over_probs=None, features={}))
    assert loss.shape == ()
    assert float(loss) == pytest.approx(-direct_mean_mi(p, lamb), abs=1e-5)


def test_overclustering_heads_are_added_when_present() -> None:
    p, over = probs(3, 4, 32, 5, seed=1), probs(3, 4, 32, 9, seed=2)
    outputs = ModelOutputs(probs=p, over_probs=over, features={})
    expected = -direct_mean_mi(p, 1.0) - direct_mean_mi(over, 1.0)
    assert float(make_iic()(outputs)) == pytest.approx(expected, abs=1e-5)
    assert float(make_iic(overclustering=False)(outputs)) == pytest.approx(-direct_mean_mi(p, 1.0), abs=1e-5)


def test_identical_confident_views_reach_minus_log_k() -> None:
    one = torch.nn.functional.one_hot(torch.arange(40) % 5, 5).float()
    p = one.expand(2, 3, 40, 5)  # every head and view agrees, balanced clusters
    loss = make_iic()(ModelOutputs(probs=p, over_probs=None, features={}))
    assert float(loss) == pytest.approx(-np.log(5), abs=1e-5)


def test_gradients_flow_to_every_head_and_view() -> None:
    logits = torch.randn(2, 3, 16, 5, requires_grad=True)
    make_iic()(ModelOutputs(probs=logits.softmax(-1), over_probs=None, features={})).backward()
    assert torch.isfinite(logits.grad).all()
    assert (logits.grad.abs().sum((2, 3)) > 0).all()
