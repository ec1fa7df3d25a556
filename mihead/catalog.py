"""The registered plugins as ``mihead plugins`` shows them: a block of text per plugin for a
reader (``--verbose``), and the same facts as JSON for scripts (``--json``).

Keys a plugin ignores (:meth:`mihead.contracts.Plugin.unused_keys`: the optional keys a
dataset does not honour) are left out: a recipe cannot use them.
"""

from __future__ import annotations

import textwrap
import typing
from typing import Any

from mihead.contracts import ParamInfo, describe
from mihead.plugins import Registered, Registry

__all__ = ["catalog", "describe_text", "sorted_entries"]

_INDENT = "  "
_HELP_INDENT = "      "


def _type_text(tp: Any) -> str:
    """``int``, ``list[int]``: the type as a recipe writer reads it."""
    if typing.get_origin(tp) is list:
        return f"list[{_type_text(typing.get_args(tp)[0])}]"
    return getattr(tp, "__name__", str(tp))


def _parameters(entry: Registered) -> list[ParamInfo]:
    unused = entry.cls.unused_keys()
    return [info for info in describe(entry.cls.Params) if info.name not in unused]


def sorted_entries(registry: Registry) -> list[Registered]:
    """Every registered plugin, by kind, then name: the order every listing uses."""
    return sorted(registry.entries(), key=lambda e: (e.kind, e.name))


def catalog(registry: Registry) -> list[dict[str, Any]]:
    """Every plugin: kind, name, entry point, package, version and its parameters (name,
    type, default, the bounds it has, choices, values accepted besides, help), JSON-ready."""
    return [
        {
            "kind": entry.kind,
            "name": entry.name,
            "plugin": entry.plugin,
            "package": entry.package,
            "version": entry.version,
            "parameters": [
                {
                    "name": info.name,
                    "type": _type_text(info.type),
                    "default": info.default,
                    "bounds": {k: v for k, v in info.bounds.items() if v is not None},
                    "choices": None if info.choices is None else list(info.choices),
                    "also": list(info.also),
                    "help": info.help,
                }
                for info in _parameters(entry)
            ],
        }
        for entry in sorted_entries(registry)
    ]


def _wrap(text: str, width: int, first: str, rest: str) -> list[str]:
    """``text`` wrapped at word boundaries (never inside a word, a number or a path)."""
    return textwrap.wrap(
        text, width, initial_indent=first, subsequent_indent=rest, break_long_words=False, break_on_hyphens=False
    )


def describe_text(registry: Registry, width: int) -> str:
    """One block per plugin, ``width`` columns wide: a ``kind name (package version)`` line,
    then each parameter as ``name: type = default (bounds)`` with its help on the lines
    below, indented."""
    blocks = []
    for entry in sorted_entries(registry):
        origin = f"{entry.package} {entry.version}".strip()
        lines = _wrap(f"{entry.kind} {entry.name} ({origin})", width, "", _INDENT)
        infos = _parameters(entry)
        for info in infos:
            bounds = info.bounds_text()
            head = f"{info.name}: {_type_text(info.type)} = {info.default!r}" + (f" ({bounds})" if bounds else "")
            lines += _wrap(head, width, _INDENT, _HELP_INDENT)
            lines += _wrap(info.help, width, _HELP_INDENT, _HELP_INDENT)
        if not infos:
            lines.append(f"{_INDENT}(no parameters)")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"
