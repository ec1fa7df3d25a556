"""The ``smallcnn`` backbone: a few 3x3 conv layers and a dense layer, for tiny images such
as the 8x8 digits, where pooling away the few pixels there are would lose the digit.

With ``final_copies`` > 1 and ``attach_early`` it takes DHOG's shape at digits' scale (DHOG
paper, section 3.3 and Figure 1): the last conv layer (and the dense layer) repeated in
independently initialised copies, each an attachment point, and the earlier layers' flat maps
attachment points too, in hierarchy order (earlier layers first, then the copies), so that
heads sit at depths and on separate final blocks.
"""

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
    final_copies: int = param(1, "parallel, independently initialised copies of the last conv layer (and dense layer)", ge=1)
    attach_early: bool = param(False, "also attach heads to the flat maps of every conv layer before the last")


class SmallCNN(Backbone[SmallCNNParams]):
    """Conv-BN-ReLU layers, then flatten (-> Linear -> BN -> ReLU when ``features`` > 0): one
    attachment point, a feature vector; or, with ``final_copies`` and ``attach_early``, the
    earlier layers' flat maps and each copy of the last layer (see the module docstring)."""

    name = "smallcnn"

    def __init__(self, params: SmallCNNParams, image: ImageSpec) -> None:
        super().__init__(params, image)
        channels, size = image.channels, image.size
        layers: list[nn.Module] = []
        sizes: list[tuple[int, int]] = []  # channels and side of each layer's output
        for i, width in enumerate(params.widths[:-1]):
            layer, size = self._layer(i, channels, width, size)
            layers.append(layer)
            sizes.append((width, size))
            channels = width
        self.convs = nn.ModuleList(layers)
        last = len(params.widths) - 1
        finals: list[nn.Module] = []
        for _ in range(params.final_copies):
            layer, final_size = self._layer(last, channels, params.widths[-1], size)
            flat = params.widths[-1] * final_size * final_size
            dense: list[nn.Module] = [nn.Flatten()]
            if params.features:
                dense += [nn.Linear(flat, params.features, bias=False), nn.BatchNorm1d(params.features), nn.ReLU(inplace=True)]
            finals.append(nn.Sequential(layer, *dense))
        self.finals = nn.ModuleList(finals)
        early = [c * s * s for c, s in sizes] if params.attach_early else []
        self._channels = early + [params.features or flat] * params.final_copies

    def _layer(self, index: int, channels: int, width: int, size: int) -> tuple[nn.Sequential, int]:
        """Conv ``index`` (and its pool) and the side of its output."""
        layer: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        if index in self.params.pool_after:
            if size < 2:
                raise RecipeError(
                    f"[backbone] pool_after: pooling after layer {index} leaves no pixel of the "
                    f"{self.image.size} px views; pool at most {self.image.size.bit_length() - 1} times"
                )
            layer.append(nn.MaxPool2d(2))
            size //= 2
        return nn.Sequential(*layer), size

    @property
    def attach_channels(self) -> list[int]:
        return list(self._channels)

    def owned_parameters(self) -> list[list[nn.Parameter]]:
        """The earlier layers are shared; each copy of the last layer (and its dense layer)
        is its point's."""
        early: list[list[nn.Parameter]] = [[] for _ in self.convs] if self.params.attach_early else []
        return early + [list(final.parameters()) for final in self.finals]

    def forward(self, images: torch.Tensor) -> BackboneOutput:
        x, early = images, []
        for layer in self.convs:
            x = layer(x)
            early.append(x.flatten(1))
        finals = [final(x) for final in self.finals]
        return BackboneOutput(attach=(early if self.params.attach_early else []) + finals)


@hookimpl
def register_backbones() -> list[type[Backbone]]:
    return [SmallCNN]
