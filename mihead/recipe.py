"""TOML recipes: read, overridden by ``--set``, validated whole before any tensor exists.

A recipe names one plugin per section (``[data]``, ``[augment]``, ``[backbone]``, ``[head]``)
and one per ``[[objective]]`` table, each followed by that plugin's parameters, plus the core
sections ``[run]``, ``[train]`` and ``[eval]``. Validation resolves every name through the
registry and checks every key's presence, type and range against the declared parameters;
the first problem becomes a :class:`RecipeError` naming the file, the section and the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import tomli_w

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from mihead.contracts import (
    Augmenter,
    Backbone,
    BatchAugmenter,
    Dataset,
    ImageAugmenter,
    Objective,
    ParamInfo,
    Params,
    describe,
    param,
)
from mihead.errors import PluginError, RecipeError
from mihead.plugins import Registered, Registry
from mihead.protocol import PROTOCOLS

__all__ = [
    "EvalParams",
    "PluginSection",
    "Recipe",
    "RunParams",
    "TrainParams",
    "apply_overrides",
    "load_recipe",
    "parse_recipe",
]


@dataclasses.dataclass(frozen=True)
class RunParams(Params):
    name: str = param("", "run name; the run directory is OUT/NAME-TIMESTAMP ('' = recipe file name)")
    seed: int = param(0, "seed of every random number generator", ge=0, le=2**32 - 1)
    out: str = param("runs", "folder in which run directories are made")


@dataclasses.dataclass(frozen=True)
class TrainParams(Params):
    epochs: int = param(1, "passes over the training split", ge=1)
    max_steps: int = param(0, "stop after this many optimiser steps (0 = no limit)", ge=0)
    batch_size: int = param(256, "images per step and process (each gives V views)", ge=2)
    device: str = param("auto", "auto = CUDA when present, else CPU", choices=("auto", "cpu", "cuda"))
    precision: str = param(
        "auto", "auto = bf16 autocast on CUDA, fp32 on CPU", choices=("auto", "bf16", "fp32")
    )
    num_workers: int = param(0, "data-loader worker processes (0 = load in the main process)", ge=0, le=1024)
    optimizer: str = param("adam", "optimiser", choices=("adam", "sgd", "rmsprop"))
    lr: float = param(1e-3, "peak learning rate", gt=0)
    weight_decay: float = param(0.0, "L2 weight decay", ge=0)
    momentum: float = param(0.9, "momentum (sgd, rmsprop)", ge=0, lt=1)
    rmsprop_alpha: float = param(
        0.99, "rmsprop: decay of the running mean of squared gradients (torch's default 0.99; DCCM's code 0.9)", gt=0, lt=1
    )
    schedule: str = param("cosine", "learning-rate schedule", choices=("cosine", "constant"))
    warmup_steps: int = param(0, "steps of linear warm-up before the schedule", ge=0)
    min_lr_ratio: float = param(0.0, "final learning rate as a fraction of lr (cosine)", ge=0, le=1)
    checkpoint_every: int = param(1, "epochs between checkpoints (one is always written at the end)", ge=1)
    channels_last: bool = param(True, "channels-last memory format on CUDA")
    cudnn_benchmark: bool = param(
        True, "on CUDA, let cuDNN time its convolution algorithms for the run's fixed shapes (faster, not bit-reproducible)"
    )
    compile: bool = param(False, "torch.compile the model")
    sync_batchnorm: bool = param(
        False, "with several torchrun processes, batch norm statistics over the global batch (CUDA only)"
    )


@dataclasses.dataclass(frozen=True)
class EvalParams(Params):
    split: str = param("", "split to evaluate on ('' = the dataset's evaluation split)")
    every: int = param(1, "epochs between evaluations during training (0 = only at the end)", ge=0)
    selection: str = param(
        "nmi_zz",
        "head reported: nmi_zz = unsupervised, best = posthoc by labels",
        choices=("nmi_zz", "best"),
    )
    protocol: str = param(
        "split",
        "which images fit the cluster-to-class mapping and choose the head, which are scored: split = "
        "the evaluation split alone; fit_on_train = fitted on the training split, the evaluation split "
        "scored (DHOG's); union = trained, fitted and scored on both splits together (IIC's, DCCM's)",
        choices=PROTOCOLS,
    )
    batch_size: int = param(1024, "images per evaluation batch", ge=1)
    gallery_images: int = param(12, "most confident images shown per cluster in gallery.png", ge=1, le=50)


@dataclasses.dataclass(frozen=True)
class DataCore(Params):
    split: str = param("", "split to train on ('' = the dataset's training split)")


@dataclasses.dataclass(frozen=True)
class AugmentCore(Params):
    where: str = param(
        "auto",
        "workers = per image in loader processes, device = batched on the training device, "
        "auto = device on a GPU when the augmenter batches, else workers when it can, else device",
        choices=("auto", "workers", "device"),
    )
    original_view: bool = param(
        False,
        "make view 0 of each training batch the augmenter's deterministic evaluation view (the "
        "untransformed image) instead of a random one, for objectives that let the original "
        "image supervise its transformed views (e.g. DCCM's local robustness)",
    )


@dataclasses.dataclass(frozen=True)
class NoCore(Params):
    """A plugin section with no core keys besides ``name``."""


@dataclasses.dataclass(frozen=True)
class PluginSection:
    """A validated plugin section: the class, its parameters and the core keys beside them."""

    kind: str
    entry: Registered
    params: Params
    core: Params
    unused: frozenset[str] = frozenset()
    """Keys of ``params`` the plugin ignores (:meth:`Plugin.unused_keys`: a dataset's common keys it does not honour), left
    out of the resolved recipe."""

    @property
    def cls(self) -> type:
        return self.entry.cls

    def to_dict(self) -> dict[str, Any]:
        params = {k: v for k, v in dataclasses.asdict(self.params).items() if k not in self.unused}
        return {"name": self.entry.name, **dataclasses.asdict(self.core), **params}


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A recipe whose every name is resolved and every value checked."""

    source: str
    run: RunParams
    train: TrainParams
    eval: EvalParams
    data: PluginSection
    augment: PluginSection
    backbone: PluginSection
    head: PluginSection
    objectives: tuple[PluginSection, ...]

    def to_dict(self) -> dict[str, Any]:
        """The resolved recipe, every default filled in (what ``recipe.toml`` holds)."""
        return {
            "run": dataclasses.asdict(self.run),
            "data": self.data.to_dict(),
            "augment": self.augment.to_dict(),
            "backbone": self.backbone.to_dict(),
            "head": self.head.to_dict(),
            "objective": [o.to_dict() for o in self.objectives],
            "train": dataclasses.asdict(self.train),
            "eval": dataclasses.asdict(self.eval),
        }

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())

    def plugins_used(self) -> list[Registered]:
        sections = [self.data, self.augment, self.backbone, self.head, *self.objectives]
        seen: dict[tuple[str, str], Registered] = {}
        for s in sections:
            seen.setdefault((s.kind, s.entry.name), s.entry)
        return list(seen.values())


