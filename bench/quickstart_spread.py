"""How much the quickstart's result varies with the seed, the thread count and the CPU's kernels.

    python bench/quickstart_spread.py [--seeds 0] [--threads 1 2] [--isa native avx2] [--max-steps 0]

Runs recipes/quickstart.toml once per (seed, threads, isa) through the CLI, one run at a time
under ``nice``, and prints per run: the head chosen without labels, its ACC and NMI, the two
highest NMI(z, z') (how close the choice was), the best head by labels, the first epoch's mean loss (its 7th
digit shows the float summation order), and the training seconds. ``--isa avx2``
limits torch's, oneDNN's and MKL's kernels to AVX2 (ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA,
MKL_ENABLE_INSTRUCTIONS), which is how an older CPU computes; ``native`` uses what this CPU
offers. ``--max-steps 8`` compares only the first steps, in seconds instead of minutes.
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
from typing import Any

REPO = Path(__file__).resolve().parents[1]
ISA: dict[str, dict[str, str]] = {
    "native": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
}


def run(seed: int, threads: int, isa: str, max_steps: int, out: Path) -> dict[str, Any]:
    """One quickstart run: its summary and first log line, and the command that made it."""
    env = {"OMP_NUM_THREADS": str(threads), **ISA[isa]}
    cmd = ["mihead", "run", "recipes/quickstart.toml", "--out", str(out), "--set", f"run.seed={seed}"]
    if max_steps:
        cmd += ["--set", f"train.max_steps={max_steps}"]
    print("command:", " ".join(f"{k}={v}" for k, v in env.items()), shlex.join(cmd), flush=True)
    subprocess.run(["nice", "-n", "10", sys.executable, "-m", "mihead", *cmd[1:]], check=True, cwd=REPO, env={**os.environ, **env}, stdout=subprocess.DEVNULL)
    first = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    return {"summary": json.loads((out / "summary.json").read_text()), "first_loss": sum(first["losses"].values())}


COLUMNS = [("seed", 4), ("threads", 7), ("isa", 6), ("head", 4), ("ACC", 6), ("NMI", 6), ("nmi_zz", 7), ("2nd_zz", 7), ("best", 4), ("best_ACC", 8), ("epoch1_loss", 12), ("s", 6)]
HEADER = " ".join(name.rjust(width) for name, width in COLUMNS)


def row(seed: int, threads: int, isa: str, result: dict[str, Any]) -> str:
    """One run's line under :data:`HEADER`."""
    s = result["summary"]
    top = sorted((h["nmi_zz"] for h in s["heads"]), reverse=True)[:2]
    best = max(s["heads"], key=lambda h: h["acc"])
    cells = [seed, threads, isa, s["selected_head"], f"{s['acc']:.3f}", f"{s['nmi']:.3f}", f"{top[0]:.4f}", f"{top[-1]:.4f}"]
    cells += [best["index"], f"{best['acc']:.3f}", f"{result['first_loss']:.8f}", f"{s['seconds']:.0f}"]
    return " ".join(str(c).rjust(width) for c, (_, width) in zip(cells, COLUMNS, strict=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--isa", nargs="+", default=["native"], choices=sorted(ISA))
    ap.add_argument("--max-steps", type=int, default=0, help="stop each run after this many steps (0 = the recipe's 400)")
    args = ap.parse_args()
    print(HEADER, flush=True)  # then each row as its run ends, so a stopped grid keeps what it measured
    with tempfile.TemporaryDirectory(prefix="quickstart_spread_") as tmp:
        for n, seed in enumerate(args.seeds):  # a seed given twice runs twice: a check that it repeats
            for threads in args.threads:
                for isa in args.isa:
                    out = Path(tmp) / f"{n}-s{seed}-t{threads}-{isa}"
                    print(row(seed, threads, isa, run(seed, threads, isa, args.max_steps, out)), flush=True)


if __name__ == "__main__":
    main()
