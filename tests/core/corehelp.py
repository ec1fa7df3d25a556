"""Helpers of the core tests: a tiny digits recipe, ways to run the CLI, and a tiny backbone
in DHOG's shape."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from mihead.contracts import Backbone, BackboneOutput, ImageSpec, Params

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


IMAGE_2PX = ImageSpec(channels=1, size=2)


class TrunkAndCopies(Backbone):
    """Flat 2x2 images -> a shared linear trunk (attachment point 0) -> two linear copies
    (points 1 and 2), each copy its point's own."""

    name = "trunk_and_copies"

    def __init__(self, params: Params, image: ImageSpec) -> None:
        super().__init__(params, image)
        self.trunk = nn.Linear(4, 6)
        self.copies = nn.ModuleList(nn.Linear(6, 6) for _ in range(2))

    @property
    def attach_channels(self) -> list[int]:
        return [6, 6, 6]

    def owned_parameters(self) -> list[list[nn.Parameter]]:
        return [[], *[list(c.parameters()) for c in self.copies]]

    def forward(self, images: torch.Tensor) -> BackboneOutput:
        f = torch.tanh(self.trunk(images.flatten(1)))
        return BackboneOutput(attach=[f, *[torch.tanh(c(f)) for c in self.copies]])
