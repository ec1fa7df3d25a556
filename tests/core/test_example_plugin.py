"""The out-of-tree example plugin (docs/examples/mihead_example_plugin) is pip-installed into
a temporary folder and found through its real ``mihead`` entry point, with no change to
mihead: a recipe mixing its objective with a built-in one trains on the digits, and its own
tests pass against the installed package."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mihead import cli

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "mihead_example_plugin"
TINY = [
    "train.epochs=1", "data.limit=200", "train.batch_size=100", "backbone.widths=[8]",
    "backbone.features=16", "head.hidden=16", "eval.batch_size=200",
]


def _env(site: Path) -> dict[str, str]:
    path = os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example installed with pip into a fresh folder (not the venv: other tests see the
    registry without it); a copy of the source is built so the repository stays clean."""
    tmp = tmp_path_factory.mktemp("example")
    source = shutil.copytree(EXAMPLE, tmp / "src", ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    site = tmp / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index", "--target", str(site), str(source)],
        check=True,
        capture_output=True,
    )
    assert (site / "mihead_example_plugin-0.1.0.dist-info" / "entry_points.txt").exists()
    return site


@pytest.mark.slow
def test_recipe_mixing_the_plugin_with_a_builtin_term_runs(installed: Path, tmp_path: Path) -> None:
    args = [sys.executable, "-m", "mihead", "run", str(EXAMPLE / "recipe.toml"), "--out", str(tmp_path / "run")]
    proc = subprocess.run(
        args + [a for s in TINY for a in ("--set", s)], env=_env(installed), cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert set(record["losses"]) == {"iic", "marginal_entropy"}
    assert -1.0 <= record["losses"]["marginal_entropy"] <= 0.0  # minus a normalised entropy
    used = {p["name"]: p for p in json.loads((tmp_path / "run" / "plugins.json").read_text())}
    assert used["marginal_entropy"]["package"] == "mihead-example-plugin"
    assert used["marginal_entropy"]["version"] == "0.1.0"
    assert used["iic"]["package"] == "mihead"


@pytest.mark.slow
def test_the_examples_own_tests_pass_against_the_installed_package(installed: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path), str(EXAMPLE / "tests")],
        env=_env(installed),
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "3 passed" in proc.stdout


def test_without_the_package_the_name_is_unknown(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check", str(EXAMPLE / "recipe.toml")]) == 2
    assert "unknown objective 'marginal_entropy'" in capsys.readouterr().err
