"""Typed, documented parameters that plugins and recipe sections declare.

A plugin's parameters are a frozen dataclass whose fields carry a type, a default and,
through :func:`param`, a help text and bounds. The recipe loader reads these declarations to
check a recipe's keys, types and ranges before anything is built, and ``mihead plugins
--verbose`` prints them, so one declaration serves validation, documentation and construction.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

__all__ = ["param", "Params", "ParamInfo", "describe"]

_HELP = "mihead.help"
_BOUNDS = "mihead.bounds"
_CHOICES = "mihead.choices"


def param(
    default: Any,
    help: str,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: Sequence[Any] | None = None,
) -> Any:
    """A dataclass field with a help text, optional numeric bounds and optional choices.

    Lists are copied per instance, so a list default is safe.
    """
    metadata = {
        _HELP: help,
        _BOUNDS: {"ge": ge, "gt": gt, "le": le, "lt": lt},
        _CHOICES: tuple(choices) if choices is not None else None,
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

    def bounds_text(self) -> str:
        """Bounds and choices as a short human-readable text ('' when unconstrained)."""
        symbols = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
        parts = [f"{symbols[k]} {v:g}" for k, v in self.bounds.items() if v is not None]
        if self.choices is not None:
            parts.append("one of " + ", ".join(repr(c) for c in self.choices))
        return ", ".join(parts)


def describe(params_type: type[Params]) -> list[ParamInfo]:
    """The declared parameters of a Params dataclass, in declaration order."""
    import typing

    hints = typing.get_type_hints(params_type)
    infos = []
    for f in dataclasses.fields(params_type):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            raise TypeError(f"{params_type.__qualname__}.{f.name} has no default")
        infos.append(
            ParamInfo(
                name=f.name,
                type=hints[f.name],
                default=default,
                help=f.metadata.get(_HELP, ""),
                bounds=f.metadata.get(_BOUNDS, {}),
                choices=f.metadata.get(_CHOICES),
            )
        )
    return infos
