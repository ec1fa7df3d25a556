"""The memory-mapped store: filled once, continued after a kill, refilled when damaged."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mihead.errors import WriteError
from mihead.store import Chunk, filled_store, left_out

SHAPE = (10, 3)
BOUNDS = [0, 4, 8, 10]


def rows(start: int, stop: int) -> np.ndarray:
    return np.arange(start * 3, stop * 3, dtype=np.float32).reshape(-1, 3)


class Counting:
    def __init__(self, fail_at: int | None = None) -> None:
        self.calls: list[tuple[int, int]] = []
        self.fail_at = fail_at

    def __call__(self, start: int, stop: int) -> np.ndarray:
        if start == self.fail_at:
            raise KeyboardInterrupt
        self.calls.append((start, stop))
        return rows(start, stop)


def test_filled_once_then_mapped(tmp_path: Path) -> None:
    fill = Counting()
    first = filled_store(tmp_path, "k", SHAPE, "float32", fill, BOUNDS, ids=[str(i) for i in range(10)])
    assert fill.calls == [(0, 4), (4, 8), (8, 10)]
    np.testing.assert_array_equal(first, rows(0, 10))
    again = Counting()
    second = filled_store(tmp_path, "k", SHAPE, "float32", again, BOUNDS)
    assert again.calls == []
    assert isinstance(second, np.memmap) and not second.flags.writeable
    np.testing.assert_array_equal(second, rows(0, 10))
    assert json.loads((tmp_path / "k.json").read_text())["ids"] == [str(i) for i in range(10)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.json", "k.lock", "k.npy"]


def test_an_interrupted_fill_continues_where_it_stopped(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        filled_store(tmp_path, "k", SHAPE, "float32", Counting(fail_at=8), BOUNDS)
    assert not (tmp_path / "k.npy").exists()  # nothing half-filled is ever read as the store
    rest = Counting()
    reported: list[int] = []
    store = filled_store(tmp_path, "k", SHAPE, "float32", rest, BOUNDS, advance=reported.append)
    assert rest.calls == [(8, 10)]
    assert reported == [8]  # the inputs done before; the fill reports its own
    np.testing.assert_array_equal(store, rows(0, 10))


def test_a_process_killed_while_filling_is_continued(tmp_path: Path) -> None:
    marker = tmp_path / "two chunks done"
    script = f"""
import time, numpy as np
from pathlib import Path
from mihead.store import Chunk, filled_store, left_out
def fill(start, stop):
    if start == 8:
        Path({str(marker)!r}).touch()
        time.sleep(60)
    return np.arange(start * 3, stop * 3, dtype=np.float32).reshape(-1, 3)
filled_store(Path({str(tmp_path / "cache")!r}), "k", (10, 3), "float32", fill, [0, 4, 8, 10])
"""
    child = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert child.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()
    rest = Counting()
    store = filled_store(tmp_path / "cache", "k", SHAPE, "float32", rest, BOUNDS)
    assert rest.calls == [(8, 10)]
    np.testing.assert_array_equal(store, rows(0, 10))


@pytest.mark.parametrize("damage", ["truncated", "other shape"])
def test_a_damaged_store_is_filled_again(tmp_path: Path, damage: str) -> None:
    filled_store(tmp_path, "k", SHAPE, "float32", Counting(), BOUNDS)
    path = tmp_path / "k.npy"
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:-20])
    else:
        np.save(path, np.zeros((3, 3), np.float32))
    said: list[str] = []
    fill = Counting()
    store = filled_store(tmp_path, "k", SHAPE, "float32", fill, BOUNDS, say=said.append)
    assert len(fill.calls) == 3
    np.testing.assert_array_equal(store, rows(0, 10))
    assert len(said) == 1 and str(path) in said[0] and "filled again" in said[0]


def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(fd: int, offset: int, length: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(WriteError, match=r"cannot write the cache in .*: No space left on device \(it needs 0\.0 MiB\)"):
        filled_store(tmp_path / "cache", "k", (1000, 3), "float32", Counting(), [0, 1000])
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["k.lock"]


def test_an_unwritable_cache_folder_is_one_line(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    with pytest.raises(WriteError, match="cannot write the cache in"):
        filled_store(blocked / "cache", "k", SHAPE, "float32", Counting(), BOUNDS)


def test_inputs_left_out_are_no_rows_and_are_recorded_across_a_resumed_fill(tmp_path: Path) -> None:
    def fill(start: int, stop: int) -> Chunk:
        kept = [i for i in range(start, stop) if i % 3 != 1]  # 1, 4 and 7 left out
        return Chunk(rows(0, 10)[kept], tuple((i, f"bad {i}") for i in range(start, stop) if i % 3 == 1))

    interrupted = Counting(fail_at=8)
    with pytest.raises(KeyboardInterrupt):
        filled_store(tmp_path, "k", SHAPE, "float32", lambda a, b: (interrupted(a, b), fill(a, b))[1], BOUNDS)
    store = filled_store(tmp_path, "k", SHAPE, "float32", fill, BOUNDS, ids=[str(i) for i in range(10)])
    kept = [0, 2, 3, 5, 6, 8, 9]
    np.testing.assert_array_equal(store, rows(0, 10)[kept])
    assert left_out(tmp_path, "k") == [(1, "bad 1"), (4, "bad 4"), (7, "bad 7")]  # 1 and 4 from before the interruption
    assert np.load(tmp_path / "k.npy").shape == (7, 3)  # the file cut to its rows, its header rewritten
    assert (tmp_path / "k.npy").stat().st_size == 128 + 7 * 3 * 4
    again = Counting()
    assert filled_store(tmp_path, "k", SHAPE, "float32", again, BOUNDS).shape == (7, 3) and again.calls == []
