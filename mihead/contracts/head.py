"""The Head contract: one attachment point's features to cluster probabilities."""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import nn
from typing_extensions import TypeVar

from mihead.contracts.params import Params, param
from mihead.contracts.plugin import Plugin

__all__ = ["Head", "HeadParams"]


@dataclasses.dataclass(frozen=True)
class HeadParams(Params):
    """Keys every head section understands: how many heads and clusters the model has."""

    clusters: int = param(
        0, "clusters K of each main head: a head needs at least 2; 0 = the dataset's classes", ge=2, also=(0,)
    )
    overclusters: int = param(
        0, "clusters of an extra overclustering head beside each main head: at least 2; 0 = none", ge=2, also=(0,)
    )
    per_attachment: int = param(1, "heads on each attachment point of the backbone", ge=1)


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
