"""dccm_cnn: Table 4's three networks, their shallow/deep features and attachment point."""

from __future__ import annotations

import pytest
import torch

from mihead.contracts import ImageSpec
from mihead.errors import RecipeError
from mihead_dccm_cnn import DCCMCNN, DCCMCNNParams


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.mark.parametrize(
    ("size", "shallow", "deep"),
    [
        (32, (64, 28, 28), 64),  # S after the second 3x3 conv (unpadded: 32 -> 30 -> 28)
        (64, (128, 12, 12), 256),  # S after the third conv: 64 -> 60 -> 56 -> /4 14 -> 12
        (96, (128, 20, 20), 64),  # 96 -> 92 -> 88 -> /4 22 -> 20
    ],
)
def test_table4_shapes(size: int, shallow: tuple[int, int, int], deep: int) -> None:
    net = DCCMCNN(DCCMCNNParams(), ImageSpec(channels=3, size=size)).eval()
    out = net(torch.rand(2, 3, size, size))
    assert net.arch == size
    assert out.features["shallow"].shape == (2, *shallow)
    assert out.features["deep"].shape == (2, deep)
    assert set(out.features) == DCCMCNN.provides
    assert [a.shape[1] for a in out.attach] == net.attach_channels == [deep]
    assert out.attach[0] is out.features["deep"]  # the heads attach to D


def test_last_pooling_leaves_one_location_at_the_tables_sizes() -> None:
    """Table 4's pooling ends at 1x1 for 256 channels, so Linear(256, .) fits without the
    global average pool used for other sizes."""
    for size in (32, 64, 96):
        net = DCCMCNN(DCCMCNNParams(), ImageSpec(channels=3, size=size))
        assert net.rest(net.to_shallow(torch.rand(1, 3, size, size))).shape == (1, 256, 1, 1)


def test_other_sizes_and_widths() -> None:
    net = DCCMCNN(DCCMCNNParams(deep=16), ImageSpec(channels=1, size=40))
    assert net.arch == 32 and net.attach_channels == [16]
    assert net(torch.rand(2, 1, 40, 40)).features["deep"].shape == (2, 16)


def test_too_small_images_are_a_clear_error() -> None:
    with pytest.raises(RecipeError, match="at least 32 pixels"):
        DCCMCNN(DCCMCNNParams(), ImageSpec(channels=1, size=8))
    with pytest.raises(RecipeError, match="at least 96 pixels"):
        DCCMCNN(DCCMCNNParams(arch="96"), ImageSpec(channels=3, size=64))


@pytest.mark.parametrize(("stats", "tracked"), [("running", True), ("batch", False)])
def test_every_batchnorm_follows_batchnorm_stats(stats: str, tracked: bool) -> None:
    """batchnorm_stats = "batch": every batch norm normalises with its batch's statistics in
    evaluation too, as all of the authors' code's do (track_running_stats=False), so an image's
    deep feature depends on its batch; "running" keeps torch's default."""
    torch.manual_seed(0)
    net = DCCMCNN(DCCMCNNParams(batchnorm_stats=stats), ImageSpec(channels=3, size=32)).eval()
    norms = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert len(norms) == 5 and all(m.track_running_stats is tracked for m in norms)
    images = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        alone = net(images[:2]).features["deep"]
        together = net(images).features["deep"][:2]
    assert torch.allclose(alone, together, atol=1e-5) is tracked
