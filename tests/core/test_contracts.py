"""Every registered plugin keeps its kind's contract (mihead.testing.check_plugin), one test
per registered class, so that a new plugin, built-in or installed, is covered without a test
of its own. A dataset whose data is absent here raises DataError and is skipped with it."""

from __future__ import annotations

import pytest
import torch

from mihead.errors import DataError
from mihead.plugins import Registered, load_registry
from mihead.testing import check_plugin

ENTRIES = sorted(load_registry(strict=False).entries(), key=lambda e: (e.kind, e.name))


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def test_every_kind_has_a_registered_plugin() -> None:
    assert {e.kind for e in ENTRIES} == {"backbone", "head", "objective", "augmenter", "dataset"}


@pytest.mark.parametrize("entry", ENTRIES, ids=[f"{e.kind}:{e.name}" for e in ENTRIES])
def test_contract(entry: Registered) -> None:
    torch.manual_seed(0)
    try:
        check_plugin(entry.kind, entry.cls)
    except DataError as exc:
        if entry.kind != "dataset":
            raise
        pytest.skip(f"data absent: {exc}")
