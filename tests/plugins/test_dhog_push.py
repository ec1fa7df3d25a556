"""dhog_push: value against explicit joint tables in numpy, gradient stopping, bf16."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mihead.contracts import ModelOutputs, ObjectiveContext
from mihead.mi import joint_table, mutual_information
from mihead_dhog_push import DHOGPush, DHOGPushParams, push


def _probs(h: int, v: int, b: int, k: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(h, v, b, k, generator=g).mul(2).softmax(-1)


def _mi_numpy(zi: np.ndarray, zj: np.ndarray) -> float:
    """MI of the explicit joint table P = (1/B) sum_b zi_b zj_b^T, by the definition."""
    p = np.einsum("bk,bl->kl", zi, zj) / len(zi)
    pi, pj = p.sum(1), p.sum(0)
    total = 0.0
    for a in range(p.shape[0]):
        for c in range(p.shape[1]):
            total += p[a, c] * np.log(p[a, c] / (pi[a] * pj[c]))
    return total


def _push_numpy(probs: np.ndarray) -> float:
    """Eq. 4 with heads counted from 1: sum_i (1/i) sum_{j<i} MI(c_i, c_j), mean over views."""
    h, v = probs.shape[:2]
    per_view = [
        sum(sum(_mi_numpy(probs[i, w], probs[j, w]) for j in range(i)) / (i + 1) for i in range(h))
        for w in range(v)
    ]
    return float(np.mean(per_view))


def _objective() -> DHOGPush:
    return DHOGPush(DHOGPushParams(), ObjectiveContext(heads=4, views=3, clusters=5, overclusters=0, feature_channels={}))


def test_value_matches_numpy_joint_tables() -> None:
    probs = _probs(4, 3, 64, 5)
    got = _objective()(ModelOutputs(probs=probs, over_probs=None, features={}))
    assert got.item() == pytest.approx(_push_numpy(probs.double().numpy()), rel=1e-5)


def test_identical_heads_give_their_entropy_and_independent_heads_zero() -> None:
    hard = torch.nn.functional.one_hot(torch.arange(64) % 4, 4).float()
    same = hard[None, None].expand(3, 1, 64, 4)
    # two copies of a uniform 4-way labelling: MI = log 4 per pair; heads 2, 3 have 1, 2 pairs
    assert push(same).item() == pytest.approx(np.log(4) * (1 / 2 + 2 / 3), rel=1e-5)
    other = torch.nn.functional.one_hot(torch.arange(64) // 16, 4).float()  # independent of hard
    indep = torch.stack([hard, other])[:, None]
    assert push(indep).item() == pytest.approx(0.0, abs=1e-6)


def test_gradient_flows_only_into_later_heads_from_earlier_ones() -> None:
    probs = _probs(4, 2, 32, 5).requires_grad_()
    over = _probs(4, 2, 32, 7).requires_grad_()
    _objective()(ModelOutputs(probs=probs, over_probs=over, features={})).backward()
    assert probs.grad is not None
    assert torch.count_nonzero(probs.grad[0]) == 0  # the first head is never pushed
    assert over.grad is None  # overclustering heads take no part
    # head i's gradient is that of (1/(i+1)) sum_{j<i} MI(z_i, z_j) with z_j held fixed
    for i in range(1, 4):
        zi = probs[i].detach().clone().requires_grad_()
        direct = sum(mutual_information(joint_table(zi, probs[j].detach())) for j in range(i)) / (i + 1)
        direct.mean().backward()
        torch.testing.assert_close(probs.grad[i], zi.grad)


def test_head_weights_get_push_gradient_only_from_earlier_heads() -> None:
    torch.manual_seed(0)
    features = torch.randn(2, 16, 8)  # [V, B, C]
    layers = torch.nn.ModuleList(torch.nn.Linear(8, 4) for _ in range(3))
    push(torch.stack([layer(features).softmax(-1) for layer in layers])).backward()
    assert all(p.grad is None or torch.count_nonzero(p.grad) == 0 for p in layers[0].parameters())
    assert all(p.grad is not None and torch.count_nonzero(p.grad) > 0 for p in layers[2].parameters())


def test_finite_under_bf16_autocast() -> None:
    logits = torch.randn(8, 4, 32, 10, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        probs = (logits.to(torch.bfloat16) * 3).softmax(-1)
        value = push(probs)
    value.backward()
    assert value.dtype == torch.float32 and torch.isfinite(value)
    assert torch.isfinite(logits.grad).all()


def test_comparisons_scale_divides_by_the_number_of_earlier_heads() -> None:
    """scale = "comparisons": head i's summed MI over i - 1 (its mean over earlier heads)
    instead of eq. 4's i, against the numpy joint tables."""
    probs = _probs(4, 2, 64, 5, seed=3)
    pn = probs.double().numpy()
    expected = np.mean(
        [sum(sum(_mi_numpy(pn[i, w], pn[j, w]) for j in range(i)) / max(i, 1) for i in range(4)) for w in range(2)]
    )
    params = DHOGPushParams(scale="comparisons")
    ctx = ObjectiveContext(heads=4, views=2, clusters=5, overclusters=0, feature_channels={})
    got = DHOGPush(params, ctx)(ModelOutputs(probs=probs, over_probs=None, features={}))
    assert got.item() == pytest.approx(expected, rel=1e-5)
    assert got.item() > push(probs).item()  # dividing by i - 1 < i
