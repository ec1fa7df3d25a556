"""Image folders: ``cinic10`` (CINIC-10's train/valid/test folders) and ``image_folder`` (a
user's own images, labelled by class subfolders or unlabelled in one flat folder).

Images are read with torchvision's loader (RGB), resized so that the shorter side is
``size`` and centre-cropped to ``size`` x ``size``, and kept as uint8.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar

import numpy as np
from torchvision.datasets.folder import IMG_EXTENSIONS, default_loader
from torchvision.transforms import CenterCrop, Compose, Resize

from mihead.contracts import Dataset, DatasetParams, ImageData, ImageSpec, param
from mihead.errors import DataError
from mihead_vision_datasets._common import data_root


def _is_image(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(IMG_EXTENSIONS)


def _read(paths: list[Path], size: int) -> np.ndarray:
    """uint8 [N, size, size, 3] from image files."""
    fit = Compose([Resize(size), CenterCrop(size)])
    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    for i, path in enumerate(paths):
        try:
            out[i] = np.asarray(fit(default_loader(str(path))))
        except OSError as exc:
            raise DataError(f"cannot read image {path}: {exc}") from None
    return out


def load_folder(folder: Path, size: int, name: str) -> ImageData:
    """Class subfolders of images -> labelled data (classes sorted by folder name); images
    directly in ``folder`` -> unlabelled data. Both at once, or neither, is a DataError."""
    if not folder.is_dir():
        raise DataError(f"dataset {name!r}: {folder} is not a folder; set data.root to the image folder")
    flat = sorted(p for p in folder.iterdir() if _is_image(p))
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and any(_is_image(q) for q in p.iterdir()))
    if flat and classes:
        raise DataError(
            f"dataset {name!r}: {folder} holds both images and class subfolders; use one layout"
        )
    if flat:
        return ImageData(_read(flat, size), None, ())
    if not classes:
        raise DataError(f"dataset {name!r}: {folder} holds no images ({', '.join(IMG_EXTENSIONS)})")
    paths, labels = [], []
    for label, cls in enumerate(classes):
        files = sorted(p for p in (folder / cls).iterdir() if _is_image(p))
        paths += files
        labels += [label] * len(files)
    return ImageData(_read(paths, size), np.asarray(labels, np.int64), tuple(classes))


@dataclasses.dataclass(frozen=True)
class ImageFolderParams(DatasetParams):
    size: int = param(32, "side the images are resized (shorter side) and centre-cropped to", ge=8)


class ImageFolderDataset(Dataset):
    """Every image under ``data.root`` forms one split, ``all``. Unlabelled data needs
    ``head.clusters``; then only label-free metrics (NMI between two views) are reported."""

    name = "image_folder"
    Params = ImageFolderParams
    splits: ClassVar[tuple[str, ...]] = ("all",)
    train_split = "all"
    eval_split = "all"

    def image_spec(self) -> ImageSpec:
        return ImageSpec(channels=3, size=self.params.size)  # type: ignore[attr-defined]

    def load(self, split: str) -> ImageData:
        p: ImageFolderParams = self.params  # type: ignore[assignment]
        if not p.root:
            raise DataError(f"dataset {self.name!r}: set data.root to the folder of images")
        return load_folder(Path(p.root), p.size, self.name)


class CINIC10Dataset(Dataset):
    """CINIC-10 (Darlow et al., 2018): 90,000 images in each of ``train``, ``valid`` and
    ``test``, 32x32, in class subfolders under ``data.root``. DHOG: "For CINIC-10 only the
    standard training set of 90000 images (without labels) was used for training." No
    download: torchvision has no CINIC-10 class."""

    name = "cinic10"
    splits: ClassVar[tuple[str, ...]] = ("train", "valid", "test")
    train_split = "train"
    eval_split = "test"
    image = ImageSpec(channels=3, size=32)
    num_classes = 10

    def load(self, split: str) -> ImageData:
        folder = data_root(self.params.root, self.name) / split  # type: ignore[attr-defined]
        if not folder.is_dir():
            raise DataError(
                f"dataset {self.name!r}: {folder} not found; put CINIC-10's {split}/ folder there "
                "(set data.root to the folder holding train/, valid/ and test/)"
            )
        return load_folder(folder, 32, self.name)
