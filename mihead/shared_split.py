"""Loaded splits kept once per machine: every split a run loads is held as a store
(:mod:`mihead.store`) in the image cache folder (``data.cache``) and mapped read-only by every
process, so that the N ranks of a node share one copy in the page cache instead of holding N.

A folder dataset's images come mapped from its decode cache already (:mod:`mihead.image_cache`);
an array dataset's (CIFAR, SVHN, STL-10, digits: loaded into memory by their plugin) are copied
into a store keyed by a digest of their bytes, so that the next run maps the same file. Under
torchrun, local rank 0 of each node loads (decodes, or checks) the split while the node's other
ranks wait for it and then map what it made (:meth:`mihead.distributed.Ranks.from_local_main`);
the ranks then check that they hold the same split (its size, ids, labels and classes), so that
nodes whose data differ stop with one line instead of training on a mix. With
``data.cache = ""`` every rank loads its own copy into memory.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mihead.contracts import ImageData
from mihead.distributed import current
from mihead.errors import DataError
from mihead.image_cache import CHUNK_BYTES
from mihead.images import images_digest
from mihead.store import check_cache_folder, filled_store

__all__ = ["shared_split"]


@dataclasses.dataclass(frozen=True)
class _Mapped:
    """A split whose images are a store's file: what the other ranks of a node need to map it."""

    filename: str
    offset: int
    shape: tuple[int, ...]
    labels: np.ndarray | None
    classes: tuple[str, ...]
    ids: tuple[str, ...] | None

    def open(self) -> ImageData:
        images = np.memmap(self.filename, np.uint8, mode="r", offset=self.offset, shape=self.shape)
        return ImageData(images, self.labels, self.classes, self.ids)


def _mapped(data: ImageData) -> _Mapped | None:
    """``data`` as a file to map, when its images are a read-only map of a whole file's first
    rows (a store, or the first N rows of one), else None."""
    images = data.images
    if not isinstance(images, np.memmap) or images.filename is None or not images.flags.c_contiguous:
        return None
    found = _Mapped(str(images.filename), images.offset, images.shape, data.labels, data.classes, data.ids)
    again = found.open().images
    if len(images) and not (np.array_equal(again[:1], images[:1]) and np.array_equal(again[-1:], images[-1:])):
        return None  # a view that does not start at the map's offset
    return found


def _stored(data: ImageData, cache: Path, say: Callable[[str], None]) -> _Mapped:
    """``data`` with its images in a store of ``cache``: as they are when they are mapped from
    one already, else copied into the store of their content (made once)."""
    found = _mapped(data)
    if found is not None:
        return found
    n = len(data.images)
    step = max(1, CHUNK_BYTES // max(1, data.images[0].nbytes if n else 1))
    images = filled_store(cache, f"array-{images_digest(data.images)}", data.images.shape, "uint8", lambda a, b: data.images[a:b], [*range(0, n, step), n], say=say)
    stored = _mapped(dataclasses.replace(data, images=images))
    assert stored is not None
    return stored


def _identity(data: ImageData) -> tuple[int, str]:
    """The split's size and a digest of what names its images (ids, labels, classes)."""
    digest = hashlib.sha256(repr((data.images.shape, data.classes)).encode())
    digest.update("\0".join(data.sample_ids()).encode())
    if data.labels is not None:
        digest.update(np.ascontiguousarray(data.labels, np.int64).data)
    return len(data), digest.hexdigest()


def shared_split(make: Callable[[], ImageData], cache: Path | None, what: str, *, say: Callable[[str], None] = print) -> ImageData:
    """The split ``make()`` loads, its images mapped from a store in ``cache`` (made once per
    machine, by local rank 0 of each node; ``what`` names the split in messages), or ``make()``
    itself in every process when ``cache`` is None. Ranks holding different splits are a
    DataError."""
    ranks = current()
    if cache is None:
        return make()

    def made() -> _Mapped:
        check_cache_folder(cache, "data.cache")
        return _stored(make(), cache, say)

    data = ranks.from_local_main(made, watch=cache, what=f"load {what}").open()
    if ranks.world_size > 1:
        held = ranks.all_gather(_identity(data))
        for rank, (n, digest) in enumerate(held):
            if digest != held[0][1]:
                differs = f"{held[0][0]:,} images on rank 0, {n:,} on rank {rank}" if n != held[0][0] else (
                    f"rank 0 and rank {rank} hold {n:,} images, but not the same files, labels or classes"
                )
                raise DataError(f"the ranks disagree about {what}: {differs}; give every node the same data")
    return data
