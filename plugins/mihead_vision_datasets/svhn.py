"""``svhn``: Street View House Numbers (cropped digits, 32x32 colour), through torchvision."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from torchvision.datasets import SVHN

from mihead.contracts import Dataset, ImageData, ImageSpec
from mihead_vision_datasets._common import data_root, fetch_absent, make


class SVHNDataset(Dataset):
    """73,257 training, 26,032 test and 531,131 extra images; label 0 is the digit 0."""

    name = "svhn"
    splits: ClassVar[tuple[str, ...]] = ("train", "test", "extra")
    train_split = "train"
    eval_split = "test"
    image = ImageSpec(channels=3, size=32)
    num_classes = 10

    def load(self, split: str) -> ImageData:
        p = self.params
        root = data_root(p.root, self.name)
        url, filename, _ = SVHN.split_list[split]
        fetch = fetch_absent(self.name, [root / filename], p.root, p.download)
        ds = make(
            self.name,
            SVHN,
            p.verify,
            root,
            lambda cls: cls(str(root), split=split, download=fetch),
            fetching=url if fetch else "",
        )
        images = np.ascontiguousarray(ds.data.transpose(0, 2, 3, 1))
        return ImageData(images, ds.labels.astype(np.int64), tuple(str(d) for d in range(10)))
