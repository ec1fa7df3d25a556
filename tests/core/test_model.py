"""The multi-head model: each head on its attachment point, every view and sample in its place
in [H, V, B, K], overclustering twins beside the main heads, named features per view, and the
channels-last layout when the engine asks for it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mihead.contracts import Backbone, BackboneOutput, Head, HeadParams, ImageSpec, Params
from mihead.model import MultiHeadModel


class TwoPointBackbone(Backbone):
    """Two attachment points of different widths (a map and a vector), computed per image, and
    one named feature; remembers the layout of the last input it saw."""

    name = "test_two_point_backbone"

    def __init__(self) -> None:
        super().__init__(Params(), ImageSpec(channels=3, size=4))
        self.conv = nn.Conv2d(3, 2, 1)
        self.linear = nn.Linear(3, 5)
        self.saw_channels_last: bool | None = None

    @property
    def attach_channels(self) -> list[int]:
        return [2, 5]

    def forward(self, images: torch.Tensor) -> BackboneOutput:
        self.saw_channels_last = images.is_contiguous(memory_format=torch.channels_last) and not images.is_contiguous()
        vector = self.linear(images.mean((2, 3)))
        return BackboneOutput(attach=[self.conv(images), vector], features={"deep": vector * 2})


class PoolHead(Head):
    """Softmax of a linear map of the features (maps averaged over space)."""

    name = "test_pool_head"

    def __init__(self, in_channels: int, clusters: int) -> None:
        super().__init__(HeadParams(), in_channels, clusters)
        self.linear = nn.Linear(in_channels, clusters)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        pooled = features.mean((2, 3)) if features.ndim == 4 else features
        return self.linear(pooled).softmax(-1)


def make_model(per_attachment: int, clusters: int = 3, overclusters: int = 0) -> MultiHeadModel:
    torch.manual_seed(0)
    backbone = TwoPointBackbone()
    widths = [c for c in backbone.attach_channels for _ in range(per_attachment)]
    heads: list[Head] = [PoolHead(w, clusters) for w in widths]
    over: list[Head] = [PoolHead(w, overclusters) for w in widths] if overclusters else []
    return MultiHeadModel(backbone, heads, over, per_attachment)


@pytest.mark.parametrize("per_attachment", [1, 2])
def test_each_head_reads_its_attachment_point_for_every_view_and_sample(per_attachment: int) -> None:
    """probs[h, v, b] is head h applied to attachment point h // per_attachment of image
    views[v, b] alone: no head on the wrong point, no view or sample out of place."""
    model = make_model(per_attachment)
    views = torch.rand(3, 4, 3, 4, 4)  # V = 3, B = 4
    out = model(views)
    assert model.num_heads == 2 * per_attachment and model.clusters == 3
    assert out.probs.shape == (2 * per_attachment, 3, 4, 3) and out.probs.dtype == torch.float32
    assert out.over_probs is None
    with torch.no_grad():
        for h, head in enumerate(model.heads):
            for v in range(3):
                for b in range(4):
                    alone = model.backbone(views[v, b : b + 1]).attach[h // per_attachment]
                    torch.testing.assert_close(out.probs[h, v, b], head(alone)[0])
    torch.testing.assert_close(out.probs.sum(-1), torch.ones(2 * per_attachment, 3, 4))


def test_overclustering_twins_and_named_features() -> None:
    model = make_model(per_attachment=2, clusters=3, overclusters=7)
    views = torch.rand(2, 5, 3, 4, 4)
    out = model(views)
    assert out.over_probs is not None and out.over_probs.shape == (4, 2, 5, 7)
    with torch.no_grad():
        vector = model.backbone(views[1, 2:3]).attach[1]
        torch.testing.assert_close(out.over_probs[3, 1, 2], model.over_heads[3](vector)[0])  # twin of head 3: point 1
        assert set(out.features) == {"deep"} and out.features["deep"].shape == (2, 5, 5)
        torch.testing.assert_close(out.features["deep"][1, 2], vector[0] * 2)


def test_channels_last_is_applied_only_when_set() -> None:
    model = make_model(per_attachment=1)
    backbone = model.backbone
    assert isinstance(backbone, TwoPointBackbone)
    views = torch.rand(2, 3, 3, 4, 4)
    before = model(views).probs
    assert backbone.saw_channels_last is False
    model.channels_last = True
    after = model(views).probs
    assert backbone.saw_channels_last is True
    torch.testing.assert_close(after, before)
