"""The FrozenEncoder contract: a pretrained network run once per image, whose embeddings are cached
and trained on instead of images.

A frozen encoder is a :class:`~mihead.contracts.Backbone` with two lives. Before training, the
core calls :meth:`FrozenEncoder.encode` on every image (and on each cached augmentation of it) and
stores the embeddings (mihead/embeddings.py). In the model it is the identity on those embeddings:
its input is a batch of vectors [N, D] and its one attachment point is that batch, so heads,
objectives, checkpoints and evaluation treat it as any backbone, and a head epoch costs no
encoder pass. Its network's weights are not part of the model's state: the run records which
weights it used (:meth:`FrozenEncoder.identity`, kept in the checkpoint as the module's extra
state) and :meth:`FrozenEncoder.set_extra_state` refuses a checkpoint whose encoder is not the one
the recipe names now (another model, or a weights file that changed).
"""

from __future__ import annotations

import dataclasses
from abc import abstractmethod
from typing import Any

import torch
from typing_extensions import TypeVar

from mihead.contracts.backbone import Backbone, BackboneOutput
from mihead.contracts.params import Params, param
from mihead.errors import CheckpointError

__all__ = ["FrozenEncoder", "FrozenEncoderParams"]


@dataclasses.dataclass(frozen=True)
class FrozenEncoderParams(Params):
    """Keys every frozen encoder understands."""

    normalize: bool = param(True, "L2-normalise each embedding (cosine geometry, as TEMI and SCAN use)")
    batch_size: int = param(64, "images per encoder pass when embeddings are computed", ge=1)
    dtype: str = param("float16", "how embeddings are stored in the cache", choices=("float16", "float32"))
    cache: str = param(
        "auto",
        "folder of the embedding cache: auto = $XDG_CACHE_HOME/mihead/embeddings (~/.cache/mihead/embeddings), "
        "'' = none (computed again by every run)",
    )


ParamsT = TypeVar("ParamsT", bound=FrozenEncoderParams, covariant=True, default=FrozenEncoderParams)


class FrozenEncoder(Backbone[ParamsT]):
    """A frozen pretrained encoder (see the module's docstring).

    ``self.image`` is the spec of the decoded images it receives (any side: it resizes them to
    its own input as its preprocessing says). A plugin implements :attr:`embedding_dim`,
    :meth:`identity`, :meth:`prepare` and :meth:`encode`; the rest is fixed here.
    """

    @property
    @abstractmethod
    def embedding_dim(self) -> int:
        """D, the length of one embedding."""

    @abstractmethod
    def identity(self) -> dict[str, str]:
        """What decides the embeddings, as strings (e.g. the model's name, a digest of its
        weights file, the preprocessing): part of the embedding cache's key, and what a run
        records so that ``eval`` and ``predict`` refuse another encoder."""

    @abstractmethod
    def prepare(self, device: torch.device) -> None:
        """Load the network's weights onto ``device`` (once; later calls do nothing). A missing,
        unsafe or unfitting weights file raises :class:`mihead.errors.RecipeError` (one line)."""

    @abstractmethod
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Float embeddings [B, D] (L2-normalised when ``normalize``) of uint8 images
        [B, C, H, W] on the device given to :meth:`prepare`, preprocessed as the encoder
        expects. Called under ``torch.inference_mode``; the caller chooses the precision."""

    @property
    def attach_channels(self) -> list[int]:
        return [self.embedding_dim]

    def input_shape(self) -> tuple[int, ...]:
        return (self.embedding_dim,)

    def owned_parameters(self) -> list[list[torch.nn.Parameter]]:
        """Nothing of it is trained, so each head's own weights are its head module's alone
        (DHOG's head-specific push works between heads on embeddings)."""
        return [[]]

    def forward(self, images: torch.Tensor) -> BackboneOutput:
        """The embeddings themselves, [N, D], as the one attachment point."""
        return BackboneOutput(attach=[images])

    def get_extra_state(self) -> dict[str, str]:
        return self.identity()

    def set_extra_state(self, state: Any) -> None:
        now = self.identity()
        if state != now:
            changed = sorted(k for k in {*now, *state} if now.get(k) != state.get(k))
            first = changed[0] if changed else "?"
            raise CheckpointError(
                f"the run's frozen encoder was {first} = {state.get(first)!r}, the recipe's is now {now.get(first)!r}: "
                "give the same model and weights file the run was trained with"
            )
