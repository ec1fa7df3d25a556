"""The Augmenter contract: V random views of each image, on CPU workers or on the device."""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np
import torch
from typing_extensions import TypeVar

from mihead.contracts.image import ImageSpec
from mihead.contracts.params import Params, param
from mihead.contracts.plugin import Plugin

__all__ = ["Augmenter", "AugmenterParams", "BatchAugmenter", "ImageAugmenter"]


@dataclasses.dataclass(frozen=True)
class AugmenterParams(Params):
    """Keys every augmenter understands."""

    views: int = param(4, "random views made of each image per step", ge=2)


ParamsT = TypeVar("ParamsT", bound=AugmenterParams, covariant=True, default=AugmenterParams)


class Augmenter(Plugin[ParamsT], ABC):
    """Base of the two augmenter flavours below; a plugin may implement both.

    Built from the :class:`ImageSpec` of the images it receives (``image``); ``output`` is the
    spec of the views it makes (what the backbone receives).
    """

    kind: ClassVar[str] = "augmenter"
    Params: ClassVar[type[Params]] = AugmenterParams

    def __init__(self, params: ParamsT, image: ImageSpec) -> None:
        self.params = params
        self.image = image

    @property
    def num_views(self) -> int:
        return self.params.views

    @property
    def output(self) -> ImageSpec:
        """Spec of the views; that of the images it receives unless it resizes or recolours."""
        return self.image


class ImageAugmenter(Augmenter[ParamsT]):
    """Per-image augmentation on CPU, run inside data-loader worker processes."""

    @abstractmethod
    def views(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``num_views`` independent random views of one uint8 [H, W, C] image, as uint8
        [V, H', W', C']. All randomness comes from ``rng``."""

    @abstractmethod
    def eval_view(self, image: np.ndarray) -> np.ndarray:
        """The deterministic view used to assign a cluster at evaluation, uint8 [H', W', C']."""


class BatchAugmenter(Augmenter[ParamsT]):
    """Batched augmentation of uint8 tensors already on the training device."""

    @abstractmethod
    def batch_views(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``num_views`` random views of uint8 [B, C, H, W] images as float [V, B, C', H', W']
        in [0, 1], with random parameters per image drawn from ``generator`` (on the same
        device as ``images``)."""

    @abstractmethod
    def eval_batch(self, images: torch.Tensor) -> torch.Tensor:
        """The deterministic evaluation view of uint8 [B, C, H, W] images, float in [0, 1]."""
