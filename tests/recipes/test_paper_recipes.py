"""The paper recipes: each validates; the CIFAR-10 ones train two steps through the command
line's entry point (``mihead.cli.main``, in this process: a fresh interpreter costs seconds of
imports per call) on the rebuilt shared CIFAR-10; the others fail cleanly (exit 2, the expected
path named) where their data is absent."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from mihead import cli

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
CIFAR10 = ["dhog_cifar10", "iic_cifar10"]
ABSENT = {
    "dhog_cifar100_20": "cifar-100-python/train",
    "dhog_svhn": "train_32x32.mat",
    "dhog_stl10": "stl10_binary/train_X.bin",
    "dhog_cinic10": "train",
}
# shrunk: 16 images, batch 8, two steps, one final-block copy (4 heads) to keep CPU time low
SHRINK = [
    "data.limit=16", "train.batch_size=8", "train.max_steps=2", "train.device=cpu",
    "train.num_workers=0", "eval.batch_size=16", "backbone.final_copies=1",
]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture
def mihead(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str]]:
    """``mihead ARGS`` -> (exit status, stderr)."""

    def run(*args: str) -> tuple[int, str]:
        capsys.readouterr()
        code = cli.main(list(args))
        return code, capsys.readouterr().err

    return run


def _sets(items: list[str]) -> list[str]:
    return [a for item in items for a in ("--set", item)]


@pytest.mark.parametrize("name", CIFAR10 + list(ABSENT))
def test_recipe_checks(name: str, mihead: Callable[..., tuple[int, str]]) -> None:
    code, err = mihead("check", str(RECIPES / f"{name}.toml"))
    assert code == 0, err


@pytest.mark.slow
@pytest.mark.parametrize("name", CIFAR10)
def test_cifar10_recipe_runs_shrunk(name: str, cifar10_root: Path, tmp_path: Path, mihead: Callable[..., tuple[int, str]]) -> None:
    out = tmp_path / "run"
    sets = [f"data.root={cifar10_root}", "data.verify=false", *SHRINK]
    code, err = mihead("run", str(RECIPES / f"{name}.toml"), *_sets(sets), "--out", str(out))
    assert code == 0, err[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 2 and len(summary["heads"]) == 4
    assert all(0.0 <= h["nmi_zz"] <= 1.0 and h["acc"] is not None for h in summary["heads"])
    assert (out / "heads.png").exists() and (out / "confusion.png").exists()
    terms = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["losses"]
    assert set(terms) == ({"iic", "dhog_push"} if name == "dhog_cifar10" else {"iic"})


@pytest.mark.parametrize(("name", "expected"), ABSENT.items())
def test_absent_data_exits_2_naming_the_path(name: str, expected: str, tmp_path: Path, mihead: Callable[..., tuple[int, str]]) -> None:
    sets = [f"data.root={tmp_path}", *SHRINK]
    code, err = mihead("run", str(RECIPES / f"{name}.toml"), *_sets(sets), "--out", str(tmp_path / "run"))
    assert code == 2
    assert str(tmp_path / expected) in err.replace("\n", "")
    assert "Traceback" not in err
