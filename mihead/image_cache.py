"""A cache of decoded image folders, so that a second run on the same files does not decode them
again, and every process of a machine maps one copy of the images instead of holding its own.

An entry is a store (:mod:`mihead.store`): the decoded images as an uncompressed ``.npy``, read
memory-mapped, written chunk by chunk as decoding goes (never the whole array in memory first)
and continued after a killed run; its record names the files (paths relative to the folder) and
those left out as unreadable. Its name carries two hashes: one of the folder (absolute path), the
selection and the target size and channels, one of the files' relative paths, sizes and
modification times, the target and the decoder (PIL's version, this format). A changed, added or
removed file, or another size or channel count, misses the entry and decodes again; the new entry
then replaces the folder's stale one (and an ``.npz`` entry of earlier versions, which is decoded
again, not converted), so the cache holds one entry per folder, selection of its files (all, or
the first N) and target.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import PIL
from PIL import Image
from rich.console import Console

from mihead.errors import DataError
from mihead.images import MAX_PIXELS, DecodedImages, Decoding, decode_images, default_workers, is_grey_mode
from mihead.store import Chunk, check_cache_folder, filled_store, left_out, stored

__all__ = ["AUTO", "cache_folder", "decode_cached"]

AUTO = "auto"
"""The ``data.cache`` value for the default folder (:func:`cache_folder`)."""

FORMAT = 2  # bump when the decoding or the entry's layout changes (2: a store, not an .npz)

CHUNK_BYTES = 64 * 2**20
"""About how many bytes of decoded images are held in memory before they are written."""


def cache_folder(setting: str, kind: str = "images") -> Path | None:
    """The folder a cache setting (``data.cache``, ``backbone.cache``) names: None for "" (no
    cache); for "auto", ``$XDG_CACHE_HOME/mihead/KIND``, or ``~/.cache/mihead/KIND`` without
    that variable; otherwise the folder given (``~`` expanded)."""
    if not setting:
        return None
    if setting == AUTO:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(base) / "mihead" / kind
    return Path(setting).expanduser()


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value).encode()).hexdigest()[:16]


def _stat(path: Path) -> tuple[int, int] | str:
    """The file's size and modification time (ns), or why it cannot be read (a broken link,
    a symlink loop, no permission)."""
    try:
        st = path.stat()
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    return st.st_size, st.st_mtime_ns


def _entry(
    root: Path,
    paths: Sequence[Path],
    size: int,
    channels: int,
    selection: str,
    max_pixels: int,
) -> tuple[str, str, list[str], list[tuple[Path, str]]]:
    """The entry's key, the prefix that every entry of this folder, selection and target
    shares, the files' paths relative to ``root`` and the files that cannot be stat'ed (with
    why). The key digests each file's relative path and :func:`_stat` as it goes, so that a
    million files cost their paths, not a list of their stats; ``max_pixels`` decides which
    files are left out, so another limit is another content."""
    absolute = root.resolve()
    target = {"size": size, "channels": channels}
    content = hashlib.sha256(json.dumps({"format": FORMAT, "pillow": PIL.__version__, **target, "max_pixels": max_pixels}).encode())
    relative: list[str] = []
    unstated: list[tuple[Path, str]] = []
    for path in paths:
        name, stat = path.relative_to(root).as_posix(), _stat(path)
        relative.append(name)
        if isinstance(stat, str):
            unstated.append((path, stat))
        content.update(json.dumps([name, stat]).encode())
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", absolute.name)[:40] or "root"
    prefix = f"{slug}-{_digest({'root': str(absolute), 'selection': selection, **target})}-"
    return f"{prefix}{content.hexdigest()[:16]}", prefix, relative, unstated


def _opens_grey(path: Path) -> bool | None:
    """Whether the file is grey by its header alone (None: it cannot be opened)."""
    try:
        with Image.open(path) as image:
            return is_grey_mode(image.mode)
    except (OSError, ValueError, SyntaxError, EOFError):
        return None


def _channels(cache: Path, key: str, paths: Sequence[Path], workers: int) -> int:
    """``channels`` 0 resolved before decoding into a store: the entry's own when its file is
    there (its header read; the entry is checked whole afterwards), else 1 when every file that
    opens is grey by its header, else 3 (what decoding everything and then looking would choose)."""
    try:
        found = int(np.load(cache / f"{key}.npy", mmap_mode="r").shape[-1])
    except (OSError, ValueError, EOFError, IndexError):
        found = 0
    if found in (1, 3):
        return found
    with ThreadPoolExecutor(workers) as pool:
        return 1 if all(grey is not False for grey in pool.map(_opens_grey, paths)) else 3


def _remove_stale(cache: Path, prefix: str, key: str) -> None:
    """The folder's other entries (of this selection and target), and earlier versions' ``.npz``."""
    for stale in cache.glob(f"{prefix}*"):
        if not stale.name.startswith(f"{key}."):
            stale.unlink(missing_ok=True)


def decode_cached(
    root: Path,
    paths: Sequence[Path],
    size: int,
    channels: int,
    *,
    cache: Path | None,
    skip_bad: bool = False,
    workers: int = 0,
    console: Console | None = None,
    say: Callable[[str], None] = lambda message: None,
    selection: str = "",
    max_pixels: int = MAX_PIXELS,
) -> DecodedImages:
    """:func:`mihead.images.decode_images` of ``paths`` (files under ``root``), mapped from the
    cache folder ``cache`` when an entry for exactly these files and this target is there, and
    decoded into it (continuing a killed run's entry) otherwise; the images are then a
    read-only memory map. No cache with ``cache`` None. ``say`` gets one line on a hit, and
    why an entry that was there is decoded again. ``selection`` names which of the folder's
    files ``paths`` are (e.g. "limit=500"): entries of different selections are kept side by
    side, so that a shrunk run does not replace the whole folder's entry. A file that cannot
    even be stat'ed is left out with ``skip_bad`` like a file that cannot be decoded, and a
    DataError naming it otherwise. An unwritable cache folder is a UsageError, a full disk a
    WriteError naming the folder and the room needed."""
    if cache is None:
        return decode_images(paths, size, channels, skip_bad=skip_bad, workers=workers, console=console, max_pixels=max_pixels)
    key, prefix, ids, unstated = _entry(root, paths, size, channels, selection, max_pixels)
    if unstated and not skip_bad:
        path, reason = unstated[0]
        raise DataError(f"cannot read image {path}: {reason}")
    workers = workers or default_workers()
    if channels == 0:
        channels = _channels(cache, key, paths, workers)
    shape = (len(paths), size, size, channels)
    hit = stored(cache, key, shape, "uint8")
    if hit is None:
        check_cache_folder(cache, "data.cache")
        step = max(16, min(4096, CHUNK_BYTES // (size * size * channels)))
        bounds = [*range(0, len(paths), step), len(paths)]
        with Decoding(size, channels, total=len(paths), workers=workers, console=console, max_pixels=max_pixels) as decoding:

            def fill(start: int, stop: int) -> Chunk:
                rows, skipped, _ = decoding.chunk(paths[start:stop], skip_bad=skip_bad)
                return Chunk(rows, tuple((start + i, reason) for i, reason in skipped))

            images = filled_store(cache, key, shape, "uint8", fill, bounds, ids=ids, advance=decoding.advance, say=say)
        _remove_stale(cache, prefix, key)
    else:
        images = hit
        say(f"{len(hit):,} decoded images mapped from the cache {cache / key}.npy")
    lost = left_out(cache, key)
    if lost and not skip_bad:
        i, reason = lost[0]
        raise DataError(f"cannot read image {paths[i]}: {reason}")
    left = {i for i, _ in lost}
    return DecodedImages(images, [p for i, p in enumerate(paths) if i not in left], [(paths[i], reason) for i, reason in lost])
