"""Image folders: ``cinic10`` (CINIC-10's train/valid/test folders) and ``image_folder`` (a
user's own images: labelled by class subfolders, or unlabelled in one folder or a tree).

Files are read by :func:`mihead.images.decode_images`, the function ``mihead predict`` reads
new images with: converted to ``channels`` (grey, RGBA, palette and 16-bit files included),
resized (shorter side) and centre-cropped to ``size``, kept as uint8. The decoded array is
cached (:mod:`mihead.image_cache`, the ``data.cache`` key) as a memory-mapped store, so a second
run on the same files does not decode them again and the ranks of a machine share one copy. Each image's id is its path relative to ``data.root``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar

import numpy as np
from rich.console import Console
from rich.markup import escape

from mihead.contracts import Dataset, DatasetParams, ImageData, ImageSpec, param
from mihead.distributed import current
from mihead.errors import DataError
from mihead.image_cache import cache_folder, decode_cached
from mihead.images import IMAGE_SUFFIXES, MAX_PIXELS, find_images, is_image
from mihead_vision_datasets._common import data_root


@dataclasses.dataclass(frozen=True)
class FolderParams(DatasetParams):
    """How the files of a folder dataset are read."""

    skip_bad: bool = param(False, "leave out unreadable image files (each named on stderr) instead of stopping")
    decode_workers: int = param(0, "threads decoding the image files (0 = one per CPU)", ge=0)
    max_pixels: int = param(
        MAX_PIXELS,
        "largest image read, in pixels (width x height); a larger file is unreadable, a guard "
        "against decompression bombs",
        ge=1,
    )


@dataclasses.dataclass(frozen=True)
class ImageFolderParams(FolderParams):
    size: int = param(32, "side the images are resized (shorter side) and centre-cropped to", ge=8)
    channels: int = param(3, "3 = colour, 1 = grey, 0 = 1 when every file is grey, else 3", choices=(0, 1, 3))
    recursive: bool = param(
        False,
        "every image anywhere below data.root, unlabelled (false: images directly in data.root are "
        "unlabelled, or its subfolders are classes, each holding its images at any depth)",
    )


def _layout(folder: Path, recursive: bool, name: str) -> tuple[list[Path], list[int] | None, tuple[str, ...]]:
    """The image files below ``folder``, their labels (None: unlabelled) and the class names."""
    if not folder.is_dir():
        raise DataError(f"dataset {name!r}: {folder} is not a folder; set data.root to the image folder")
    none = (
        f"dataset {name!r}: {folder} holds no images: no file in it or below it ends in "
        f"{', '.join(IMAGE_SUFFIXES)} (in upper or lower case)"
    )
    if recursive:
        paths = find_images([folder])
        if not paths:
            raise DataError(none)
        return paths, None, ()
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    flat = [p for p in entries if is_image(p)]
    classes = {p.name: found for p in entries if p.is_dir() and (found := find_images([p]))}
    if flat and classes:
        raise DataError(
            f"dataset {name!r}: {folder} holds both images and class subfolders; use one layout, or set "
            "data.recursive = true to cluster every image below it, unlabelled"
        )
    if flat:
        return flat, None, ()
    if not classes:
        raise DataError(none)  # class subfolders are searched at any depth: data.recursive would find none either
    paths = [p for found in classes.values() for p in found]
    labels = [label for label, found in enumerate(classes.values()) for _ in found]
    return paths, labels, tuple(classes)


def load_folder(
    folder: Path, size: int, name: str, params: FolderParams, *, root: Path, channels: int = 3, recursive: bool = False
) -> ImageData:
    """The images below ``folder`` (see :func:`_layout`: class subfolders -> labelled data,
    classes sorted by folder name; images directly in ``folder``, or any tree with
    ``recursive`` -> unlabelled), the first ``params.limit`` of them when set, decoded or read
    from the cache; ids are paths relative to ``root``."""
    paths, labels, classes = _layout(folder, recursive, name)
    if params.limit:
        paths, labels = paths[: params.limit], None if labels is None else labels[: params.limit]
    console = Console(stderr=True, quiet=not current().is_main)
    decoded = decode_cached(
        root,
        paths,
        size,
        channels,
        cache=cache_folder(params.cache),
        skip_bad=params.skip_bad,
        workers=params.decode_workers,
        console=console,
        say=lambda line: console.print(escape(f"mihead: {line}"), highlight=False, soft_wrap=True),
        selection=f"limit={params.limit}" if params.limit else "",
        max_pixels=params.max_pixels,
    )
    for path, reason in decoded.skipped:
        console.print(escape(f"mihead: warning: skipped unreadable image {path}: {reason}"), style="yellow", highlight=False, soft_wrap=True)
    kept_labels = None
    if labels is not None:
        label_of = dict(zip(paths, labels, strict=True))
        kept_labels = np.asarray([label_of[p] for p in decoded.paths], np.int64)
    ids = tuple(p.relative_to(root).as_posix() for p in decoded.paths)
    return ImageData(decoded.images, kept_labels, classes, ids)


class ImageFolderDataset(Dataset[ImageFolderParams]):
    """Every image under ``data.root`` forms one split, ``all``. Unlabelled data needs
    ``head.clusters``; then only label-free metrics (NMI between two views) are reported."""

    name = "image_folder"
    splits: ClassVar[tuple[str, ...]] = ("all",)
    train_split = "all"
    eval_split = "all"
    honours: ClassVar[frozenset[str]] = frozenset({"root"})  # the user's files: nothing to download or check

    def image_spec(self) -> ImageSpec | None:
        p = self.params
        return ImageSpec(channels=p.channels, size=p.size) if p.channels else None

    def load(self, split: str) -> ImageData:
        p = self.params
        if not p.root:
            raise DataError(f"dataset {self.name!r}: set data.root to the folder of images")
        root = Path(p.root)
        return load_folder(root, p.size, self.name, p, root=root, channels=p.channels, recursive=p.recursive)


class CINIC10Dataset(Dataset[FolderParams]):
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
    honours: ClassVar[frozenset[str]] = frozenset({"root"})  # no download, no published checksums

    def load(self, split: str) -> ImageData:
        p = self.params
        root = data_root(p.root, self.name)
        folder = root / split
        if not folder.is_dir():
            raise DataError(
                f"dataset {self.name!r}: {folder} not found; put CINIC-10's {split}/ folder there "
                "(set data.root to the folder holding train/, valid/ and test/)"
            )
        return load_folder(folder, 32, self.name, p, root=root)
