"""The hook reference stays complete: every hook in mihead/hookspecs.py has a docstring, a
section in docs/plugins.md's hook reference, and an exercise here in which a plugin
implementing it is registered and what it returns arrives in the registry. Adding a hook
without all three fails these tests."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from mihead import hookimpl, hookspecs
from mihead.contracts import (
    Augmenter,
    Backbone,
    BackboneOutput,
    BatchAugmenter,
    Dataset,
    Head,
    ImageData,
    ImageSpec,
    ModelOutputs,
    Objective,
)
from mihead.plugins import load_registry
from mihead.testing import check_plugin

DOC = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"
HOOKS = sorted(name for name, f in vars(hookspecs).items() if callable(f) and hasattr(f, "mihead_spec"))


# --- one minimal class per register_* hook -----------------------------------------------------
class TinyBackbone(Backbone):
    name = "test_tiny_backbone"

    def __init__(self, params: object, image: object) -> None:
        super().__init__(params, image)  # type: ignore[arg-type]
        self.linear = nn.Linear(self.image.channels, 4)

    @property
    def attach_channels(self) -> list[int]:
        return [4]

    def forward(self, images: torch.Tensor) -> BackboneOutput:
        return BackboneOutput(attach=[self.linear(images.mean((2, 3)))])


class TinyHead(Head):
    name = "test_tiny_head"

    def __init__(self, params: object, in_channels: int, clusters: int) -> None:
        super().__init__(params, in_channels, clusters)  # type: ignore[arg-type]
        self.linear = nn.Linear(in_channels, clusters)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features.flatten(2).mean(-1) if features.ndim == 4 else features).float().softmax(-1)


class TinyObjective(Objective):
    name = "test_tiny_objective"

    def forward(self, outputs: ModelOutputs) -> torch.Tensor:
        return (outputs.probs**2).sum(-1).mean()


class TinyAugmenter(BatchAugmenter):
    name = "test_tiny_augmenter"

    def batch_views(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        x = images.float().div(255)
        flip = torch.rand(self.num_views, len(x), generator=generator, device=x.device) < 0.5
        views = torch.stack([x] * self.num_views)
        return torch.where(flip[..., None, None, None], views.flip(-1), views)

    def eval_batch(self, images: torch.Tensor) -> torch.Tensor:
        return images.float().div(255)


class TinyDataset(Dataset):
    name = "test_tiny_dataset"
    splits: ClassVar[tuple[str, ...]] = ("all",)
    train_split = "all"
    eval_split = "all"

    def load(self, split: str) -> ImageData:
        images = np.random.default_rng(0).integers(0, 256, (6, 8, 8, 1), dtype=np.uint8)
        return ImageData(images, np.arange(6) % 2, ("a", "b"))


class AllHooks:
    """A plugin object implementing every hook."""

    @hookimpl
    def register_backbones(self) -> list[type[Backbone]]:
        return [TinyBackbone]

    @hookimpl
    def register_heads(self) -> list[type[Head]]:
        return [TinyHead]

    @hookimpl
    def register_objectives(self) -> list[type[Objective]]:
        return [TinyObjective]

    @hookimpl
    def register_augmenters(self) -> list[type[Augmenter]]:
        return [TinyAugmenter]

    @hookimpl
    def register_datasets(self) -> list[type[Dataset]]:
        return [TinyDataset]


# hook -> (kind, class) it must bring into the registry
EXERCISES = {
    "register_backbones": ("backbone", TinyBackbone),
    "register_heads": ("head", TinyHead),
    "register_objectives": ("objective", TinyObjective),
    "register_augmenters": ("augmenter", TinyAugmenter),
    "register_datasets": ("dataset", TinyDataset),
}


def documented_hooks() -> list[str]:
    """The ``### `hook_name` `` headings of the '## Hook reference' section of plugins.md."""
    text = DOC.read_text()
    section = text.split("\n## Hook reference", 1)
    assert len(section) == 2, "docs/plugins.md has no '## Hook reference' section"
    body = re.split(r"\n## ", section[1], maxsplit=1)[0]
    return sorted(re.findall(r"^### `(\w+)`", body, flags=re.M))


def test_there_are_hooks() -> None:
    assert "register_objectives" in HOOKS


def test_every_hook_has_a_docstring() -> None:
    for name in HOOKS:
        doc = inspect.getdoc(getattr(hookspecs, name))
        assert doc and len(doc) > 40, f"hook {name} has no docstring"


def test_every_hook_is_in_the_reference_and_nothing_else() -> None:
    assert documented_hooks() == HOOKS


def test_every_hook_is_exercised() -> None:
    assert sorted(EXERCISES) == HOOKS
    assert sorted(n for n in vars(AllHooks) if not n.startswith("_")) == HOOKS


def test_each_hook_brings_its_classes_into_the_registry() -> None:
    registry = load_registry(autoload=False, strict=True, plugins=[AllHooks()])
    assert registry.problems == []
    for hook, (kind, cls) in EXERCISES.items():
        entry = registry.get(kind, cls.name)
        assert entry.cls is cls, hook
        assert registry.names(kind) == [cls.name], hook  # autoload off: only this plugin


def test_the_exercise_classes_keep_their_contracts() -> None:
    for kind, cls in EXERCISES.values():
        extra = {"image": ImageSpec(channels=1, size=8)} if kind == "backbone" else {}
        check_plugin(kind, cls, **extra)
