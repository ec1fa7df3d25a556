"""mihead.files: a file is written whole or not at all, a failed write is one line naming it,
and files get the permissions the umask leaves."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from mihead.errors import WriteError
from mihead.files import append_text, write_atomically, write_text_atomically


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    path.write_text("old")

    def fails(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(WriteError) as failed:
        write_atomically(path, fails)
    assert str(failed.value) == f"cannot write summary.json in {tmp_path}: No space left on device"
    assert failed.value.exit_code == 1  # the machine's state, not a mistake in the command
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["summary.json"]
    with pytest.raises(WriteError, match=f"^cannot write metrics.jsonl in {tmp_path / 'absent'}: No such file or directory$"):
        append_text(tmp_path / "absent" / "metrics.jsonl", "line\n")


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_files_get_the_permissions_the_umask_leaves(tmp_path: Path, umask: int, mode: int) -> None:
    """As any file a user makes (open, touch), not 0600 as a tempfile.mkstemp file is."""
    old = os.umask(umask)
    try:
        made = [
            write_text_atomically(tmp_path / "summary.json", "{}"),
            write_atomically(tmp_path / "entry.npz", lambda tmp: tmp.write_bytes(b"npz")),
            write_atomically(tmp_path / "checkpoint.pt", lambda tmp: tmp.write_bytes(b"pt"), temporary=tmp_path / "checkpoint.pt.tmp"),
        ]
        append_text(tmp_path / "metrics.jsonl", "{}\n")
    finally:
        os.umask(old)
    for path in [*made, tmp_path / "metrics.jsonl"]:
        assert stat.S_IMODE(path.stat().st_mode) == mode, path


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
