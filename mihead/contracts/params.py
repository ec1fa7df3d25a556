"""Typed, documented parameters that plugins and recipe sections declare.

A plugin's parameters are a frozen dataclass whose fields carry a type, a default and,
through :func:`param`, a help text and bounds. The recipe loader reads these declarations to
check a recipe's keys, types and ranges before anything is built, and ``mihead plugins
--verbose`` prints them, so one declaration serves validation, documentation and construction.

Every integer key is bounded, by its choices or by bounds: a side it leaves open gets the bound
of :data:`INT_RANGE`, 32-bit, so that a product of two keys (epochs x steps per epoch, steps x
batch size) still fits the 64-bit integers that torch and numpy count with; a declared bound
may widen it up to 64 bits (a seed), never beyond.
"""

from __future__ import annotations

import dataclasses
import operator
import typing
from collections.abc import Sequence
from typing import Any

__all__ = ["INT64_RANGE", "INT_RANGE", "param", "Params", "ParamInfo", "describe"]

INT_RANGE = (-(2**31), 2**31 - 1)
"""The bounds of an integer key that declares none."""
INT64_RANGE = (-(2**63), 2**63 - 1)
"""What a declared bound of an integer key may not exceed."""

_HELP = "mihead.help"
_BOUNDS = "mihead.bounds"
_CHOICES = "mihead.choices"
_ALSO = "mihead.also"
_COMPARE = {"ge": operator.ge, "gt": operator.gt, "le": operator.le, "lt": operator.lt}


def param(
    default: Any,
    help: str,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: Sequence[Any] | None = None,
    also: Sequence[Any] = (),
) -> Any:
    """A dataclass field with a help text, optional numeric bounds and optional choices.
    ``also`` lists values accepted outside the bounds, for a key whose 0 means "the default"
    or "none" where 1 makes no sense (``clusters``: 0 or at least 2).

    Lists are copied per instance, so a list default is safe.
    """
    metadata = {
        _HELP: help,
        _BOUNDS: {"ge": ge, "gt": gt, "le": le, "lt": lt},
        _CHOICES: tuple(choices) if choices is not None else None,
        _ALSO: tuple(also),
    }
    if isinstance(default, list):
        frozen = tuple(default)
        return dataclasses.field(default_factory=lambda: list(frozen), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class Params:
    """Base of every parameter dataclass (empty: a plugin with no parameters uses it as is)."""


@dataclasses.dataclass(frozen=True)
class ParamInfo:
    """What a recipe needs to know about one declared parameter."""

    name: str
    type: Any
    default: Any
    help: str
    bounds: dict[str, float | None]
    choices: tuple[Any, ...] | None
    also: tuple[Any, ...] = ()

    def admits(self, value: Any) -> bool:
        """Whether ``value`` (or, for a list, one item of it) lies within the bounds and
        choices, or is one of ``also``."""
        if value in self.also:
            return True
        if self.choices is not None and value not in self.choices:
            return False
        return all(bound is None or _COMPARE[key](value, bound) for key, bound in self.bounds.items())

    def bounds_text(self) -> str:
        """Bounds and choices as a short human-readable text ('' when unconstrained)."""
        symbols = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
        parts = [f"{symbols[k]} {v if isinstance(v, int) else f'{v:g}'}" for k, v in self.bounds.items() if v is not None]
        if self.choices is not None:
            parts.append("one of " + ", ".join(repr(c) for c in self.choices))
        text = ", ".join(parts)
        if self.also:
            text += ", or " + " or ".join(repr(v) for v in self.also)
        return text


def _is_int(tp: Any) -> bool:
    """Whether values of ``tp`` are integers: ``int`` or ``list[int]``."""
    return tp is int or (typing.get_origin(tp) is list and typing.get_args(tp) == (int,))


def _int_bounds(name: str, bounds: dict[str, float | None]) -> dict[str, float | None]:
    """An integer key's bounds, with :data:`INT_RANGE` filling in the sides it leaves open;
    a TypeError when a declared one lies outside :data:`INT64_RANGE`."""
    low, high = INT64_RANGE
    for key, bound in bounds.items():
        if bound is not None and not low <= bound <= high:
            raise TypeError(f"parameter {name!r}: bound {key}={bound} lies outside 64-bit integers")
    filled = dict(bounds)
    if filled.get("ge") is None and filled.get("gt") is None:
        filled["ge"] = INT_RANGE[0]
    if filled.get("le") is None and filled.get("lt") is None:
        filled["le"] = INT_RANGE[1]
    return filled


def describe(params_type: type[Params]) -> list[ParamInfo]:
    """The declared parameters of a Params dataclass, in declaration order (integer keys
    with their full bounds, see :data:`INT_RANGE`)."""
    hints = typing.get_type_hints(params_type)
    infos = []
    for f in dataclasses.fields(params_type):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            raise TypeError(f"{params_type.__qualname__}.{f.name} has no default")
        bounds = f.metadata.get(_BOUNDS, {"ge": None, "gt": None, "le": None, "lt": None})
        if _is_int(hints[f.name]) and f.metadata.get(_CHOICES) is None:  # choices bound a key themselves
            bounds = _int_bounds(f.name, bounds)
        infos.append(
            ParamInfo(
                name=f.name,
                type=hints[f.name],
                default=default,
                help=f.metadata.get(_HELP, ""),
                bounds=bounds,
                choices=f.metadata.get(_CHOICES),
                also=f.metadata.get(_ALSO, ()),
            )
        )
    return infos
