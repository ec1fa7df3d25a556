"""Batches of views for training and evaluation, on CPU workers or on the device.

Randomness is keyed, not streamed: the views of image ``i`` in epoch ``e`` come from a
generator seeded with ``(seed, e, i)`` and the batch order of epoch ``e`` from ``(seed, e)``.
So no two workers repeat the same augmentations, a seeded run gives the same batches whatever
the number of workers, and a resumed run continues exactly where its checkpoint left off.

Under data-parallel training (``rank`` of ``world_size`` processes, see mihead/distributed.py)
``batch_size`` is per rank: step ``s`` of epoch ``e`` takes the global batch
``order[s*N*B : (s+1)*N*B]`` of that epoch's permutation (N = world size, B = batch size) and
rank ``r`` its chunk ``r`` of B images, chunk number ``s*N + r`` of the epoch. It is
DistributedSampler's sharding, reseeded each epoch by construction, with the sample order of
one process of batch N * B; each rank computes only its own chunks, from the same keys. On the
workers, views are keyed per image, so they do not depend on the world size; on the device
they are keyed per chunk ``(seed, e, chunk)``, which is the step for one process.

With ``original_view`` (the recipe key ``augment.original_view``), view 0 of every training
batch is the augmenter's deterministic evaluation view, the untransformed image, and views
1..V-1 stay random, on both paths (``ImageAugmenter.eval_view`` in the workers,
``BatchAugmenter.eval_batch`` on the device). Objectives that let the original image supervise
its transformations (DCCM's local robustness) read it as view 0. The random views are drawn
exactly as without the option, so only view 0 changes; evaluation batches are unaffected.

Images are read where they lie, usually a read-only memory map of the image cache shared by
every process of the machine (mihead/shared_split.py): the loader workers index it image by
image; the device path gathers each batch's rows from it in ascending order, in a background
thread while the previous batch trains, and copies that batch, never the dataset, to the device.
So what a process holds grows with the batch, not with the dataset.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler, Subset

from mihead.contracts import Augmenter, BatchAugmenter, ImageAugmenter
from mihead.errors import DataError

__all__ = [
    "EVAL_EPOCH",
    "EpochPlan",
    "ViewBatches",
    "ViewSource",
    "derive_seed",
    "eval_shard",
    "eval_view_batches",
    "images_to_device",
    "make_view_source",
    "views_on_device",
]

T = TypeVar("T")

EVAL_EPOCH = 2**31 - 1  # the key of the fixed random views used for nmi_zz at evaluation


def _seed_words(*keys: int) -> list[int]:
    return [k % 2**32 for k in keys]


def derive_seed(*keys: int) -> int:
    """A 63-bit seed mixed from integer keys, the same in every process."""
    return int(np.random.SeedSequence(_seed_words(*keys)).generate_state(1, np.uint64)[0] >> 1)


def _too_few(n: int, batch_size: int, world_size: int) -> str:
    """Why ``n`` training images cannot make one batch of ``batch_size`` for each of
    ``world_size`` processes, and what to change: the batch when it can shrink, the data when
    even the smallest batch (train.batch_size is at least 2) does not fit."""
    processes = f" x {world_size} processes" if world_size > 1 else ""
    images = f"{n} image" + ("" if n == 1 else "s")
    if n < 2 * world_size:
        return (
            f"the training split has {images}, too few to train: each step needs at least 2"
            f"{' per process' if world_size > 1 else ''}; add images to the data"
        )
    return (
        f"the training split has {images}, fewer than train.batch_size = {batch_size}{processes}; "
        f"lower train.batch_size to {n // world_size} or less"
    )


class _KeyedViews(torch.utils.data.Dataset[np.ndarray]):
    """Item ``(epoch, index)`` = the augmenter's views of image ``index`` for that epoch
    (view 0 replaced by the evaluation view when ``original_view``)."""

    def __init__(
        self, images: np.ndarray, augmenter: ImageAugmenter, seed: int, original_view: bool = False
    ) -> None:
        self.images = images
        self.augmenter = augmenter
        self.seed = seed
        self.original_view = original_view

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: tuple[int, int]) -> np.ndarray:
        epoch, index = key
        rng = np.random.default_rng(_seed_words(self.seed, epoch, index))
        views = self.augmenter.views(self.images[index], rng)
        if self.original_view:
            views = np.concatenate([self.augmenter.eval_view(self.images[index])[None], views[1:]])
        return views


class _EvalViews(torch.utils.data.Dataset[tuple[np.ndarray, np.ndarray]]):
    """Item ``i`` = (evaluation view, two fixed random views) of image ``i``."""

    def __init__(self, images: np.ndarray, augmenter: ImageAugmenter, seed: int) -> None:
        self.views = _KeyedViews(images, augmenter, seed)

    def __len__(self) -> int:
        return len(self.views)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        image = self.views.images[index]
        pair = self.views[(EVAL_EPOCH, index)][:2]
        return self.views.augmenter.eval_view(image), pair


def eval_shard(n: int, batch_size: int, rank: int, world_size: int) -> range:
    """The images of an ``n``-image split that process ``rank`` of ``world_size`` evaluates:
    a contiguous run of whole evaluation batches (batch ``b`` holds images ``b * batch_size``
    on), rank ``r`` taking batches ``r * b // N`` to ``(r + 1) * b // N`` of the ``b``; empty
    when there are fewer batches than processes. Whole batches keep the fixed random views of
    one process: on the device they are drawn for a batch at once, keyed by its first image."""
    batches = -(-n // batch_size)
    first, stop = batches * rank // world_size, batches * (rank + 1) // world_size
    return range(min(first * batch_size, n), min(stop * batch_size, n))


class _EpochOrder(Sampler[tuple[int, int]]):
    """The plan's batches of epoch ``epoch`` from step ``start`` on, yielding (epoch, index)."""

    def __init__(self, plan: EpochPlan) -> None:
        self.plan = plan
        self.epoch = 0
        self.start = 0

    def __len__(self) -> int:
        return (self.plan.steps_per_epoch - self.start) * self.plan.batch_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter([(self.epoch, int(i)) for i in self.plan.batches(self.epoch)[self.start :].flatten()])


