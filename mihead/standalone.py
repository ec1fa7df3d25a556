"""Plugin objects outside recipes: for hand-written training scripts (e.g. with lightly).

``objective("iic", clusters=10, views=2)`` is the registered ``iic`` loss as an ordinary
``nn.Module``; ``augmenter("fast_autoaugment", size=32, views=4)`` the registered augmenter,
which is also a lightly-style multi-view transform. Parameters are checked exactly as a
recipe's are, so a bad key or value raises the same one-line :class:`RecipeError`.
"""

from __future__ import annotations

from typing import Any

from mihead.contracts import Augmenter, ImageSpec, Objective, ObjectiveContext, Params
from mihead.contracts.param_values import Where, build_params, check_keys
from mihead.plugins import Registry, load_registry
from mihead.recipe import resolve_plugin

__all__ = ["augmenter", "make_params", "objective"]


def make_params(kind: str, name: str, registry: Registry | None = None, **values: Any) -> tuple[type, Params]:
    """The registered class ``name`` of ``kind`` and its validated parameters."""
    registry = registry or load_registry()
    where = Where("standalone", f"{kind} {name}")
    entry = resolve_plugin(registry, kind, {"name": name}, where)
    check_keys(values, [entry.cls.Params], where)
    return entry.cls, build_params(entry.cls.Params, values, where)


def objective(
    name: str,
    *,
    clusters: int,
    views: int = 2,
    heads: int = 1,
    overclusters: int = 0,
    feature_channels: dict[str, int] | None = None,
    registry: Registry | None = None,
    **values: Any,
) -> Objective:
    """The objective ``name`` built for a model of ``heads`` heads of ``clusters`` clusters
    seeing ``views`` views; call it on :class:`~mihead.contracts.ModelOutputs`."""
    cls, params = make_params("objective", name, registry, **values)
    context = ObjectiveContext(heads, views, clusters, overclusters, dict(feature_channels or {}))
    return cls(params, context)


def augmenter(name: str, *, size: int, channels: int = 3, registry: Registry | None = None, **values: Any) -> Augmenter:
    """The augmenter ``name`` for images of ``channels`` x ``size`` x ``size``."""
    cls, params = make_params("augmenter", name, registry, **values)
    return cls(params, ImageSpec(channels, size))
