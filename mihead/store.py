"""Stores: arrays of rows computed once (embeddings; decoded images) kept as uncompressed ``.npy``
files in a cache folder and read memory-mapped, so every process of a machine shares one copy in
the page cache and none holds the whole array in its own memory.

A store is filled in chunks straight into a memory-mapped file, never assembled in memory first.
While it is filled it is ``KEY.partial.npy`` with ``KEY.partial.json`` beside it (how many rows
are done, written atomically after each chunk is flushed), so a process killed halfway leaves a
store that the next one continues from where it stopped. The whole file's space is reserved
before the first row (a full disk is one line naming the folder and the size needed, not a
crash while writing through the map), and only a complete store is renamed to ``KEY.npy``: a
reader never sees half a store. A lock file serialises the processes that fill the same key
(the ranks of one machine): the first fills it, the others wait and then map it. A store whose
file does not hold the expected shape and type (truncated, or from another version) is filled
again, with a line saying why.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from mihead.errors import WriteError
from mihead.files import write_text_atomically

__all__ = ["Fill", "filled_store", "stored"]

Fill = Callable[[int, int], np.ndarray]
"""``fill(start, stop)``: rows ``start:stop`` of the store, of its row shape and type."""


def _gib(n: int) -> str:
    return f"{n / 2**30:,.2f} GiB" if n >= 2**30 else f"{n / 2**20:,.1f} MiB"


def _read(path: Path, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray | str:
    """The memory-mapped array at ``path``, or why it is not the store expected."""
    try:
        array = np.load(path, mmap_mode="r")
    except (OSError, ValueError, EOFError) as exc:  # truncated: numpy cannot map the length its header says
        return f"it cannot be read ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    if array.shape != shape or array.dtype != dtype:
        return f"it holds {array.dtype} {array.shape}, not {dtype} {shape}"
    return array


def stored(folder: Path, key: str, shape: tuple[int, ...], dtype: np.dtype | str) -> np.ndarray | None:
    """The complete store ``key`` of ``shape`` in ``folder``, memory-mapped read-only, or None
    when it is absent or unusable (then :func:`filled_store` fills it)."""
    found = _read(folder / f"{key}.npy", shape, np.dtype(dtype)) if (folder / f"{key}.npy").exists() else None
    return found if isinstance(found, np.ndarray) else None


@contextmanager
def _locked(lock: Path) -> Iterator[None]:
    """Held by one process at a time (others block until it is released)."""
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _reserve(path: Path, shape: tuple[int, ...], dtype: np.dtype) -> np.memmap:
    """A new ``.npy`` of ``shape`` at ``path``, its space reserved on disk, mapped for writing."""
    array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    with open(path, "r+b") as f:
        os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
    return array


def _resumed(partial: Path, progress: Path, shape: tuple[int, ...], dtype: np.dtype) -> tuple[np.memmap, int] | None:
    """The partial store and its count of done rows, when both are there and fit ``shape``."""
    try:
        done = int(json.loads(progress.read_text())["done"])
        array = np.lib.format.open_memmap(partial, mode="r+")
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if array.shape != shape or array.dtype != dtype or not 0 <= done <= shape[0]:
        return None
    return array, done


def filled_store(
    folder: Path,
    key: str,
    shape: tuple[int, ...],
    dtype: np.dtype | str,
    fill: Fill,
    bounds: Sequence[int],
    *,
    ids: Sequence[str] | None = None,
    advance: Callable[[int], None] = lambda rows: None,
    say: Callable[[str], None] = print,
) -> np.ndarray:
    """The store ``key`` of ``shape`` in ``folder``, memory-mapped read-only, filled first where
    it is absent or unusable (``say`` tells why when it was there) and continued where a killed
    process left it. ``fill`` is called for consecutive chunks ``bounds[j]:bounds[j+1]``
    (increasing, from 0 to ``shape[0]``), so a resumed fill makes exactly the chunks a whole one
    would; ``advance(rows)`` reports each chunk (and, first, the rows already done). ``ids``,
    when given, are written beside it as ``KEY.ids.json`` (what each row is)."""
    dtype = np.dtype(dtype)
    final = folder / f"{key}.npy"
    if final.exists():
        found = _read(final, shape, dtype)
        if isinstance(found, np.ndarray):
            advance(shape[0])
            return found
        say(f"cache entry {final} is filled again: {found}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with _locked(folder / f"{key}.lock"):
            return _fill_locked(folder, key, shape, dtype, fill, bounds, advance, ids)
    except OSError as exc:
        raise WriteError(f"cannot write the cache in {folder}: {exc.strerror or exc}") from None


def _fill_locked(
    folder: Path, key: str, shape: tuple[int, ...], dtype: np.dtype, fill: Fill, bounds: Sequence[int], advance: Callable[[int], None], ids: Sequence[str] | None
) -> np.ndarray:
    final, partial, progress = folder / f"{key}.npy", folder / f"{key}.partial.npy", folder / f"{key}.partial.json"
    if final.exists():  # another process filled it while this one waited for the lock
        found = _read(final, shape, dtype)
        if isinstance(found, np.ndarray):
            advance(shape[0])
            return found
    resumed = _resumed(partial, progress, shape, dtype)
    if resumed is None:
        size = int(np.prod(shape)) * dtype.itemsize
        try:
            array, done = _reserve(partial, shape, dtype), 0
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise WriteError(f"cannot write the cache in {folder}: {exc.strerror or exc} (it needs {_gib(size)})") from None
        write_text_atomically(progress, json.dumps({"done": 0}))
    else:
        array, done = resumed
        advance(done)
    for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
        if stop <= done:
            continue
        array[start:stop] = fill(start, stop)
        array.flush()
        write_text_atomically(progress, json.dumps({"done": stop}))
        advance(stop - start)
    del array
    if ids is not None:
        write_text_atomically(folder / f"{key}.ids.json", json.dumps(list(ids)))
    with open(partial, "rb") as f:
        os.fsync(f.fileno())
    os.replace(partial, final)
    progress.unlink(missing_ok=True)
    found = _read(final, shape, dtype)
    assert isinstance(found, np.ndarray), found
    return found
