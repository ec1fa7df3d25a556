"""Image files to uint8 arrays, the one way every folder dataset and ``mihead predict`` read them.

A file is decoded with PIL, turned upright by its EXIF orientation, converted to 8-bit grey or
RGB (16-bit and 32-bit grey scaled to 8 bits, not clipped; transparency composited on a white
background; palettes expanded), resized so that its shorter side is ``size`` (bilinear) and
centre-cropped to ``size`` x ``size``. JPEGs are decoded at the smallest scale that still covers
``size`` (PIL's draft mode), which is much faster for photos and the same for every reader.
Training and prediction read files through :func:`decode_images`, so a trained model sees new
images preprocessed exactly as its training images were.

Files are decoded in parallel, by a thread pool by default: PIL releases the GIL while it
decodes and resizes (``bench/decode_folder.py`` compares threads and processes).
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

from mihead.errors import DataError

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_PIXELS",
    "DecodedImages",
    "Decoding",
    "decode_image",
    "decode_images",
    "is_grey_mode",
    "default_workers",
    "find_images",
    "images_digest",
    "is_image",
    "rate_progress",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".pbm", ".bmp", ".tif", ".tiff", ".webp", ".gif")
"""The file name endings (case-insensitive) that mark a file in a folder as an image."""

BACKGROUND = 255
"""The grey level (white) that transparent pixels are composited on."""

MAX_PIXELS = 2 * 89_478_485
"""The default of the largest image read (width x height): what PIL refuses past by default,
as a possible decompression bomb (a small file that decodes to an enormous image)."""

# PIL's own guard (a two-line warning past MAX_PIXELS / 2, an error without a hint past
# MAX_PIXELS, one global setting for the whole process) is replaced by decode_image's
# ``max_pixels``, which refuses in one line that names the file, its size and the setting.
Image.MAX_IMAGE_PIXELS = None

_GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "F"})
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError)


class TooLarge(ValueError):
    """An image of more pixels than the reader's ``max_pixels``."""


def is_image(path: Path) -> bool:
    """Whether ``path`` is a file whose name ends in one of :data:`IMAGE_SUFFIXES`."""
    return path.name.lower().endswith(IMAGE_SUFFIXES) and path.is_file()


def _images_below(folder: Path) -> list[Path]:
    """Image files anywhere below ``folder``, hidden files and folders (``.name``) left out,
    sorted by path."""
    found: list[Path] = []
    for here, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [Path(here) / f for f in files if not f.startswith(".") and f.lower().endswith(IMAGE_SUFFIXES)]
    return sorted(found)


def find_images(paths: Sequence[Path]) -> list[Path]:
    """Image files among ``paths``: files as given, folders searched recursively, sorted.

    Files named in ``paths`` are kept whatever their ending, in the order given; each folder
    contributes its images (see :data:`IMAGE_SUFFIXES`; hidden files and folders left out)
    sorted by path. A file reached twice is listed once. A path that does not exist is a
    DataError naming it."""
    found: list[Path] = []
    seen: set[Path] = set()
    for path in paths:
        if path.is_dir():
            new = _images_below(path)
        elif path.is_file():
            new = [path]
        else:
            raise DataError(f"{path}: no such file or folder")
        for p in new:
            if p not in seen:
                seen.add(p)
                found.append(p)
    return found


def is_grey_mode(mode: str) -> bool:
    """Whether an image of PIL mode ``mode`` is grey (8 bits or more)."""
    return mode in _GREY_MODES or mode.startswith("I;16")


def _eight_bit(image: Image.Image) -> Image.Image:
    """``image`` as 8-bit ``L`` (grey modes) or ``RGB`` (all others), with transparency
    composited on :data:`BACKGROUND` and more than 8 bits scaled down to 8."""
    mode = image.mode
    if mode.startswith("I;16") or mode == "I":  # 16-bit grey (PNG, TIFF): 0..65535 -> 0..255
        wide = np.asarray(image).astype(np.float64)
        return Image.fromarray(np.rint(np.clip(wide, 0, 65535) / 257).astype(np.uint8))
    if mode == "F":
        return Image.fromarray(np.rint(np.clip(np.asarray(image), 0, 255)).astype(np.uint8))
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode in ("PA", "RGBa"):
        image = image.convert("RGBA")
    elif mode in ("1", "La"):
        image = image.convert("L" if mode == "1" else "LA")
    elif mode not in ("L", "LA", "RGB", "RGBA"):  # CMYK, YCbCr, LAB, HSV, RGBX, ...
        image = image.convert("RGB")
    if image.mode in ("LA", "RGBA"):
        pixels = np.asarray(image).astype(np.uint32)
        colour, alpha = pixels[..., :-1], pixels[..., -1:]
        flat = (colour * alpha + BACKGROUND * (255 - alpha) + 127) // 255
        flat = flat.astype(np.uint8)
        image = Image.fromarray(flat[..., 0] if image.mode == "LA" else flat)
    return image


