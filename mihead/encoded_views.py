"""Batches of views read from a frozen encoder's embedding tables instead of made from images.

The counterpart of :class:`mihead.data.ViewSource` for a frozen encoder
(:class:`mihead.contracts.FrozenEncoder`): the same steps, batch order and sharding over ranks
(:class:`mihead.data.EpochPlan`),
but a view of a sample is a row of its split's embedding table
(:class:`mihead.embeddings.EmbeddingTable`) that the recipe's
:class:`mihead.contracts.EmbeddingAugmenter` picks (a mined neighbour, a cached augmentation),
from a generator keyed by (seed, epoch, chunk) as the device path keys its augmentations. Rows
are gathered from the memory-mapped table per batch, so a process holds a batch, not the table.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from mihead.contracts import EmbeddingAugmenter, ImageData
from mihead.data import EVAL_EPOCH, EpochPlan, derive_seed
from mihead.embeddings import EmbeddingTable
from mihead.knn import KnnScore, knn_accuracy

__all__ = ["EncodedViews"]


class EncodedViews:
    """Training batches of views and evaluation batches from embedding tables.

    ``tables`` maps each split's images array (by identity: the arrays the run loaded) to its
    table; ``train`` is the training split's images.
    """

    def __init__(
        self,
        tables: dict[int, EmbeddingTable],
        train: np.ndarray,
        augmenter: EmbeddingAugmenter,
        *,
        batch_size: int,
        seed: int,
        device: torch.device,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self._train = id(train)
        self.table = tables[self._train]
        self.plan = EpochPlan(self.table.n, batch_size, seed, rank, world_size)
        self.tables = tables
        self.augmenter = augmenter
        self.seed = seed
        self.device = device
        self._prepared = {key: self._prepare(table) for key, table in tables.items()}
        self._knn: dict[tuple[int, int], KnnScore | None] = {}

    @property
    def steps_per_epoch(self) -> int:
        return self.plan.steps_per_epoch

    def _prepare(self, table: EmbeddingTable) -> torch.Tensor | None:
        plain = torch.from_numpy(np.asarray(table.plain, dtype=np.float32)).to(self.device)
        prepared = self.augmenter.prepare(plain)
        return None if prepared is None else prepared.cpu()

    def _gather(self, table: EmbeddingTable, rows: torch.Tensor) -> torch.Tensor:
        """Rows [V, B] of ``table`` as float32 [V, B, D] on the device, read in ascending order
        (the page cache reads a memory-mapped table forward)."""
        flat = rows.flatten().numpy()
        order = np.argsort(flat, kind="stable")
        gathered = np.empty((len(flat), table.rows.shape[1]), dtype=table.rows.dtype)
        gathered[order] = table.rows[flat[order]]
        return torch.from_numpy(gathered).to(self.device).float().unflatten(0, tuple(rows.shape))

    def _views(self, table: EmbeddingTable, prepared: torch.Tensor | None, index: torch.Tensor, *key: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(derive_seed(self.seed, *key))
        return self._gather(table, self.augmenter.view_rows(index, prepared, table.n, generator))

    def train_batches(self, epoch: int, skip: int = 0) -> Iterator[torch.Tensor]:
        """This rank's views of epoch ``epoch``, float [V, B, D] on the device, one per step,
        after the first ``skip`` steps."""
        chunks = self.plan.batches(epoch)
        prepared = self._prepared[self._train]
        for s in range(skip, self.steps_per_epoch):
            yield self._views(self.table, prepared, chunks[s], epoch, self.plan.step_key(s))

    def eval_batches(self, images: np.ndarray, batch_size: int, rows: range | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """For each batch of a loaded split's ``images`` (of its ``rows`` only, when given: a
        shard, :func:`mihead.data.eval_shard`): their plain embeddings float [B, D] and two
        fixed random views float [2, B, D], on the device, in order."""
        table, prepared = self.tables[id(images)], self._prepared[id(images)]
        rows = range(table.n) if rows is None else rows
        for start in range(rows.start, rows.stop, batch_size):  # keyed by where it starts in the table
            index = torch.arange(start, min(start + batch_size, rows.stop))
            plain = self._gather(table, index[None])[0]
            yield plain, self._views(table, prepared, index, EVAL_EPOCH, start)[:2]

    def plain(self, images: np.ndarray) -> np.ndarray:
        """The plain embeddings [N, D] of a loaded split's ``images`` (memory-mapped)."""
        return self.tables[id(images)].plain

    def knn_score(self, data: ImageData, fit: ImageData | None) -> KnnScore | None:
        """The encoder's kNN accuracy on labelled ``data`` (:mod:`mihead.knn`), its bank
        ``fit`` when that is another labelled split; None without labels. Computed once per
        pair of splits: the embeddings do not change during a run."""
        if data.labels is None:
            return None
        bank = fit if fit is not None and fit.labels is not None and fit.images is not data.images else None
        key = (id(data.images), id(bank.images) if bank is not None else 0)
        if key not in self._knn:
            known = (self.plain(bank.images), bank.labels) if bank is not None and bank.labels is not None else None
            self._knn[key] = knn_accuracy(self.plain(data.images), data.labels, known, bank_name="the protocol's fitting split")
        return self._knn[key]
