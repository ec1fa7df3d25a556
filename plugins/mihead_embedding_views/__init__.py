"""Views of a frozen encoder's cached embeddings: ``neighbours`` and ``augmented_embeddings``.

Two ways to make the pairs a mutual-information objective needs without running the encoder per
step (the views are rows of the split's embedding table, see
:class:`mihead.contracts.EmbeddingAugmenter`):

- ``neighbours``: a sample and some of its k nearest neighbours by cosine similarity, mined once
  per split (TEMI's and SCAN's pairs: an image and a random one of its neighbours, drawn anew
  each epoch). Adaloglou et al., "Exploring the Limits of Deep Image Clustering using Pretrained
  Models", BMVC 2023 (https://arxiv.org/abs/2303.17896); Van Gansbeke et al., "SCAN: Learning to
  Classify Images without Labels", ECCV 2020 (https://arxiv.org/abs/2005.12320).
- ``augmented_embeddings``: ``copies`` random crops and flips of each image encoded once; a
  view is one of them (or the plain embedding), so a pair is two augmentations of one image, as
  IIC pairs them, at the cost of ``copies`` extra encoder passes over the data.

``neighbours`` may also use ``copies``: each neighbour is then taken in one of its augmentations.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, TypeVar

import torch
import torch.nn.functional as F

from mihead import hookimpl
from mihead.contracts import Augmenter, AugmenterParams, EmbeddingAugmenter, param
from mihead_embedding_views.mining import nearest_neighbours

__all__ = ["AugmentedEmbeddings", "AugmentedEmbeddingsParams", "Neighbours", "NeighboursParams"]


@dataclasses.dataclass(frozen=True)
class CopiesParams(AugmenterParams):
    """Keys of the cached augmentations both flavours may draw on."""

    views: int = param(2, "views of each sample per step", ge=2)
    copies: int = param(0, "random crops and flips of each image encoded once and cached (0 = the plain embeddings only)", ge=0)
    crop_min: float = param(0.25, "smallest area of a random crop as a fraction of the image", gt=0, le=1)
    flip: float = param(0.5, "probability of a horizontal flip", ge=0, le=1)


@dataclasses.dataclass(frozen=True)
class NeighboursParams(CopiesParams):
    k: int = param(20, "nearest neighbours by cosine similarity a view is drawn from (TEMI: 50 on ImageNet-scale data)", ge=1)
    chunk: int = param(4096, "rows and columns of a similarity block when mining (memory: chunk x chunk floats)", ge=1)


@dataclasses.dataclass(frozen=True)
class AugmentedEmbeddingsParams(CopiesParams):
    copies: int = param(4, "random crops and flips of each image encoded once and cached", ge=1)


P = TypeVar("P", bound=CopiesParams)


class _CachedCopies(EmbeddingAugmenter[P]):
    """What both flavours share: the cached crops and flips, and picking one of a sample's rows."""

    @property
    def copies(self) -> int:
        return self.params.copies

    def augmentation(self) -> str:
        """The crops and flips alone: both flavours, with any ``k`` or number of views, share the copies."""
        return f"crops and flips: crop_min={self.params.crop_min!r}, flip={self.params.flip!r}"

    def augment(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """A square crop of a random area in [crop_min, 1] at a random place, resized back to
        the image's side (bilinear), mirrored with probability ``flip``."""
        n, device = images.shape[0], images.device
        side = torch.sqrt(torch.rand(n, generator=generator, device=device) * (1 - self.params.crop_min) + self.params.crop_min)
        centre = (torch.rand((n, 2), generator=generator, device=device) * 2 - 1) * (1 - side)[:, None]
        mirror = torch.where(torch.rand(n, generator=generator, device=device) < self.params.flip, -1.0, 1.0)
        theta = torch.zeros((n, 2, 3), device=device)
        theta[:, 0, 0], theta[:, 1, 1] = side * mirror, side
        theta[:, :, 2] = centre
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        warped = F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
        return warped.round_().clamp_(0, 255).to(torch.uint8)

    def _in_copies(self, samples: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
        """Rows of ``samples`` [V, B], each in a random one of its 1 + copies encodings, the V
        views of a sample in different encodings while there are enough of them."""
        if not self.copies:
            return samples
        encodings = 1 + self.copies
        if len(samples) <= encodings:
            copy = torch.rand((encodings, samples.shape[1]), generator=generator).argsort(dim=0)[: len(samples)]
        else:
            copy = torch.randint(0, encodings, samples.shape, generator=generator)
        return copy * n + samples


class Neighbours(_CachedCopies[NeighboursParams]):
    """View 0 is the sample; each other view a random one of its ``k`` nearest neighbours (with
    ``copies``, every view in a random one of its encodings)."""

    name = "neighbours"
    Params: ClassVar[type[NeighboursParams]] = NeighboursParams

    def prepare(self, embeddings: torch.Tensor) -> torch.Tensor:
        k = min(self.params.k, embeddings.shape[0] - 1)
        return nearest_neighbours(embeddings, k, self.params.chunk)

    def view_rows(self, index: torch.Tensor, prepared: torch.Tensor | None, n: int, generator: torch.Generator) -> torch.Tensor:
        assert prepared is not None
        neighbours = prepared[index]  # [B, k]
        pick = torch.randint(0, neighbours.shape[1], (self.num_views - 1, len(index)), generator=generator)
        samples = torch.cat([index[None], neighbours.T.gather(0, pick)])
        return self._in_copies(samples, n, generator)


class AugmentedEmbeddings(_CachedCopies[AugmentedEmbeddingsParams]):
    """Every view is a random one of the sample's 1 + ``copies`` encodings."""

    name = "augmented_embeddings"
    Params: ClassVar[type[AugmentedEmbeddingsParams]] = AugmentedEmbeddingsParams

    def prepare(self, embeddings: torch.Tensor) -> None:
        """Nothing: the views need only the cached copies."""

    def view_rows(self, index: torch.Tensor, prepared: torch.Tensor | None, n: int, generator: torch.Generator) -> torch.Tensor:
        return self._in_copies(index.expand(self.num_views, -1), n, generator)


@hookimpl
def register_augmenters() -> list[type[Augmenter]]:
    return [Neighbours, AugmentedEmbeddings]
