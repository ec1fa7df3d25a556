"""A cache of decoded image folders, so that a second run on the same files does not decode
them again.

An entry is one ``.npz`` file holding the decoded array, the files' paths relative to the
folder and the files left out as unreadable. Its name carries two hashes: one of the folder
(absolute path) and the target size and channels, one of the files' relative paths, sizes and
modification times, the target and the decoder (PIL's version, this format). A changed, added
or removed file, or another size or channel count, misses the entry and decodes again; the
new entry then replaces the folder's stale one, so the cache holds one entry per folder,
selection of its files (all, or the first N) and target. Entries are written atomically
(:func:`mihead.files.write_atomically`: a temporary of a unique name, then a rename), so
concurrent runs or an interrupted write never leave a torn file; a file that cannot be read
back is a miss.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import PIL
from rich.console import Console

from mihead.errors import DataError, WriteError
from mihead.files import write_atomically
from mihead.images import MAX_PIXELS, DecodedImages, decode_images

__all__ = ["AUTO", "cache_folder", "decode_cached"]

AUTO = "auto"
"""The ``data.cache`` value for the default folder (:func:`cache_folder`)."""

FORMAT = 1  # bump when the decoding or the entry's layout changes


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
    cache: Path,
    root: Path,
    stats: Sequence[tuple[Path, tuple[int, int] | str]],
    size: int,
    channels: int,
    selection: str,
    max_pixels: int,
) -> tuple[Path, str]:
    """The entry's file and the name prefix that every entry of this folder, selection and
    target shares. ``stats`` pairs each file with its :func:`_stat`; ``max_pixels`` decides
    which files are left out, so another limit is another content."""
    absolute = root.resolve()
    target = {"size": size, "channels": channels}
    files = [[p.relative_to(root).as_posix(), *(stat if isinstance(stat, tuple) else [stat])] for p, stat in stats]
    content = _digest({"format": FORMAT, "pillow": PIL.__version__, **target, "max_pixels": max_pixels, "files": files})
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", absolute.name)[:40] or "root"
    prefix = f"{slug}-{_digest({'root': str(absolute), 'selection': selection, **target})}-"
    return cache / f"{prefix}{content}.npz", prefix


def _read(entry: Path, root: Path) -> DecodedImages | None:
    """The entry's images, or None when it is absent or cannot be read."""
    try:
        with np.load(entry, allow_pickle=False) as npz:
            images = npz["images"]
            paths = [root / p for p in npz["paths"].tolist()]
            skipped = [(root / p, str(r)) for p, r in zip(npz["skipped"].tolist(), npz["reasons"].tolist(), strict=True)]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    if images.dtype != np.uint8 or images.ndim != 4 or len(images) != len(paths):
        return None
    return DecodedImages(images, paths, skipped)


def _write(entry: Path, prefix: str, root: Path, decoded: DecodedImages) -> None:
    """Write the entry atomically, then remove the folder's other (stale) entries."""
    entry.parent.mkdir(parents=True, exist_ok=True)

    def save(tmp: Path) -> None:
        np.savez(
            tmp,
            images=decoded.images,
            paths=np.array([p.relative_to(root).as_posix() for p in decoded.paths], dtype=str),
            skipped=np.array([p.relative_to(root).as_posix() for p, _ in decoded.skipped], dtype=str),
            reasons=np.array([r for _, r in decoded.skipped], dtype=str),
        )

    write_atomically(entry, save)
    for stale in entry.parent.glob(f"{prefix}*.npz"):
        if stale != entry:
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
    """:func:`mihead.images.decode_images` of ``paths`` (files under ``root``), read from the
    cache folder ``cache`` when an entry for exactly these files and this target is there,
    and stored in it otherwise. No cache with ``cache`` None. ``say`` gets one line on a
    hit, and a warning when the entry cannot be written (the run goes on without it).
    ``selection`` names which of the folder's files ``paths`` are (e.g. "limit=500"): entries
    of different selections are kept side by side, so that a shrunk run does not replace the
    whole folder's entry. A file that cannot even be stat'ed is left out with ``skip_bad``
    like a file that cannot be decoded, and a DataError naming it otherwise."""
    if cache is None:
        return decode_images(paths, size, channels, skip_bad=skip_bad, workers=workers, console=console, max_pixels=max_pixels)
    stats = [(p, _stat(p)) for p in paths]
    unstated = [(p, stat) for p, stat in stats if isinstance(stat, str)]
    if unstated and not skip_bad:
        path, reason = unstated[0]
        raise DataError(f"cannot read image {path}: {reason}")
    entry, prefix = _entry(cache, root, stats, size, channels, selection, max_pixels)
    decoded = _read(entry, root)
    if decoded is not None:
        if decoded.skipped and not skip_bad:
            path, reason = decoded.skipped[0]
            raise DataError(f"cannot read image {path}: {reason}")
        say(f"{len(decoded.paths):,} decoded images read from the cache {entry}")
        return decoded
    readable = [p for p, stat in stats if isinstance(stat, tuple)]
    decoded = decode_images(readable, size, channels, skip_bad=skip_bad, workers=workers, console=console, max_pixels=max_pixels)
    if unstated:
        order = {p: i for i, p in enumerate(paths)}
        skipped = sorted(unstated + decoded.skipped, key=lambda item: order[item[0]])
        decoded = DecodedImages(decoded.images, decoded.paths, skipped)
    try:
        _write(entry, prefix, root, decoded)
    except (OSError, WriteError) as exc:
        say(f"warning: cannot write the image cache {entry}: {exc}; set data.cache = \"\" to turn it off")
    return decoded
