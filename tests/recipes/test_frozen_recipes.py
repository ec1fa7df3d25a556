"""Heads on a frozen encoder's cached features, through the command line: recipes/frozen_digits.toml
(the 'pixels' encoder on scikit-learn's digits, neighbour views, IIC) trains and writes every
output (the kNN accuracy of the features, embeddings.csv in lightly's convention), a second
run reads the embeddings from the cache, ``eval`` and ``predict`` use the same encoder, and a
run whose encoder changed is refused in one line. The learning figures over seeds are
bench/frozen_digits.py's (docs/frozen.md)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mihead import cli

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
DIGITS = RECIPES / "frozen_digits.toml"
SHRINK = ["train.max_steps=8"]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _run(capsys: pytest.CaptureFixture[str], out: Path, *sets: str) -> tuple[str, str]:
    code, stdout, stderr = _main(capsys, "run", str(DIGITS), "--out", str(out), *[a for s in [*SHRINK, *sets] for a in ("--set", s)])
    assert code == 0, stderr
    return stdout, stderr


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("embeddings")


def test_a_run_writes_every_output_and_a_second_one_encodes_nothing(tmp_path: Path, cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stdout, stderr = _run(capsys, tmp_path / "first", f"backbone.cache={json.dumps(str(cache))}")
    assert "encoding" in stderr and "read from the cache" not in stderr
    assert "encoder kNN accuracy" in stdout
    run = tmp_path / "first"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["encoder_knn"]["acc"] > 0.95 and summary["encoder_knn"]["bank"].startswith("two halves")
    with open(run / "embeddings.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["filenames", *[f"embedding_{i}" for i in range(64)], "labels"]
    assert len(rows) == 1 + 1797 and rows[1][0] == "0"
    first = np.array(rows[1][1:-1], dtype=np.float32)
    assert abs(float(np.linalg.norm(first)) - 1) < 1e-2  # L2-normalised, stored as float16
    with open(run / "assignments.csv", newline="") as f:
        assert sum(1 for _ in f) == 1 + 1797
    assert (run / "gallery.png").stat().st_size > 0

    again, stderr = _run(capsys, tmp_path / "second", f"backbone.cache={json.dumps(str(cache))}")
    assert "read from the cache" in stderr and "encoding" not in stderr
    assert json.loads((tmp_path / "second" / "summary.json").read_text())["heads"] == summary["heads"]  # same seed, same result


def test_eval_and_predict_use_the_run_s_encoder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sklearn.datasets import load_digits

    _run(capsys, tmp_path / "run")
    run = tmp_path / "run"
    code, stdout, _ = _main(capsys, "eval", str(run))
    assert code == 0 and "encoder kNN accuracy" in stdout
    digits = np.round(load_digits().images[:3] * (255 / 16)).astype(np.uint8)
    files = []
    for i, image in enumerate(digits):
        files.append(tmp_path / f"{i}.png")
        Image.fromarray(image).save(files[-1])
    code, stdout, stderr = _main(capsys, "predict", str(run), *map(str, files))
    assert code == 0, stderr
    predicted = [row["cluster"] for row in csv.DictReader(stdout.splitlines())]
    with open(run / "assignments.csv", newline="") as f:
        assigned = [row["cluster"] for row in csv.DictReader(f)][:3]
    assert predicted == assigned  # the same images, encoded again, land in the same clusters


def test_a_run_whose_encoder_changed_is_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _run(capsys, tmp_path / "run")
    copy = tmp_path / "copy"
    shutil.copytree(tmp_path / "run", copy)
    recipe = copy / "recipe.toml"
    text = recipe.read_text()
    assert "normalize = true" in text
    recipe.write_text(text.replace("normalize = true", "normalize = false"))
    for command in (["eval", str(copy)], ["run", "--resume", str(copy), "--set", "train.max_steps=9"]):
        code, _, stderr = _main(capsys, *command)
        lines = [line for line in stderr.strip().splitlines() if not line.startswith("resuming")]
        assert code == 2 and len(lines) == 1, stderr  # refused before anything was encoded
        assert "frozen encoder was normalize = 'true'" in lines[0]


@pytest.mark.parametrize("recipe", ["frozen_digits.toml", "frozen_folder.toml", "temi_cifar10.toml"])
def test_the_frozen_recipes_check_offline(recipe: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, stderr = _main(capsys, "check", str(RECIPES / recipe))
    assert code == 0, stderr
    assert ": ok (" in stdout


def test_temi_cifar10_trains_with_local_weights(cifar10_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The recipe as it is, on a tiny timm ViT whose random weights the test saves (the
    recipe's ViT-B/16 needs the hub), 256 images of each split, two steps."""
    import timm
    from safetensors.torch import save_file

    weights = tmp_path / "vit.safetensors"
    save_file(timm.create_model("test_vit.r160_in1k").state_dict(), str(weights))
    sets = {
        "data.root": json.dumps(str(cifar10_root)),
        "data.verify": "false",
        "data.limit": "256",
        "backbone.model": '"test_vit.r160_in1k"',
        "backbone.weights": json.dumps(str(weights)),
        "backbone.cache": json.dumps(str(tmp_path / "cache")),
        "train.device": '"cpu"',
        "train.batch_size": "64",
        "train.max_steps": "2",
        "head.hidden": "16",
        "eval.every": "0",
    }
    args = [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
    code, stdout, stderr = _main(capsys, "run", str(RECIPES / "temi_cifar10.toml"), "--out", str(tmp_path / "run"), *args)
    assert code == 0, stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert len(summary["heads"]) == 16 and summary["steps"] == 2 and "encoder_knn" in summary
    assert "encoder kNN accuracy" in stdout


def test_a_cache_folder_that_cannot_be_made_is_one_line_and_leaves_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    out = tmp_path / "run"
    code, _, stderr = _main(capsys, "run", str(DIGITS), "--out", str(out), "--set", f"backbone.cache={json.dumps(str(blocker / 'cache'))}")
    assert code == 2 and stderr.strip().splitlines()[-1].startswith("mihead: error: backbone.cache: cannot make")
    assert "encoding" not in stderr and not out.exists()


def test_torchrun_two_processes_share_one_cache_entry_and_write_one_run(tmp_path: Path) -> None:
    """Under torchrun (2 gloo processes) the ranks encode into one cache entry (one fills it,
    the other waits on its lock and reads it) and rank 0 writes the run's outputs once."""
    import os
    import subprocess
    import sys

    cache, run = tmp_path / "cache", tmp_path / "run"
    overrides = ["train.max_steps=4", "train.batch_size=200", f"backbone.cache={json.dumps(str(cache))}"]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "mihead", "run", str(DIGITS)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}
    done = subprocess.run([*command, *[a for s in overrides for a in ("--set", s)], "--out", str(run)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(list(cache.glob("*.npy"))) == 1 and not list(cache.glob("*.partial*"))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 4 and "encoder_knn" in summary
    assert done.stdout.count("Per-head results") == 1 and done.stdout.count("encoder kNN accuracy") == 1
    with open(run / "embeddings.csv", newline="") as f:
        assert sum(1 for _ in f) == 1 + 1797
