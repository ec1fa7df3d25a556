"""The CUDA path of a run: the GPU defaults in effect during a few engine steps (bf16
autocast, channels-last, fused Adam, cuDNN benchmarking, the batched device augmentation), a
step that never makes the host wait, compiled and eager steps giving the same loss terms, a
GPU checkpoint evaluated and predicted on a CPU, and every registered objective finite in bf16.

The CUDA cases are marked ``cuda``: skipped without a GPU (tests/conftest.py) and run on one by
``pytest -m cuda`` (bench/gpu_check.sh). Where the same test body means something on the CPU it
runs there too, expecting the CPU's defaults, so that CI catches its plain bugs.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from rich.console import Console

from corehelp import QUICKSTART, ROOT, TINY, subprocess_env
from mihead import cli
from mihead.contracts import ModelOutputs, Objective, ObjectiveParams
from mihead.device import autocast
from mihead.engine import Trainer
from mihead.op_audit import host_syncs
from mihead.plugins import Registry, load_registry
from mihead.recipe import Recipe, load_recipe
from mihead.testing import context_of, fake_outputs

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
CUDA = [pytest.param("cuda", marks=pytest.mark.cuda)]
DHOG = ROOT / "recipes" / "dhog_cifar10.toml"
# recipes/dhog_cifar10.toml shrunk (8 heads, 4 views, a narrow ResNet-18): 64 images, batch 16, 3 steps
DHOG_TINY = ["data.verify=false", "data.limit=64", "train.batch_size=16", "train.max_steps=3", "backbone.width=0.125", "eval.every=0", "eval.batch_size=64", "train.num_workers=0"]
OBJECTIVES = sorted(e.name for e in load_registry(strict=False).entries() if e.kind == "objective")


def dhog_recipe(registry: Registry, cifar10_root: Path, *overrides: str) -> Recipe:
    return load_recipe(DHOG, registry, [f"data.root={cifar10_root}", *DHOG_TINY, *overrides])


def trainer(recipe: Recipe, run_dir: Path) -> Trainer:
    run_dir.mkdir()
    return Trainer(recipe, run_dir, Console(stderr=True, quiet=True))


def set_args(overrides: list[str]) -> list[str]:
    return [arg for item in overrides for arg in ("--set", item)]


def on_cpu(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m mihead ARGS`` with every GPU hidden, as on a machine without one."""
    return subprocess.run(
        [sys.executable, "-m", "mihead", *args], cwd=ROOT, env=subprocess_env(CUDA_VISIBLE_DEVICES=""),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


# --- the GPU defaults ---------------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
def test_engine_steps_under_the_gpu_defaults(device: str, registry: Registry, cifar10_root: Path, tmp_path: Path) -> None:
    """The recipe's own train and augment settings (precision auto, channels_last, cuDNN
    benchmark, where auto, Adam) take effect on CUDA and only there, and three steps train."""
    cuda = device == "cuda"
    run = trainer(dhog_recipe(registry, cifar10_root, f"train.device={device}"), tmp_path / "run")
    model = run.built.model
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1)]  # 1x1 weights are both layouts
    assert run.device.type == device
    assert model.channels_last is cuda
    assert [c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs] == [cuda] * len(convs)
    if cuda:
        assert torch.backends.cudnn.benchmark
    assert run.optimizer.defaults["fused"] is (True if cuda else None)
    assert run.built.source.on_device is cuda  # the batched augmentation on the GPU, workers on the CPU
    before = convs[0].weight.detach().clone()
    dtypes: set[torch.dtype] = set()
    hook = convs[0].register_forward_hook(lambda module, inputs, output: dtypes.add(output.dtype))
    summary = run.fit()
    hook.remove()
    assert dtypes == {torch.bfloat16 if cuda else torch.float32}  # autocast on CUDA only
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast keeps fp32 weights
    assert not torch.equal(before, convs[0].weight.detach())
    assert all(state["step"].device.type == device for state in run.optimizer.state.values())  # fused: the count stays on the GPU
    assert summary["steps"] == 3 and summary["device"].startswith(device) and len(summary["heads"]) == 8
    losses = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])["losses"]
    assert set(losses) == {"iic", "dhog_push"} and all(math.isfinite(v) for v in losses.values())


@pytest.mark.parametrize("device", CUDA)
def test_gpu_step_never_waits_on_the_host(device: str, registry: Registry, cifar10_root: Path, tmp_path: Path) -> None:
    """One engine step on the GPU, its views made by the masked batched augmentation: no
    operation that makes the host wait (mihead.op_audit), the optimiser step included."""
    run = trainer(dhog_recipe(registry, cifar10_root, f"train.device={device}"), tmp_path / "run")
    batches = run.built.source.train_batches(0)
    run._train_step(next(batches))  # the optimiser's state made, cuDNN's algorithms chosen
    torch.cuda.synchronize()
    assert host_syncs(lambda: run._train_step(next(batches))) == []


