"""The ``dccm_cnn`` backbone: DCCM's small conv nets (Table 4) with shallow and deep features.

Wu et al., "Deep Comprehensive Correlation Mining for Image Clustering", ICCV 2019,
supplementary 6.4 and Table 4: "For CIFAR-10/CIFAR-100, we set 4 conv layers and 3 pooling
layers, followed with 2 fully-connected layers. Batch Normalization and ReLU are used on all
hidden layers. The output features after the second conv layer (S for shallow) and the first
fc layer (D for deep) are used to compute the mutual information (MI) loss ... For other
datasets, such as Tiny-ImageNet and STL-10, we set 5 conv layers instead of 4. Due to their
larger input size, we use the feature maps after the third conv layer as S."

Table 4, by input size (every conv is followed by BN and ReLU; convs are unpadded, which is
what makes the last pooling leave a 1x1 map of 256 channels for the first fc layer):

* 32x32 (CIFAR): 3x3 conv 64, 3x3 conv 64 (S), 2x2 max-pool /2, 3x3 conv 128, 2x2 max-pool
  /2, 3x3 conv 256, 4x4 avg-pool /2, Linear(256, 64) BN ReLU (D);
* 64x64 (Tiny-ImageNet): 5x5 conv 64, 5x5 conv 64, 4x4 max-pool /4, 3x3 conv 128 (S), 3x3
  conv 128, 4x4 max-pool /4, 1x1 conv 256, 2x2 avg-pool /2, Linear(256, 256) BN ReLU (D);
* 96x96 (STL-10, ImageNet-10): as 64x64 but a 4x4 avg-pool /4 and Linear(256, 64) (D).

The last row of the table, Linear(64, c) SoftMax, is the head: use the ``mlp`` head with
``hidden = 0``; the authors' released code also batch-normalises the logits, the ``mlp`` head's
``logit_batchnorm`` (see its docstring and docs/dccm.md). ``batchnorm_stats = "batch"``
normalises with each batch's own statistics in evaluation too, as every batch norm of the
authors' code does (``track_running_stats=False``); the default uses the running statistics. The heads attach to D. Other input sizes use the table whose size is the
largest not above the input, with a global average pool after the last pooling (a no-op at
the table's own sizes).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from mihead import hookimpl
from mihead.contracts import Backbone, BackboneOutput, ImageSpec, Params, param
from mihead.errors import RecipeError

_SIZES = (32, 64, 96)


@dataclasses.dataclass(frozen=True)
class DCCMCNNParams(Params):
    arch: str = param("auto", "Table 4 column: input size 32, 64 or 96 (auto = from the images)", choices=("auto", "32", "64", "96"))
    deep: int = param(0, "width of the deep fc layer D (0 = Table 4's: 64, or 256 for the 64x64 net)", ge=0)
    batchnorm_stats: str = param(
        "running",
        "what the batch norms use at evaluation: running = the statistics gathered in training, "
        "batch = each batch's own statistics always (DCCM's released code)",
        choices=("running", "batch"),
    )


def _layers(arch: int, channels: int, running: bool) -> tuple[list[nn.Module], list[nn.Module], int]:
    """The conv layers up to S, those after S, and Table 4's width of D."""

    def _conv(c_in: int, c_out: int, k: int) -> list[nn.Module]:
        return [nn.Conv2d(c_in, c_out, k, bias=False), nn.BatchNorm2d(c_out, track_running_stats=running), nn.ReLU(inplace=True)]

    if arch == 32:
        to_shallow = _conv(channels, 64, 3) + _conv(64, 64, 3)
        rest = [nn.MaxPool2d(2, 2), *_conv(64, 128, 3), nn.MaxPool2d(2, 2), *_conv(128, 256, 3), nn.AvgPool2d(4, 2)]
        return to_shallow, rest, 64
    to_shallow = _conv(channels, 64, 5) + _conv(64, 64, 5) + [nn.MaxPool2d(4, 4)] + _conv(64, 128, 3)
    last_pool = nn.AvgPool2d(2, 2) if arch == 64 else nn.AvgPool2d(4, 4)
    rest = [*_conv(128, 128, 3), nn.MaxPool2d(4, 4), *_conv(128, 256, 1), last_pool]
    return to_shallow, rest, 256 if arch == 64 else 64


class DCCMCNN(Backbone[DCCMCNNParams]):
    """Table 4's network up to D; ``features`` gives S [N, 64 or 128, H, W] as "shallow" and
    D [N, deep] as "deep", and D is the one attachment point."""

    name = "dccm_cnn"
    provides: ClassVar[frozenset[str]] = frozenset({"shallow", "deep"})

    def __init__(self, params: DCCMCNNParams, image: ImageSpec) -> None:
        super().__init__(params, image)
        if params.arch == "auto":
            arch = max([s for s in _SIZES if s <= image.size], default=_SIZES[0])
        else:
            arch = int(params.arch)
        if image.size < arch:
            raise RecipeError(
                f"[backbone] arch: dccm_cnn's {arch}x{arch} network needs images of at least {arch} "
                f"pixels a side, got {image.size} (the augmenter's output)"
            )
        running = params.batchnorm_stats == "running"
        to_shallow, rest, deep = _layers(arch, image.channels, running)
        self.arch = arch
        self.to_shallow = nn.Sequential(*to_shallow)
        self.rest = nn.Sequential(*rest)
        self._deep = params.deep or deep
        self.fc = nn.Sequential(nn.Linear(256, self._deep, bias=False), nn.BatchNorm1d(self._deep, track_running_stats=running), nn.ReLU(inplace=True))

    @property
    def attach_channels(self) -> list[int]:
        return [self._deep]

    def forward(self, images: torch.Tensor) -> BackboneOutput:
        shallow = self.to_shallow(images)
        pooled = F.adaptive_avg_pool2d(self.rest(shallow), 1).flatten(1)
        deep = self.fc(pooled)
        return BackboneOutput(attach=[deep], features={"shallow": shallow, "deep": deep})


@hookimpl
def register_backbones() -> list[type[Backbone]]:
    return [DCCMCNN]
