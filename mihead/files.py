"""Writing a file whole or not at all: into a temporary file beside it, then renamed over it,
so that a reader (or a run killed meanwhile) never sees half a file and two processes writing
the same file at once (the ranks of a torchrun job) never share a temporary.

A write that fails (a full disk, an I/O error) is a :class:`~mihead.errors.WriteError` naming
the file and its folder; its temporary is removed, so a full disk is not kept full, and the file
keeps what it held. Files are created as any file a user makes is: with the permissions the
umask leaves (0644 under the usual 022), so that people who share run directories can read them.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

from mihead.errors import WriteError

__all__ = ["append_text", "write_atomically", "write_text_atomically"]


def _new_temporary(path: Path) -> Path:
    """An empty file of a unique name beside ``path``, with its suffix (some writers, e.g.
    numpy's savez, name their format by it), made with the umask's permissions."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}{path.suffix}")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:  # 48 random bits taken already: draw again
            continue
        return tmp


def _write_error(path: Path, exc: OSError) -> WriteError:
    return WriteError(f"cannot write {path.name} in {path.parent}: {exc.strerror or exc}")


def write_atomically(path: Path, write: Callable[[Path], object], *, temporary: Path | None = None) -> Path:
    """``write(tmp)`` into a temporary twin of ``path`` (same folder and suffix), then renamed
    to ``path``; on an error the temporary file is removed and ``path`` keeps what it held.
    ``temporary`` names the twin instead of a unique name, for a file that one process alone
    writes (a checkpoint: a twin left by a killed process is then replaced, not piled up)."""
    tmp = temporary
    try:
        if tmp is None:
            tmp = _new_temporary(path)
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise _write_error(path, exc) from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
    return path


def write_text_atomically(path: Path, text: str) -> Path:
    return write_atomically(path, lambda tmp: tmp.write_text(text))


def append_text(path: Path, text: str) -> None:
    """``text`` added at the end of ``path`` (made when absent); a failure is a WriteError."""
    try:
        with open(path, "a") as f:
            f.write(text)
    except OSError as exc:
        raise _write_error(path, exc) from None
