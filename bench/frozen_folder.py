"""recipes/frozen_folder.toml end to end on a folder of photos, twice: decoding, encoding, mining,
training and the outputs the first time; the second time everything is read from the caches.

    python bench/frozen_folder.py                          # 3,000 CIFAR-10 JPEGs
    python bench/frozen_folder.py --images 300 --set train.epochs=2

The folder is bench/folder_recipe.py's (the first N CIFAR-10 training images as JPEG files, in
class subfolders, under the git-ignored data/). The encoder's weights are random ones saved to
a temporary file (no weights can be downloaded here): the times are those of the recipe's model,
but the scores are not a pretrained encoder's and are printed only to show the run completed.
Both runs use fresh, temporary image and embedding caches ($XDG_CACHE_HOME), so the first one
starts cold. Printed: each run's wall-clock seconds (the ``mihead run`` process, start to end).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import timm
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from folder_recipe import REPO, cifar_folder  # noqa: E402

RECIPE = REPO / "recipes" / "frozen_folder.toml"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--set", action="append", default=[], help="more recipe overrides")
    args = parser.parse_args(argv)
    folder = cifar_folder(REPO / "data" / f"cifar10_jpg_{args.images}", args.images)
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "encoder.safetensors"
        model = "resnet18.a1_in1k"
        save_file(timm.create_model(model, pretrained=False).state_dict(), str(weights))
        env = {**os.environ, "XDG_CACHE_HOME": str(Path(tmp) / "cache")}
        sets = [f"data.root={json.dumps(str(folder))}", "head.clusters=10", f"backbone.weights={json.dumps(str(weights))}", *args.set]
        print(f"{args.images:,} photos, {RECIPE.name}, {model} (random weights)")
        for attempt in ("first run (cold caches)", "second run (cached)"):
            out = Path(tmp) / attempt.split()[0]
            command = ["mihead", "run", str(RECIPE), "--out", str(out), *[a for s in sets for a in ("--set", s)]]
            start = time.perf_counter()
            done = subprocess.run(command, env=env, capture_output=True, text=True)
            seconds = time.perf_counter() - start
            if done.returncode != 0:
                raise SystemExit(f"{' '.join(command)} failed (exit {done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
            summary = json.loads((out / "summary.json").read_text())
            print(f"{attempt}: {seconds:,.1f} s (ACC {summary['acc']:.3f}, NMI {summary['nmi']:.3f} with random weights)", flush=True)


if __name__ == "__main__":
    main()
