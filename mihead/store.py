"""Stores: arrays of rows computed once (embeddings; decoded images) kept as uncompressed ``.npy``
files in a cache folder and read memory-mapped, so every process of a machine shares one copy in
the page cache and none holds the whole array in its own memory.

A store is filled in chunks straight into its file, never assembled in memory first.
While it is filled it is ``KEY.partial.npy`` with ``KEY.partial.json`` beside it (how many inputs
are done, how many rows written, which inputs were left out; written atomically after each chunk
is flushed), so a process killed halfway leaves a store that the next one continues from where it
stopped. The whole file's space is reserved before the first row (a full disk is one line naming
the folder and the size needed, not a crash while writing through the map). A fill may leave
inputs out (an unreadable image file): their rows are not written, the later ones move up, and
the finished file is cut to the rows written. ``KEY.json`` records the inputs' ids and those
left out, and only a complete store is renamed to ``KEY.npy``: a reader never sees half a store.
A lock file serialises the processes that fill the same key (the ranks of one machine): the first
fills it, the others wait and then map it. A store whose file does not hold the expected shape and
type (truncated, or from another version) is filled again, with a line saying why.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np

from mihead.errors import UsageError, WriteError
from mihead.files import write_text_atomically
from mihead.run_directory import check_writable

__all__ = ["Chunk", "Fill", "check_cache_folder", "filled_store", "left_out", "stored"]


@dataclasses.dataclass(frozen=True)
class Chunk:
    """What a fill gives for inputs ``start:stop``: the rows of those it kept, in order, and
    the others (their position among all inputs, and why they were left out)."""

    rows: np.ndarray
    left_out: tuple[tuple[int, str], ...] = ()


Fill = Callable[[int, int], "np.ndarray | Chunk"]
"""``fill(start, stop)``: the rows of inputs ``start:stop``, of the store's row shape and type
(all of them, or a :class:`Chunk` naming those left out)."""


def check_cache_folder(folder: Path, label: str) -> None:
    """A one-line UsageError (exit 2) when the cache folder cannot be made or written, before
    anything is computed: a recipe's mistake (``label``, its key), not the machine's (a full
    disk is a WriteError)."""
    hint = 'give a writable folder, or "" for no cache'
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{label}: cannot make {folder}: {exc.strerror or exc}; {hint}") from None
    check_writable(folder, label=label, hint=hint)


def _gib(n: int) -> str:
    return f"{n / 2**30:,.2f} GiB" if n >= 2**30 else f"{n / 2**20:,.1f} MiB"


def _record(folder: Path, key: str) -> dict[str, object] | str:
    """The store's record (``KEY.json``), or why it cannot be read."""
    try:
        record = json.loads((folder / f"{key}.json").read_text())
    except (OSError, ValueError) as exc:
        return f"its record {key}.json cannot be read ({type(exc).__name__})"
    if not isinstance(record, dict) or not isinstance(record.get("left_out"), list):
        return f"its record {key}.json is not a store's"
    return record


def _read(folder: Path, key: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray | str:
    """The memory-mapped complete store, or why it is not the store expected."""
    record = _record(folder, key)
    if isinstance(record, str):
        return record
    try:
        array = np.load(folder / f"{key}.npy", mmap_mode="r")
    except (OSError, ValueError, EOFError) as exc:  # truncated: numpy cannot map the length its header says
        return f"it cannot be read ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    expected = (shape[0] - len(record["left_out"]), *shape[1:])  # type: ignore[arg-type]
    if array.shape != expected or array.dtype != dtype:
        return f"it holds {array.dtype} {array.shape}, not {dtype} {expected}"
    return array


def stored(folder: Path, key: str, shape: tuple[int, ...], dtype: np.dtype | str) -> np.ndarray | None:
    """The complete store ``key`` of ``shape`` (inputs, then a row's shape) in ``folder``,
    memory-mapped read-only, or None when it is absent or unusable (then :func:`filled_store`
    fills it)."""
    if not (folder / f"{key}.npy").exists():
        return None
    found = _read(folder, key, shape, np.dtype(dtype))
    return found if isinstance(found, np.ndarray) else None


def left_out(folder: Path, key: str) -> list[tuple[int, str]]:
    """The inputs a complete store left out: (position, why), in order."""
    record = _record(folder, key)
    assert not isinstance(record, str), record
    return [(int(i), str(why)) for i, why in record["left_out"]]  # type: ignore[attr-defined]


@contextmanager
def _locked(lock: Path) -> Iterator[None]:
    """Held by one process at a time (others block until it is released)."""
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _reserve(path: Path, shape: tuple[int, ...], dtype: np.dtype) -> None:
    """A new ``.npy`` of ``shape`` at ``path`` (its header, then room for the rows), its whole
    space reserved on disk."""
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape})
        os.posix_fallocate(f.fileno(), 0, f.tell() + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize)


