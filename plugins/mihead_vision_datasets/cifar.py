"""``cifar10`` and ``cifar100_20`` (CIFAR-100's 20 superclasses), through torchvision.

DHOG evaluates on "CIFAR-100-20 (CIFAR-100 where classes are grouped into 20 super-classes)":
torchvision's CIFAR100 keeps the fine labels, so the coarse ones are read from the same
pickles (their ``coarse_labels`` entry) and named by the meta file's ``coarse_label_names``.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from torchvision.datasets import CIFAR10, CIFAR100

from mihead.contracts import Dataset, ImageData, ImageSpec
from mihead_vision_datasets._common import data_root, fetch_absent, make


def _read_pickle(path: Path) -> dict[str, Any]:
    with open(path, "rb") as f:
        return pickle.load(f, encoding="latin1")


def _load_meta_unchecked(self: CIFAR10) -> None:
    """torchvision's ``_load_meta`` without its md5 check (for ``data.verify = false``)."""
    meta = _read_pickle(Path(self.root) / self.base_folder / self.meta["filename"])
    self.classes = meta[self.meta["key"]]


class _CIFAR(Dataset):
    """A CIFAR split from torchvision's python-pickle layout under ``data.root``."""

    splits: ClassVar[tuple[str, ...]] = ("train", "test")
    train_split = "train"
    eval_split = "test"
    image = ImageSpec(channels=3, size=32)
    tv_class: ClassVar[type[CIFAR10]]

    def _torchvision(self, split: str) -> CIFAR10:
        p = self.params
        root = data_root(p.root, self.name)
        folder = root / self.tv_class.base_folder
        listed = self.tv_class.train_list if split == "train" else self.tv_class.test_list
        files = [folder / f for f, _ in listed]
        fetch = fetch_absent(self.name, files + [folder / self.tv_class.meta["filename"]], p.root, p.download)
        return make(
            self.name,
            self.tv_class,
            p.verify,
            root if fetch else folder,
            lambda cls: cls(str(root), train=split == "train", download=fetch),
            fetching=self.tv_class.url if fetch else "",
            _load_meta=_load_meta_unchecked,
        )


class CIFAR10Dataset(_CIFAR):
    """CIFAR-10: 50,000 training and 10,000 test 32x32 colour images, 10 classes."""

    name = "cifar10"
    num_classes = 10
    tv_class = CIFAR10

    def load(self, split: str) -> ImageData:
        ds = self._torchvision(split)
        return ImageData(np.ascontiguousarray(ds.data), np.asarray(ds.targets, np.int64), tuple(ds.classes))


class CIFAR100_20(_CIFAR):
    """CIFAR-100 with its 20 superclass ("coarse") labels: 50,000 training, 10,000 test."""

    name = "cifar100_20"
    num_classes = 20
    tv_class = CIFAR100

    def load(self, split: str) -> ImageData:
        ds = self._torchvision(split)
        folder = Path(ds.root) / ds.base_folder
        files = ds.train_list if split == "train" else ds.test_list
        coarse = np.concatenate([_read_pickle(folder / f)["coarse_labels"] for f, _ in files]).astype(np.int64)
        names = _read_pickle(folder / ds.meta["filename"])["coarse_label_names"]
        return ImageData(np.ascontiguousarray(ds.data), coarse, tuple(names))


__all__ = ["CIFAR10Dataset", "CIFAR100_20"]
