"""The learning-rate schedule and the optimisers a recipe names."""

from __future__ import annotations

import math

import pytest
import torch

from mihead.optim import learning_rate, make_optimizer
from mihead.recipe import TrainParams


def test_cosine_with_warmup_values() -> None:
    train = TrainParams(lr=0.1, warmup_steps=4, schedule="cosine", min_lr_ratio=0.1)
    total = 14
    lrs = [learning_rate(s, total, train) for s in range(total)]
    # linear warm-up: lr * (step + 1) / warmup
    assert lrs[:4] == pytest.approx([0.025, 0.05, 0.075, 0.1])
    # cosine from lr at the end of warm-up to min_lr_ratio * lr at the last step
    span = total - 4 - 1
    for s in range(4, total):
        expected = 0.01 + 0.09 * 0.5 * (1 + math.cos(math.pi * (s - 4) / span))
        assert lrs[s] == pytest.approx(expected)
    assert lrs[4] == pytest.approx(0.1) and lrs[-1] == pytest.approx(0.01)
    assert lrs[4 + span // 2] < lrs[4] and all(a >= b for a, b in zip(lrs[4:], lrs[5:], strict=False))


def test_cosine_without_warmup_reaches_zero() -> None:
    train = TrainParams(lr=2e-3)
    assert learning_rate(0, 4, train) == pytest.approx(2e-3)
    assert learning_rate(1, 4, train) == pytest.approx(1.5e-3)
    assert learning_rate(3, 4, train) == pytest.approx(0.0, abs=1e-12)


def test_constant_after_warmup() -> None:
    train = TrainParams(lr=0.3, warmup_steps=3, schedule="constant")
    assert [learning_rate(s, 10, train) for s in range(6)] == pytest.approx([0.1, 0.2, 0.3, 0.3, 0.3, 0.3])


def test_single_step_run_is_finite() -> None:
    assert learning_rate(0, 1, TrainParams(lr=0.5)) == pytest.approx(0.5)


@pytest.mark.parametrize(("name", "cls"), [("adam", torch.optim.Adam), ("sgd", torch.optim.SGD), ("rmsprop", torch.optim.RMSprop)])
def test_optimizers(name: str, cls: type) -> None:
    w = torch.nn.Parameter(torch.ones(3))
    opt = make_optimizer([w], TrainParams(optimizer=name, lr=0.25, weight_decay=0.01, momentum=0.5))
    assert isinstance(opt, cls)
    group = opt.param_groups[0]
    assert group["lr"] == 0.25 and group["weight_decay"] == 0.01
    if name != "adam":
        assert group["momentum"] == 0.5


@pytest.mark.parametrize("name", ["adam", "sgd", "rmsprop"])
def test_fused_kernels_only_for_cuda_parameters(name: str) -> None:
    cpu = make_optimizer([torch.nn.Parameter(torch.zeros(3))], TrainParams(optimizer=name))
    assert not cpu.defaults.get("fused")
    if torch.cuda.is_available():  # a run of the suite on a GPU; CI has none
        gpu = make_optimizer([torch.nn.Parameter(torch.zeros(3, device="cuda"))], TrainParams(optimizer=name))
        assert gpu.defaults.get("fused") is (True if name in ("adam", "sgd") else None)


@pytest.mark.parametrize("alpha", [0.99, 0.9])
def test_rmsprop_alpha_against_a_direct_computation(alpha: float) -> None:
    """Two RMSprop steps (momentum 0) on loss = sum(w^2 * c): v <- alpha v + (1 - alpha) g^2,
    w <- w - lr g / (sqrt(v) + eps), as torch documents, with the recipe's rmsprop_alpha."""
    c = torch.tensor([1.0, 2.0, 3.0])
    w = torch.nn.Parameter(torch.tensor([1.0, -0.5, 2.0]))
    opt = make_optimizer([w], TrainParams(optimizer="rmsprop", lr=0.1, momentum=0.0, rmsprop_alpha=alpha))
    expected, v = w.detach().clone(), torch.zeros(3)
    for _ in range(2):
        opt.zero_grad()
        (w.pow(2) * c).sum().backward()
        opt.step()
        g = 2 * expected * c
        v = alpha * v + (1 - alpha) * g * g
        expected = expected - 0.1 * g / (v.sqrt() + 1e-8)
    torch.testing.assert_close(w.detach(), expected)
    assert opt.param_groups[0]["alpha"] == alpha
