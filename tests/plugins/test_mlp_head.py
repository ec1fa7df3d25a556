"""The ``mlp`` head: probabilities from maps or vectors, with or without a hidden layer, with or
without DCCM's batch norm of the logits (and why that batch norm matters for DCCM's graph)."""

from __future__ import annotations

import pytest
import torch

from mihead.pseudo import pseudo_graph
from mihead_mlp_head import MLPHead, MLPHeadParams


@pytest.mark.parametrize("logit_batchnorm", [False, True])
@pytest.mark.parametrize("hidden", [0, 7])
@pytest.mark.parametrize("shape", [(6, 5), (6, 5, 3, 3)])
def test_rows_are_probabilities(hidden: int, logit_batchnorm: bool, shape: tuple[int, ...]) -> None:
    head = MLPHead(MLPHeadParams(hidden=hidden, logit_batchnorm=logit_batchnorm), in_channels=5, clusters=4)
    probs = head(torch.randn(shape))
    assert probs.shape == (6, 4) and probs.dtype == torch.float32
    torch.testing.assert_close(probs.sum(-1), torch.ones(6))
    assert (probs >= 0).all()


def test_maps_are_average_pooled() -> None:
    head = MLPHead(MLPHeadParams(hidden=0), in_channels=3, clusters=2)
    maps = torch.randn(4, 3, 2, 2)
    torch.testing.assert_close(head(maps), head(maps.mean((2, 3))))


@pytest.mark.parametrize(
    ("hidden", "logit_batchnorm", "layers"),
    [
        (0, False, [torch.nn.Linear]),
        (0, True, [torch.nn.Linear, torch.nn.BatchNorm1d]),
        (7, False, [torch.nn.Linear, torch.nn.BatchNorm1d, torch.nn.ReLU, torch.nn.Linear]),
        (7, True, [torch.nn.Linear, torch.nn.BatchNorm1d, torch.nn.ReLU, torch.nn.Linear, torch.nn.BatchNorm1d]),
    ],
)
def test_layers(hidden: int, logit_batchnorm: bool, layers: list[type]) -> None:
    head = MLPHead(MLPHeadParams(hidden=hidden, logit_batchnorm=logit_batchnorm), in_channels=3, clusters=2)
    assert [type(m) for m in head.mlp] == layers


def test_logit_batchnorm_keeps_the_first_pseudo_graph_sparse() -> None:
    """At initialisation, Linear(64, 10) + softmax gives near-uniform predictions, so many pairs
    of a batch pass DCCM's thres_1 = 0.95 (eq. 2) and the graph loss pulls them together (here
    about a quarter; 60 % on digits through smallcnn); with the logits batch-normalised, well
    under 1 % do. The features are a BN + ReLU output, as dccm_cnn's D."""
    torch.manual_seed(0)
    deep = torch.relu(torch.randn(256, 64))

    def edges(logit_batchnorm: bool) -> float:
        head = MLPHead(MLPHeadParams(hidden=0, logit_batchnorm=logit_batchnorm), in_channels=64, clusters=10).train()
        graph = pseudo_graph(head(deep), 0.95)
        return float((graph.sum() - 256) / (256 * 255))

    assert edges(logit_batchnorm=False) > 0.15
    assert edges(logit_batchnorm=True) < 0.01


def _logits_standardised_by_batch(head: MLPHead, features: torch.Tensor) -> torch.Tensor:
    """Linear, then each logit standardised with the batch's own mean and biased variance
    (the batch norm's affine starts at 1 and 0), then softmax: the direct computation."""
    linear = head.mlp[0]
    logits = features @ linear.weight.T + linear.bias
    z = (logits - logits.mean(0)) / torch.sqrt(logits.var(0, unbiased=False) + 1e-5)
    return z.softmax(-1)


def test_batch_statistics_are_used_in_evaluation_too() -> None:
    """batchnorm_stats = "batch" (DCCM's released code, track_running_stats=False): evaluation
    normalises each batch by its own statistics, so it matches the direct computation, and a
    prediction depends on the rest of its batch; "running" uses the (here initial) running
    statistics, mean 0 and variance 1."""
    torch.manual_seed(0)
    features = torch.randn(16, 5) * 3 + 1
    batch = MLPHead(MLPHeadParams(hidden=0, logit_batchnorm=True, batchnorm_stats="batch"), in_channels=5, clusters=4).eval()
    with torch.no_grad():
        torch.testing.assert_close(batch(features), _logits_standardised_by_batch(batch, features))
        assert not torch.allclose(batch(features)[:8], batch(features[:8]))
        running = MLPHead(MLPHeadParams(hidden=0, logit_batchnorm=True), in_channels=5, clusters=4).eval()
        linear = running.mlp[0]
        expected = ((features @ linear.weight.T + linear.bias) / (1 + 1e-5) ** 0.5).softmax(-1)
        torch.testing.assert_close(running(features), expected)
        torch.testing.assert_close(running(features)[:8], running(features[:8]))


@pytest.mark.parametrize(("stats", "tracked"), [("running", True), ("batch", False)])
def test_every_batchnorm_follows_batchnorm_stats(stats: str, tracked: bool) -> None:
    head = MLPHead(MLPHeadParams(hidden=7, logit_batchnorm=True, batchnorm_stats=stats), in_channels=3, clusters=2)
    norms = [m for m in head.mlp if isinstance(m, torch.nn.BatchNorm1d)]
    assert len(norms) == 2 and all(m.track_running_stats is tracked for m in norms)