@pytest.mark.parametrize("device", CUDA)
def test_compiled_and_eager_steps_give_the_same_terms(device: str, registry: Registry, tmp_path: Path) -> None:
    """train.compile on and off under the GPU's bf16 autocast: the same initial weights and
    views give the same loss terms step after step, up to the rounding that fused kernels
    change. (fp32 compiled against eager: tests/core/test_engine.py, on the CPU.) The
    quickstart model (digits) keeps the compilation short."""
    overrides = [*TINY, f"train.device={device}"]
    eager, compiled = (
        trainer(load_recipe(QUICKSTART, registry, [*overrides, f"train.compile={flag}"]), tmp_path / flag) for flag in ("false", "true")
    )
    for a, b in zip(eager.built.model.parameters(), compiled.built.model.parameters(), strict=True):
        assert torch.equal(a, b)
    tolerance = 3e-2  # bf16 keeps 8 bits of mantissa: about 0.4% a rounding
    for views in itertools.islice(eager.built.source.train_batches(0), 2):
        for _ in range(2):
            terms, compiled_terms = eager._train_step(views), compiled._train_step(views)
            assert set(terms) == set(compiled_terms) == {"iic"}
            assert abs(float(terms["iic"])) > 1e-3  # a real MI, not ~0 == ~0
            torch.testing.assert_close(compiled_terms["iic"], terms["iic"], rtol=tolerance, atol=tolerance / 10)


# --- a GPU checkpoint on a CPU ------------------------------------------------------------------
@pytest.fixture(scope="module", params=DEVICES)
def trained_run(request: pytest.FixtureRequest, cifar10_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three steps of the shrunk DHOG recipe on the device (``train.device = auto``, as a GPU
    run's recipe says), views made there, so that a machine without albumentations can
    evaluate it too."""
    device = request.param
    run_dir = tmp_path_factory.mktemp(f"run_{device}") / "run"
    overrides = [f"data.root={cifar10_root}", *DHOG_TINY, "augment.where=device", f"train.device={'auto' if device == 'cuda' else 'cpu'}"]
    assert cli.main(["run", str(DHOG), "--out", str(run_dir), *set_args(overrides)]) == 0
    assert json.loads((run_dir / "summary.json").read_text())["device"].startswith(device)
    weights = torch.load(run_dir / "checkpoint.pt", weights_only=True)["model"]  # where they were saved from
    assert {t.device.type for t in weights.values()} == {device}
    return run_dir


def test_gpu_checkpoint_evaluates_on_a_cpu(trained_run: Path) -> None:
    trained = json.loads((trained_run / "summary.json").read_text())
    done = on_cpu("eval", str(trained_run))
    assert done.returncode == 0, done.stderr[-3000:]
    evaluated = json.loads((trained_run / "summary.json").read_text())
    assert evaluated["device"] == "cpu"
    assert evaluated["steps"] == trained["steps"] == 3
    assert len(evaluated["heads"]) == len(trained["heads"]) == 8
    assert all(0.0 <= h["acc"] <= 1.0 for h in evaluated["heads"])


def test_gpu_checkpoint_predicts_on_a_cpu(trained_run: Path, tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(images / f"{i}.png")
    done = on_cpu("predict", str(trained_run), str(images), "--out", str(tmp_path / "predictions.csv"))
    assert done.returncode == 0, done.stderr[-3000:]
    rows = list(csv.DictReader((tmp_path / "predictions.csv").open()))
    assert sorted(r["path"] for r in rows) == sorted(str(p) for p in images.iterdir())
    assert all(0 <= int(r["cluster"]) < 10 and len([k for k in r if k.startswith("head_")]) == 8 for r in rows)


# --- bf16 -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", OBJECTIVES)
def test_every_objective_is_finite_in_bf16(name: str, device: str, registry: Registry) -> None:
    """Each objective under bf16 autocast, fed what the model gives there: heads' probabilities
    computed in bf16 and returned as float32 (rows off one by bf16 rounding, exact zeros where
    logits are far apart) and bf16 features; its loss and gradients stay finite."""
    cls = registry.get("objective", name).cls
    params = cls.Params()
    assert issubclass(cls, Objective) and isinstance(params, ObjectiveParams)
    for sharpness in (4.0, 60.0):  # 60: many probabilities underflow to exactly 0
        made = fake_outputs(heads=3, views=4, batch=64, clusters=10, overclusters=20, features={f: (16, 4, 4) for f in cls.requires}, sharpness=sharpness)
        assert made.over_probs is not None
        outputs = ModelOutputs(
            probs=made.probs.to(device).bfloat16().float(),
            over_probs=made.over_probs.to(device).bfloat16().float(),
            features={k: f.to(device).bfloat16() for k, f in made.features.items()},
        )
        objective = cls(params, context_of(outputs)).to(device)
        with autocast(torch.device(device), "bf16"):
            loss = objective(outputs)
        value = float(loss.detach())
        assert loss.ndim == 0 and math.isfinite(value), (name, sharpness, value)
        loss.backward()
        grads = [t.grad for t in [*made.leaves.values(), *objective.parameters()] if t.grad is not None]  # type: ignore[attr-defined]
        assert grads and any(bool(g.abs().sum() > 0) for g in grads), (name, sharpness)
        assert all(bool(torch.isfinite(g).all()) for g in grads), (name, sharpness)
