"""The ``mlp`` head: probabilities from maps or vectors, with or without a hidden layer."""

from __future__ import annotations

import pytest
import torch
from mihead_mlp_head import MLPHead, MLPHeadParams


@pytest.mark.parametrize("hidden", [0, 7])
@pytest.mark.parametrize("shape", [(6, 5), (6, 5, 3, 3)])
def test_rows_are_probabilities(hidden: int, shape: tuple[int, ...]) -> None:
    head = MLPHead(MLPHeadParams(hidden=hidden), in_channels=5, clusters=4)
    probs = head(torch.randn(shape))
    assert probs.shape == (6, 4) and probs.dtype == torch.float32
    torch.testing.assert_close(probs.sum(-1), torch.ones(6))
    assert (probs >= 0).all()


def test_maps_are_average_pooled() -> None:
    head = MLPHead(MLPHeadParams(hidden=0), in_channels=3, clusters=2)
    maps = torch.randn(4, 3, 2, 2)
    torch.testing.assert_close(head(maps), head(maps.mean((2, 3))))


def test_linear_head_has_no_hidden_layer() -> None:
    head = MLPHead(MLPHeadParams(hidden=0), in_channels=3, clusters=2)
    assert isinstance(head.mlp, torch.nn.Linear)
