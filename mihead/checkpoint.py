"""Checkpoints written atomically and read without running code.

``checkpoint.pt`` is written to a temporary file, flushed to disk and renamed over the old
one, which is first kept as ``checkpoint.prev.pt``: a kill at any moment leaves at least one
complete checkpoint; a write that fails (a full disk) leaves both as they were and no temporary.
Loading uses ``torch.load(weights_only=True)``, so a checkpoint holds only tensors and plain
values and cannot run code; a damaged file falls back to the previous one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, cast

import torch

from mihead.errors import CheckpointError, WriteError
from mihead.files import write_atomically
from mihead.run_directory import CHECKPOINT_FILE, DAMAGED_CHECKPOINT_FILE, PREVIOUS_CHECKPOINT_FILE

__all__ = ["load_checkpoint", "load_weights", "save_checkpoint"]


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _KeepsWriteError:
    """A binary file whose failed write is kept: torch.save reports one (a full disk) as a
    RuntimeError ("unexpected pos") that no longer says why."""

    def __init__(self, file: BinaryIO) -> None:
        self.file = file
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self.file.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.file.flush()


def save_checkpoint(run_dir: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` as RUN_DIR/checkpoint.pt, keeping the old one as checkpoint.prev.pt.
    A write that fails (a full disk) is a WriteError naming the file; its temporary is removed
    and both checkpoints stay as they were."""
    path = run_dir / CHECKPOINT_FILE

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            out = _KeepsWriteError(f)
            try:
                torch.save(state, cast(BinaryIO, out))  # it needs write and flush alone
            except RuntimeError:
                if out.error is None:
                    raise
                raise out.error from None
            f.flush()
            os.fsync(f.fileno())
        if path.exists():  # the new one is whole on disk: the old one becomes the previous
            os.replace(path, run_dir / PREVIOUS_CHECKPOINT_FILE)

    write_atomically(path, write, temporary=run_dir / (CHECKPOINT_FILE + ".tmp"))
    _fsync_dir(run_dir)
    return path


def _read(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except Exception as exc:  # unpickling errors of many types: all mean a damaged file
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({type(exc).__name__})") from None
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path}: not a mihead checkpoint")
    return state


def load_checkpoint(
    run_dir: Path, *, fallback: bool = True, warn: Callable[[str], None] = print, set_aside: bool = False
) -> dict[str, Any]:
    """The latest good checkpoint of a run; with ``fallback``, the previous one when the
    latest is missing or damaged (``warn`` gets a one-line message naming both). With
    ``set_aside`` (a resume, which goes on to write checkpoints), a damaged latest is renamed
    checkpoint.damaged.pt, so that the next save keeps the good one it resumed from as the
    previous checkpoint instead of the damaged file."""
    path = run_dir / CHECKPOINT_FILE
    try:
        return _read(path)
    except CheckpointError as latest:
        previous = run_dir / PREVIOUS_CHECKPOINT_FILE
        if not fallback or not previous.exists():
            raise
        state = _read(previous)
        note = ""
        if set_aside and path.exists():
            try:
                os.replace(path, run_dir / DAMAGED_CHECKPOINT_FILE)
            except OSError as exc:
                raise WriteError(f"cannot rename {CHECKPOINT_FILE} to {DAMAGED_CHECKPOINT_FILE} in {run_dir}: {exc.strerror or exc}") from None
            note = f" (the damaged file is kept as {DAMAGED_CHECKPOINT_FILE})"
        warn(f"{latest}; using the previous checkpoint {previous}{note}")
        return state


def load_weights(module: torch.nn.Module, weights: dict[str, Any], run_dir: Path, what: str) -> None:
    """``weights`` (from a checkpoint of ``run_dir``) into ``module``; tensors that do not fit
    the module its recipe builds now (a plugin changed since the checkpoint was written) are a
    one-line :class:`CheckpointError` naming ``what`` and a key, not a traceback."""
    hint = "was it written by another version of a plugin?"
    try:
        result = module.load_state_dict(weights, strict=False)
    except RuntimeError as exc:  # a tensor of another shape
        detail = next((line.strip() for line in str(exc).splitlines() if "size mismatch" in line), str(exc).splitlines()[0])
        raise CheckpointError(f"{run_dir}: the checkpoint's {what} does not fit its recipe's: {detail}; {hint}") from None
    missing, unexpected = result.missing_keys, result.unexpected_keys
    if missing or unexpected:
        parts = [f"{len(keys)} {kind} (e.g. {keys[0]!r})" for kind, keys in (("missing", missing), ("unexpected", unexpected)) if keys]
        raise CheckpointError(f"{run_dir}: the checkpoint's {what} does not fit its recipe's: {', '.join(parts)} tensors; {hint}")
