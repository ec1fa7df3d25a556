"""The ``digits`` dataset: scikit-learn's 1,797 real 8x8 handwritten digits, no download.

Alpaydin and Kaynak's optical recognition of handwritten digits (UCI), as shipped by
scikit-learn. Pixel values 0..16 are scaled to uint8 0..255; one channel.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from mihead import hookimpl
from mihead.contracts import Dataset, ImageData, ImageSpec


class Digits(Dataset):
    """All 1,797 images form one split, ``all``: clustering is evaluated on what it clusters."""

    name = "digits"
    splits: ClassVar[tuple[str, ...]] = ("all",)
    train_split = "all"
    eval_split = "all"
    image = ImageSpec(channels=1, size=8)
    num_classes = 10
    honours: ClassVar[frozenset[str]] = frozenset()  # shipped with scikit-learn: no root, download or checksum

    def load(self, split: str) -> ImageData:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
        return ImageData(images, bunch.target.astype(np.int64), tuple(str(c) for c in bunch.target_names))


@hookimpl
def register_datasets() -> list[type[Dataset]]:
    return [Digits]
