"""TOML recipes: read, overridden by ``--set``, validated whole before any tensor exists.

A recipe names one plugin per section (``[data]``, ``[augment]``, ``[backbone]``, ``[head]``)
and one per ``[[objective]]`` table, each followed by that plugin's parameters, plus the core
sections ``[run]``, ``[train]`` and ``[eval]``. Validation resolves every name through the
registry and checks every key's presence, type and range against the declared parameters
(:mod:`mihead.contracts.param_values`);
the first problem becomes a :class:`RecipeError` naming the file, the section and the key.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

import tomli_w

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from mihead.contracts import (
    Augmenter,
    AugmenterParams,
    Backbone,
    BatchAugmenter,
    Dataset,
    DatasetParams,
    EmbeddingAugmenter,
    FrozenEncoder,
    HeadParams,
    ImageAugmenter,
    Objective,
    ObjectiveParams,
    Params,
    describe,
    param,
)
from mihead.contracts.param_values import Where, build_params, check_keys, did_you_mean
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
    "resolve_plugin",
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
    # torch turns each into a float32 multiplier of the step (Adam's first: lr / (1 - 0.9)), which
    # overflows with a traceback past float32's 3.4e38; a value near the bound diverges at once
    lr: float = param(1e-3, "peak learning rate; bounded so that Adam's first step (10 x lr) fits a float32", gt=0, le=1e37)
    weight_decay: float = param(0.0, "L2 weight decay; bounded to fit a float32", ge=0, le=1e38)
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
class HeadCore(Params):
    """The ``[head]`` keys the core reads, whatever the head plugin: how many heads and
    clusters the model has (:func:`mihead.build.model_shape` resolves them)."""

    clusters: int = param(
        0, "clusters K of each main head: a head needs at least 2; 0 = the dataset's classes", ge=2, also=(0,)
    )
    overclusters: int = param(
        0, "clusters of an extra overclustering head beside each main head: at least 2; 0 = none", ge=2, also=(0,)
    )
    per_attachment: int = param(1, "heads on each attachment point of the backbone", ge=1)


@dataclasses.dataclass(frozen=True)
class NoCore(Params):
    """A plugin section with no core keys besides ``name``."""


ParamsT = TypeVar("ParamsT", bound=Params, covariant=True)
CoreT = TypeVar("CoreT", bound=Params, covariant=True)


@dataclasses.dataclass(frozen=True)
class PluginSection(Generic[ParamsT, CoreT]):
    """A validated plugin section: the class, its parameters (of the kind's parameters' type,
    ``ParamsT``) and the core keys beside them (``CoreT``)."""

    kind: str
    entry: Registered
    params: ParamsT
    core: CoreT
    unused_keys: frozenset[str] = frozenset()
    """Keys of ``params`` the plugin ignores (:meth:`Plugin.unused_keys`: the optional keys a
    dataset does not honour), left out of the resolved recipe."""

    @property
    def cls(self) -> type:
        return self.entry.cls

    def to_dict(self) -> dict[str, Any]:
        params = {k: v for k, v in dataclasses.asdict(self.params).items() if k not in self.unused_keys}
        return {"name": self.entry.name, **dataclasses.asdict(self.core), **params}


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A recipe whose every name is resolved and every value checked."""

    path: str
    """The recipe's file, as messages name it."""
    run: RunParams
    train: TrainParams
    eval: EvalParams
    data: PluginSection[DatasetParams, DataCore]
    augment: PluginSection[AugmenterParams, AugmentCore]
    backbone: PluginSection[Params, NoCore]
    head: PluginSection[HeadParams, HeadCore]
    objectives: tuple[PluginSection[ObjectiveParams, NoCore], ...]

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

    def warnings(self) -> list[str]:
        """What is valid but almost surely a mistake, one line each: an objective of weight 0
        is computed and logged but never trained on; when every one weighs 0, nothing learns."""
        zero = [f"{_objective_label(i)} ({s.entry.name})" for i, s in enumerate(self.objectives) if s.params.weight == 0]
        if not zero:
            return []
        if len(zero) == len(self.objectives):
            return ["every objective has weight = 0: the loss trained on is 0 and the model learns nothing"]
        return [f"{what} has weight = 0: it is computed and logged but adds nothing to the loss trained on" for what in zero]

    def with_absolute_data_root(self) -> Recipe:
        """This recipe with a relative ``data.root`` made absolute against the working folder
        (where the dataset would read it), as a run directory records it: ``mihead eval`` and
        ``--resume`` then find the data from any folder."""
        root = self.data.params.root
        if not root or "root" in self.data.unused_keys or os.path.isabs(root):
            return self
        params = dataclasses.replace(self.data.params, root=os.path.abspath(root))
        return dataclasses.replace(self, data=dataclasses.replace(self.data, params=params))

    def plugins_used(self) -> list[Registered]:
        sections: list[PluginSection[Params, Params]] = [self.data, self.augment, self.backbone, self.head, *self.objectives]
        seen: dict[tuple[str, str], Registered] = {}
        for s in sections:
            seen.setdefault((s.kind, s.entry.name), s.entry)
        return list(seen.values())


