"""The ``digits`` dataset: scikit-learn's 1,797 8x8 digits as uint8 images with labels."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits

from mihead.contracts import DatasetParams
from mihead_digits import Digits


def test_all_images_scaled_to_uint8() -> None:
    data = Digits(DatasetParams()).load("all")
    assert data.images.shape == (1797, 8, 8, 1) and data.images.dtype == np.uint8
    assert data.images.max() == 255 and data.images.min() == 0
    raw = load_digits()
    np.testing.assert_array_equal(data.labels, raw.target)
    # 16 (the maximum ink) maps to 255, 8 to 128
    np.testing.assert_array_equal(data.images[..., 0], np.round(raw.images * 255 / 16).astype(np.uint8))
    assert data.classes == tuple(str(i) for i in range(10))
