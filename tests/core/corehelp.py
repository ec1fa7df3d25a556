"""Helpers of the core tests: a tiny digits recipe, ways to run the CLI, and a tiny backbone
in DHOG's shape."""

from __future__ import annotations

import errno
import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from mihead.contracts import AugmenterParams, Backbone, BackboneOutput, EmbeddingAugmenter, ImageSpec, Params

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


@contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """``folder`` refuses new files meanwhile: by its mode, and where a mode does not stop this
    process (root), by ``os.open`` refusing to make a file in it as a read-only mount would
    (tempfile's files are made through ``os.open``)."""
    folder.chmod(0o555)
    real_open = os.open

    def refusing(path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        where = Path(os.fsdecode(path))
        tmpfile = getattr(os, "O_TMPFILE", -1)
        makes = flags & os.O_CREAT or (tmpfile != -1 and flags & tmpfile == tmpfile)
        if makes and folder in (where, where.parent):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, mode, dir_fd=dir_fd)

    try:
        with pytest.MonkeyPatch.context() as patch:
            if os.access(folder, os.W_OK):
                patch.setattr(os, "open", refusing)
            yield
    finally:
        folder.chmod(0o755)


@functools.cache
def private_mounts() -> bool:
    """Whether a process here may make mounts of its own (``unshare -rm``: a new user and
    mount namespace; as root, or as a user where the kernel allows it)."""
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode == 0


def with_private_mounts(shell: str, script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``shell`` (e.g. mounting a small tmpfs) then ``python -c script``, in a mount namespace
    of their own: the machine's mounts are not touched and the new ones end with the process."""
    if not private_mounts():
        pytest.skip("this machine lets no process make its own mounts (unshare -rm)")
    return subprocess.run(
        ["unshare", "-rm", "sh", "-c", f'{shell} && exec "$0" -c "$1"', sys.executable, script],
        cwd=cwd,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )

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


class Flips(EmbeddingAugmenter[AugmenterParams]):
    """Copies that flip each image left-right with probability 1/2 (from the generator)."""

    name = "test_flips"

    def __init__(self, params: AugmenterParams, image: ImageSpec, copies: int = 2) -> None:
        super().__init__(params, image)
        self._copies = copies

    @property
    def copies(self) -> int:
        return self._copies

    def augment(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        flip = torch.rand(len(images), generator=generator, device=images.device) < 0.5
        return torch.where(flip[:, None, None, None], images.flip(-1), images)

    def prepare(self, embeddings: torch.Tensor) -> torch.Tensor | None:
        return None

    def view_rows(self, index: torch.Tensor, prepared: torch.Tensor | None, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.stack([index + n, index + 2 * n])
