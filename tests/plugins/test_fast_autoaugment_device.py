"""The fast_autoaugment augmenter where a GPU run uses it: its batched path (pure torch) gives
the same views masked as indexed on every device, and the plugin registers and batches where
albumentations is absent (as on the H200 machine). This module imports no albumentations, so that
``pytest -m cuda`` collects it there."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest
import torch

from mihead_fast_autoaugment.batched import BatchedPolicy
from mihead_fast_autoaugment.policy import load_policy

SIDE = 32


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_masked_and_indexed_batched_paths_agree(device: str) -> None:
    """Ops applied by masks over the whole batch (accelerators) give the views that ops applied
    to the drawing images only (CPU) give, for every op but Cutout (whose holes are drawn per
    batch image on the masked path); on the GPU too, where the masked way is the default."""
    policy = load_policy()
    no_cutout = tuple(sub for sub in policy.subpolicies if all(op.name != "Cutout" for op in sub))
    x = torch.randint(0, 256, (400, 3, SIDE, SIDE), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)).to(device)
    indexed, masked = (
        BatchedPolicy(dataclasses.replace(policy, subpolicies=no_cutout), masked)(x, torch.Generator(device=device).manual_seed(5))
        for masked in (False, True)
    )
    assert indexed.device.type == device
    assert (indexed != x).flatten(1).any(1).float().mean() > 0.5  # most images were changed
    assert torch.equal(indexed, masked)


# albumentations is absent on the H200 machine (and lightly): the plugin must still register,
# and its batched path, pure torch, must work; the per-image path says what is missing
WITHOUT_ALBUMENTATIONS = """
import sys
sys.modules["albumentations"] = None  # import albumentations raises ModuleNotFoundError
sys.modules["lightly"] = None
import numpy as np, torch
from mihead.contracts import ImageSpec
from mihead.plugins import load_registry
cls = load_registry(strict=True).get("augmenter", "fast_autoaugment").cls
aug = cls(cls.Params(views=2), ImageSpec(3, 32))
x = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
print("batch_views", tuple(aug.batch_views(x, torch.Generator().manual_seed(0)).shape), tuple(aug.eval_batch(x).shape))
try:
    aug.views(np.zeros((32, 32, 3), np.uint8), np.random.default_rng(0))
except ModuleNotFoundError as exc:
    print("views:", exc)
"""


def test_registers_and_batches_without_albumentations() -> None:
    env = {**os.environ, "MIHEAD_STRICT_PLUGINS": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", WITHOUT_ALBUMENTATIONS], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "batch_views (2, 5, 3, 32, 32) (5, 3, 32, 32)" in done.stdout
    assert "views: import of albumentations halted" in done.stdout