def _data_offset(f: BinaryIO) -> int:
    """Where the rows of the ``.npy`` open as ``f`` start (after its header)."""
    f.seek(0)
    version = np.lib.format.read_magic(f)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    read(f)
    return f.tell()


def _write_rows(f: BinaryIO, offset: int, rows: np.ndarray) -> None:
    """``rows`` written at byte ``offset`` of ``f`` and on disk before this returns. Written
    through the file, not a map of it: pages of a map would count in this process's resident
    memory until it ends, whatever the page cache does with them."""
    data = np.ascontiguousarray(rows).reshape(-1).view(np.uint8).data
    while data:
        written = os.pwrite(f.fileno(), data, offset)
        data, offset = data[written:], offset + written
    os.fdatasync(f.fileno())


@dataclasses.dataclass
class _Progress:
    """How far a fill got: inputs done, rows written, inputs left out."""

    done: int = 0
    rows: int = 0
    left_out: list[tuple[int, str]] = dataclasses.field(default_factory=list)

    def save(self, path: Path) -> None:
        write_text_atomically(path, json.dumps({"done": self.done, "rows": self.rows, "left_out": self.left_out}))


def _resumed(partial: Path, progress: Path, shape: tuple[int, ...], dtype: np.dtype) -> _Progress | None:
    """How far the fill of the partial store got, when it and its progress are there and fit ``shape``."""
    try:
        saved = json.loads(progress.read_text())
        done = _Progress(int(saved["done"]), int(saved["rows"]), [(int(i), str(r)) for i, r in saved["left_out"]])
        array = np.load(partial, mmap_mode="r")
    except (OSError, ValueError, KeyError, TypeError, EOFError):
        return None
    if array.shape != shape or array.dtype != dtype or not 0 <= done.rows <= done.done <= shape[0]:
        return None
    return done


def _cut(path: Path, rows: int) -> None:
    """Cut the ``.npy`` at ``path`` to its first ``rows`` rows: its header rewritten in place
    (a shorter shape never needs more room than the header's padding) and the file truncated."""
    with open(path, "r+b") as f:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(f)
        offset = f.tell()
        prefix = 10 if version == (1, 0) else 12  # magic, version and the header's length field
        header = repr({"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": fortran, "shape": (rows, *shape[1:])})
        f.seek(prefix)
        f.write(header.ljust(offset - prefix - 1).encode("latin1") + b"\n")
        f.truncate(offset + rows * int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize)


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
    """The store ``key`` of ``shape`` (inputs, then a row's shape) in ``folder``, memory-mapped
    read-only, filled first where it is absent or unusable (``say`` tells why when it was
    there) and continued where a killed process left it. ``fill`` is called for consecutive
    chunks ``bounds[j]:bounds[j+1]`` (increasing, from 0 to ``shape[0]``), so a resumed fill
    makes exactly the chunks a whole one would; ``advance(inputs)`` reports the inputs done
    without ``fill`` (a killed run's, or all of a complete store), which reports its own. The rows of the inputs a fill leaves out are not in the
    store (:func:`left_out` names them). ``ids``, when given, are recorded in ``KEY.json``
    (what each input is)."""
    dtype = np.dtype(dtype)
    if (folder / f"{key}.npy").exists():
        found = _read(folder, key, shape, dtype)
        if isinstance(found, np.ndarray):
            advance(shape[0])
            return found
        say(f"cache entry {folder / key}.npy is filled again: {found}")
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
        found = _read(folder, key, shape, dtype)
        if isinstance(found, np.ndarray):
            advance(shape[0])
            return found
    resumed = _resumed(partial, progress, shape, dtype)
    if resumed is None:
        size = int(np.prod(shape)) * dtype.itemsize
        try:
            _reserve(partial, shape, dtype)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise WriteError(f"cannot write the cache in {folder}: {exc.strerror or exc} (it needs {_gib(size)})") from None
        done = _Progress()
        done.save(progress)
    else:
        done = resumed
        advance(done.done)
    row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
    with open(partial, "r+b") as f:
        offset = _data_offset(f)
        for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
            if stop <= done.done:
                continue
            chunk = fill(start, stop)
            rows, lost = (chunk.rows, chunk.left_out) if isinstance(chunk, Chunk) else (chunk, ())
            _write_rows(f, offset + done.rows * row_bytes, np.asarray(rows, dtype))
            done.done, done.rows, done.left_out = stop, done.rows + len(rows), done.left_out + list(lost)
            done.save(progress)
    if done.rows < shape[0]:
        _cut(partial, done.rows)
    record = {"inputs": shape[0], "ids": None if ids is None else list(ids), "left_out": done.left_out}
    write_text_atomically(folder / f"{key}.json", json.dumps(record))
    with open(partial, "rb") as f:
        os.fsync(f.fileno())
    os.replace(partial, final)
    progress.unlink(missing_ok=True)
    found = _read(folder, key, shape, dtype)
    assert isinstance(found, np.ndarray), found
    return found
