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
