"""mihead.gradients.backward: a head-specific term trains only the heads' own weights (and
its own parameters), every other term trains everything, alone and under DDP.

A tiny model in DHOG's shape: a shared trunk with a head on it and two copies of a final layer
each with its own head; the push reached through ``reach = head_specific``, the pull as it is.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from corehelp import IMAGE_2PX, TrunkAndCopies
from mihead.build import ObjectiveTerm
from mihead.contracts import Head, HeadParams, ObjectiveContext, Params
from mihead.distributed import current
from mihead.engine import _LossTerms
from mihead.gradients import backward
from mihead.model import MultiHeadModel
from mihead.plugins import load_registry

VIEWS, BATCH, K = 2, 8, 3


class LinearHead(Head):
    name = "linear_softmax"

    def __init__(self, params: HeadParams, in_channels: int, clusters: int) -> None:
        super().__init__(params, in_channels, clusters)
        self.linear = nn.Linear(in_channels, clusters)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features.flatten(1)).softmax(-1).float()


def _model() -> MultiHeadModel:
    torch.manual_seed(0)
    backbone = TrunkAndCopies(Params(), IMAGE_2PX)
    return MultiHeadModel(backbone, [LinearHead(HeadParams(), 6, K) for _ in range(3)], [], 1)


def _objectives(reach: str) -> list[ObjectiveTerm]:
    registry = load_registry()
    context = ObjectiveContext(heads=3, views=VIEWS, clusters=K, overclusters=0, feature_channels={})
    pull, push = (registry.get("objective", n).cls for n in ("iic", "dhog_push"))
    return [ObjectiveTerm("iic", 1.0, pull(pull.Params(), context)), ObjectiveTerm("dhog_push", 0.5, push(push.Params(reach=reach), context))]  # type: ignore[call-arg]


def _grads(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: torch.zeros_like(p) if p.grad is None else p.grad.clone() for n, p in model.named_parameters()}


def _step(module: nn.Module, model: MultiHeadModel, objectives: list[ObjectiveTerm], x: torch.Tensor) -> dict[str, torch.Tensor]:
    """One step's gradients, as the engine takes them: ``module`` (maybe in DDP) gives the terms."""
    model.zero_grad(set_to_none=True)
    backward(module(x), objectives, model)
    return _grads(model)


def _views(seed: int = 1, batch: int = BATCH) -> torch.Tensor:
    return torch.rand(VIEWS, batch, 1, 2, 2, generator=torch.Generator().manual_seed(seed))


def test_head_specific_term_adds_only_to_the_heads_own_weights() -> None:
    model, x = _model(), _views()
    objectives = _objectives("head_specific")
    both = _step(_LossTerms(model, objectives), model, objectives, x)
    pull = _step(_LossTerms(model, objectives[:1]), model, objectives[:1], x)
    push = _step(_LossTerms(model, objectives[1:]), model, objectives[1:], x)
    assert torch.count_nonzero(push["backbone.trunk.weight"]) == 0 and torch.count_nonzero(pull["backbone.trunk.weight"]) > 0
    assert torch.count_nonzero(push["heads.0.linear.weight"]) == 0  # the first head: no earlier head to be pushed from
    assert all(torch.count_nonzero(push[n]) > 0 for n in ("heads.1.linear.weight", "heads.2.linear.weight", "backbone.copies.0.weight"))
    for name, g in both.items():
        torch.testing.assert_close(g, pull[name] + push[name], rtol=1e-6, atol=1e-9)
    whole = _objectives("whole_path")[1:]
    assert torch.count_nonzero(_step(_LossTerms(model, whole), model, whole, x)["backbone.trunk.weight"]) > 0


def test_a_head_specific_term_of_weight_zero_adds_nothing() -> None:
    model = _model()
    term = [dataclasses.replace(t, weight=0.0) for t in _objectives("head_specific")[1:]]
    backward(_LossTerms(model, term)(_views()), term, model)
    assert all(p.grad is None for p in model.parameters())


def _rank(rank: int, world: int, rendezvous: str, x: torch.Tensor, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world)
    try:
        model, objectives = _model(), _objectives("head_specific")
        module = current().wrap(_LossTerms(model, objectives))
        grads = [_step(module, model, objectives, x[:, rank * BATCH : (rank + 1) * BATCH]) for _ in range(2)]
        torch.save(grads, Path(out) / f"rank{rank}.pt")
        dist.barrier()  # both ranks done before either tears gloo down (else one may abort at exit)
    finally:
        dist.destroy_process_group()


def test_two_processes_give_the_head_specific_gradients_of_one(tmp_path: Path) -> None:
    """Under DDP (2 gloo processes of batch B) the head-specific push's gradient, put into
    ``.grad`` before the pull's pass, is averaged with it: the gradients of one process of
    batch 2B, at two steps in a row (DDP's static graph is recorded at the first)."""
    x = _views(batch=2 * BATCH)
    mp.spawn(_rank, args=(2, str(tmp_path / "rendezvous"), x, str(tmp_path)), nprocs=2)
    model, objectives = _model(), _objectives("head_specific")
    want = _step(_LossTerms(model, objectives), model, objectives, x)
    for r in range(2):
        for got in torch.load(tmp_path / f"rank{r}.pt"):
            for name, g in want.items():
                torch.testing.assert_close(got[name], g, rtol=1e-4, atol=1e-6, msg=f"rank {r}: d/d{name}")


def test_without_shared_weights_one_pass_gives_the_two_pass_gradient(monkeypatch: object) -> None:
    """On a frozen encoder nothing is shared: the head-specific push joins the pull's backward
    pass (no separate autograd.grad), and each weight's gradient is the same as the two passes'."""
    import pytest

    from mihead.contracts import ImageSpec

    registry = load_registry()
    pixels = registry.get("backbone", "pixels").cls
    torch.manual_seed(0)
    model = MultiHeadModel(pixels(pixels.Params(), ImageSpec(1, 2)), [LinearHead(HeadParams(), 4, K) for _ in range(3)], [], 3)
    objectives = _objectives("head_specific")
    x = torch.nn.functional.normalize(torch.randn(VIEWS, BATCH, 4), dim=-1)

    def terms() -> dict[str, torch.Tensor]:
        outputs = model(x)
        return {t.name: t.module(outputs) for t in objectives}

    model.zero_grad(set_to_none=True)
    two_pass = terms()
    own = [p for head in model.head_parameters() for p in head]
    pushed = torch.autograd.grad(0.5 * two_pass["dhog_push"], own, retain_graph=True, allow_unused=True)
    two_pass["iic"].backward()
    expected = {id(p): p.grad.clone() + (g if g is not None else 0) for p, g in zip(own, pushed, strict=True) if p.grad is not None}

    model.zero_grad(set_to_none=True)
    calls: list[object] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.autograd, "grad", lambda *a, **k: calls.append(a))
        backward(terms(), objectives, model)
    assert calls == []  # one backward pass, no separate head-specific one
    for p in own:
        torch.testing.assert_close(p.grad, expected[id(p)])
