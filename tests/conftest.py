"""Fixtures shared by several test packages."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

SHARED_CIFAR10 = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10"
CACHE = Path(__file__).resolve().parents[1] / "data"  # git-ignored
# the GPU check's prepared copy of the pack (a GPU machine need not have ../shared)
PREPARED_CIFAR10 = CACHE / "device" / "cifar10"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``cuda`` are skipped, with the reason, where torch sees no CUDA device."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device: torch.cuda.is_available() is False (run them on a GPU: pytest -m cuda)")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _image_cache_in_tmp(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Folder datasets cache decoded images under $XDG_CACHE_HOME by default: point it at a
    temporary folder, so that no test writes to the real home cache (subprocesses inherit it)."""
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))


@pytest.fixture(scope="session", autouse=True)
def _no_downloads(tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test reaches the internet or the real user data folder: datasets fetched on first use
    look in a temporary $XDG_DATA_HOME, and every HTTP(S) request (urllib's, in this process and
    in subprocesses, which inherit the variables) goes to a closed local port and is refused at
    once, rather than waiting on a network that may drop packets silently."""
    os.environ["XDG_DATA_HOME"] = str(tmp_path_factory.mktemp("xdg-data"))
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        os.environ[name] = "http://127.0.0.1:9"
    for name in ("no_proxy", "NO_PROXY"):
        os.environ.pop(name, None)


@pytest.fixture(scope="session")
def cifar10_root() -> Path:
    """A folder holding ``cifar-10-batches-py/`` rebuilt from the shared JPEG pack (md5 sums
    differ from the originals: load it with ``data.verify = false``). Built once, about 6 s,
    into the git-ignored data/ folder, from ../shared or the copy that bench/gpu_check.sh
    prepares; skipped where neither is present."""
    root = CACHE / "cifar10-shared"
    if (root / "cifar-10-batches-py" / "test_batch").exists():
        return root
    pack = next((p for p in (SHARED_CIFAR10, PREPARED_CIFAR10) if (p / "build.py").exists()), None)
    if pack is None:
        pytest.skip(f"CIFAR-10 pack not found at {SHARED_CIFAR10} or {PREPARED_CIFAR10}")
    CACHE.mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=CACHE))
    subprocess.run([sys.executable, str(pack / "build.py"), str(tmp)], check=True, capture_output=True)
    try:
        os.replace(tmp, root)  # atomic: a concurrent build may have won the race
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return root