def _fit(image: Image.Image, size: int) -> Image.Image:
    """Shorter side resized to ``size`` (bilinear), then the centre ``size`` x ``size``."""
    w, h = image.size
    if (w, h) != (size, size):
        short, long = min(w, h), max(w, h)
        other = max(size, int(size * long / short))
        image = image.resize((size, other) if w <= h else (other, size), Image.Resampling.BILINEAR)
        w, h = image.size
    left, top = round((w - size) / 2), round((h - size) / 2)
    return image.crop((left, top, left + size, top + size)) if (w, h) != (size, size) else image


def decode_image(path: Path, size: int, channels: int, max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, bool]:
    """One file as uint8 [size, size, channels] and whether the file was grey; ``channels``
    0 gives the file's own: [size, size] for grey files, [size, size, 3] for colour ones.
    Raises what PIL raises for a file it cannot read, and TooLarge, before decoding, for an
    image of more than ``max_pixels``."""
    with Image.open(path) as opened:
        w, h = opened.size
        if w * h > max_pixels:
            raise TooLarge(
                f"{w:,} x {h:,} pixels, more than data.max_pixels = {max_pixels:,} (a guard against "
                "decompression bombs); raise data.max_pixels to read it"
            )
        grey = is_grey_mode(opened.mode)
        opened.draft("L" if channels == 1 else opened.mode, (size, size))  # JPEG only; no-op otherwise
        opened.load()
        image: Image.Image = opened
        if image.getexif().get(0x0112, 1) != 1:  # EXIF orientation
            image = ImageOps.exif_transpose(image)
    image = _eight_bit(image)
    if channels == 1 and image.mode != "L":
        image = image.convert("L")
    pixels = np.asarray(_fit(image, size))
    if channels == 1:
        return pixels[..., None], grey
    if channels == 3 and pixels.ndim == 2:
        return np.repeat(pixels[..., None], 3, axis=2), grey
    return pixels, grey


def _decode_or_reason(path: Path, size: int, channels: int, max_pixels: int) -> tuple[np.ndarray | None, bool, str]:
    """(pixels, grey, "") or (None, False, why the file could not be read)."""
    try:
        pixels, grey = decode_image(path, size, channels, max_pixels)
    except _DECODE_ERRORS as exc:
        reason = str(exc).replace(f"'{path}'", "").replace(str(path), "").strip(" :")  # the path is named once
        return None, False, reason or type(exc).__name__
    return pixels, grey, ""


def _decode_group(paths: Sequence[Path], size: int, channels: int, max_pixels: int) -> list[tuple[np.ndarray | None, bool, str]]:
    """:func:`_decode_or_reason` of each file, in order (one task of a pool)."""
    return [_decode_or_reason(p, size, channels, max_pixels) for p in paths]


@dataclass(frozen=True)
class DecodedImages:
    """What :func:`decode_images` gives: the images of the files it could read, in order."""

    images: np.ndarray
    """uint8 [N, size, size, channels]"""
    paths: list[Path]
    """the files decoded, in order (one per image)"""
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    """(file, reason) of each file left out with ``skip_bad``"""


def images_digest(images: np.ndarray) -> str:
    """A digest of uint8 images [N, H, W, C]: their bytes and shape (what keys a store or a
    cache entry made from them)."""
    h = hashlib.blake2b(repr(images.shape).encode(), digest_size=16)
    flat = images.reshape(len(images), -1)
    for start in range(0, len(flat), 4096):
        h.update(np.ascontiguousarray(flat[start : start + 4096]).data)
    return h.hexdigest()


def default_workers() -> int:
    """The decoding workers used when none are asked for: the CPUs this process may use."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


class _Rate(ProgressColumn):
    """Images per second so far."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} images/s" if speed else "", style="progress.data.speed")


def rate_progress(console: Console | None, verb: str) -> Progress | None:
    """A progress bar of images ``verb`` (e.g. "decoding") with their rate, on ``console``."""
    if console is None:
        return None
    columns = [TextColumn(verb), BarColumn(), MofNCompleteColumn(), _Rate(), TimeElapsedColumn(), TimeRemainingColumn()]
    return Progress(*columns, console=console)


