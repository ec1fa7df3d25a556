"""Every registered plugin keeps its kind's contract (mihead.testing.check_plugin), one test
per registered class, so that a new plugin, built-in or installed, is covered without a test
of its own. A dataset whose data is absent here raises DataError, and a frozen encoder whose
default weights come from a hub out of reach a RecipeError saying so: each is skipped with it."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from corehelp import IMAGE_2PX, TrunkAndCopies
from mihead.contracts import ModelOutputs, Objective, ObjectiveParams, param
from mihead.errors import DataError, RecipeError
from mihead.plugins import Registered, load_registry
from mihead.testing import ContractError, check_backbone, check_plugin

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
    except RecipeError as exc:
        if "backbone.weights = 'hub'" not in str(exc):
            raise
        pytest.skip(f"weights absent (its own tests load weights they save): {exc}")


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


class SharedTrunkClaimed(TrunkAndCopies):
    def owned_parameters(self) -> list[list[nn.Parameter]]:
        return [list(self.trunk.parameters()), *[list(c.parameters()) for c in self.copies]]


class CopiesSwapped(TrunkAndCopies):
    def owned_parameters(self) -> list[list[nn.Parameter]]:
        return [[], list(self.copies[1].parameters()), list(self.copies[0].parameters())]


class OneListShort(TrunkAndCopies):
    def owned_parameters(self) -> list[list[nn.Parameter]]:
        return [list(c.parameters()) for c in self.copies]


@pytest.mark.parametrize(
    ("cls", "broken"),
    [
        (SharedTrunkClaimed, "attach\\[1\\] depends on parameters owned by attachment point 0"),
        (CopiesSwapped, "attach\\[1\\] does not depend on the parameters it owns"),
        (OneListShort, "owned_parameters\\(\\) has 2 lists for 3 attachment points"),
    ],
)
def test_a_wrong_owned_parameters_declaration_breaks_the_contract(cls: type[TrunkAndCopies], broken: str) -> None:
    """The declaration every registered backbone's check verifies (test_contract): each point's
    own parameters feed that point's features and no other's."""
    check_backbone(TrunkAndCopies, image=IMAGE_2PX)
    with pytest.raises(ContractError, match=broken):
        check_backbone(cls, image=IMAGE_2PX)
