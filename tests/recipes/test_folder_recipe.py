"""recipes/folder.toml, one's own images: it validates, and trains two steps through the
command line on a folder of grey PNGs (scikit-learn's digits, one channel chosen) and on a
folder of colour JPEGs (CIFAR-10 images from the shared pack, three channels), in class
subfolders and as a label-free tree. The folders are bench/folder_recipe.py's, whose full
runs are the learning check (README, "Cluster your own images")."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mihead import cli
from mihead.build import build
from mihead.plugins import load_registry
from mihead.recipe import load_recipe

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from benchhelp import load_bench  # noqa: E402

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "folder.toml"
FOLDERS = load_bench("folder_recipe")  # writes the folders of real images
SHRINK = ["train.batch_size=32", "train.max_steps=2", "train.device=cpu", "eval.batch_size=64"]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _run(tmp_path: Path, capsys: pytest.CaptureFixture[str], *sets: str) -> dict[str, object]:
    args = ["run", str(RECIPE), "--out", str(tmp_path / "run")]
    code = cli.main(args + [a for s in [*SHRINK, *sets] for a in ("--set", s)])
    assert code == 0, capsys.readouterr().err
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["step"] == 2 and all(np.isfinite(v) for v in record["losses"].values())
    return json.loads((tmp_path / "run" / "summary.json").read_text())  # type: ignore[no-any-return]


def _channels(*sets: str) -> int:
    recipe = load_recipe(RECIPE, load_registry(), [*SHRINK, *sets])
    return int(build(recipe, torch.device("cpu")).train_data.images.shape[-1])


def test_folder_recipe_checks(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check", str(RECIPE)]) == 0, capsys.readouterr().err
    assert cli.main(["check", str(RECIPE), "--set", "data.channels=1", "--set", "head.clusters=7"]) == 0


def test_folder_recipe_trains_on_grey_pngs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = FOLDERS.digits_folder(tmp_path / "digits", 64)
    summary = _run(tmp_path, capsys, f"data.root={root}")
    assert 0 <= summary["acc"] <= 1  # type: ignore[operator]
    assert _channels(f"data.root={root}") == 1


def test_folder_recipe_trains_on_colour_jpegs_in_a_tree(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if not FOLDERS.PACK.exists():
        pytest.skip(f"shared CIFAR-10 pack not found at {FOLDERS.PACK}")
    root = FOLDERS.cifar_folder(tmp_path / "cifar", 64, subfolders=2)
    sets = [f"data.root={root}", "data.recursive=true", "head.clusters=10"]
    summary = _run(tmp_path, capsys, *sets)
    assert summary["acc"] is None and summary["selection"] == "nmi_zz"  # no labels: chosen by NMI(z, z')
    assert len(summary["heads"]) == 5  # type: ignore[arg-type]
    assert _channels(*sets) == 3
