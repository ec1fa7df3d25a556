"""The DCCM recipes and the DHOG + DCCM mix: each validates, each term's gradient reaches the
parameters it should, the CIFAR-10 ones train two steps on the rebuilt shared CIFAR-10 and the
digits one two steps on scikit-learn's digits."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch

from mihead import cli, hookimpl
from mihead.build import Built, build
from mihead.contracts import Dataset, ImageData
from mihead.plugins import load_registry
from mihead.recipe import load_recipe

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
DCCM = ["dccm_cifar10", "dccm_cifar100_20", "dccm_stl10"]
DIGITS = "dccm_digits"
MIX = "dhog_dccm_cifar10"


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


class RandomImages(Dataset):
    """Random uint8 colour images of the recipe's size with 10 labels: enough to build the
    recipe's model and objectives without its data."""

    name = "test_random_images"
    splits: ClassVar[tuple[str, ...]] = ("train", "test")
    train_split = "train"
    eval_split = "test"
    size: ClassVar[int] = 32

    def load(self, split: str) -> ImageData:
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, size=(8, self.size, self.size, 3), dtype=np.uint8)
        return ImageData(images, np.arange(8) % 10, tuple(str(i) for i in range(10)))


class RandomImages96(RandomImages):
    name = "test_random_images_96"
    size = 96


@hookimpl
def register_datasets() -> list[type[Dataset]]:
    return [RandomImages, RandomImages96]


def built(name: str, *overrides: str) -> Built:
    registry = load_registry(strict=False, plugins=[sys.modules[__name__]])
    data = "test_random_images_96" if name == "dccm_stl10" else "test_random_images"
    sets = [f"data.name={data}", "data.split=train", "train.batch_size=4", "train.device=cpu", "train.num_workers=0", *overrides]
    return build(load_recipe(RECIPES / f"{name}.toml", registry, sets), torch.device("cpu"))


def reached(b: Built, term: str, views: torch.Tensor) -> dict[str, bool]:
    """Which parameter groups get a non-zero gradient from ``term`` alone."""
    model = b.model
    objectives = {term.name: term.module for term in b.objectives}
    for p in [*model.parameters(), *(q for o in objectives.values() for q in o.parameters())]:
        p.grad = None
    loss = objectives[term](model(views))
    assert torch.isfinite(loss), term
    loss.backward()

    def nonzero(params: object) -> bool:
        return any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in params)  # type: ignore[attr-defined]

    groups = {
        "heads": nonzero(model.heads.parameters()),
        "backbone": nonzero(model.backbone.parameters()),
        "objective": nonzero(objectives[term].parameters()),
    }
    backbone = model.backbone
    if hasattr(backbone, "to_shallow"):  # dccm_cnn: the layers up to S, and D
        groups["shallow_layers"] = nonzero(backbone.to_shallow.parameters())
        groups["deep_layers"] = nonzero(backbone.fc.parameters())
    return groups


@pytest.mark.parametrize("name", [*DCCM, DIGITS, MIX])
def test_recipe_checks(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check", str(RECIPES / f"{name}.toml")]) == 0, capsys.readouterr().err


@pytest.mark.parametrize("name", DCCM)
def test_dccm_terms_reach_their_parameters(name: str) -> None:
    # thres2 = 0: every sample is confident, so the untrained net has pseudo-labels to fit
    b = built(name, "objective.dccm_label.thres2=0.0", "objective.dccm_triplet_mi.hidden=8")
    views = next(iter(b.source.train_batches(0)))
    assert reached(b, "dccm_triplet_mi", views) == {
        "heads": False,  # the pseudo-graph only selects pairs
        "backbone": True,
        "objective": True,  # the discriminator
        "shallow_layers": True,
        "deep_layers": True,
    }
    for term in ("dccm_graph", "dccm_label"):
        assert reached(b, term, views) == {
            "heads": True,
            "backbone": True,
            "objective": False,  # no parameters
            "shallow_layers": True,
            "deep_layers": True,
        }, term


def test_digits_terms_reach_the_heads_and_backbone() -> None:
    b = built(DIGITS, "objective.dccm_label.thres2=0.0")
    views = next(iter(b.source.train_batches(0)))
    assert [term.name for term in b.objectives] == ["dccm_graph", "dccm_label"]
    for term in ("dccm_graph", "dccm_label"):
        assert reached(b, term, views) == {"heads": True, "backbone": True, "objective": False}, term


def test_digits_recipe_runs_shrunk(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shrink = ["data.limit=64", "train.batch_size=32", "train.max_steps=2", "train.num_workers=0"]
    args = ["run", str(RECIPES / f"{DIGITS}.toml"), "--out", str(tmp_path / "run")]
    assert cli.main(args + [a for s in shrink for a in ("--set", s)]) == 0, capsys.readouterr().err
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["step"] == 2
    assert all(np.isfinite(v) for v in record["losses"].values())


def test_dhog_dccm_terms_reach_the_heads() -> None:
    b = built(MIX, "objective.dccm_label.thres2=0.0", "backbone.final_copies=1", "augment.views=2")
    views = next(iter(b.source.train_batches(0)))
    assert [term.name for term in b.objectives] == ["iic", "dhog_push", "dccm_graph", "dccm_label"]
    for term in ("iic", "dhog_push", "dccm_graph", "dccm_label"):
        got = reached(b, term, views)
        assert got["heads"] and got["backbone"], term


@pytest.mark.slow
@pytest.mark.parametrize("name", ["dccm_cifar10", MIX])
def test_cifar10_recipe_runs_shrunk(name: str, cifar10_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shrink = [
        f"data.root={cifar10_root}", "data.verify=false", "data.limit=32", "train.batch_size=16",
        "train.max_steps=2", "train.device=cpu", "train.num_workers=0", "eval.batch_size=32",
    ]
    shrink += ["backbone.final_copies=1"] if name == MIX else ["objective.dccm_triplet_mi.hidden=16"]
    args = ["run", str(RECIPES / f"{name}.toml"), "--out", str(tmp_path / "run")]
    code = cli.main(args + [a for s in shrink for a in ("--set", s)])
    assert code == 0, capsys.readouterr().err
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["step"] == 2
    assert all(np.isfinite(v) for v in record["losses"].values())
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert 0 <= summary["acc"] <= 1
