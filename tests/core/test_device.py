"""The training device a recipe's name resolves to, and the autocast its precision asks for."""

from __future__ import annotations

import pytest
import torch

from mihead.device import autocast, resolve_device
from mihead.errors import RecipeError


@pytest.mark.parametrize(("cuda", "expected"), [(False, "cpu"), (True, "cuda")])
def test_auto_takes_cuda_when_present(monkeypatch: pytest.MonkeyPatch, cuda: bool, expected: str) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert resolve_device("auto") == torch.device(expected)
    assert resolve_device("cpu") == torch.device("cpu")  # asked for by name: whatever is present


def test_cuda_without_a_gpu_names_who_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RecipeError, match=r"^\[train\] device: 'cuda' was asked for but no CUDA device is available$"):
        resolve_device("cuda")
    with pytest.raises(RecipeError, match=r"^--device: 'cuda'"):
        resolve_device("cuda", asked_by="--device")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)


def _matmul_dtype(device: torch.device, precision: str) -> torch.dtype:
    a = torch.ones(2, 2)
    with autocast(device, precision):
        return (a @ a).dtype


def test_cpu_autocasts_to_bf16_only_when_asked() -> None:
    cpu = torch.device("cpu")
    assert _matmul_dtype(cpu, "bf16") == torch.bfloat16
    assert _matmul_dtype(cpu, "auto") == torch.float32  # auto keeps fp32 on the CPU
    assert _matmul_dtype(cpu, "fp32") == torch.float32


@pytest.mark.filterwarnings("ignore:CUDA is not available:UserWarning")  # where torch has no GPU
def test_cuda_autocasts_to_bf16_for_auto_and_bf16_not_fp32() -> None:
    """The context's settings, which need no GPU to read."""
    cuda = torch.device("cuda")
    for precision in ("auto", "bf16"):
        context = autocast(cuda, precision)
        assert isinstance(context, torch.autocast)
        assert context.device == "cuda" and context.fast_dtype == torch.bfloat16
    assert not isinstance(autocast(cuda, "fp32"), torch.autocast)
