"""Fixtures of the core tests (helpers live in corehelp.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from mihead import cli
from mihead.plugins import Registry, load_registry

CliResult = tuple[int, str, str]


@pytest.fixture(scope="session", autouse=True)
def _one_thread() -> None:
    """Two shared CPU cores: keep the in-process runs on one thread (and deterministic)."""
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def registry() -> Registry:
    return load_registry(strict=False)


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """``mihead ARGS`` in this process: (exit status, stdout, stderr)."""

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        code = cli.main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny run on the first 200 digits (2 heads, 4 steps), shared by the tests of
    its outputs and of predict; tests that change it work on a copy."""
    from corehelp import QUICKSTART, sets

    run_dir = tmp_path_factory.mktemp("runs") / "digits"
    assert cli.main(["run", str(QUICKSTART), "--out", str(run_dir), *sets()]) == 0
    return run_dir
