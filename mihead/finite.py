"""Non-finite numbers: the error that stops a run, an evaluation or a prediction on them, and
the check that keeps them out of a checkpoint.

A loss that turns NaN or infinite is caught before its step; the step itself can still make
the weights or the optimiser's state non-finite (an update that overflows), which only a look
at the state shows. A checkpoint is written only after that look, so a good checkpoint is
never replaced by a diverged one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch

from mihead.errors import MiheadError

__all__ = ["NumericalError", "first_non_finite"]


class NumericalError(MiheadError):
    """A loss term, a weight, an optimiser value or a model output became NaN or infinite;
    the message says what, and what was kept. The program's failure, not the user's: exit 1."""

    exit_code = 1


def _float_tensors(value: Any, name: str) -> Iterator[tuple[str, torch.Tensor]]:
    """(dotted name, tensor) of every floating-point tensor in nested dicts, lists, tuples."""
    if isinstance(value, torch.Tensor):
        if value.is_floating_point() or value.is_complex():
            yield name, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _float_tensors(item, f"{name}.{key}" if name else str(key))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _float_tensors(item, f"{name}.{i}" if name else str(i))


def first_non_finite(state: Mapping[str, Any]) -> str | None:
    """The dotted name of the first tensor in ``state`` (a checkpoint's dict: state dicts of
    the model, objectives and optimiser) that holds a NaN or an infinity, else None. One
    device-to-host copy per device, however many tensors."""
    named = list(_float_tensors(state, ""))
    by_device: dict[torch.device, list[int]] = {}
    for i, (_, tensor) in enumerate(named):
        by_device.setdefault(tensor.device, []).append(i)
    bad: list[int] = []
    for indices in by_device.values():
        flags = torch.stack([torch.isfinite(named[i][1]).all() for i in indices]).tolist()
        bad += [i for i, finite in zip(indices, flags, strict=True) if not finite]
    return named[min(bad)][0] if bad else None
