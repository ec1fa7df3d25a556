"""Checkpoints written atomically and read without running code.

``checkpoint.pt`` is written to a temporary file, flushed to disk and renamed over the old
one, which is first kept as ``checkpoint.prev.pt``: a kill at any moment leaves at least one
complete checkpoint. Loading uses ``torch.load(weights_only=True)``, so a checkpoint holds only
tensors and plain values and cannot run code; a damaged file falls back to the previous one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mihead.errors import CheckpointError

__all__ = ["CHECKPOINT", "PREVIOUS", "load_checkpoint", "load_weights", "save_checkpoint"]

CHECKPOINT = "checkpoint.pt"
PREVIOUS = "checkpoint.prev.pt"


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(run_dir: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` as RUN_DIR/checkpoint.pt, keeping the old one as checkpoint.prev.pt."""
    path = run_dir / CHECKPOINT
    tmp = run_dir / (CHECKPOINT + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    if path.exists():
        os.replace(path, run_dir / PREVIOUS)
    os.replace(tmp, path)
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
    run_dir: Path, *, fallback: bool = True, warn: Callable[[str], None] = print
) -> dict[str, Any]:
    """The latest good checkpoint of a run; with ``fallback``, the previous one when the
    latest is missing or damaged (``warn`` gets a one-line message naming both)."""
    path = run_dir / CHECKPOINT
    try:
        return _read(path)
    except CheckpointError as latest:
        previous = run_dir / PREVIOUS
        if not fallback or not previous.exists():
            raise
        state = _read(previous)
        warn(f"{latest}; using the previous checkpoint {previous}")
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
