"""Building a run from a recipe: what it says when the data cannot decide the model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from corehelp import QUICKSTART, error_line, sets

CliResult = tuple[int, str, str]


def _images(folder: Path, n: int) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(folder / f"{i}.png")


@pytest.mark.parametrize(
    ("layout", "said"),
    [("flat", "names no classes (unlabelled)"), ("one class", "names only the class 'a'")],
)
def test_clusters_that_default_to_too_few_classes(run_cli: Callable[..., CliResult], tmp_path: Path, layout: str, said: str) -> None:
    """head.clusters = 0 takes the dataset's class count; with fewer than two classes the run
    stops before training, saying why and which key to set."""
    root = tmp_path / "images"
    _images(root if layout == "flat" else root / "a", 4)
    overrides = ("data.name=image_folder", f"data.root={root}", "data.size=8", "data.limit=0", "head.clusters=0", "train.batch_size=2")
    code, _, err = run_cli("run", str(QUICKSTART), *sets(*overrides), "--out", str(tmp_path / "run"))
    assert code == 2
    assert error_line(err) == (
        f"mihead: error: dataset 'image_folder' split 'all' {said}, so head.clusters cannot default to its class count; "
        "set head.clusters to the number of clusters wanted (at least 2)"
    )
    assert not (tmp_path / "run").exists()  # nothing left behind


def test_data_too_large_to_hold_is_one_line(run_cli: Callable[..., CliResult], tmp_path: Path) -> None:
    """An image size within its bounds whose split cannot be allocated (3 images of
    2147483647 px a side) ends in one line naming [data], not numpy's traceback."""
    root = tmp_path / "images"
    _images(root, 3)
    overrides = ("data.name=image_folder", f"data.root={root}", "data.size=2147483647", "data.limit=0", "data.cache=", "head.clusters=2")
    code, _, err = run_cli("run", str(QUICKSTART), *sets(*overrides), "--out", str(tmp_path / "run"))
    assert code == 2
    assert error_line(err).startswith("mihead: error: [data] cannot be built from the recipe's values: ValueError: ")
    assert not (tmp_path / "run").exists()
