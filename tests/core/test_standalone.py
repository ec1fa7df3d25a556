"""mihead.standalone: plugins built outside recipes, and the lightly example script."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np
import pytest
import torch

from mihead.contracts import ImageSpec, ModelOutputs
from mihead.errors import RecipeError
from mihead.standalone import augmenter, objective

ROOT = Path(__file__).resolve().parents[2]
PACK = ROOT.parent / "shared/data/cifar10/cifar10_jpeg_q75.npz"


def numpy_mi(p: np.ndarray, q: np.ndarray) -> float:
    """MI of the symmetrised joint table of two views' assignments [B, K], written out."""
    joint = p.T @ q / len(p)
    joint = (joint + joint.T) / 2
    joint /= joint.sum()
    pi, pj = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
    return float((joint * (np.log(joint) - np.log(pi) - np.log(pj))).sum())


def test_objective_is_a_plain_loss() -> None:
    loss_fn = objective("iic", clusters=3, views=2)
    assert isinstance(loss_fn, torch.nn.Module)
    probs = torch.softmax(torch.randn(1, 2, 50, 3, generator=torch.Generator().manual_seed(0)), -1)
    loss = loss_fn(ModelOutputs(probs=probs, over_probs=None, features={}))
    expected = -numpy_mi(probs[0, 0].double().numpy(), probs[0, 1].double().numpy())
    assert float(loss) == pytest.approx(expected, rel=1e-4, abs=1e-6)


def test_bad_parameters_raise_recipe_errors() -> None:
    with pytest.raises(RecipeError, match="lamb"):
        objective("iic", clusters=3, lamb=0.5)
    with pytest.raises(RecipeError, match="unknown key"):
        objective("iic", clusters=3, lamda=2.0)
    with pytest.raises(RecipeError, match="unknown objective"):
        objective("iicc", clusters=3)


def test_augmenter_is_built_with_checked_params() -> None:
    aug = augmenter("fast_autoaugment", size=32, views=3, crop=16)
    assert aug.num_views == 3 and aug.output == ImageSpec(3, 32)
    with pytest.raises(RecipeError, match="crop"):
        augmenter("fast_autoaugment", size=32, crop="big")


@pytest.mark.skipif(not PACK.exists(), reason="needs the CIFAR-10 pack in ../shared/data")
def test_lightly_example_trains_a_few_steps() -> None:
    script = ROOT / "docs/examples/lightly_iic.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(script), "--images", "64", "--steps", "3", "--batch-size", "16", "--views", "2"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    losses = [float(line.split()[-1]) for line in done.stdout.splitlines() if line.startswith("step")]
    assert len(losses) == 3 and all(np.isfinite(losses))
