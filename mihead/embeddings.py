"""A frozen encoder's embeddings of a split, computed once and cached as a store.

The table of a split of N images is [(1 + A) * N, D]: its plain embeddings, then those of A
random augmentations of every image when the recipe's embedding augmenter asks for them
(:class:`mihead.contracts.EmbeddingAugmenter`). It is kept in the embedding cache
(``backbone.cache``: :mod:`mihead.store`, memory-mapped, resumable, one copy per machine) under
a key made of everything that decides it: the encoder's identity (its model, weights digest and
preprocessing), a digest of the images' bytes and shape, the storage type, and for augmented
copies the augmenter, its parameters and the run's seed (the copies' randomness is keyed by
seed, copy and batch, so a resumed fill makes the same copies). A second run on the same images
and encoder therefore encodes nothing; another model, weights file, image or seed encodes again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import nullcontext

import numpy as np
import torch
from rich.console import Console

from mihead.contracts import EmbeddingAugmenter, FrozenEncoder
from mihead.data import derive_seed, images_to_device
from mihead.distributed import current
from mihead.image_cache import cache_folder
from mihead.images import images_digest, rate_progress
from mihead.store import check_cache_folder, filled_store, stored

__all__ = ["FORMAT", "EmbeddingTable", "encode_batches", "encode_split"]

FORMAT = 1  # bump when what a table holds, or how it is keyed, changes


@dataclasses.dataclass(frozen=True)
class EmbeddingTable:
    """A split's embeddings: ``rows`` [(1 + copies) * n, D] (plain first, see the module)."""

    rows: np.ndarray
    n: int
    copies: int

    @property
    def plain(self) -> np.ndarray:
        """The images' plain embeddings [n, D]."""
        return self.rows[: self.n]


def _encoded(encoder: FrozenEncoder, images: torch.Tensor) -> torch.Tensor:
    """``encoder``'s embeddings of a uint8 batch [B, C, H, W], float32, without autograd (bf16
    autocast on CUDA)."""
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if images.device.type == "cuda" else nullcontext()
    with torch.inference_mode(), autocast:
        return encoder.encode(images).float()


def encode_batches(encoder: FrozenEncoder, images: np.ndarray, batch_size: int, device: torch.device) -> Iterator[torch.Tensor]:
    """``encoder``'s plain embeddings of uint8 images [N, H, W, C], float32 [B, D] on ``device``
    per batch of ``batch_size`` (``mihead predict``'s new images)."""
    encoder.prepare(device)
    for start in range(0, len(images), batch_size):
        yield _encoded(encoder, images_to_device(images[start : start + batch_size], device))


def _key(encoder: FrozenEncoder, images: np.ndarray, dtype: str, augmenter: EmbeddingAugmenter, seed: int) -> str:
    copies = augmenter.copies
    parts = {
        "format": FORMAT,
        "encoder": encoder.identity(),
        "images": images_digest(images),
        "dtype": dtype,
        "copies": copies,
        "augment": [augmenter.augmentation(), seed] if copies else None,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def encode_split(
    encoder: FrozenEncoder,
    images: np.ndarray,
    augmenter: EmbeddingAugmenter,
    *,
    ids: list[str],
    seed: int,
    device: torch.device,
    say: Callable[[str], None] = print,
) -> EmbeddingTable:
    """The embedding table of uint8 images [N, H, W, C] (``ids`` name them): read from the
    cache, or computed (continued, after a killed run) into it with a progress bar, on
    ``device``, in batches of the encoder's ``batch_size``."""
    params = encoder.params
    n, copies, batch = len(images), augmenter.copies, params.batch_size
    shape = ((1 + copies) * n, encoder.embedding_dim)

    def fill(start: int, stop: int) -> np.ndarray:
        copy, first = divmod(start, n)
        chunk = images_to_device(images[first : first + stop - start], device)
        if copy:
            generator = torch.Generator(device=device).manual_seed(derive_seed(seed, copy, first))
            chunk = augmenter.augment(chunk, generator)
        rows = _encoded(encoder, chunk).cpu().numpy().astype(params.dtype)
        advance(stop - start)
        return rows

    bounds = [c * n + i for c in range(1 + copies) for i in range(0, n, batch)] + [shape[0]]
    folder = cache_folder(params.cache, "embeddings")
    key = _key(encoder, images, params.dtype, augmenter, seed)
    console = Console(stderr=True, quiet=not current().is_main)
    if folder is not None and (rows := stored(folder, key, shape, params.dtype)) is not None:
        console.print(f"embeddings of {n:,} images{f' and {copies} copies of each' if copies else ''} read from the cache: {folder / key}.npy", highlight=False, soft_wrap=True)
        return EmbeddingTable(rows, n, copies)
    if folder is not None:
        check_cache_folder(folder, "backbone.cache")
    encoder.prepare(device)
    progress = rate_progress(console, "encoding")
    assert progress is not None
    with progress:
        task = progress.add_task("encoding", total=shape[0])

        def advance(rows: int) -> None:
            progress.advance(task, rows)

        if folder is None:
            rows = np.empty(shape, params.dtype)
            for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
                rows[start:stop] = fill(start, stop)
        else:
            rows = filled_store(folder, key, shape, params.dtype, fill, bounds, ids=ids, advance=advance, say=say)
    return EmbeddingTable(rows, n, copies)