class Decoding:
    """A pool of decoders and its progress bar, for decoding many files in consecutive chunks
    (:meth:`chunk`) that keep the pool busy across a whole folder. Files are decoded with
    ``workers`` at once (0: :func:`default_workers`; 1: in this thread), in threads, or in
    processes with ``processes``; ``total`` files are shown on the bar, on ``console``."""

    def __init__(
        self,
        size: int,
        channels: int,
        *,
        total: int,
        workers: int = 0,
        processes: bool = False,
        console: Console | None = None,
        max_pixels: int = MAX_PIXELS,
    ) -> None:
        if channels not in (0, 1, 3):
            raise ValueError(f"channels must be 0, 1 or 3, not {channels}")
        self.size, self.channels, self.max_pixels = size, channels, max_pixels
        self.workers = workers or default_workers()
        self.processes = processes
        self.pool: Executor | None = None
        if self.workers > 1 and total > 1:
            self.pool = ProcessPoolExecutor(self.workers) if processes else ThreadPoolExecutor(self.workers)
        self.progress = rate_progress(console, "decoding")
        self.task = self.progress.add_task("decoding", total=total) if self.progress is not None else None

    def __enter__(self) -> Decoding:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
        if self.progress is not None:
            self.progress.stop()

    def advance(self, files: int) -> None:
        """Count ``files`` as done on the bar (e.g. those a resumed store already holds)."""
        if self.progress is not None and self.task is not None:
            self.progress.advance(self.task, files)

    def _results(self, paths: Sequence[Path]) -> Iterator[tuple[np.ndarray | None, bool, str]]:
        """Each file's result, in order. The pool gets groups of up to 64 files (four groups
        per worker at least): a task per file costs more than decoding a small JPEG."""
        if self.pool is None or len(paths) < 2:
            return (_decode_or_reason(p, self.size, self.channels, self.max_pixels) for p in paths)
        step = max(1, min(64, len(paths) // (4 * self.workers)))
        groups = [paths[i : i + step] for i in range(0, len(paths), step)]
        n = len(groups)
        done = self.pool.map(_decode_group, groups, [self.size] * n, [self.channels] * n, [self.max_pixels] * n)
        return itertools.chain.from_iterable(done)

    def chunk(self, paths: Sequence[Path], *, skip_bad: bool) -> tuple[np.ndarray, list[tuple[int, str]], bool]:
        """The images of the files of ``paths`` it could read, uint8 [k, size, size, C] in
        order (C = ``channels``, 3 for 0), the others as (position in ``paths``, why), and
        whether every file read was grey. An unreadable file is a DataError naming it unless
        ``skip_bad``."""
        out = np.empty((len(paths), self.size, self.size, self.channels or 3), np.uint8)
        kept = 0
        skipped: list[tuple[int, str]] = []
        all_grey = True
        for i, (path, (pixels, grey, reason)) in enumerate(zip(paths, self._results(paths), strict=True)):
            self.advance(1)
            if pixels is None:
                if not skip_bad:
                    raise DataError(f"cannot read image {path}: {reason}")
                skipped.append((i, reason))
                continue
            out[kept] = pixels if pixels.ndim == 3 else pixels[..., None]
            all_grey = all_grey and grey
            kept += 1
        return out[:kept], skipped, all_grey


def decode_images(
    paths: Sequence[Path],
    size: int,
    channels: int,
    *,
    skip_bad: bool = False,
    workers: int = 0,
    console: Console | None = None,
    processes: bool = False,
    max_pixels: int = MAX_PIXELS,
) -> DecodedImages:
    """uint8 [N, size, size, channels]: each file converted (grey, RGBA, palette, 16-bit) to
    ``channels`` (1 or 3), resized (shorter side) and centre-cropped to ``size``, exactly as the
    image_folder dataset reads its files; an unreadable file is a DataError naming it unless
    ``skip_bad``. Progress bar on ``console``.

    ``channels`` 0 chooses: 1 when every file read is grey (L, LA, 1, I;16, I, F), else 3.
    ``workers`` decode at once (0: :func:`default_workers`; 1: in this thread), in threads, or
    in processes with ``processes``. A file of more than ``max_pixels`` is unreadable."""
    with Decoding(size, channels, total=len(paths), workers=workers, processes=processes, console=console, max_pixels=max_pixels) as decoding:
        images, skipped, all_grey = decoding.chunk(paths, skip_bad=skip_bad)
    if channels == 0 and all_grey and len(images):
        images = np.ascontiguousarray(images[..., :1])
    left = {i for i, _ in skipped}
    kept = [p for i, p in enumerate(paths) if i not in left]
    return DecodedImages(images, kept, [(paths[i], reason) for i, reason in skipped])
