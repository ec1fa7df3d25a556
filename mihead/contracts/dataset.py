"""The Dataset contract: a named source of uint8 images and, when known, their labels."""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np
from typing_extensions import TypeVar

from mihead.contracts.image import ImageSpec
from mihead.contracts.params import Params, param
from mihead.contracts.plugin import Plugin

__all__ = ["OPTIONAL_KEYS", "Dataset", "DatasetParams", "ImageData"]


@dataclasses.dataclass(frozen=True)
class DatasetParams(Params):
    """The common dataset keys, so that any recipe can be pointed elsewhere or shrunk.

    ``limit`` and ``cache`` are applied by the core to every dataset (see :class:`Dataset` and
    :mod:`mihead.shared_split`); ``root``,
    ``download`` and ``verify`` mean something only to a dataset that reads, fetches or checks
    files (the optional keys, :data:`OPTIONAL_KEYS`), so each dataset says which of them it honours (:attr:`Dataset.honours`) and a recipe
    that sets another one is refused.
    """

    root: str = param("", "folder holding the data ('' = the dataset's default place)")
    download: bool = param(False, "download the data when it is absent")
    verify: bool = param(True, "check checksums (false for a rebuilt copy)")
    limit: int = param(0, "use only the first N images of each split (0 = all)", ge=0)
    cache: str = param(
        "auto",
        "folder keeping the loaded images as memory-mapped files, decoded once and shared by every "
        "process of a machine ('auto' = ~/.cache/mihead/images, or under $XDG_CACHE_HOME; '' = none: "
        "each process holds its own copy in memory)",
    )


@dataclasses.dataclass(frozen=True)
class ImageData:
    """One split in memory.

    ``images`` is uint8 [N, H, W, C] (C = 1 or 3), kept as uint8 until the last step so that
    loader workers move bytes, not floats. ``labels`` is int64 [N], or None for unlabelled data
    (then only label-free metrics are reported). ``classes`` names the label values. ``ids``
    names each image so that a user can find it again: the file path relative to
    ``data.root`` for folder datasets; None for array datasets, whose ids are the images'
    indices in the split (:meth:`sample_ids`).
    """

    images: np.ndarray
    labels: np.ndarray | None
    classes: tuple[str, ...]
    ids: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError(
                f"images must be uint8 [N, H, W, C], got {self.images.dtype} {self.images.shape}"
            )
        if self.labels is not None and len(self.labels) != len(self.images):
            raise ValueError(f"{len(self.labels)} labels for {len(self.images)} images")
        if self.ids is not None and len(self.ids) != len(self.images):
            raise ValueError(f"{len(self.ids)} ids for {len(self.images)} images")

    def __len__(self) -> int:
        return len(self.images)

    def first(self, n: int) -> ImageData:
        """The first ``n`` images (all when n is 0 or at least the split's size)."""
        if n <= 0 or n >= len(self):
            return self
        labels = None if self.labels is None else self.labels[:n]
        ids = None if self.ids is None else self.ids[:n]
        return ImageData(self.images[:n], labels, self.classes, ids)

    def sample_ids(self) -> list[str]:
        """Each image's id: ``ids``, or the index in the split when there are none."""
        return list(self.ids) if self.ids is not None else [str(i) for i in range(len(self))]


OPTIONAL_KEYS: frozenset[str] = frozenset({"root", "download", "verify"})
"""The optional keys: those of :class:`DatasetParams` that a dataset may leave unused (``limit`` it cannot:
the core applies it)."""


ParamsT = TypeVar("ParamsT", bound=DatasetParams, covariant=True, default=DatasetParams)


class Dataset(Plugin[ParamsT], ABC):
    """A dataset plugin. ``splits`` lists what :meth:`load` accepts; ``train_split`` and
    ``eval_split`` are what a recipe gets when it names none.

    What the core does, so that a dataset need not: it loads only splits in ``splits`` (the
    recipe loader refuses any other ``data.split`` or ``eval.split`` at ``mihead check``, with
    a RecipeError naming the key and listing the splits), and it applies ``data.limit`` by
    keeping the first N images of what :meth:`load` returns, so ``load`` returns whole splits
    in a fixed order.
    """

    kind: ClassVar[str] = "dataset"
    Params: ClassVar[type[Params]] = DatasetParams
    splits: ClassVar[tuple[str, ...]]
    train_split: ClassVar[str]
    eval_split: ClassVar[str]
    honours: ClassVar[frozenset[str]] = OPTIONAL_KEYS
    """Which of :data:`OPTIONAL_KEYS` this dataset reads (default: all three). A recipe that
    sets another one away from its default fails at ``mihead check`` naming the key, instead of
    being accepted and ignored; the keys of the dataset's own ``Params`` are always its own."""
    image: ClassVar[ImageSpec | None] = None
    """The channels and side of every split's images when fixed (None: known once loaded)."""
    num_classes: ClassVar[int] = 0
    """The classes every labelled split names when fixed (0: known once loaded, or no labels)."""

    def __init__(self, params: ParamsT) -> None:
        self.params = params

    @classmethod
    def unused_keys(cls) -> frozenset[str]:
        """The optional keys this dataset does not honour (:attr:`honours`)."""
        return OPTIONAL_KEYS - cls.honours

    def image_spec(self) -> ImageSpec | None:
        """The channels and side of every split's images, when known without loading them:
        :attr:`image`, unless the parameters decide it. With it, ``mihead check`` builds the
        recipe's augmenter and model, so that values wrong for these images fail there rather
        than in a run."""
        return self.image

    def class_count(self) -> int:
        """How many classes every labelled split names, when known without loading:
        :attr:`num_classes`, unless the parameters decide it; ``head.clusters``' default for
        ``mihead check``."""
        return self.num_classes

    @abstractmethod
    def load(self, split: str) -> ImageData:
        """The images (and labels) of the whole of ``split``, one of ``splits``, in the same
        order every time (``data.limit`` keeps the first N).

        Raise :class:`mihead.errors.DataError` with the expected path when data is absent.
        """