def _permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(derive_seed(seed, epoch))
    return torch.randperm(n, generator=g)


def _rank_chunks(order: torch.Tensor, batch_size: int, rank: int, world_size: int) -> torch.Tensor:
    """Rank ``rank``'s batch of every step [steps, batch_size] of an epoch's ``order``: chunk
    ``rank`` of each global batch of ``world_size * batch_size`` images (a partial last global
    batch is dropped)."""
    steps = len(order) // (batch_size * world_size)
    return order[: steps * world_size * batch_size].view(steps, world_size, batch_size)[:, rank]


@dataclasses.dataclass(frozen=True)
class EpochPlan:
    """Which samples each training step of an epoch gives process ``rank`` of ``world_size``:
    a fresh permutation of the ``n`` samples per (seed, epoch) (:func:`_permutation`), cut into
    global batches of ``world_size * batch_size`` (a partial last one dropped), this rank's
    chunk of each (:func:`_rank_chunks`); and the key of each step's random views. One plan for
    every view source, so that images and embeddings are batched and keyed alike."""

    n: int
    batch_size: int
    seed: int
    rank: int = 0
    world_size: int = 1

    def __post_init__(self) -> None:
        if self.n < self.batch_size * self.world_size:
            raise DataError(_too_few(self.n, self.batch_size, self.world_size))

    @property
    def steps_per_epoch(self) -> int:
        return self.n // (self.batch_size * self.world_size)

    def batches(self, epoch: int) -> torch.Tensor:
        """This rank's sample indices of every step of epoch ``epoch``, int64 [steps, batch_size]."""
        return _rank_chunks(_permutation(self.n, self.seed, epoch), self.batch_size, self.rank, self.world_size)

    def step_key(self, step: int) -> int:
        """The global chunk this rank's batch at ``step`` is: with the seed and epoch, the key
        of its views' randomness."""
        return step * self.world_size + self.rank


