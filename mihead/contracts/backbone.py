"""The Backbone contract: images in, the feature maps heads attach to (plus named features)."""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import nn
from typing_extensions import TypeVar

from mihead.contracts.image import ImageSpec
from mihead.contracts.params import Params
from mihead.contracts.plugin import Plugin

__all__ = ["Backbone", "BackboneOutput"]


@dataclasses.dataclass
class BackboneOutput:
    """What one forward pass gives.

    ``attach``: one tensor per attachment point, [N, C_i, H_i, W_i] maps or [N, C_i] vectors,
    in hierarchy order (simple to complex: DHOG's push compares each head with earlier ones).
    ``features``: the named features an objective may ask for (e.g. DCCM's "shallow" and
    "deep"); exactly the names in the class's ``provides``.
    """

    attach: list[torch.Tensor]
    features: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)


ParamsT = TypeVar("ParamsT", bound=Params, covariant=True, default=Params)


class Backbone(Plugin[ParamsT], nn.Module, ABC):
    """A network from float images in [0, 1], [N, C, H, W], to :class:`BackboneOutput`.

    ``provides`` names the extra features it returns, declared on the class so that a recipe
    whose objective needs a missing one fails at ``mihead check``, before anything is built.

    :meth:`owned_parameters` says which parameters belong to one attachment point alone (DHOG's
    head-specific weights, e.g. a copy of the final block); a backbone that does not override
    it declares nothing, and an objective that asks for head-specific gradients
    (:meth:`Objective.head_specific`) is refused with it at ``mihead check``.
    """

    kind: ClassVar[str] = "backbone"
    Params: ClassVar[type[Params]] = Params
    provides: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, params: ParamsT, image: ImageSpec) -> None:
        nn.Module.__init__(self)
        self.params = params
        self.image = image

    @property
    @abstractmethod
    def attach_channels(self) -> list[int]:
        """Channels C_i of each attachment point, in the order of ``BackboneOutput.attach``."""

    def owned_parameters(self) -> list[list[nn.Parameter]] | None:
        """Per attachment point, in the order of ``BackboneOutput.attach``, the parameters that
        only that point's features depend on (its own copy of a block; an empty list for a
        point on the shared trunk); every other parameter is shared. None: not declared."""
        return None

    def input_shape(self) -> tuple[int, ...]:
        """The shape of one input of :meth:`forward` (without the batch): [C, H, W] of the views
        it is built for, ``self.image``; a frozen encoder's is its embedding, [D]."""
        return (self.image.channels, self.image.size, self.image.size)

    @classmethod
    def declares_owned(cls) -> bool:
        """Whether the class declares :meth:`owned_parameters` (overrides it)."""
        return cls.owned_parameters is not Backbone.owned_parameters

    @abstractmethod
    def forward(self, images: torch.Tensor) -> BackboneOutput:
        """Features of a batch of images."""
