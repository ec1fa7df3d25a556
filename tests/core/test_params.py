"""Declared parameters: every integer key of every registered plugin and of the core sections
has bounds within 64-bit integers, and a value beyond them fails at recipe loading naming the
key; ``also`` admits values outside the bounds."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest

from mihead.contracts import INT64_RANGE, INT_RANGE, ParamInfo, Params, describe, param
from mihead.errors import RecipeError
from mihead.plugins import load_registry
from mihead.recipe import EvalParams, RunParams, TrainParams, parse_recipe

REGISTRY = load_registry(strict=False)
SECTION_OF_KIND = {"dataset": "data", "augmenter": "augment", "backbone": "backbone", "head": "head", "objective": "objective"}
VALID: dict[str, Any] = {
    "data": {"name": "digits", "limit": 200},
    "augment": {"name": "small_affine", "views": 2},
    "backbone": {"name": "smallcnn", "widths": [8]},
    "head": {"name": "mlp"},
    "objective": [{"name": "iic"}],
    "train": {"device": "cpu"},
}


def _is_int(info: ParamInfo) -> bool:
    return info.type in (int, list[int])


def _integer_keys() -> list[tuple[str, str, str, ParamInfo]]:
    """(section, plugin name or '', key, info) of every integer key a recipe can set."""
    keys = [(section, "", i.name, i) for section, tp in (("run", RunParams), ("train", TrainParams), ("eval", EvalParams)) for i in describe(tp) if _is_int(i)]
    for entry in REGISTRY.entries():
        section = SECTION_OF_KIND[entry.kind]
        keys += [(section, entry.name, i.name, i) for i in describe(entry.cls.Params) if _is_int(i)]
    return keys


INTEGER_KEYS = _integer_keys()


def _recipe_with(section: str, plugin: str, key: str, value: Any) -> dict[str, Any]:
    """VALID with ``key = value`` in ``section``, whose plugin is ``plugin`` (its only other key)."""
    data = copy.deepcopy(VALID)
    if not plugin:
        data.setdefault(section, {})[key] = value
    elif section == "objective":
        data["objective"] = [{"name": plugin, key: value}]
    else:
        data[section] = {"name": plugin, key: value}
    return data


def test_every_kind_and_core_section_has_integer_keys_here() -> None:
    """The parametrisation below covers something of each."""
    assert {s for s, *_ in INTEGER_KEYS} == {"run", "train", "eval", "data", "augment", "backbone", "head", "objective"}


@pytest.mark.parametrize(("section", "plugin", "key", "info"), INTEGER_KEYS, ids=[f"{s}.{p or '-'}.{k}" for s, p, k, _ in INTEGER_KEYS])
def test_every_integer_key_is_bounded_within_int64(section: str, plugin: str, key: str, info: ParamInfo) -> None:
    if info.choices is not None:  # bounded by its choices
        assert all(isinstance(c, int) and INT64_RANGE[0] <= c <= INT64_RANGE[1] for c in info.choices)
        return
    low = info.bounds["ge"] if info.bounds["ge"] is not None else info.bounds["gt"]
    high = info.bounds["le"] if info.bounds["le"] is not None else info.bounds["lt"]
    assert low is not None and high is not None, info
    assert INT64_RANGE[0] <= low <= high <= INT64_RANGE[1]


@pytest.mark.parametrize(("section", "plugin", "key", "info"), INTEGER_KEYS, ids=[f"{s}.{p or '-'}.{k}" for s, p, k, _ in INTEGER_KEYS])
@pytest.mark.parametrize("value", [99999999999999999999999, 2**63, -(2**63) - 1])
def test_an_integer_beyond_the_bounds_fails_naming_the_key(section: str, plugin: str, key: str, info: ParamInfo, value: int) -> None:
    label = "objective.0" if section == "objective" else section
    data = _recipe_with(section, plugin, key, [value] if info.type == list[int] else value)
    with pytest.raises(RecipeError) as raised:
        parse_recipe(data, REGISTRY, "r.toml")
    refused = f"{value} is not one of" if info.choices is not None else f"{value} is out of range: must be "
    assert str(raised.value).startswith(f"r.toml: [{label}] {key}: {refused}")


def test_the_largest_admitted_integer_is_accepted() -> None:
    """The bound is the bound: train.epochs at INT_RANGE's top loads."""
    recipe = parse_recipe(_recipe_with("train", "", "epochs", INT_RANGE[1]), REGISTRY, "r.toml")
    assert recipe.train.epochs == INT_RANGE[1]


def test_a_declared_bound_may_widen_to_int64_but_not_beyond() -> None:
    @dataclasses.dataclass(frozen=True)
    class Wide(Params):
        seed: int = param(0, "a 64-bit seed", ge=0, le=2**64 - 1)

    @dataclasses.dataclass(frozen=True)
    class Seed(Params):
        seed: int = param(0, "a 32-bit seed", ge=0, le=2**32 - 1)

    with pytest.raises(TypeError, match="lies outside 64-bit integers"):
        describe(Wide)
    (info,) = describe(Seed)
    assert info.bounds["le"] == 2**32 - 1 and info.bounds_text() == ">= 0, <= 4294967295"


def test_also_admits_values_outside_the_bounds() -> None:
    @dataclasses.dataclass(frozen=True)
    class P(Params):
        k: int = param(0, "clusters, at least 2; 0 = auto", ge=2, also=(0,))

    (info,) = describe(P)
    assert [v for v in range(-1, 4) if info.admits(v)] == [0, 2, 3]
    assert info.bounds_text() == ">= 2, <= 2147483647, or 0"


@pytest.mark.parametrize("key", ["clusters", "overclusters"])
def test_a_head_needs_at_least_two_clusters(key: str) -> None:
    for ok in (0, 2):
        parse_recipe(_recipe_with("head", "mlp", key, ok), REGISTRY, "r.toml")
    with pytest.raises(RecipeError) as raised:
        parse_recipe(_recipe_with("head", "mlp", key, 1), REGISTRY, "r.toml")
    message = str(raised.value)
    assert message.startswith(f"r.toml: [head] {key}: 1 is out of range: must be >= 2, <= 2147483647, or 0 (")
    assert "at least 2" in message
