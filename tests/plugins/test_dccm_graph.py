"""dccm_graph: pseudo-graph BCE (DCCM eq. 2, 3, 12) against a direct numpy computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mihead.contracts import ModelOutputs, ObjectiveContext
from mihead_dccm_graph import DCCMGraph, DCCMGraphParams

CTX = ObjectiveContext(heads=2, views=3, clusters=4, overclusters=0, feature_channels={})


def numpy_graph_loss(z: np.ndarray, ref: np.ndarray, thres: float) -> float:
    """Eq. 3 for one head and view: BCE between cos(z) and the graph of ref, mean over i != j."""
    def cos(a: np.ndarray) -> np.ndarray:
        u = a / np.linalg.norm(a, axis=1, keepdims=True)
        return u @ u.T

    s = np.clip(cos(z.astype(np.float64)), 1e-7, 1 - 1e-7)
    w = (cos(ref.astype(np.float64)) >= thres).astype(np.float64)
    total, count = 0.0, 0
    for i in range(len(z)):
        for j in range(len(z)):
            if i != j:
                total += -(w[i, j] * np.log(s[i, j]) + (1 - w[i, j]) * np.log(1 - s[i, j]))
                count += 1
    return total / count


def probs(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 3, 6, 4, generator=g) * 4
    return logits.softmax(-1)


@pytest.mark.parametrize("from_original", [False, True])
def test_matches_numpy(from_original: bool) -> None:
    p = probs()
    loss = DCCMGraph(DCCMGraphParams(thres1=0.9, from_original=from_original), CTX)(ModelOutputs(p, None, {}))
    pn = p.numpy()
    per = np.array(
        [[numpy_graph_loss(pn[h, v], pn[h, 0 if from_original else v], 0.9) for v in range(3)] for h in range(2)]
    )
    expected = (per[:, 0] + per[:, 1:].mean(1)).mean() if from_original else per.mean()
    # float32 against float64: -log(1 - s) of near-identical rows amplifies rounding
    assert loss.item() == pytest.approx(expected, rel=1e-4)


def test_identical_one_hot_rows_cost_nothing_and_are_linked() -> None:
    z = torch.tensor([[1.0, 0, 0, 0], [1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0]])
    p = z.expand(1, 2, 4, 4)
    ctx = ObjectiveContext(heads=1, views=2, clusters=4, overclusters=0, feature_channels={})
    loss = DCCMGraph(DCCMGraphParams(), ctx)(ModelOutputs(p, None, {}))
    assert loss.item() < 1e-5  # S = W exactly: linked pairs have S = 1, the others S = 0


def test_graph_of_view_zero_supervises_the_other_views() -> None:
    """View 1 disagrees with view 0 on who is linked: from view 0's graph the loss is high,
    from its own it is near zero."""
    a = torch.tensor([[1.0, 0], [1.0, 0], [0, 1.0]])
    b = torch.tensor([[1.0, 0], [0, 1.0], [0, 1.0]])
    p = torch.stack([a, b])[None]
    ctx = ObjectiveContext(heads=1, views=2, clusters=2, overclusters=0, feature_channels={})
    own = DCCMGraph(DCCMGraphParams(from_original=False), ctx)(ModelOutputs(p, None, {}))
    orig = DCCMGraph(DCCMGraphParams(from_original=True), ctx)(ModelOutputs(p, None, {}))
    assert own.item() < 1e-5
    assert orig.item() > 5


def test_gradient_flows_to_probs_only_through_the_similarity() -> None:
    logits = torch.randn(1, 2, 6, 4, requires_grad=True)
    ctx = ObjectiveContext(heads=1, views=2, clusters=4, overclusters=0, feature_channels={})
    loss = DCCMGraph(DCCMGraphParams(thres1=0.5), ctx)(ModelOutputs(logits.softmax(-1), None, {}))
    loss.backward()
    assert torch.isfinite(loss) and logits.grad is not None and logits.grad.abs().sum() > 0
