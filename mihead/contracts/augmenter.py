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

__all__ = ["Augmenter", "AugmenterParams", "BatchAugmenter", "EmbeddingAugmenter", "ImageAugmenter"]


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


class EmbeddingAugmenter(Augmenter[ParamsT]):
    """Views of a frozen encoder's cached embeddings (:class:`mihead.contracts.FrozenEncoder`):
    each view of a sample is a row of its split's embedding table, so training never runs the
    encoder.

    The table of a split of N images is [(1 + copies) * N, D]: rows ``0..N-1`` are the images'
    plain embeddings (the evaluation view), and rows ``c * N + i`` for ``c`` in ``1..copies``
    the embedding of augmentation ``c`` of image ``i``, made once by :meth:`augment` and
    cached. ``output`` is unused (the model's input is the embedding).
    """

    @property
    def copies(self) -> int:
        """How many augmented encodings of each image the views need (0: the plain ones alone)."""
        return 0

    def augmentation(self) -> str:
        """What decides :meth:`augment`'s copies, as a string: part of the embedding cache's key,
        so that views which differ in nothing else (another ``k``, more views) reuse the cached
        copies. By default the augmenter's name and all its parameters."""
        return f"{self.name}: {self.params!r}"

    def augment(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One random augmentation of each uint8 image [B, C, H, W] on the device, uint8 of the
        same shape, from ``generator`` (keyed per copy and batch by the core); called only when
        :attr:`copies` is above 0."""
        raise NotImplementedError(f"augmenter {self.name!r} makes no augmented copies")

    @abstractmethod
    def prepare(self, embeddings: torch.Tensor) -> torch.Tensor | None:
        """What the views of one split need computed once from its plain embeddings float
        [N, D] on the device (e.g. each one's nearest neighbours, int64 [N, k]), or None."""

    @abstractmethod
    def view_rows(self, index: torch.Tensor, prepared: torch.Tensor | None, n: int, generator: torch.Generator) -> torch.Tensor:
        """The table rows int64 [V, B] of ``num_views`` random views of the samples ``index``
        (int64 [B] in ``0..n-1``), with ``prepared`` the split's :meth:`prepare` result; all
        randomness from ``generator``. ``index``, ``prepared`` and ``generator`` are on the CPU
        (the rows are gathered from the memory-mapped table there)."""
