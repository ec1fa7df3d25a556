"""Helpers of the core tests: a tiny digits recipe and ways to run the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "recipes" / "quickstart.toml"

# recipes/quickstart.toml shrunk to a run of a second or two on CPU: 2 steps per epoch
TINY = [
    "train.epochs=2",
    "data.limit=200",
    "train.batch_size=100",
    "backbone.widths=[8]",
    "backbone.features=16",
    "head.per_attachment=2",
    "head.overclusters=0",
    "augment.views=2",
    "eval.every=1",
]


def sets(*overrides: str) -> list[str]:
    """``--set`` arguments for TINY followed by ``overrides`` (later ones win)."""
    return [arg for item in (*TINY, *overrides) for arg in ("--set", item)]


def subprocess_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "NO_ALBUMENTATIONS_UPDATE": "1", **extra}


def mihead_process(
    args: Sequence[str], cwd: Path, env_extra: dict[str, str] | None = None, **kwargs: object
) -> subprocess.CompletedProcess[str]:
    """``python -m mihead ARGS`` in a subprocess, where exit codes and stderr are real."""
    return subprocess.run(
        [sys.executable, "-m", "mihead", *args],
        cwd=cwd,
        env=subprocess_env(**(env_extra or {})),
        capture_output=True,
        text=True,
        timeout=120,
        **kwargs,  # type: ignore[arg-type]
    )


def error_line(err: str) -> str:
    """The ``mihead: error:`` line of stderr, asserting it is the only one."""
    lines = [line for line in err.splitlines() if line.startswith("mihead: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    return lines[0]


def diverged_copy(run_dir: Path, to: Path) -> Path:
    """A copy of ``run_dir`` whose checkpoint's first model tensor is NaN (as a diverged step
    left checkpoints before they were checked): every image's probabilities are NaN."""
    import shutil

    import torch

    shutil.copytree(run_dir, to)
    state = torch.load(to / "checkpoint.pt", weights_only=True)
    name = next(n for n, t in state["model"].items() if t.is_floating_point())
    state["model"][name].fill_(float("nan"))
    torch.save(state, to / "checkpoint.pt")
    return to
