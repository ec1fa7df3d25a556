"""The ``dhog_resnet18`` backbone: timm's ResNet-18 with its final block repeated, DHOG's
skeleton (Figure 1 of the DHOG paper).

"The skeleton is a ResNet18 (He et al., 2016). The final ResNet block is repeated k - 3 times
(k = 8 here). [...] Each shallow ResNet block (1 ... 3) constitutes shared computation for
deeper blocks, while also computing separate probability vectors, z1 ... z3." and "Early
experiments showed that entire block repetition was important to model flexibility."
"""

from __future__ import annotations

import dataclasses

import timm
import torch
from torch import nn

from mihead import hookimpl
from mihead.contracts import Backbone, BackboneOutput, ImageSpec, Params, param

STEMS = ("auto", "cifar", "stride2", "imagenet")


@dataclasses.dataclass(frozen=True)
class DHOGResNetParams(Params):
    final_copies: int = param(5, "parallel, independently initialised copies of the final block (timm layer4)", ge=1)
    attach_early: bool = param(True, "also attach heads to blocks 1, 2 and 3 (k = final_copies + 3 heads)")
    width: float = param(
        1.0, "filter-width multiplier: blocks get [64, 128, 256, 512] * width channels (2 for STL-10; below 1 for quick CPU runs)", gt=0
    )
    stem: str = param(
        "auto",
        "cifar = 3x3 stride-1 conv, no max-pool; stride2 = 3x3 stride-2 conv, no max-pool; "
        "imagenet = timm's 7x7 stride-2 conv and max-pool; auto = cifar below 64 px, stride2 "
        "below 128 px, else imagenet",
        choices=STEMS,
    )


def resolve_stem(stem: str, size: int) -> str:
    """The stem used for images of side ``size``: keeps the final block's map at 3 to 8 px
    for 20 to 64-pixel crops (CIFAR's 20-px crops: 3 px; STL-10's 64-px crops: 4 px)."""
    if stem != "auto":
        return stem
    return "cifar" if size < 64 else "stride2" if size < 128 else "imagenet"


def _timm_resnet18(in_chans: int, width: float) -> timm.models.ResNet:
    """timm's ResNet-18 with every width scaled. timm's plain stem is always 64 channels wide,
    so the model is asked for its deep stem (whose output width is 2 * stem_width): layer1
    then expects 64 * width channels and needs no projection; the stem itself is replaced by
    :class:`DHOGResNet18`."""
    half = max(1, round(32 * width))
    model = timm.create_model(
        "resnet18",
        num_classes=0,
        pretrained=False,
        in_chans=in_chans,
        channels=(2 * half, 4 * half, 8 * half, 16 * half),
        stem_type="deep",
        stem_width=half,
    )
    assert isinstance(model, timm.models.ResNet)
    return model


def _stage(trunk: timm.models.ResNet, name: str) -> nn.Sequential:
    """One of the trunk's named modules (``layer1`` .. ``layer4``, which timm sets by name, so
    that their type is known only here)."""
    stage = getattr(trunk, name)
    assert isinstance(stage, nn.Sequential)
    return stage


def _conv(block: nn.Module, name: str) -> nn.Conv2d:
    """A residual block's convolution ``conv1`` or ``conv2``."""
    conv = getattr(block, name)
    assert isinstance(conv, nn.Conv2d)
    return conv


class DHOGResNet18(Backbone[DHOGResNetParams]):
    """Input BatchNorm -> stem -> blocks 1..3 (shared) -> ``final_copies`` parallel final
    blocks. ``attach``: [block1, block2, block3, copy1, ..., copyN] (or only the copies when
    ``attach_early`` is false), the hierarchy order DHOG's push compares heads in.

    Normalisation: images arrive as floats in [0, 1]; a BatchNorm over the input channels
    (affine) standardises them with running per-channel statistics of the training data, so
    no dataset-specific mean and standard deviation has to be declared.
    """

    name = "dhog_resnet18"

    def __init__(self, params: DHOGResNetParams, image: ImageSpec) -> None:
        super().__init__(params, image)
        self.stem_kind = resolve_stem(params.stem, image.size)
        trunk = _timm_resnet18(image.channels, params.width)
        stages = [_stage(trunk, f"layer{i}") for i in (1, 2, 3, 4)]
        width = _conv(stages[0][0], "conv1").in_channels
        kernel, stride = (7, 2) if self.stem_kind == "imagenet" else (3, 2 if self.stem_kind == "stride2" else 1)
        conv = nn.Conv2d(image.channels, width, kernel, stride=stride, padding=kernel // 2, bias=False)
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        pool = trunk.maxpool if self.stem_kind == "imagenet" else nn.Identity()
        self.normalise = nn.BatchNorm2d(image.channels)
        self.stem = nn.Sequential(conv, trunk.bn1, trunk.act1, pool)
        self.blocks = nn.ModuleList(stages[:3])
        # each copy comes from its own timm model, so it gets timm's initialisation independently
        copies = stages[3:] + [_stage(_timm_resnet18(image.channels, params.width), "layer4") for _ in range(params.final_copies - 1)]
        self.finals = nn.ModuleList(copies)
        early = [_conv(s[-1], "conv2").out_channels for s in stages[:3]] if params.attach_early else []
        self._channels = early + [trunk.num_features] * params.final_copies

    @property
    def attach_channels(self) -> list[int]:
        return list(self._channels)

    def owned_parameters(self) -> list[list[nn.Parameter]]:
        """Blocks 1-3 (and the stem) are shared; each copy of the final block is its point's."""
        early: list[list[nn.Parameter]] = [[] for _ in self.blocks] if self.params.attach_early else []
        return early + [list(final.parameters()) for final in self.finals]

    def forward(self, images: torch.Tensor) -> BackboneOutput:
        x = self.stem(self.normalise(images))
        early = []
        for block in self.blocks:
            x = block(x)
            early.append(x)
        finals = [final(x) for final in self.finals]
        return BackboneOutput(attach=(early if self.params.attach_early else []) + finals)


@hookimpl
def register_backbones() -> list[type[Backbone]]:
    return [DHOGResNet18]
