"""Does recipes/folder.toml learn on a folder of real image files? A CPU run through the CLI.

    python bench/folder_recipe.py [--data digits|cifar10] [--images N] [--seed 0] [--set KEY=VALUE ...]

Writes, once, a folder of real images in class subfolders under the git-ignored ``data/``:
``digits``, scikit-learn's 1,797 8x8 digits as grey PNGs (``data/digits_png/``), or
``cifar10``, the first N CIFAR-10 training images as the JPEG files stored in the shared pack
(``data/cifar10_jpg_N/``). Then runs ``mihead run recipes/folder.toml --set data.root=FOLDER``
(the command is printed; the class subfolders only score the result) and prints the reported
head's ACC and NMI. Chance is 10% for both.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

REPO = Path(__file__).resolve().parents[1]
PACK = REPO.parent / "shared" / "data" / "cifar10" / "cifar10_jpeg_q75.npz"


def digits_folder(root: Path, n: int = 1797) -> Path:
    """The first ``n`` digits as 8x8 grey PNGs (0..16 scaled to 0..255) in class subfolders 0..9."""
    digits = load_digits()
    for i in range(n):
        path = root / str(digits.target[i]) / f"{i:04d}.png"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.rint(digits.images[i] * 255 / 16).astype(np.uint8)).save(path)
    return root


def cifar_folder(root: Path, n: int, subfolders: int = 1) -> Path:
    """The first ``n`` CIFAR-10 training images, the pack's JPEG files as they are, under
    ``subfolders`` top folders (batch0/, batch1/, ...) of class subfolders 0..9."""
    pack = np.load(PACK)
    offsets, jpeg, labels = pack["offsets"], pack["jpeg"], pack["labels"]
    for i in range(n):
        top = root / f"batch{i % subfolders}" if subfolders > 1 else root
        path = top / str(labels[i]) / f"{i:05d}.jpg"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(jpeg[offsets[i] : offsets[i + 1]].tobytes())
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--data", choices=("digits", "cifar10"), default="digits")
    ap.add_argument("--images", type=int, default=5000, help="CIFAR-10 images (digits: all 1,797)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], help="more recipe overrides")
    args = ap.parse_args()
    if args.data == "digits":
        folder = digits_folder(REPO / "data" / "digits_png")
    else:
        folder = cifar_folder(REPO / "data" / f"cifar10_jpg_{args.images}", args.images)
    out = Path(tempfile.mkdtemp(prefix=f"folder_{args.data}_", dir=REPO / "data"))
    sets = [f"data.root={folder}", f"run.seed={args.seed}", *args.set]
    cmd = ["mihead", "run", "recipes/folder.toml", *(a for s in sets for a in ("--set", s)), "--out", str(out)]
    print("$", shlex.join(cmd), flush=True)
    subprocess.run([sys.executable, "-m", *cmd], cwd=REPO, check=True)
    summary = json.loads((out / "summary.json").read_text())
    print(f"{args.data}: ACC {summary['acc']:.3f}  NMI {summary['nmi']:.3f}  (head {summary['selected_head']}, "
          f"{summary['steps']} steps in {summary['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
