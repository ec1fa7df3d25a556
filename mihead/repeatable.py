"""Finds the operations in a piece of training code whose CPU kernels add up in an order that
depends on thread timing, so that a seeded run at a fixed thread count is not repeatable.

torch's CPU ``index_put_`` and ``put_`` with ``accumulate=True`` (the backward of gathering
with repeated indices, e.g. ``probs[:, [0, 0, 1]]``) add through atomic float additions on
several threads unless deterministic algorithms are on: which thread adds first, and so the
rounding, depends on scheduling. On an idle machine the threads keep step and the result
repeats; under load it does not (measured: quickstart losses differing in the 7th digit at
epoch 2, 2 threads). ``index_select`` gathers the same values and its backward adds serially.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["RACY_ACCUMULATIONS", "RacyAccumulationAudit", "racy_accumulations"]

RACY_ACCUMULATIONS = frozenset({"index_put", "index_put_", "_index_put_impl", "_index_put_impl_", "put", "put_"})
"""aten operations that accumulate in thread-timing order on the CPU when their fourth argument,
``accumulate``, is true."""


class RacyAccumulationAudit(TorchDispatchMode):
    """Records, in order, the thread-timing-ordered accumulations run under it."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # torch leaves TorchDispatchMode.__init__ untyped
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        name = func.overloadpacket.__name__
        kwargs = kwargs or {}
        if name in RACY_ACCUMULATIONS and (args[3] if len(args) > 3 else kwargs.get("accumulate", False)):
            self.seen.append(f"{name} with accumulate=True")
        return func(*args, **kwargs)


def racy_accumulations(fn: Callable[[], Any]) -> list[str]:
    """The thread-timing-ordered accumulations that ``fn()`` runs, in order (empty: none)."""
    audit = RacyAccumulationAudit()
    with audit:
        fn()
    return audit.seen
