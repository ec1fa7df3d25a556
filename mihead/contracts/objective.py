"""The Objective contract: a named loss term computed from every head's probabilities."""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import nn
from typing_extensions import TypeVar

from mihead.contracts.params import Params, param
from mihead.contracts.plugin import Plugin

__all__ = ["ModelOutputs", "Objective", "ObjectiveContext", "ObjectiveParams"]


@dataclasses.dataclass(frozen=True)
class ObjectiveParams(Params):
    """Keys every objective understands."""

    weight: float = param(1.0, "factor of this term in the minimised sum")


@dataclasses.dataclass(frozen=True)
class ObjectiveContext:
    """The model's shape, known when objectives are built: ``heads`` main heads of
    ``clusters`` clusters each, seen through ``views`` views; ``overclusters`` is the size of
    the overclustering head beside each main head (0 when the recipe has none); and the
    channels of each named backbone feature."""

    heads: int
    views: int
    clusters: int
    overclusters: int
    feature_channels: dict[str, int]


@dataclasses.dataclass
class ModelOutputs:
    """One step's outputs.

    ``probs``: main heads, float32 [H, V, B, K] (head h in hierarchy order, view v, sample b).
    ``over_probs``: overclustering heads [H, V, B, K'] or None when the model has none.
    ``features``: named backbone features, each [V, B, ...].

    The overclustering heads (IIC's auxiliary overclustering) are trained only by the
    objectives that read ``over_probs``; they are never evaluated or reported, and with none
    reading them they get no gradient. A new objective whose term makes sense for any number
    of clusters (a mutual information between views) should add it for ``over_probs`` too when
    it is not None, behind a boolean parameter (as ``iic``'s ``overclustering``); a term tied
    to the K classes (pseudo-labels, a hierarchy of heads) reads only ``probs``.
    """

    probs: torch.Tensor
    over_probs: torch.Tensor | None
    features: dict[str, torch.Tensor]


ParamsT = TypeVar("ParamsT", bound=ObjectiveParams, covariant=True, default=ObjectiveParams)


class Objective(Plugin[ParamsT], nn.Module, ABC):
    """A loss term to minimise (e.g. minus a mutual information).

    ``requires`` names the backbone features the term reads from ``ModelOutputs.features``.
    An objective is an ``nn.Module``: parameters it owns (e.g. a discriminator) are trained
    with the model, and it can be used as an ordinary loss outside mihead's engine.

    :meth:`head_specific` says whether the term's gradient reaches only the heads' own weights
    (see :func:`mihead.gradients.backward`); by default it reaches every parameter.
    """

    kind: ClassVar[str] = "objective"
    Params: ClassVar[type[Params]] = ObjectiveParams
    requires: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, params: ParamsT, context: ObjectiveContext) -> None:
        nn.Module.__init__(self)
        self.params = params
        self.context = context

    @classmethod
    def head_specific(cls, params: ObjectiveParams) -> bool:
        """Whether, with ``params``, the term's gradient is to reach only the weights that
        belong to one head (its head module and the backbone parameters that the backbone
        declares as its attachment point's own, :meth:`Backbone.owned_parameters`) and never
        the shared ones. A class method of the parameters, so that ``mihead check`` can refuse
        a backbone that declares no owned parameters before anything is built."""
        return False

    @abstractmethod
    def forward(self, outputs: ModelOutputs) -> torch.Tensor:
        """The term's scalar value (before the recipe's weight)."""
