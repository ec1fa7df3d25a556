"""Writing an output file whole or not at all: into a temporary file beside it, then renamed
over it, so that a reader (or a run killed meanwhile) never sees half a file."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["write_atomically", "write_text_atomically"]


def write_atomically(path: Path, write: Callable[[Path], object]) -> Path:
    """``write(tmp)`` into ``path``'s temporary twin, then renamed to ``path``; on an error
    the temporary file is removed and ``path`` keeps what it held."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text_atomically(path: Path, text: str) -> Path:
    return write_atomically(path, lambda tmp: tmp.write_text(text))
