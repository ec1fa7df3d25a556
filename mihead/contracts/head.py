"""The Head contract: one attachment point's features to cluster probabilities."""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import nn
from typing_extensions import TypeVar

from mihead.contracts.params import Params
from mihead.contracts.plugin import Plugin

__all__ = ["Head", "HeadParams"]


@dataclasses.dataclass(frozen=True)
class HeadParams(Params):
    """The base of a head's own keys. How many heads and clusters the model has
    (``head.clusters``, ``overclusters``, ``per_attachment``) are core keys of the ``[head]``
    section (:class:`mihead.recipe.HeadCore`), resolved by the core into the model's shape: a
    head gets its K as the ``clusters`` argument alone."""


ParamsT = TypeVar("ParamsT", bound=HeadParams, covariant=True, default=HeadParams)


class Head(Plugin[ParamsT], nn.Module, ABC):
    """Maps features [N, C, H, W] or [N, C] to softmax probabilities [N, K] (float32, so
    that mutual information is computed in full precision under autocast)."""

    kind: ClassVar[str] = "head"
    Params: ClassVar[type[Params]] = HeadParams

    def __init__(self, params: ParamsT, in_channels: int, clusters: int) -> None:
        nn.Module.__init__(self)
        self.params = params
        self.in_channels = in_channels
        self.clusters = clusters

    @abstractmethod
    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Probabilities [N, K] whose rows sum to one."""
