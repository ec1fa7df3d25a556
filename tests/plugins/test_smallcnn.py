"""The ``smallcnn`` backbone: shapes of its one attachment point, with and without the dense layer."""

from __future__ import annotations

import torch

from mihead.contracts import ImageSpec
from mihead.testing import check_backbone
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


def test_dhog_shape_heads_at_depths_and_on_final_copies() -> None:
    """attach_early + final_copies: the earlier layers' flat maps, then one attachment point per
    copy of the last layer, each copy initialised on its own."""
    torch.manual_seed(0)
    net = SmallCNN(SmallCNNParams(widths=[4, 6, 8], pool_after=[0, 1], features=0, final_copies=3, attach_early=True), ImageSpec(1, 8))
    out = net(torch.rand(5, 1, 8, 8))
    assert net.attach_channels == [4 * 4 * 4, 6 * 2 * 2, 8 * 2 * 2, 8 * 2 * 2, 8 * 2 * 2]
    assert [a.shape for a in out.attach] == [(5, c) for c in net.attach_channels]
    weights = [final[0][0].weight for final in net.finals]
    assert not torch.equal(weights[0], weights[1]) and not torch.equal(out.attach[2], out.attach[3])
    owned = net.owned_parameters()  # for DHOG's push: each copy is its point's own, the rest shared
    assert [len(o) for o in owned] == [0, 0, 3, 3, 3] and owned[2] == list(net.finals[0].parameters())
    check_backbone(SmallCNN, net.params, ImageSpec(1, 8))  # which verifies the declaration
    single = SmallCNN(SmallCNNParams(widths=[4, 6, 8], pool_after=[0, 1], features=0), ImageSpec(1, 8))
    assert single.attach_channels == [8 * 2 * 2]
