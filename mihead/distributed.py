"""Data-parallel training over processes started by torchrun (DistributedDataParallel).

``torchrun --nproc_per_node N -m mihead run RECIPE`` starts N copies of mihead with
``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` and the rendezvous address in their environment.
:func:`process_group` reads them, initialises ``torch.distributed`` (nccl on CUDA, gloo on
CPU) and hands back the process's :class:`Ranks`: its rank, the world size and the helpers
the CLI and the engine need, so that they never call ``torch.distributed`` themselves. Without
torchrun's environment (or with one process) the ranks are a single process and every helper
is the identity.

What is global and what is per rank (see docs/distributed.md):

* ``train.batch_size`` is per rank: one optimiser step sees ``N * batch_size`` images;
* every joint table of cluster assignments (:func:`mihead.mi.joint_table`, through which
  every MI term is computed) is a mean over the global batch: :func:`global_batch_mean` sums
  it across ranks with an all-reduce that keeps gradients, so N processes of batch B give the
  loss and gradients of one process of batch N * B;
* gradients are averaged over ranks by DDP. That is the right factor for both kinds of term:
  the all-reduce's backward sums the (identical) upstream gradient of the N ranks, so each
  rank's gradient of a global MI term is N times its share of the single-process gradient,
  and the average of the N shares times N is the single-process gradient; a per-sample term
  averaged over its rank's batch becomes, averaged over ranks, the mean over the global batch;
* statistics that are not built from a joint table (batch normalisation, unless
  ``train.sync_batchnorm``; DCCM's pseudo-graph, nearest neighbours and negatives) are per rank.
* an evaluation is assigned by every rank, each its contiguous shard of the split's batches,
  and gathered in image order on rank 0 (:meth:`Ranks.gather`), which scores it and writes it.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from mihead.device import resolve_device
from mihead.errors import MiheadError, RecipeError

__all__ = ["STALL_VARIABLE", "Ranks", "current", "global_batch_mean", "process_group"]

T = TypeVar("T")
M = TypeVar("M", bound=nn.Module)

_control: dist.ProcessGroup | None = None  # gloo group for CPU-side agreements under nccl

STALL_VARIABLE = "MIHEAD_DATA_STALL"
"""The environment variable of how many seconds (default 600) a rank waits for its node's local
rank 0 to load data while nothing in the cache folder changes, before it stops saying so."""

_PATIENCE = timedelta(days=7)  # loading a few million files takes hours; a stall is detected by watching instead


def _multi_process() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class _SumOverRanks(torch.autograd.Function):
    """y = sum over ranks of x; dL/dx = sum over ranks of dL/dy (all-reduce both ways).

    What ``torch.distributed.nn.functional.all_reduce`` does (deprecated in recent torch;
    its successor lives in a private module): the backward sums the ranks' upstream
    gradients because y feeds every rank's loss, so each rank gets the gradient of the sum of
    the N ranks' losses with respect to its own x."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        y = x.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad)
        return grad


def global_batch_mean(local_sum: torch.Tensor, count: int) -> torch.Tensor:
    """``local_sum`` (a sum over this rank's ``count`` samples) summed over every rank and
    divided by the global sample count, differentiably; ``local_sum / count`` in one process.

    With the same loss on every rank, each rank's gradient is N times its share of the
    single-process gradient, and DDP's average over ranks gives the gradient of one process
    holding the whole global batch (see the module docstring)."""
    if not _multi_process():
        return local_sum / count
    total = torch.full((), float(count), device=local_sum.device)  # a fill kernel: no host sync
    dist.all_reduce(total)
    return _SumOverRanks.apply(local_sum) / total


def _control_group() -> dist.ProcessGroup | None:
    """A gloo group for small CPU collectives (None = the default group, when it is gloo):
    agreeing on a stop or broadcasting an object must not sync a GPU stream."""
    global _control
    if _control is None and dist.get_backend() != "gloo":
        group = dist.new_group(backend="gloo")
        assert isinstance(group, dist.ProcessGroup)  # every rank is a member: never NON_GROUP_MEMBER
        _control = group
    return _control


