"""Vision datasets: the rebuilt CIFAR-10, a tiny CIFAR-100 layout, image folders, errors."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mihead.contracts import DatasetParams
from mihead.errors import DataError
from mihead_vision_datasets.cifar import CIFAR100_20, CIFAR10Dataset
from mihead_vision_datasets.folders import CINIC10Dataset, ImageFolderDataset, ImageFolderParams
from mihead_vision_datasets.stl10 import STL10Dataset
from mihead_vision_datasets.svhn import SVHNDataset


def test_cifar10_rebuilt_copy_needs_verify_false(cifar10_root: Path) -> None:
    data = CIFAR10Dataset(DatasetParams(root=str(cifar10_root), verify=False)).load("test")
    assert data.images.shape == (10000, 32, 32, 3) and data.images.dtype == np.uint8
    assert np.bincount(data.labels).tolist() == [1000] * 10
    assert data.classes[0] == "airplane" and len(data.classes) == 10
    with pytest.raises(DataError, match="data.verify = false"):
        CIFAR10Dataset(DatasetParams(root=str(cifar10_root))).load("test")


@pytest.mark.parametrize(
    ("cls", "split", "expected"),
    [
        (CIFAR10Dataset, "train", "cifar-10-batches-py/data_batch_1"),
        (CIFAR100_20, "test", "cifar-100-python/test"),
        (SVHNDataset, "train", "train_32x32.mat"),
        (STL10Dataset, "train+unlabeled", "stl10_binary/train_X.bin"),
        (CINIC10Dataset, "train", "train"),
    ],
)
def test_absent_data_names_the_expected_path(tmp_path: Path, cls: type, split: str, expected: str) -> None:
    with pytest.raises(DataError, match=re.escape(str(tmp_path / expected))):
        cls(DatasetParams(root=str(tmp_path))).load(split)


def _write_cifar100(root: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    fine = rng.integers(0, 100, n)
    coarse = fine // 5  # any map: the loader must read the coarse labels, not guess them
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    for name in ("train", "test"):
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "fine_labels": fine.tolist(), "coarse_labels": coarse.tolist()}, f)
    meta = {"fine_label_names": [f"f{i}" for i in range(100)], "coarse_label_names": [f"c{i}" for i in range(20)]}
    with open(folder / "meta", "wb") as f:
        pickle.dump(meta, f)
    return data, coarse


def test_cifar100_20_reads_the_superclass_labels(tmp_path: Path) -> None:
    pixels, coarse = _write_cifar100(tmp_path, 12)
    data = CIFAR100_20(DatasetParams(root=str(tmp_path), verify=False)).load("test")
    assert data.labels.tolist() == coarse.tolist()
    assert data.classes == tuple(f"c{i}" for i in range(20))
    np.testing.assert_array_equal(data.images[3], pixels[3].reshape(3, 32, 32).transpose(1, 2, 0))


def _png(path: Path, size: tuple[int, int], value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path)


def test_image_folder_labelled_resizes_mixed_sizes(tmp_path: Path) -> None:
    _png(tmp_path / "cat" / "a.png", (40, 30), 10)
    _png(tmp_path / "cat" / "b.png", (16, 16), 20)
    _png(tmp_path / "dog" / "c.png", (64, 48), 200)
    data = ImageFolderDataset(ImageFolderParams(root=str(tmp_path), size=24)).load("all")
    assert data.images.shape == (3, 24, 24, 3)
    assert data.labels.tolist() == [0, 0, 1] and data.classes == ("cat", "dog")
    assert data.images[2].min() == 200 and data.images[0].max() == 10


def test_image_folder_flat_is_unlabelled(tmp_path: Path) -> None:
    for i in range(3):
        _png(tmp_path / f"{i}.jpg", (20 + i, 20), 5 * i)
    data = ImageFolderDataset(ImageFolderParams(root=str(tmp_path), size=16)).load("all")
    assert data.labels is None and data.classes == () and data.images.shape == (3, 16, 16, 3)


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="holds no images"):
        ImageFolderDataset(ImageFolderParams(root=str(tmp_path))).load("all")
    with pytest.raises(DataError, match="is not a folder"):
        ImageFolderDataset(ImageFolderParams(root=str(tmp_path / "absent"))).load("all")
    _png(tmp_path / "x.png", (8, 8), 0)
    _png(tmp_path / "cls" / "y.png", (8, 8), 0)
    with pytest.raises(DataError, match="both images and class subfolders"):
        ImageFolderDataset(ImageFolderParams(root=str(tmp_path))).load("all")