_CORE_SECTIONS: dict[str, type[Params]] = {"run": RunParams, "train": TrainParams, "eval": EvalParams}
_PLUGIN_SECTIONS: dict[str, tuple[str, type[Params]]] = {
    "data": ("dataset", DataCore),
    "augment": ("augmenter", AugmentCore),
    "backbone": ("backbone", NoCore),
    "head": ("head", NoCore),
    "objective": ("objective", NoCore),
}
_SECTIONS = [*_CORE_SECTIONS, *_PLUGIN_SECTIONS]
_REQUIRED = ("data", "augment", "backbone", "head", "objective")


def _objective_label(index: int) -> str:
    """How messages name the ``index``-th ``[[objective]]`` table (from 0): as ``--set``
    addresses it, ``objective.INDEX``."""
    return f"objective.{index}"


def _did_you_mean(word: str, options: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class _Where:
    """Names the place of a value in error messages: 'FILE: [section] key'."""

    def __init__(self, source: str, section: str) -> None:
        self.source = source
        self.section = section

    def error(self, key: str | None, message: str) -> RecipeError:
        place = f"[{self.section}]" + (f" {key}" if key else "")
        return RecipeError(f"{self.source}: {place}: {message}")


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is list:
        (arg,) = typing.get_args(tp)
        return f"a list of {_type_name(arg)}"
    return {bool: "true or false", int: "an integer", float: "a finite number", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _coerce(value: Any, tp: Any) -> Any:
    """``value`` as type ``tp``, or raise TypeError. TOML integers are accepted as floats."""
    origin = typing.get_origin(tp)
    if origin is list:
        (arg,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise TypeError
        return [_coerce(v, arg) for v in value]
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


def _check_value(info: ParamInfo, value: Any, where: _Where) -> Any:
    try:
        value = _coerce(value, info.type)
    except TypeError:
        raise where.error(info.name, f"expected {_type_name(info.type)}, got {value!r}") from None
    for v in value if isinstance(value, list) else [value]:
        if info.admits(v):
            continue
        if info.choices is not None and v not in info.choices:
            hint = _did_you_mean(v, [str(c) for c in info.choices]) if isinstance(v, str) else ""
            raise where.error(info.name, f"{v!r} is not {info.bounds_text()}{hint}")
        raise where.error(info.name, f"{v!r} is out of range: must be {info.bounds_text()} ({info.help})")
    return value


def _build_params(
    types: Sequence[type[Params]], table: dict[str, Any], where: _Where, extra: Sequence[str] = ()
) -> list[Params]:
    """Instances of each Params type from the keys of ``table`` (every key must belong to one
    of them, or be listed in ``extra``)."""
    infos = [{i.name: i for i in describe(t)} for t in types]
    known = [k for group in infos for k in group] + list(extra)
    for key in table:
        if key not in known:
            raise where.error(key, f"unknown key{_did_you_mean(key, known)}; valid keys: {', '.join(known)}")
    built = []
    for tp, group in zip(types, infos, strict=True):
        values = {k: _check_value(info, table[k], where) for k, info in group.items() if k in table}
        built.append(tp(**values))
    return built


def _resolve(registry: Registry, kind: str, table: dict[str, Any], where: _Where) -> Registered:
    if "name" not in table:
        raise where.error("name", f"missing: name the {kind} to use; registered: {', '.join(registry.names(kind)) or 'none'}")
    name = table["name"]
    if not isinstance(name, str):
        raise where.error("name", f"expected a string, got {name!r}")
    try:
        return registry.get(kind, name)
    except KeyError:
        names = registry.names(kind)
        raise where.error(
            "name",
            f"unknown {kind} {name!r}{_did_you_mean(name, names)}; registered: {', '.join(names) or 'none'}",
        ) from None
    except PluginError as exc:
        raise where.error("name", str(exc)) from None


def _plugin_section(
    registry: Registry, section: str, table: Any, where: _Where
) -> PluginSection:
    kind, core_type = _PLUGIN_SECTIONS[section]
    if not isinstance(table, dict):
        raise where.error(None, f"expected a table, got {table!r}")
    entry = _resolve(registry, kind, table, where)
    core, params = _build_params([core_type, entry.cls.Params], table, where, extra=("name",))
    unused = entry.cls.unused_keys()
    _refuse_unused(entry, [core_type, entry.cls.Params], table, unused, where)
    return PluginSection(kind, entry, params, core, unused)


def _refuse_unused(entry: Registered, types: Sequence[type[Params]], table: dict[str, Any], unused: frozenset[str], where: _Where) -> None:
    """A RecipeError for a key the plugin ignores that ``table`` sets away from its default
    (at its default it asks for nothing, as in the resolved recipe of a run made before)."""
    infos = {i.name: i for t in types for i in describe(t)}
    for key in table:
        if key in unused and table[key] != infos[key].default:
            uses = ", ".join(k for k in infos if k not in unused)
            raise where.error(key, f"{entry.kind} {entry.name!r} does not use this key: it would change nothing; remove it (keys it uses: {uses})")


def parse_recipe(data: dict[str, Any], registry: Registry, source: str) -> Recipe:
    """Validate a recipe's tables (already parsed and overridden) into a :class:`Recipe`."""
    for section in data:
        if section not in _SECTIONS:
            raise RecipeError(
                f"{source}: unknown section [{section}]{_did_you_mean(section, _SECTIONS)}; "
                f"valid sections: {', '.join(_SECTIONS)}"
            )
    for section in _REQUIRED:
        if section not in data:
            hint = "[[objective]]" if section == "objective" else f"[{section}]"
            raise RecipeError(f"{source}: missing section {hint}")
    core: dict[str, Params] = {}
    for section, tp in _CORE_SECTIONS.items():
        table = data.get(section, {})
        where = _Where(source, section)
        if not isinstance(table, dict):
            raise where.error(None, f"expected a table, got {table!r}")
        (core[section],) = _build_params([tp], table, where)
    sections = {
        s: _plugin_section(registry, s, data[s], _Where(source, s))
        for s in ("data", "augment", "backbone", "head")
    }
    tables = data["objective"]
    if isinstance(tables, dict):
        tables = [tables]
    if not isinstance(tables, list) or not tables:
        raise RecipeError(f"{source}: [[objective]] must be one or more tables")
    objectives = tuple(
        _plugin_section(registry, "objective", t, _Where(source, _objective_label(i)))
        for i, t in enumerate(tables)
    )
    recipe = Recipe(
        source=source,
        run=core["run"],  # type: ignore[arg-type]
        train=core["train"],  # type: ignore[arg-type]
        eval=core["eval"],  # type: ignore[arg-type]
        objectives=objectives,
        **sections,
    )
    _check_coherence(recipe)
    return recipe


def _check_coherence(recipe: Recipe) -> None:
    """Checks that span sections: splits, the augmenter's flavour, features objectives need."""
    source = recipe.source
    dataset: type[Dataset] = recipe.data.cls
    for split, section in ((recipe.data.core.split, "data"), (recipe.eval.split, "eval")):  # type: ignore[attr-defined]
        if split and split not in dataset.splits:
            raise RecipeError(
                f"{source}: [{section}] split: {dataset.name!r} has no split {split!r}"
                f"{_did_you_mean(split, dataset.splits)}; splits: {', '.join(dataset.splits)}"
            )
    augmenter: type[Augmenter] = recipe.augment.cls
    where = recipe.augment.core.where  # type: ignore[attr-defined]
    if where == "workers" and not issubclass(augmenter, ImageAugmenter):
        raise RecipeError(
            f"{source}: [augment] where: augmenter {augmenter.name!r} only runs batched on the device; use 'device' or 'auto'"
        )
    if where == "device" and not issubclass(augmenter, BatchAugmenter):
        raise RecipeError(
            f"{source}: [augment] where: augmenter {augmenter.name!r} has no batched device path; use 'workers' or 'auto'"
        )
    backbone: type[Backbone] = recipe.backbone.cls
    for i, table in enumerate(recipe.objectives):
        objective: type[Objective] = table.cls
        missing = sorted(objective.requires - backbone.provides)
        if missing:
            provides = ", ".join(sorted(backbone.provides)) or "none"
            raise RecipeError(
                f"{source}: [{_objective_label(i)}] name: {objective.name!r} needs the backbone "
                f"feature(s) {', '.join(missing)}, which backbone {backbone.name!r} does not "
                f"provide (it provides: {provides})"
            )
        if objective.head_specific(table.params) and not backbone.declares_owned():
            raise RecipeError(
                f"{source}: [{_objective_label(i)}] {objective.name!r} asks for a head-specific gradient, "
                f"but backbone {backbone.name!r} does not declare which parameters belong to each attachment point"
            )


def _parse_value(text: str) -> Any:
    """A ``--set`` value as TOML (numbers, booleans, quoted strings, lists); bare words are
    taken as strings so that ``--set data.root=/tmp/x`` needs no quotes."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(data: dict[str, Any], overrides: Sequence[str], source: str) -> dict[str, Any]:
    """``data`` with each ``section.key=value`` applied. Objectives are addressed by name
    (``objective.dhog_push.weight=0``) or by position from 0 (``objective.1.weight=0``)."""
    for item in overrides:
        place = f"{source}: --set {item}"
        if "=" not in item:
            raise RecipeError(f"{place}: expected section.key=value")
        dotted, text = item.split("=", 1)
        parts = dotted.strip().split(".")
        value = _parse_value(text.strip())
        section = parts[0]
        if section not in _SECTIONS:
            raise RecipeError(
                f"{place}: unknown section [{section}]{_did_you_mean(section, _SECTIONS)}; "
                f"valid sections: {', '.join(_SECTIONS)}"
            )
        if section == "objective":
            if len(parts) != 3:
                raise RecipeError(f"{place}: expected objective.NAME.key=value or objective.INDEX.key=value")
            tables = data.get("objective", [])
            tables = [tables] if isinstance(tables, dict) else tables
            if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
                raise RecipeError(f"{place}: [[objective]] must be one or more tables")
            selector = parts[1]
            if selector.isascii() and selector.isdigit():
                matches = [int(selector)] if int(selector) < len(tables) else []
            else:
                matches = [i for i, t in enumerate(tables) if t.get("name") == selector]
            if not matches:
                names = [str(t.get("name")) for t in tables]
                listed = ", ".join(f"{i} = {n}" for i, n in enumerate(names))
                raise RecipeError(
                    f"{place}: the recipe has no objective {selector!r}"
                    f"{_did_you_mean(selector, names)}; objectives (by position from 0, or by name): {listed}"
                )
            for i in matches:
                tables[i][parts[2]] = value
            data["objective"] = tables
        else:
            if len(parts) != 2:
                raise RecipeError(f"{place}: expected section.key=value")
            table = data.setdefault(section, {})
            if not isinstance(table, dict):
                raise RecipeError(f"{place}: [{section}] is not a table")
            table[parts[1]] = value
    return data


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file's tables, or a RecipeError naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError(f"{path}: no such recipe file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"{path}: cannot read: {exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{path}: not valid TOML: {exc}") from None


def load_recipe(path: str | Path, registry: Registry, overrides: Sequence[str] = ()) -> Recipe:
    """Read, override and validate the recipe at ``path``."""
    path = Path(path)
    data = apply_overrides(read_toml(path), overrides, str(path))
    return parse_recipe(data, registry, str(path))