@contextmanager
def _patient_groups() -> Iterator[tuple[dist.ProcessGroup, dist.ProcessGroup]]:
    """Two gloo groups whose collectives wait as long as loading data takes: this node's ranks
    (torchrun's ``LOCAL_WORLD_SIZE`` consecutive ranks) and every rank; destroyed afterwards, so
    that none outlives the process group it was made in."""
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", dist.get_world_size()))
    node, _ = dist.new_subgroups(group_size=per_node, backend="gloo", timeout=_PATIENCE)
    world = dist.new_group(backend="gloo", timeout=_PATIENCE)
    assert isinstance(node, dist.ProcessGroup) and isinstance(world, dist.ProcessGroup)  # every rank is a member of both
    try:
        yield node, world
    finally:
        dist.destroy_process_group(world)
        dist.destroy_process_group(node)


def _last_change(folder: Path) -> float:
    """When a file in ``folder`` last changed (0 when none can be seen)."""
    try:
        return max((entry.stat().st_mtime for entry in os.scandir(folder)), default=0.0)
    except OSError:
        return 0.0


def _wait_for(work: dist.Work, leader: int, rank: int, watch: Path, what: str) -> None:
    """Wait until ``work`` (a collective the node's ``leader`` joins when done) completes, as
    long as something in ``watch`` keeps changing; a MiheadError naming the leader when nothing
    has for :data:`STALL_VARIABLE` seconds."""
    stall = float(os.environ.get(STALL_VARIABLE, "600"))
    since = time.time()
    while not work.is_completed():
        progress = max(since, _last_change(watch))
        if time.time() - progress > stall:
            raise MiheadError(
                f"rank {rank} waited {stall:,.0f} s for rank {leader} (local rank 0 of its node) to {what}, "
                f"and nothing changed in {watch} meanwhile; it may hang: see rank {leader}'s output "
                f"(the wait is {STALL_VARIABLE} seconds)"
            )
        time.sleep(0.1)
    work.wait()


