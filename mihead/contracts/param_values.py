"""Given values checked against declared parameters: the one checker of recipes and of plugins
built by hand (:mod:`mihead.standalone`).

A value is coerced to its key's declared type (a TOML integer is accepted as a float) and
checked against its bounds and choices (:class:`~mihead.contracts.ParamInfo`); the first problem
becomes a one-line :class:`~mihead.errors.RecipeError` naming where the value was given.
"""

from __future__ import annotations

import difflib
import math
import typing
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from mihead.contracts.params import ParamInfo, Params, describe
from mihead.errors import RecipeError

__all__ = ["Where", "build_params", "check_keys", "check_value", "coerce", "did_you_mean", "type_name"]

P = TypeVar("P", bound=Params)


def did_you_mean(word: str, options: Sequence[str]) -> str:
    """' (did you mean X?)' for the option closest to a mistyped ``word``, or ''."""
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class Where:
    """Names the place of a value in error messages: 'ORIGIN: [section] key', the origin being
    a recipe's file or what built the plugin by hand."""

    def __init__(self, origin: str, section: str) -> None:
        self.origin = origin
        self.section = section

    def error(self, key: str | None, message: str) -> RecipeError:
        place = f"[{self.section}]" + (f" {key}" if key else "")
        return RecipeError(f"{self.origin}: {place}: {message}")


def type_name(tp: Any) -> str:
    """A declared type as messages name it ('an integer', 'a list of true or false')."""
    origin = typing.get_origin(tp)
    if origin is list:
        (arg,) = typing.get_args(tp)
        return f"a list of {type_name(arg)}"
    return {bool: "true or false", int: "an integer", float: "a finite number", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def coerce(value: Any, tp: Any) -> Any:
    """``value`` as type ``tp``, or raise TypeError. TOML integers are accepted as floats."""
    origin = typing.get_origin(tp)
    if origin is list:
        (arg,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise TypeError
        return [coerce(v, arg) for v in value]
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    raise TypeError


def check_value(info: ParamInfo, value: Any, where: Where) -> Any:
    """``value`` coerced to the declared type of ``info``, or a RecipeError when it has another
    type or lies outside the bounds and choices."""
    try:
        value = coerce(value, info.type)
    except TypeError:
        raise where.error(info.name, f"expected {type_name(info.type)}, got {value!r}") from None
    for v in value if isinstance(value, list) else [value]:
        if info.admits(v):
            continue
        if info.choices is not None and v not in info.choices:
            hint = did_you_mean(v, [str(c) for c in info.choices]) if isinstance(v, str) else ""
            raise where.error(info.name, f"{v!r} is not {info.bounds_text()}{hint}")
        raise where.error(info.name, f"{v!r} is out of range: must be {info.bounds_text()} ({info.help})")
    return value


def check_keys(table: Mapping[str, Any], types: Sequence[type[Params]], where: Where, extra: Sequence[str] = ()) -> None:
    """A RecipeError for the first key of ``table`` that none of ``types`` declares and
    ``extra`` does not list (one table may hold the keys of several Params types)."""
    known = [info.name for tp in types for info in describe(tp)] + list(extra)
    for key in table:
        if key not in known:
            raise where.error(key, f"unknown key{did_you_mean(key, known)}; valid keys: {', '.join(known)}")


def build_params(params_type: type[P], table: Mapping[str, Any], where: Where) -> P:
    """An instance of ``params_type`` from the keys of ``table`` it declares, each value
    checked; other keys are left to :func:`check_keys`."""
    values = {info.name: check_value(info, table[info.name], where) for info in describe(params_type) if info.name in table}
    return params_type(**values)
