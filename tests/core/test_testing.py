"""mihead.testing: fake outputs have the promised shapes, and each contract check catches a
plugin that breaks its promise (a check that passes everything would be worthless)."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import pytest
import torch
from torch import nn

from mihead.contracts import (
    Backbone,
    BackboneOutput,
    BatchAugmenter,
    Dataset,
    Head,
    ImageAugmenter,
    ImageData,
    ImageSpec,
    ModelOutputs,
    Objective,
    ObjectiveParams,
    Params,
)
from mihead.testing import ContractError, check_plugin, fake_outputs


def test_fake_outputs_shapes_and_leaves() -> None:
    out = fake_outputs(heads=3, views=2, batch=5, clusters=4, overclusters=7, features={"deep": (6,), "shallow": (2, 3, 3)})
    assert out.probs.shape == (3, 2, 5, 4) and out.probs.dtype == torch.float32
    assert torch.allclose(out.probs.sum(-1), torch.ones(3, 2, 5))
    assert out.over_probs is not None and out.over_probs.shape == (3, 2, 5, 7)
    assert out.features["deep"].shape == (2, 5, 6) and out.features["shallow"].shape == (2, 5, 2, 3, 3)
    assert set(out.leaves) == {"probs", "over_probs", "deep", "shallow"}  # type: ignore[attr-defined]
    assert (out.probs.amax(-1) > 0.9).any()  # sharp enough for confidence thresholds
    assert fake_outputs(overclusters=0).over_probs is None


class BadHead(Head):
    name = "bad_head"

    def __init__(self, params: Params, in_channels: int, clusters: int) -> None:
        super().__init__(params, in_channels, clusters)  # type: ignore[arg-type]
        self.linear = nn.Linear(in_channels, clusters)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = features.flatten(2).mean(-1) if features.ndim == 4 else features
        return self.linear(x).sigmoid()  # not normalised


class VectorObjective(Objective):
    name = "vector_objective"

    def forward(self, outputs: ModelOutputs) -> torch.Tensor:
        return outputs.probs.mean((0, 1, 2))  # [K], not a scalar


class DetachedObjective(Objective):
    name = "detached_objective"

    def forward(self, outputs: ModelOutputs) -> torch.Tensor:
        return outputs.probs.detach().mean()


@dataclasses.dataclass(frozen=True)
class UndocumentedParams(ObjectiveParams):
    scale: float = 1.0  # no param(): no help text


class UndocumentedObjective(Objective):
    name = "undocumented_objective"
    Params = UndocumentedParams

    def forward(self, outputs: ModelOutputs) -> torch.Tensor:
        return outputs.probs.mean()


class WrongChannelsBackbone(Backbone):
    name = "wrong_channels"

    def __init__(self, params: Params, image: ImageSpec) -> None:
        super().__init__(params, image)
        self.conv = nn.Conv2d(image.channels, 8, 1)

    @property
    def attach_channels(self) -> list[int]:
        return [16]  # but gives 8

    def forward(self, images: torch.Tensor) -> BackboneOutput:
        return BackboneOutput(attach=[self.conv(images)])


class UndeclaredFeatureBackbone(WrongChannelsBackbone):
    name = "undeclared_feature"

    @property
    def attach_channels(self) -> list[int]:
        return [8]

    def forward(self, images: torch.Tensor) -> BackboneOutput:
        x = self.conv(images)
        return BackboneOutput(attach=[x], features={"deep": x.mean((2, 3))})  # provides is empty


class GlobalRandomAugmenter(ImageAugmenter):
    name = "global_random"

    def views(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        noise = np.random.randint(0, 3, size=(self.num_views, *image.shape))  # ignores rng
        return np.clip(image[None] + noise, 0, 255).astype(np.uint8)

    def eval_view(self, image: np.ndarray) -> np.ndarray:
        return image


class OutOfRangeAugmenter(BatchAugmenter):
    name = "out_of_range"

    def batch_views(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return images.float()[None].repeat(self.num_views, 1, 1, 1, 1)  # 0..255, not [0, 1]

    def eval_batch(self, images: torch.Tensor) -> torch.Tensor:
        return images.float() / 255


class FloatLabelsDataset(Dataset):
    name = "float_labels"
    splits: ClassVar[tuple[str, ...]] = ("all",)
    train_split = "all"
    eval_split = "all"

    def load(self, split: str) -> ImageData:
        return ImageData(np.zeros((4, 8, 8, 1), np.uint8), np.zeros(4, np.float32), ("a",))  # type: ignore[arg-type]


class MisdeclaredSizeDataset(FloatLabelsDataset):
    name = "misdeclared_size"

    image = ImageSpec(channels=1, size=32)

    def load(self, split: str) -> ImageData:
        return ImageData(np.zeros((4, 8, 8, 1), np.uint8), np.zeros(4, np.int64), ("a", "b"))


class MisdeclaredClassesDataset(MisdeclaredSizeDataset):
    name = "misdeclared_classes"
    image = ImageSpec(channels=1, size=8)
    num_classes = 10


class HonoursLimitDataset(MisdeclaredClassesDataset):
    name = "honours_limit"
    num_classes = 2
    honours: ClassVar[frozenset[str]] = frozenset({"root", "limit"})  # limit is the core's, not optional


@pytest.mark.parametrize(
    ("kind", "cls", "message"),
    [
        ("head", BadHead, "rows do not sum to one"),
        ("objective", VectorObjective, "not a scalar"),
        ("objective", DetachedObjective, "no gradient"),
        ("objective", UndocumentedObjective, "no help text"),
        ("backbone", WrongChannelsBackbone, "expected \\[2, 16, ...\\]"),
        ("backbone", UndeclaredFeatureBackbone, "differ from provides"),
        ("augmenter", GlobalRandomAugmenter, "same rng seed"),
        ("augmenter", OutOfRangeAugmenter, "outside \\[0, 1\\]"),
        ("dataset", FloatLabelsDataset, "not int64"),
        ("dataset", MisdeclaredSizeDataset, "images 8x8x1, image_spec\\(\\) says"),
        ("dataset", MisdeclaredClassesDataset, "2 classes, class_count\\(\\) says 10"),
        ("dataset", HonoursLimitDataset, "honours \\['limit', 'root'\\]: only download, root, verify are optional keys"),
    ],
)
def test_broken_plugins_are_caught(kind: str, cls: type, message: str) -> None:
    with pytest.raises(ContractError, match=message):
        check_plugin(kind, cls)


def test_wrong_kind_is_caught() -> None:
    with pytest.raises(ContractError, match="not a subclass"):
        check_plugin("head", VectorObjective)