_REQUIRED = ("data", "augment", "backbone", "head", "objective")
_SECTIONS = ("run", "train", "eval", *_REQUIRED)


def _objective_label(index: int) -> str:
    """How messages name the ``index``-th ``[[objective]]`` table (from 0): as ``--set``
    addresses it, ``objective.INDEX``."""
    return f"objective.{index}"


def resolve_plugin(registry: Registry, kind: str, table: dict[str, Any], where: Where) -> Registered:
    """The registered plugin of ``kind`` that ``table``'s ``name`` names, or a RecipeError
    listing the registered ones."""
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
            f"unknown {kind} {name!r}{did_you_mean(name, names)}; registered: {', '.join(names) or 'none'}",
        ) from None
    except PluginError as exc:
        raise where.error("name", str(exc)) from None


def _core_section(data: dict[str, Any], section: str, params_type: type[ParamsT], path: str) -> ParamsT:
    """The core section ``section`` (``[run]``, ``[train]``, ``[eval]``; absent: all defaults)."""
    table = data.get(section, {})
    where = Where(path, section)
    if not isinstance(table, dict):
        raise where.error(None, f"expected a table, got {table!r}")
    check_keys(table, [params_type], where)
    return build_params(params_type, table, where)


def _plugin_section(
    registry: Registry, kind: str, table: Any, where: Where, kind_params: type[ParamsT], core_type: type[CoreT]
) -> PluginSection[ParamsT, CoreT]:
    """The section of a plugin of ``kind``, whose parameters extend ``kind_params``."""
    if not isinstance(table, dict):
        raise where.error(None, f"expected a table, got {table!r}")
    entry = resolve_plugin(registry, kind, table, where)
    check_keys(table, [core_type, entry.cls.Params], where, extra=("name",))
    core = build_params(core_type, table, where)
    params = build_params(entry.cls.Params, table, where)
    assert isinstance(params, kind_params)  # the registry admits only a Params extending its kind's
    unused = entry.cls.unused_keys()
    _refuse_unused(entry, [core_type, entry.cls.Params], table, unused, where)
    return PluginSection(kind, entry, params, core, unused)


def _refuse_unused(entry: Registered, types: Sequence[type[Params]], table: dict[str, Any], unused: frozenset[str], where: Where) -> None:
    """A RecipeError for a key the plugin ignores that ``table`` sets away from its default
    (at its default it asks for nothing, as in the resolved recipe of a run made before)."""
    infos = {i.name: i for t in types for i in describe(t)}
    for key in table:
        if key in unused and table[key] != infos[key].default:
            uses = ", ".join(k for k in infos if k not in unused)
            raise where.error(key, f"{entry.kind} {entry.name!r} does not use this key: it would change nothing; remove it (keys it uses: {uses})")


def parse_recipe(data: dict[str, Any], registry: Registry, path: str) -> Recipe:
    """Validate a recipe's tables (already parsed and overridden) into a :class:`Recipe`."""
    for section in data:
        if section not in _SECTIONS:
            raise RecipeError(
                f"{path}: unknown section [{section}]{did_you_mean(section, _SECTIONS)}; "
                f"valid sections: {', '.join(_SECTIONS)}"
            )
    for section in _REQUIRED:
        if section not in data:
            hint = "[[objective]]" if section == "objective" else f"[{section}]"
            raise RecipeError(f"{path}: missing section {hint}")
    run = _core_section(data, "run", RunParams, path)
    train = _core_section(data, "train", TrainParams, path)
    eval_ = _core_section(data, "eval", EvalParams, path)
    dataset = _plugin_section(registry, "dataset", data["data"], Where(path, "data"), DatasetParams, DataCore)
    augment = _plugin_section(registry, "augmenter", data["augment"], Where(path, "augment"), AugmenterParams, AugmentCore)
    backbone = _plugin_section(registry, "backbone", data["backbone"], Where(path, "backbone"), Params, NoCore)
    head = _plugin_section(registry, "head", data["head"], Where(path, "head"), HeadParams, HeadCore)
    tables = data["objective"]
    if isinstance(tables, dict):
        tables = [tables]
    if not isinstance(tables, list) or not tables:
        raise RecipeError(f"{path}: [[objective]] must be one or more tables")
    objectives = tuple(
        _plugin_section(registry, "objective", t, Where(path, _objective_label(i)), ObjectiveParams, NoCore)
        for i, t in enumerate(tables)
    )
    recipe = Recipe(path, run, train, eval_, dataset, augment, backbone, head, objectives)
    _check_coherence(recipe)
    return recipe


