"""The training device and numeric precision a recipe asks for."""

from __future__ import annotations

import contextlib

import torch

from mihead.errors import RecipeError

__all__ = ["autocast", "resolve_device"]


def resolve_device(name: str, asked_by: str = "[train] device") -> torch.device:
    """``auto`` = CUDA when present, else CPU; asking for CUDA without it is an error naming
    ``asked_by``, the recipe key or command-line option that asked."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RecipeError(f"{asked_by}: 'cuda' was asked for but no CUDA device is available")
    return torch.device(name)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[object]:
    """bf16 autocast on CUDA for ``auto``/``bf16``; bf16 on CPU only when asked; else none."""
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    if not use_bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
