"""How much memory a recipe's training needs, what the device has, and allocation failures told
as one line that says what to shrink.

The estimate counts the float32 parameters, their gradients and the optimiser's state (Adam
keeps two values per parameter, SGD and RMSprop one, RMSprop with momentum two), plus the
activations the model saves for its backward pass, measured on a probe batch of two images and
scaled to the recipe's batch size; the objectives' own tensors are not counted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from mihead.contracts import Augmenter
from mihead.device import resolve_device
from mihead.errors import MiheadError
from mihead.model import MultiHeadModel
from mihead.recipe import TrainParams

__all__ = ["MemoryEstimate", "OutOfMemory", "allocation_failure", "available_bytes", "estimate", "reporting_out_of_memory", "training_fit"]

SHRINK = "lower train.batch_size, head.clusters, head.overclusters or the backbone's widths"
"""What a recipe can shrink when it does not fit (the keys every recipe has or most share)."""


class OutOfMemory(MiheadError):
    """An allocation failed: the recipe's model or batch is too large for the device (exit 2:
    the fix is in the recipe's values)."""


def allocation_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is torch's or Python's report of a failed allocation."""
    text = str(exc)
    return isinstance(exc, MemoryError) or (
        isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate" in text)
    )


@contextmanager
def reporting_out_of_memory(what: str, shrink: str = SHRINK) -> Iterator[None]:
    """An allocation failure inside as one :class:`OutOfMemory` line: ``what`` ran out of memory,
    the allocator's first line, and ``shrink``, what to make smaller."""
    try:
        yield
    except (RuntimeError, MemoryError) as exc:
        if not allocation_failure(exc):
            raise
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise OutOfMemory(f"{what} ran out of memory ({first}); {shrink}") from None


def _optimizer_slots(train: TrainParams) -> int:
    if train.optimizer == "adam":
        return 2
    if train.optimizer == "rmsprop":
        return 2 if train.momentum else 1
    return 1 if train.momentum else 0


def _saved_bytes(model: MultiHeadModel, views: torch.Tensor) -> int:
    """Bytes of the tensors autograd keeps from a forward of ``views`` (each storage once)."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    was = model.training
    model.train()
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.enable_grad():
            model(views)
    finally:
        model.train(was)
    return sum(storages.values())


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a training step needs: ``weights`` (parameters, gradients and optimiser state)
    and ``activations`` (what the model keeps for its backward pass, for the whole batch)."""

    parameters: int
    weights: int
    activations: int

    @property
    def total(self) -> int:
        return self.weights + self.activations


def estimate(model: MultiHeadModel, train: TrainParams, views: int) -> MemoryEstimate:
    """The memory a step of ``train`` needs for ``model`` (on the CPU) with ``views`` views of
    its backbone's inputs (:meth:`Backbone.input_shape`); a probe batch of two measures the
    activations."""
    parameters = sum(p.numel() for p in model.parameters())
    weights = parameters * 4 * (2 + _optimizer_slots(train))
    probe = 2
    saved = _saved_bytes(model, torch.zeros(views, probe, *model.backbone.input_shape()))
    return MemoryEstimate(parameters, weights, saved * train.batch_size // probe)


def available_bytes(device: torch.device) -> int | None:
    """What the device has: a CUDA device's total memory, or the RAM the system reports
    available (MemAvailable, Linux); None where it cannot be read."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _gib(n: int) -> str:
    """``n`` bytes in GiB, or MiB below one GiB."""
    return f"{n / 2**30:,.1f} GiB" if n >= 2**30 else f"{n / 2**20:,.0f} MiB"


def training_fit(train: TrainParams, model: MultiHeadModel, augmenter: Augmenter) -> tuple[str, str]:
    """What a training step of ``train`` needs (``model`` fed ``augmenter``'s views) against
    what its device has, for ``mihead check``, and a warning ('' when it fits or the device's
    memory is unknown)."""
    need = estimate(model, train, augmenter.num_views)
    device = resolve_device(train.device)
    has = available_bytes(device)
    where = "CUDA device's memory" if device.type == "cuda" else "CPU's available RAM"
    text = (
        f"training needs about {_gib(need.total)} (weights, gradients and {train.optimizer} state "
        f"{_gib(need.weights)}, activations of a batch of {train.batch_size} {_gib(need.activations)})"
    )
    if has is None:
        return text, ""
    text += f" of the {where}, {_gib(has)}"
    if need.total <= has:
        return text, ""
    return text, f"training needs about {_gib(need.total)}, more than the {where} ({_gib(has)}): {SHRINK}"
