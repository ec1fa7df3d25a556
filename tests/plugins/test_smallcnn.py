"""The ``smallcnn`` backbone: shapes of its one attachment point, with and without the dense layer."""

from __future__ import annotations

import torch

from mihead.contracts import ImageSpec
from mihead_smallcnn import SmallCNN, SmallCNNParams


def test_dense_layer_gives_features_wide_vectors() -> None:
    net = SmallCNN(SmallCNNParams(widths=[4, 8], pool_after=[], features=12), ImageSpec(1, 8))
    out = net(torch.rand(5, 1, 8, 8))
    assert net.attach_channels == [12] and out.attach[0].shape == (5, 12)


def test_no_dense_layer_gives_the_flat_maps() -> None:
    net = SmallCNN(SmallCNNParams(widths=[4, 8], pool_after=[0], features=0), ImageSpec(1, 8))
    out = net(torch.rand(5, 1, 8, 8))
    # one 2x2 pool: 8 channels of 4x4
    assert net.attach_channels == [8 * 4 * 4] and out.attach[0].shape == (5, 128)
    assert out.features == {}
