"""Finds the operations in a piece of training code that make the host wait for the device.

On a GPU, the host queues kernels ahead of the device; an operation whose result the host must
read (``.item()``, ``bool(tensor)``, ``nonzero``, indexing with a boolean mask, ``unique``) or
that copies host data in (``torch.tensor(...)`` inside the step) stalls that queue once per
call. The audit works at torch's dispatch level, so it finds these on the CPU too, where they
cost nothing: CI catches a new sync in a training step or a device augmenter without a GPU.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["SYNC_OPS", "HostSyncAudit", "host_syncs"]

SYNC_OPS = frozenset(
    {"_local_scalar_dense", "nonzero", "masked_select", "is_nonzero", "equal", "_unique2", "unique_dim", "lift_fresh"}
)
"""aten operations whose output size or value the host needs (or, for ``lift_fresh``, that copy
host data to the device)."""


class HostSyncAudit(TorchDispatchMode):
    """Records, in order, the host-syncing operations run under it."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # torch leaves TorchDispatchMode.__init__ untyped
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        name = func.overloadpacket.__name__
        if name in SYNC_OPS:
            self.seen.append(name)
        elif name in ("index", "index_put", "index_put_") and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1]
        ):  # a boolean mask becomes indices through a nonzero inside the op
            self.seen.append(f"{name} with a boolean mask")
        return func(*args, **(kwargs or {}))


def host_syncs(fn: Callable[[], Any]) -> list[str]:
    """The host-syncing operations that ``fn()`` runs, in order (empty: none)."""
    audit = HostSyncAudit()
    with audit:
        fn()
    return audit.seen
