"""``stl10``: STL-10's 96x96 colour images, through torchvision.

DHOG, like IIC, trains on the labelled training images and the 100,000 unlabelled ones
("Since STL-10 has much more unlabelled data of a similar but broader distribution than the
training data, the idea of 'overclustering' was used"), and evaluates on the test split.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from torchvision.datasets import STL10

from mihead.contracts import Dataset, ImageData, ImageSpec
from mihead_vision_datasets._common import data_root, fetch_absent, make

CLASSES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")
_FILES = {
    "train": ("train_X.bin", "train_y.bin"),
    "test": ("test_X.bin", "test_y.bin"),
    "unlabeled": ("unlabeled_X.bin",),
    "train+unlabeled": ("train_X.bin", "train_y.bin", "unlabeled_X.bin"),
}


class STL10Dataset(Dataset):
    """Splits ``train`` (5,000), ``test`` (8,000), ``unlabeled`` (100,000) and
    ``train+unlabeled`` (the training split, unlabelled: its labels are None since most
    images have no class)."""

    name = "stl10"
    splits: ClassVar[tuple[str, ...]] = tuple(_FILES)
    train_split = "train+unlabeled"
    eval_split = "test"
    image = ImageSpec(channels=3, size=96)
    num_classes = len(CLASSES)

    def load(self, split: str) -> ImageData:
        p = self.params
        root = data_root(p.root, self.name)
        folder = root / STL10.base_folder
        fetch = fetch_absent(self.name, [folder / f for f in _FILES[split]], p.root, p.download)
        ds = make(
            self.name,
            STL10,
            p.verify,
            root if fetch else folder,
            lambda cls: cls(str(root), split=split, download=fetch),
            fetching=STL10.url if fetch else "",
        )
        images = np.ascontiguousarray(ds.data.transpose(0, 2, 3, 1))
        labelled = "unlabeled" not in split
        labels = ds.labels.astype(np.int64) if labelled else None
        return ImageData(images, labels, CLASSES)
