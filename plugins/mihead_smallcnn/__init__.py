"""The ``smallcnn`` backbone: a few 3x3 conv layers and a dense layer, for tiny images such
as the 8x8 digits, where pooling away the few pixels there are would lose the digit."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from mihead import hookimpl
from mihead.contracts import Backbone, BackboneOutput, ImageSpec, Params, param
from mihead.errors import RecipeError


@dataclasses.dataclass(frozen=True)
class SmallCNNParams(Params):
    widths: list[int] = param([64, 128, 128], "channels of each 3x3 conv layer (stride 1, padded)", ge=1)
    pool_after: list[int] = param([], "0-based conv layers followed by a 2x2 max-pool", ge=0)
    features: int = param(
        256, "width of the dense layer the heads attach to (0 = none: heads see the flat maps)", ge=0
    )


class SmallCNN(Backbone):
    """Conv-BN-ReLU layers, then flatten (-> Linear -> BN -> ReLU when ``features`` > 0): one
    attachment point, a feature vector."""

    name = "smallcnn"
    Params = SmallCNNParams

    def __init__(self, params: SmallCNNParams, image: ImageSpec) -> None:
        super().__init__(params, image)
        layers: list[nn.Module] = []
        channels, size = image.channels, image.size
        for i, width in enumerate(params.widths):
            layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            if i in params.pool_after:
                if size < 2:
                    raise RecipeError(
                        f"[backbone] pool_after: pooling after layer {i} leaves no pixel of the "
                        f"{image.size} px views; pool at most {image.size.bit_length() - 1} times"
                    )
                layers.append(nn.MaxPool2d(2))
                size //= 2
            channels = width
        self.convs = nn.Sequential(*layers)
        flat = channels * size * size
        dense: list[nn.Module] = [nn.Flatten()]
        if params.features:
            dense += [nn.Linear(flat, params.features, bias=False), nn.BatchNorm1d(params.features), nn.ReLU(inplace=True)]
        self.dense = nn.Sequential(*dense)
        self._features = params.features or flat

    @property
    def attach_channels(self) -> list[int]:
        return [self._features]

    def forward(self, images: torch.Tensor) -> BackboneOutput:
        return BackboneOutput(attach=[self.dense(self.convs(images))])


@hookimpl
def register_backbones() -> list[type[Backbone]]:
    return [SmallCNN]
