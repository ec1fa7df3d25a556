"""mihead.op_audit: the host-sync audit sees every kind of host sync, and no registered backbone, head or
objective syncs the host in its forward and backward, nor does the engine's bookkeeping of a
step (a GPU step must never wait on the host; the audit runs at dispatch level, so CI checks
this on the CPU), and none adds up in an order that depends on thread timing (a
seeded CPU run must repeat under load)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from mihead.contracts import FrozenEncoder
from mihead.engine import _EpochSteps
from mihead.op_audit import host_syncs, racy_accumulations
from mihead.plugins import Registered, load_registry
from mihead.testing import DEFAULT_IMAGE, check_params, context_of, fake_outputs

TRAINED = sorted(  # a frozen encoder is the identity in the model: nothing of it is trained
    (
        e
        for e in load_registry(strict=False).entries()
        if e.kind in ("backbone", "head", "objective") and not issubclass(e.cls, FrozenEncoder)
    ),
    key=lambda e: (e.kind, e.name),
)


def test_audit_sees_each_kind_of_sync() -> None:
    x = torch.randn(3)
    seen = host_syncs(
        lambda: (x.sum().item(), bool(x[0] > 0), torch.tensor(5), x[x > 0], (x > 0).nonzero(), x.unique())
    )
    assert seen == [
        "_local_scalar_dense",
        "_local_scalar_dense",
        "lift_fresh",
        "index with a boolean mask",
        "nonzero",
        "_unique2",
    ]


def test_audit_passes_sync_free_code() -> None:
    """The engine's non-finite bookkeeping and masked selection stay on the device."""
    x = torch.randn(3)
    first_bad = torch.full((), -1, dtype=torch.long)
    assert host_syncs(lambda: first_bad.masked_fill(~torch.isfinite(x.sum()), 7)) == []
    assert host_syncs(lambda: torch.where(x > 0, x, torch.zeros_like(x))) == []


def test_an_epochs_bookkeeping_stays_on_the_device() -> None:
    """Counting a step's loss terms (sums, first non-finite step) never waits on the host."""
    steps = _EpochSteps({"a": 1.0, "b": 0.5}, torch.device("cpu"))
    terms = {"a": torch.tensor(2.0), "b": torch.tensor(float("nan"))}
    assert host_syncs(lambda: steps.add(terms, 7)) == []
    assert [int(steps.first_bad["a"]), int(steps.first_bad["b"])] == [-1, 7]
    steps.add({"a": torch.tensor(1.0), "b": torch.tensor(float("inf"))}, 8)
    assert float(steps.sums["a"]) == 3.0 and int(steps.first_bad["b"]) == 7 and steps.count == 2


def _backbone_step(entry: Registered) -> Callable[[], object]:
    net = entry.cls(check_params(entry.cls), DEFAULT_IMAGE)
    images = torch.rand(2, DEFAULT_IMAGE.channels, DEFAULT_IMAGE.size, DEFAULT_IMAGE.size)

    def step() -> None:
        out = net(images)
        sum(t.float().mean() for t in [*out.attach, *out.features.values()]).backward()

    return step


def _head_step(entry: Registered) -> Callable[[], object]:
    head = entry.cls(check_params(entry.cls), 16, 5)
    maps = torch.randn(4, 16, 3, 3)
    return lambda: head(maps)[:, 0].sum().backward()


def _objective_step(entry: Registered) -> Callable[[], object]:
    outputs = fake_outputs(features={name: (8, 4, 4) for name in entry.cls.requires})
    objective = entry.cls(check_params(entry.cls), context_of(outputs))
    return lambda: objective(outputs).backward()


STEPS = {"backbone": _backbone_step, "head": _head_step, "objective": _objective_step}


@pytest.mark.parametrize("entry", TRAINED, ids=[f"{e.kind}:{e.name}" for e in TRAINED])
def test_forward_and_backward_never_sync(entry: Registered) -> None:
    torch.manual_seed(0)
    step = STEPS[entry.kind](entry)
    assert host_syncs(step) == []


def test_audit_sees_a_racy_accumulation() -> None:
    x = torch.rand(4, 3, requires_grad=True)
    assert racy_accumulations(lambda: x[torch.tensor([0, 0, 1])].sum().backward()) == ["index_put with accumulate=True"]
    assert racy_accumulations(lambda: x.index_select(0, torch.tensor([0, 0, 1])).sum().backward()) == []
    assert racy_accumulations(lambda: torch.zeros(3).put_(torch.tensor([0, 0]), torch.ones(2), accumulate=True)) == ["put_ with accumulate=True"]


@pytest.mark.parametrize("entry", TRAINED, ids=[f"{e.kind}:{e.name}" for e in TRAINED])
def test_forward_and_backward_add_in_a_fixed_order(entry: Registered) -> None:
    torch.manual_seed(0)
    step = STEPS[entry.kind](entry)
    assert racy_accumulations(step) == []