def _check_coherence(recipe: Recipe) -> None:
    """Checks that span sections: splits, the augmenter's flavour, features objectives need."""
    path = recipe.path
    dataset: type[Dataset] = recipe.data.cls
    for split, section in ((recipe.data.core.split, "data"), (recipe.eval.split, "eval")):
        if split and split not in dataset.splits:
            raise RecipeError(
                f"{path}: [{section}] split: {dataset.name!r} has no split {split!r}"
                f"{did_you_mean(split, dataset.splits)}; splits: {', '.join(dataset.splits)}"
            )
    augmenter: type[Augmenter] = recipe.augment.cls
    where = recipe.augment.core.where
    if where == "workers" and not issubclass(augmenter, ImageAugmenter):
        raise RecipeError(
            f"{path}: [augment] where: augmenter {augmenter.name!r} only runs batched on the device; use 'device' or 'auto'"
        )
    if where == "device" and not issubclass(augmenter, BatchAugmenter):
        raise RecipeError(
            f"{path}: [augment] where: augmenter {augmenter.name!r} has no batched device path; use 'workers' or 'auto'"
        )
    backbone: type[Backbone] = recipe.backbone.cls
    _check_encoder_views(recipe, backbone, augmenter)
    for i, table in enumerate(recipe.objectives):
        objective: type[Objective] = table.cls
        missing = sorted(objective.requires - backbone.provides)
        if missing:
            provides = ", ".join(sorted(backbone.provides)) or "none"
            raise RecipeError(
                f"{path}: [{_objective_label(i)}] name: {objective.name!r} needs the backbone "
                f"feature(s) {', '.join(missing)}, which backbone {backbone.name!r} does not "
                f"provide (it provides: {provides})"
            )
        if objective.head_specific(table.params) and not backbone.declares_owned():
            raise RecipeError(
                f"{path}: [{_objective_label(i)}] {objective.name!r} asks for a head-specific gradient, "
                f"but backbone {backbone.name!r} does not declare which parameters belong to each attachment point"
            )


def _check_encoder_views(recipe: Recipe, backbone: type[Backbone], augmenter: type[Augmenter]) -> None:
    """A frozen encoder trains on views of its embeddings, which only an embedding augmenter
    makes, and an embedding augmenter needs a frozen encoder's embeddings."""
    path = recipe.path
    if issubclass(backbone, FrozenEncoder) != issubclass(augmenter, EmbeddingAugmenter):
        if issubclass(backbone, FrozenEncoder):
            raise RecipeError(
                f"{path}: [augment] name: backbone {backbone.name!r} is a frozen encoder, trained on its cached embeddings, "
                f"but augmenter {augmenter.name!r} makes views of images; use an embedding augmenter (e.g. 'neighbours')"
            )
        raise RecipeError(
            f"{path}: [augment] name: augmenter {augmenter.name!r} makes views of a frozen encoder's embeddings, "
            f"but backbone {backbone.name!r} is trained on images; use a frozen encoder (e.g. 'timm') or an image augmenter"
        )
    if issubclass(augmenter, EmbeddingAugmenter) and recipe.augment.core.original_view:
        raise RecipeError(f"{path}: [augment] original_view: augmenter {augmenter.name!r} makes views of embeddings; original_view applies to image augmenters")


def _parse_value(text: str) -> Any:
    """A ``--set`` value as TOML (numbers, booleans, quoted strings, lists); bare words are
    taken as strings so that ``--set data.root=/tmp/x`` needs no quotes."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(data: dict[str, Any], overrides: Sequence[str], path: str) -> dict[str, Any]:
    """``data`` with each ``section.key=value`` applied. Objectives are addressed by name
    (``objective.dhog_push.weight=0``) or by position from 0 (``objective.1.weight=0``)."""
    for item in overrides:
        place = f"{path}: --set {item}"
        if "=" not in item:
            raise RecipeError(f"{place}: expected section.key=value")
        dotted, text = item.split("=", 1)
        parts = dotted.strip().split(".")
        value = _parse_value(text.strip())
        section = parts[0]
        if section not in _SECTIONS:
            raise RecipeError(
                f"{place}: unknown section [{section}]{did_you_mean(section, _SECTIONS)}; "
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
                    f"{did_you_mean(selector, names)}; objectives (by position from 0, or by name): {listed}"
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
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark (some Windows editors write one) is dropped
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
