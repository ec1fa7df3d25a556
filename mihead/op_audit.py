"""Audits of the torch operations a piece of training code runs, at torch's dispatch level, so
that they work on the CPU too and CI catches a regression without a GPU or a loaded machine.

Two properties of a training step are audited:

- **Host syncs** (:func:`host_syncs`). On a GPU, the host queues kernels ahead of the device; an
  operation whose result the host must read (``.item()``, ``bool(tensor)``, ``nonzero``,
  indexing with a boolean mask, ``unique``) or that copies host data in (``torch.tensor(...)``
  inside the step) stalls that queue once per call.
- **Accumulations in thread-timing order** (:func:`racy_accumulations`). torch's CPU
  ``index_put_`` and ``put_`` with ``accumulate=True`` (the backward of gathering with repeated
  indices, e.g. ``probs[:, [0, 0, 1]]``) add through atomic float additions on several threads:
  which thread adds first, and so the rounding, depends on scheduling. On an idle machine the
  threads keep step and the result repeats; under load it does not (measured: quickstart
  losses differing in the 7th digit at epoch 2, 2 threads). ``index_select`` gathers the same
  values and its backward adds in a fixed order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["RACY_ACCUMULATIONS", "SYNC_OPS", "host_syncs", "racy_accumulations"]

SYNC_OPS = frozenset(
    {"_local_scalar_dense", "nonzero", "masked_select", "is_nonzero", "equal", "_unique2", "unique_dim", "lift_fresh"}
)
"""aten operations whose output size or value the host needs (or, for ``lift_fresh``, that copy
host data to the device)."""

RACY_ACCUMULATIONS = frozenset({"index_put", "index_put_", "_index_put_impl", "_index_put_impl_", "put", "put_"})
"""aten operations that accumulate in thread-timing order on the CPU when their fourth argument,
``accumulate``, is true."""

Flag = Callable[[str, tuple[Any, ...], dict[str, Any]], "str | None"]
"""What an audit looks for: (operation name, args, kwargs) -> how to name it, or None."""


class _Audit(TorchDispatchMode):
    """Records, in order, the operations run under it that ``flag`` names."""

    def __init__(self, flag: Flag) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # torch leaves TorchDispatchMode.__init__ untyped
        self.flag = flag
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        seen = self.flag(func.overloadpacket.__name__, args, kwargs)
        if seen is not None:
            self.seen.append(seen)
        return func(*args, **kwargs)


def _audit(flag: Flag, fn: Callable[[], Any]) -> list[str]:
    audit = _Audit(flag)
    with audit:
        fn()
    return audit.seen


def _host_sync(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    if name in SYNC_OPS:
        return name
    if name in ("index", "index_put", "index_put_") and any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1]):
        return f"{name} with a boolean mask"  # a boolean mask becomes indices through a nonzero inside the op
    return None


def _racy_accumulation(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    if name in RACY_ACCUMULATIONS and (args[3] if len(args) > 3 else kwargs.get("accumulate", False)):
        return f"{name} with accumulate=True"
    return None


def host_syncs(fn: Callable[[], Any]) -> list[str]:
    """The host-syncing operations that ``fn()`` runs, in order (empty: none)."""
    return _audit(_host_sync, fn)


def racy_accumulations(fn: Callable[[], Any]) -> list[str]:
    """The thread-timing-ordered accumulations that ``fn()`` runs, in order (empty: none)."""
    return _audit(_racy_accumulation, fn)