def _to_float_views(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 [B, V, H, W, C] from the loader to float [V, B, C, H, W] in [0, 1] on device."""
    batch = batch.to(device, non_blocking=True)
    return batch.permute(1, 0, 4, 2, 3).float().div_(255)


def images_to_device(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 [B, H, W, C] (in memory, or rows of a read-only map: copied) as [B, C, H, W] on
    ``device``, through pinned memory to a GPU."""
    batch = torch.from_numpy(np.array(images, copy=not images.flags.writeable))
    if device.type == "cuda":
        batch = batch.pin_memory()
    return batch.to(device, non_blocking=True).permute(0, 3, 1, 2).contiguous()


def _gathered(images: np.ndarray, indices: torch.Tensor) -> np.ndarray:
    """``images[indices]``, read in ascending index order (the page cache and the disk prefer
    it), in the order of ``indices``."""
    wanted = indices.numpy()
    order = np.argsort(wanted, kind="stable")
    rows = np.empty((len(wanted), *images.shape[1:]), images.dtype)
    rows[order] = images[wanted[order]]
    return rows


def _ahead(items: Iterator[T]) -> Iterator[T]:
    """``items``, each made in a background thread while the previous one is used (a batch
    gathered from the map and copied to the device while the last one trains)."""
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(next, items, None)
        while (item := pending.result()) is not None:
            pending = pool.submit(next, items, None)
            yield item


class ViewBatches(Protocol):
    """What training and evaluation read views from: :class:`ViewSource` (made from images) or
    :class:`mihead.encoded_views.EncodedViews` (read from a frozen encoder's embeddings)."""

    @property
    def steps_per_epoch(self) -> int:
        """Training steps of one epoch on this rank."""
        ...

    def train_batches(self, epoch: int, skip: int = 0) -> Iterator[torch.Tensor]:
        """This rank's views of epoch ``epoch`` [V, B, ...] on the device, one per step, after
        the first ``skip`` steps."""
        ...

    def eval_batches(self, images: np.ndarray, batch_size: int, rows: range | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """For each batch of ``images`` (of its ``rows`` only, when given: a shard,
        :func:`eval_shard`): the evaluation views [B, ...] and two fixed random views
        [2, B, ...], on the device, in order."""
        ...


class ViewSource:
    """Training batches of views and evaluation batches, whichever way they are made."""

    def __init__(
        self,
        images: np.ndarray,
        augmenter: Augmenter,
        *,
        on_device: bool,
        batch_size: int,
        num_workers: int,
        seed: int,
        device: torch.device,
        original_view: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.plan = EpochPlan(len(images), batch_size, seed, rank, world_size)
        self.images = images
        self.augmenter = augmenter
        self.on_device = on_device
        self.num_workers = num_workers
        self.seed = seed
        self.device = device
        self.original_view = original_view
        if not on_device:
            assert isinstance(augmenter, ImageAugmenter)
            self._order = _EpochOrder(self.plan)
            self._loader = self._make_loader(
                _KeyedViews(images, augmenter, seed, original_view),
                batch_size,
                sampler=self._order,
                drop_last=True,
            )

    @property
    def steps_per_epoch(self) -> int:
        return self.plan.steps_per_epoch

    def _make_loader(self, dataset: torch.utils.data.Dataset[Any], batch_size: int, **kwargs: object) -> DataLoader[Any]:
        workers = self.num_workers
        return DataLoader(
            dataset,
            batch_size=batch_size,
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=workers > 0 and kwargs.get("drop_last", False) is True,
            prefetch_factor=4 if workers > 0 else None,
            **kwargs,  # type: ignore[arg-type]
        )

    def _device_generator(self, epoch: int, chunk: int) -> torch.Generator:
        """The generator of one chunk's augmentations (a step's, with one process), keyed so
        that a resumed run repeats them."""
        return torch.Generator(device=self.device).manual_seed(derive_seed(self.seed, epoch, chunk))

    def train_batches(self, epoch: int, skip: int = 0) -> Iterator[torch.Tensor]:
        """This rank's views of epoch ``epoch``: float [V, B, C, H, W] on the device, one per
        step, after the first ``skip`` steps (done before a resumed checkpoint)."""
        if self.on_device:
            assert isinstance(self.augmenter, BatchAugmenter)
            chunks = self.plan.batches(epoch)
            batches = (images_to_device(_gathered(self.images, chunks[s]), self.device) for s in range(skip, self.steps_per_epoch))
            for s, chunk in enumerate(_ahead(batches), start=skip):
                views = self.augmenter.batch_views(chunk, self._device_generator(epoch, self.plan.step_key(s)))
                if self.original_view:
                    views = torch.cat([self.augmenter.eval_batch(chunk)[None], views[1:]])
                yield views
        else:
            self._order.epoch = epoch
            self._order.start = skip
            for batch in self._loader:
                yield _to_float_views(batch, self.device)

    def eval_batches(
        self, images: np.ndarray, batch_size: int, rows: range | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """For each batch of ``images`` (of its ``rows`` only, when given:
        :func:`eval_shard`): the evaluation views float [B, C, H, W] and two fixed
        random views float [2, B, C, H, W], on the device, in order."""
        rows = range(len(images)) if rows is None else rows
        if self.on_device:
            assert isinstance(self.augmenter, BatchAugmenter)
            for start in range(rows.start, rows.stop, batch_size):  # keyed by where it starts in ``images``
                chunk = images_to_device(images[start : min(start + batch_size, rows.stop)], self.device)
                pair = self.augmenter.batch_views(chunk, self._device_generator(EVAL_EPOCH, start))[:2]
                yield self.augmenter.eval_batch(chunk), pair
        else:
            assert isinstance(self.augmenter, ImageAugmenter)
            shard = Subset(_EvalViews(images, self.augmenter, self.seed), rows)  # items keyed by their index in ``images``
            loader = self._make_loader(shard, batch_size, shuffle=False)
            for single, pair in loader:
                single = single.to(self.device).permute(0, 3, 1, 2).float().div_(255)
                yield single, _to_float_views(pair, self.device)


def views_on_device(augmenter: Augmenter, where: str, device: torch.device) -> bool:
    """Whether views are made on ``device`` rather than on loader workers, for ``where`` (the
    recipe's ``augment.where``). ``auto`` takes the device on an accelerator when the augmenter
    batches, else loader workers when the augmenter can, else the device: a 10 s DHOG CIFAR-10
    epoch needs 20,000 views/s, which per-image workers give only with 5 to 20 free cores (1,000
    to 4,500 views/s each, bench/augment.py), and the batched path on the GPU needs none."""
    accelerated = device.type != "cpu" and isinstance(augmenter, BatchAugmenter)
    return where == "device" or (where == "auto" and (accelerated or not isinstance(augmenter, ImageAugmenter)))


def make_view_source(
    images: np.ndarray,
    augmenter: Augmenter,
    where: str,
    *,
    device: torch.device,
    **kwargs: object,
) -> ViewSource:
    """A :class:`ViewSource` augmenting on loader workers or on the device as ``where`` says
    (:func:`views_on_device`)."""
    on_device = views_on_device(augmenter, where, device)
    return ViewSource(images, augmenter, on_device=on_device, device=device, **kwargs)  # type: ignore[arg-type]


def eval_view_batches(
    images: np.ndarray, augmenter: Augmenter, batch_size: int, *, on_device: bool, device: torch.device
) -> Iterator[torch.Tensor]:
    """The evaluation views float [B, C, H, W] of ``images``, in batches, on ``device``: what
    :meth:`ViewSource.eval_batches` gives as the first of each pair, made in this process
    (for images that are not a run's own, e.g. those of ``mihead predict``)."""
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        if on_device:
            assert isinstance(augmenter, BatchAugmenter)
            yield augmenter.eval_batch(images_to_device(chunk, device))
        else:
            assert isinstance(augmenter, ImageAugmenter)
            views = np.stack([augmenter.eval_view(image) for image in chunk])
            yield torch.from_numpy(views).to(device).permute(0, 3, 1, 2).float().div_(255)
