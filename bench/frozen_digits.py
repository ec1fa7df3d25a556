"""The frozen-encoder path learning where its features are known to be good: recipes/frozen_digits.toml
(the 'pixels' encoder on scikit-learn's 1,797 digits: each image's flattened, L2-normalised pixels)
against k-means on the same features, over seeds.

    python bench/frozen_digits.py                 # seeds 0 1 2, both kinds of views
    python bench/frozen_digits.py --seeds 0 --views neighbours

Each row: the recipe's reported head (chosen without labels) and its ACC/NMI, with the views
the recipe names (``neighbours``: an image and some of its 20 nearest neighbours) or
``augmented_embeddings`` (two of four cached random crops of each digit, no flips: a mirrored
digit is another digit), then k-means (scikit-learn, 10 restarts, the same seed) on the same
embeddings, and the kNN accuracy of the features that the run prints.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tomli_w
from sklearn.cluster import KMeans
from sklearn.datasets import load_digits

from mihead import cli
from mihead.metrics import head_result

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "frozen_digits.toml"
VIEWS: dict[str, dict[str, object] | None] = {
    "neighbours": None,  # the recipe's own
    "augmented_embeddings": {"name": "augmented_embeddings", "views": 2, "copies": 4, "flip": 0.0, "crop_min": 0.5},
}


def kmeans_scores(seed: int) -> tuple[float, float]:
    """ACC and NMI of k-means on the digits' flattened, L2-normalised pixels (the run's embeddings)."""
    bunch = load_digits()
    images = np.round(bunch.images * (255 / 16)).reshape(len(bunch.images), -1) / 255
    x = images / np.linalg.norm(images, axis=1, keepdims=True)
    found = KMeans(10, n_init=10, random_state=seed).fit_predict(x)
    result = head_result(0, found, found, found, bunch.target, 10)
    assert result.acc is not None and result.nmi is not None
    return result.acc, result.nmi


def recipe_with(views: str, folder: Path) -> Path:
    """recipes/frozen_digits.toml with the [augment] section of ``views``."""
    recipe = tomllib.loads(RECIPE.read_text())
    augment = VIEWS[views]
    if augment is not None:
        recipe["augment"] = augment
    path = folder / f"{views}.toml"
    path.write_text(tomli_w.dumps(recipe))
    return path


def run(recipe: Path, seed: int, sets: list[str], folder: Path) -> dict[str, object]:
    out = folder / f"run-{recipe.stem}-{seed}"
    args = ["run", str(recipe), "--out", str(out), "--set", f"run.seed={seed}", "--set", f"backbone.cache={json.dumps(str(folder / 'cache'))}"]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = cli.main(args + [a for s in sets for a in ("--set", s)])
    if code != 0:
        raise SystemExit(f"mihead run failed for {recipe.stem}, seed {seed}: exit {code}")
    summary: dict[str, object] = json.loads((out / "summary.json").read_text())
    return summary


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--views", nargs="+", choices=sorted(VIEWS), default=sorted(VIEWS, reverse=True))
    parser.add_argument("--set", action="append", default=[], help="more recipe overrides (e.g. train.epochs=5)")
    args = parser.parse_args(argv)
    print(f"{'views':<21} {'seed':>4} {'ACC':>6} {'NMI':>6}   k-means ACC  NMI   kNN acc")
    with tempfile.TemporaryDirectory() as tmp:
        for views in args.views:
            recipe = recipe_with(views, Path(tmp))
            for seed in args.seeds:
                summary = run(recipe, seed, args.set, Path(tmp))
                acc, nmi = kmeans_scores(seed)
                knn = summary["encoder_knn"]
                assert isinstance(knn, dict)
                print(f"{views:<21} {seed:>4} {summary['acc']:>6.3f} {summary['nmi']:>6.3f}   {acc:>11.3f} {nmi:>4.3f}   {knn['acc']:>7.3f}", flush=True)


if __name__ == "__main__":
    main()