@dataclasses.dataclass(frozen=True)
class Ranks:
    """This process's place among the training processes (rank 0 = the main one)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes the run directory (and scores the evaluations every rank assigns)."""
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """The device of this rank: ``cuda:LOCAL_RANK`` for CUDA, else ``device``."""
        return torch.device("cuda", self.local_rank) if self.world_size > 1 and device.type == "cuda" else device

    def sync_batchnorm(self, model: M, device: torch.device) -> M:
        """``model`` with every batch norm normalising over the global batch (in place).

        Only with several processes; torch's SyncBatchNorm has no CPU path."""
        if self.world_size == 1:
            return model
        if device.type != "cuda":
            raise RecipeError(
                "[train] sync_batchnorm: torch's SyncBatchNorm needs CUDA; set it false for a CPU run"
            )
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)

    def wrap(self, module: nn.Module) -> nn.Module:
        """``module`` in DistributedDataParallel when there are several processes.

        ``static_graph``: the same parameters are used at every step, and it lets parameters
        no term uses (e.g. overclustering heads without an overclustering term) stay unused."""
        if self.world_size == 1:
            return module
        param = next(module.parameters())
        ids = [self.local_rank] if param.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids, static_graph=True)

    def from_main(self, make: Callable[[], T]) -> T:
        """``make()`` run on rank 0 only and its result given to every rank; a MiheadError it
        raises is raised on every rank, so that all of them stop with the same message."""
        if self.world_size == 1:
            return make()
        return cast(T, self._on_rank_0(make, share=True))

    def on_main(self, make: Callable[[], T]) -> T | None:
        """``make()`` run on rank 0 only, its result kept there (None on the other ranks, which
        learn only whether it succeeded: for results too large to send, e.g. an evaluation
        whose outputs rank 0 writes); a MiheadError it raises is raised on every rank."""
        if self.world_size == 1:
            return make()
        return self._on_rank_0(make, share=False)

    def _on_rank_0(self, make: Callable[[], T], share: bool) -> T | None:
        """``make()`` on rank 0; its MiheadError, and its result when ``share``, broadcast."""
        value: T | None = None
        box: list[Any] = [None]
        if self.is_main:
            try:
                value = make()
                box = [(True, value if share else None)]
            except MiheadError as exc:
                box = [(False, exc)]
        dist.broadcast_object_list(box, src=0, group=_control_group())
        ok, sent = box[0]
        if not ok:
            raise sent
        return value if self.is_main else sent

    def gather(self, part: np.ndarray, axis: int = 0) -> np.ndarray | None:
        """Every rank's ``part`` joined along ``axis`` in rank order on rank 0 (None on the
        other ranks): the rows of contiguous shards back in their order. The parts may differ
        in length along ``axis`` (unequal shards, an empty one included); they travel pickled
        over the gloo group, so that an nccl run syncs no GPU stream."""
        if self.world_size == 1:
            return part
        parts: list[Any] | None = [None] * self.world_size if self.is_main else None
        dist.gather_object(part, parts, dst=0, group=_control_group())
        return None if parts is None else np.concatenate(parts, axis)

    def from_local_main(self, make: Callable[[], T], *, watch: Path, what: str) -> T:
        """``make()`` run by local rank 0 of every node (each node makes its own: its copy of
        a dataset, in its own cache folder), its value given to the other ranks of its node,
        which wait for it while files in ``watch`` change (:data:`STALL_VARIABLE`; ``what``
        says in the message what they waited for). A MiheadError raised on any node is raised
        on every rank, naming the rank it came from."""
        if self.world_size == 1:
            return make()
        with _patient_groups() as (node, world):
            leader = self.rank - self.local_rank
            box: list[Any] = [None]
            if self.local_rank == 0:
                try:
                    box = [(True, make())]
                except MiheadError as exc:
                    box = [(False, exc)]
                dist.barrier(group=node)
            else:
                _wait_for(dist.barrier(group=node, async_op=True), leader, self.rank, watch, what)
            dist.broadcast_object_list(box, src=leader, group=node)
            ok, value = box[0]
            failures: list[Any] = [None] * self.world_size
            dist.all_gather_object(failures, None if ok or self.local_rank else (self.rank, value), group=world)
        failed = [f for f in failures if f is not None]
        if failed:
            source, error = failed[0]
            raise error if source == self.rank else type(error)(f"rank {source}: {error}")
        return value

    def all_gather(self, value: T) -> list[T]:
        """Every rank's ``value``, by rank, on every rank."""
        if self.world_size == 1:
            return [value]
        values: list[Any] = [None] * self.world_size
        dist.all_gather_object(values, value, group=_control_group())
        return values

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on at least one (e.g. a stop request)."""
        if self.world_size == 1:
            return flag
        t = torch.tensor([int(flag)])
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=_control_group())
        return bool(t.item())

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """The mean over ranks of ``values`` (no gradient), e.g. per-rank loss sums to log."""
        if self.world_size == 1:
            return values
        values = values.detach().clone()
        dist.all_reduce(values)
        return values / self.world_size


def current() -> Ranks:
    """The ranks of the initialised process group, or a single process."""
    if not _multi_process():
        return Ranks()
    rank = dist.get_rank()
    return Ranks(rank, dist.get_world_size(), int(os.environ.get("LOCAL_RANK", rank)))


@contextmanager
def process_group(device_name: str) -> Iterator[Ranks]:
    """Initialise torch.distributed from torchrun's environment for the recipe's
    ``train.device``, yield its ranks, and tear it down afterwards. Without torchrun's
    environment, with one process, or in a process group started by the caller, nothing is
    initialised here."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1 or dist.is_initialized():
        yield current()
        return
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name)
    device_id = None
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise RecipeError(
                f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA device(s) are visible; "
                "start at most one process per GPU (torchrun --nproc_per_node)"
            )
        device_id = torch.device("cuda", local_rank)
        torch.cuda.set_device(device_id)
    global _control
    dist.init_process_group("nccl" if device_id is not None else "gloo", device_id=device_id)
    try:
        yield current()
    finally:
        _control = None
        dist.destroy_process_group()
