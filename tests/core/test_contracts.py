"""Every registered plugin keeps its kind's contract (mihead.testing.check_plugin), one test
per registered class, so that a new plugin, built-in or installed, is covered without a test
of its own. A dataset whose data is absent here raises DataError and is skipped with it."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from mihead.contracts import ModelOutputs, Objective, ObjectiveParams, param
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


@dataclasses.dataclass(frozen=True)
class _ScaleParams(ObjectiveParams):
    scale: float = param(2.0, "factor of the term")


class _Bound(Objective[_ScaleParams]):
    """Binds its parameters' type where it names its base (the way plugins declare them)."""

    name = "bound"

    def forward(self, outputs: ModelOutputs) -> torch.Tensor:
        return self.params.scale * outputs.probs.mean()


class _Declared(Objective):
    """Sets ``Params`` itself (the older way), which keeps working."""

    name = "declared"
    Params = _ScaleParams

    def forward(self, outputs: ModelOutputs) -> torch.Tensor:
        return outputs.probs.mean()


def test_a_plugin_s_params_come_from_the_type_it_binds() -> None:
    assert _Bound.Params is _ScaleParams
    assert type("Sub", (_Bound,), {}).Params is _ScaleParams  # inherited by a subclass
    assert check_plugin("objective", _Bound).item() == pytest.approx(2.0 / 4)  # 4 clusters: mean 1/4


def test_a_plugin_that_sets_params_itself_keeps_them() -> None:
    assert _Declared.Params is _ScaleParams
    check_plugin("objective", _Declared)


def test_a_plugin_that_binds_one_type_and_sets_another_is_refused() -> None:
    with pytest.raises(TypeError, match="binds _ScaleParams as its parameters but sets Params = ObjectiveParams"):

        class _Both(Objective[_ScaleParams]):
            name = "both"
            Params = ObjectiveParams
