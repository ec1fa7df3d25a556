"""Writing a file whole or not at all: into a temporary file of a unique name beside it, then
renamed over it, so that a reader (or a run killed meanwhile) never sees half a file and two
processes writing the same file at once (the ranks of a torchrun job) never share a temporary."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["write_atomically", "write_text_atomically"]


def write_atomically(path: Path, write: Callable[[Path], object]) -> Path:
    """``write(tmp)`` into a temporary twin of ``path`` (same folder and suffix), then renamed
    to ``path``; on an error the temporary file is removed and ``path`` keeps what it held."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text_atomically(path: Path, text: str) -> Path:
    return write_atomically(path, lambda tmp: tmp.write_text(text))
