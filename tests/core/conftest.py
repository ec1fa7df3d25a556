"""Fixtures of the core tests (helpers live in corehelp.py)."""

from __future__ import annotations

from collections.abc import Callable

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
