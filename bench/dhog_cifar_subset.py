"""Does DHOG learn? A CPU run on a CIFAR-10 subset, through the CLI with the paper recipe shrunk.

    python bench/dhog_cifar_subset.py [--images 2000] [--epochs 8] [--width 0.25] [--seed 0] [--eval-every 0]

Trains recipes/dhog_cifar10.toml on the first N training images of the rebuilt shared CIFAR-10
(8 heads, 4 views) shrunk for two shared CPU cores: a narrow ResNet-18 (width 0.25), 20-px
crops fed at 20 px through a stride-2 stem. Evaluates on the first N test images, prints the
command, the per-head accuracies and the reported (unsupervised, highest NMI(z, z')) head's
accuracy. Chance is 10%. With ``--eval-every N`` it also evaluates every N epochs, so that
``python bench/time_to_accuracy.py RUN_DIR`` gives accuracy against training time. Builds the shared CIFAR-10 into data/cifar10-shared first if needed.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "cifar10" / "build.py"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-every", type=int, default=0, help="epochs between evaluations (0 = only at the end)")
    args = ap.parse_args()
    root = REPO / "data" / "cifar10-shared"
    if not (root / "cifar-10-batches-py" / "test_batch").exists():
        subprocess.run([sys.executable, str(SHARED), str(root)], check=True)
    out = Path(tempfile.mkdtemp(prefix="dhog_bench_"))
    sets = {
        "data.root": str(root), "data.verify": "false", "data.limit": args.images,
        "backbone.width": args.width, "backbone.stem": "stride2", "augment.size": 20, "train.device": "cpu", "train.num_workers": 0,
        "train.epochs": args.epochs, "train.batch_size": args.batch, "train.lr": args.lr,
        "eval.every": args.eval_every, "run.seed": args.seed, "objective.dhog_push.weight": args.alpha,
    }
    cmd = ["mihead", "run", str(REPO / "recipes" / "dhog_cifar10.toml"), "--out", str(out)]
    cmd += [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    print("command:", f"OMP_NUM_THREADS={env['OMP_NUM_THREADS']}", shlex.join(cmd), flush=True)
    subprocess.run([sys.executable, "-m", "mihead", *cmd[1:]], check=True, env=env)
    summary = json.loads((out / "summary.json").read_text())
    print("per-head accuracy:", " ".join(f"{h['acc']:.3f}" for h in summary["heads"]))
    print("per-head NMI(z,z'):", " ".join(f"{h['nmi_zz']:.3f}" for h in summary["heads"]))
    print(
        f"reported head {summary['selected_head']} ({summary['selection']}): ACC {summary['acc']:.3f} "
        f"NMI {summary['nmi']:.3f} ARI {summary['ari']:.3f} (chance 0.100) on {args.images} test images; "
        f"best head by labels {summary['best_head']}: {summary['heads'][summary['best_head']]['acc']:.3f}; "
        f"{summary['seconds']:.0f} s of training, run dir {out}"
    )


if __name__ == "__main__":
    main()
