"""mihead.files: a file is written whole or not at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from mihead.files import write_atomically, write_text_atomically


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    path.write_text("old")

    def fails(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(path, fails)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_the_temporary_keeps_the_suffix_and_is_unique(tmp_path: Path) -> None:
    """Writers that name their format by suffix (numpy's savez adds .npz to any other name)
    get it, and two writers of one file get different temporaries."""
    seen: list[Path] = []

    def record(tmp: Path) -> None:
        assert tmp.parent == tmp_path and tmp.suffix == ".npz" and tmp.name.startswith(".entry.npz.")
        seen.append(tmp)
        tmp.write_text(str(len(seen)))

    path = tmp_path / "entry.npz"
    write_atomically(path, record)
    write_atomically(path, record)
    assert seen[0] != seen[1] and path.read_text() == "2"
    assert write_text_atomically(tmp_path / "a.txt", "text").read_text() == "text"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "entry.npz"]
