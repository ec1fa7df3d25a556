"""The plugin manager factory and the registry of plugin classes it yields.

Plugins are found through the ``mihead`` entry-point group and loaded one by one, so that a
plugin that fails to import, returns something that is not a plugin class, or reuses a name
is reported by name and package while every other plugin still loads. ``strict`` (or the
environment variable ``MIHEAD_STRICT_PLUGINS=1``, meant for CI) makes any such problem fatal.
``MIHEAD_DISABLE_PLUGIN_AUTOLOAD=1`` turns entry-point loading off, for tests that register
plugins themselves.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
from collections.abc import Iterable

import pluggy

from mihead import hookspecs
from mihead.contracts import KINDS, Plugin, describe
from mihead.errors import PluginError

__all__ = [
    "AUTOLOAD_ENV",
    "ENTRY_POINT_GROUP",
    "STRICT_ENV",
    "Registered",
    "Registry",
    "load_registry",
    "make_plugin_manager",
]

ENTRY_POINT_GROUP = "mihead"
AUTOLOAD_ENV = "MIHEAD_DISABLE_PLUGIN_AUTOLOAD"
STRICT_ENV = "MIHEAD_STRICT_PLUGINS"


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


@dataclasses.dataclass(frozen=True)
class Registered:
    """One plugin class and where it came from."""

    kind: str
    name: str
    cls: type[Plugin]
    plugin: str
    package: str
    version: str


@dataclasses.dataclass
class _Origin:
    package: str
    version: str


def make_plugin_manager(
    *,
    autoload: bool | None = None,
    plugins: Iterable[object] = (),
    problems: list[str] | None = None,
) -> tuple[pluggy.PluginManager, dict[str, _Origin]]:
    """A plugin manager with mihead's hook specs, the entry-point plugins (unless autoload is
    off) and ``plugins`` (modules or objects with hook implementations) registered.

    Import failures are appended to ``problems``; the returned mapping gives each registered
    plugin's package and version.
    """
    problems = problems if problems is not None else []
    pm = pluggy.PluginManager("mihead")
    pm.add_hookspecs(hookspecs)
    origins: dict[str, _Origin] = {}
    if autoload is None:
        autoload = not _env_flag(AUTOLOAD_ENV)
    if autoload:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist
            package = dist.metadata["Name"] if dist is not None else "?"
            version = dist.version if dist is not None else ""
            label = f"plugin {ep.name!r} (package {package})"
            if pm.has_plugin(ep.name):
                problems.append(f"{label}: the plugin name {ep.name!r} is already registered")
                continue
            try:
                module = ep.load()
            except Exception as exc:  # any failure of third-party code is reported, not raised
                problems.append(f"{label} failed to import: {type(exc).__name__}: {exc}")
                continue
            try:
                pm.register(module, name=ep.name)
            except Exception as exc:
                problems.append(f"{label} cannot be registered: {exc}")
                continue
            origins[ep.name] = _Origin(package, version)
    for obj in plugins:
        name = getattr(obj, "__name__", None) or repr(obj)
        pm.register(obj, name=name)
        origins[name] = _Origin(name.split(".")[0], "")
    return pm, origins


def _check_class(kind: str, obj: object) -> str | None:
    """Why ``obj`` cannot be registered as a ``kind`` plugin, or None when it can."""
    base = KINDS[kind]
    if not (isinstance(obj, type) and issubclass(obj, base)):
        return f"returned {obj!r}, which is not a subclass of mihead.contracts.{base.__name__}"
    name = getattr(obj, "name", None)
    if not isinstance(name, str) or not name:
        return f"{obj.__qualname__} has no string 'name'"
    params = getattr(obj, "Params", None)
    base_params = base.Params
    if not (
        isinstance(params, type)
        and issubclass(params, base_params)
        and dataclasses.is_dataclass(params)
    ):
        return f"{obj.__qualname__}.Params is not a dataclass extending {base_params.__name__}"
    try:
        describe(params)
    except Exception as exc:
        return f"{obj.__qualname__}.Params is not valid: {exc}"
    return None


class Registry:
    """Every registered plugin class by kind and name, plus the problems met loading them."""

    def __init__(self, entries: list[Registered], problems: list[str]) -> None:
        self.problems = problems
        self._by_key: dict[tuple[str, str], list[Registered]] = {}
        for entry in entries:
            self._by_key.setdefault((entry.kind, entry.name), []).append(entry)

    def entries(self) -> list[Registered]:
        """One entry per (kind, name), the first registered where a name is taken twice."""
        return [found[0] for found in self._by_key.values()]

    def names(self, kind: str) -> list[str]:
        return sorted(name for (k, name) in self._by_key if k == kind)

    def get(self, kind: str, name: str) -> Registered:
        """The plugin class ``name`` of ``kind``; KeyError when absent, PluginError when the
        name is registered more than once (it would be ambiguous)."""
        found = self._by_key[(kind, name)]
        if len(found) > 1:
            who = ", ".join(f"{e.plugin!r} (package {e.package})" for e in found)
            raise PluginError(f"{kind} name {name!r} is registered by more than one plugin: {who}")
        return found[0]


def load_registry(
    *,
    autoload: bool | None = None,
    strict: bool | None = None,
    plugins: Iterable[object] = (),
) -> Registry:
    """Load plugins (see :func:`make_plugin_manager`) and collect the classes they register.

    In strict mode the first problem raises :class:`PluginError`; otherwise problems are kept
    in ``Registry.problems`` for the caller to report.
    """
    if strict is None:
        strict = _env_flag(STRICT_ENV)
    problems: list[str] = []
    pm, origins = make_plugin_manager(autoload=autoload, plugins=plugins, problems=problems)
    entries: list[Registered] = []
    for kind in KINDS:
        hook = getattr(pm.hook, f"register_{kind}s")
        for impl in reversed(hook.get_hookimpls()):  # registration order
            origin = origins.get(impl.plugin_name, _Origin(impl.plugin_name, ""))
            label = f"plugin {impl.plugin_name!r} (package {origin.package})"
            try:
                returned = impl.function()
            except Exception as exc:
                problems.append(f"{label}: register_{kind}s failed: {type(exc).__name__}: {exc}")
                continue
            for obj in returned or ():
                why = _check_class(kind, obj)
                if why is not None:
                    problems.append(f"{label}: register_{kind}s {why}")
                    continue
                entries.append(
                    Registered(kind, obj.name, obj, impl.plugin_name, origin.package, origin.version)
                )
    registry = Registry(entries, problems)
    for (kind, name), found in registry._by_key.items():
        if len(found) > 1:
            who = ", ".join(f"{e.plugin!r} (package {e.package})" for e in found)
            problems.append(f"{kind} name {name!r} is registered by more than one plugin: {who}")
    if strict and problems:
        raise PluginError(f"{problems[0]} (strict plugin loading)")
    return registry
