"""From a validated recipe to live objects: data, augmenter, model and objectives."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from mihead.contracts import (
    Augmenter,
    Dataset,
    EmbeddingAugmenter,
    FrozenEncoder,
    ImageData,
    ImageSpec,
    Objective,
    ObjectiveContext,
)
from mihead.data import ViewBatches, ViewSource, views_on_device
from mihead.embeddings import encode_split
from mihead.encoded_views import EncodedViews
from mihead.errors import DataError, RecipeError
from mihead.image_cache import cache_folder
from mihead.memory import reporting_out_of_memory
from mihead.model import MultiHeadModel
from mihead.protocol import Protocol, resolve_protocol, union_data
from mihead.recipe import Recipe
from mihead.run_directory import ModelShape
from mihead.shared_split import shared_split

__all__ = ["Built", "ObjectiveTerm", "build", "build_declared", "build_model", "model_shape"]


@dataclasses.dataclass(frozen=True)
class ObjectiveTerm:
    """One term of the training loss: ``weight`` times ``module``'s value, logged as ``name``
    (its plugin name, numbered when the recipe repeats it)."""

    name: str
    weight: float
    module: Objective


@dataclasses.dataclass
class Built:
    """Everything a run needs, made from one recipe. ``train_data`` trains the model,
    ``fit_data`` fits the cluster-to-class mapping and chooses the head, ``eval_data`` is
    scored, as the recipe's ``protocol`` says (the same object where two roles share images)."""

    train_data: ImageData
    eval_data: ImageData
    augmenter: Augmenter
    source: ViewBatches
    model: MultiHeadModel
    objectives: list[ObjectiveTerm]
    device: torch.device
    fit_data: ImageData
    protocol: Protocol
    shape: ModelShape


def _clusters(recipe: Recipe, classes: int, recorded: Mapping[str, Any]) -> int:
    """K: the checkpoint's record, else ``head.clusters``, else (0) ``classes``."""
    return int(recorded.get("clusters") or recipe.head.core.clusters or classes)


def model_shape(
    recipe: Recipe, augmenter: Augmenter, device: torch.device, *, classes: int, recorded: Mapping[str, Any] | None = None
) -> ModelShape | None:
    """The model's shape, for ``run`` and ``eval`` (``classes``: the loaded split's), ``check``
    (the dataset's declared class count) and ``predict`` (what its checkpoint ``recorded``,
    :func:`mihead.run_directory.recorded_shape`, the rest resolved as the run did): the images
    ``augmenter`` is made for, K = ``head.clusters`` or else ``classes``, ``head.overclusters``,
    and whether evaluation views are made on ``device``. None when K is below 2."""
    recorded = recorded or {}
    clusters = _clusters(recipe, classes, recorded)
    if clusters < 2:
        return None
    on_device = recorded.get("views_on_device")
    return ModelShape(
        image=augmenter.image,
        clusters=clusters,
        overclusters=int(recorded.get("overclusters", recipe.head.core.overclusters)),
        views_on_device=on_device if isinstance(on_device, bool) else views_on_device(augmenter, recipe.augment.core.where, device),
    )


def _load(dataset: Dataset, split: str, limit: int, cache: Path | None, say: Callable[[str], None]) -> ImageData:
    """The first ``limit`` images of the split, mapped from the image cache (one copy per machine)."""

    def load() -> ImageData:
        with _building("data"):  # e.g. an image size too large to allocate: one line, not a traceback
            data = dataset.load(split).first(limit)
        if len(data) == 0:
            raise DataError(f"dataset {dataset.name!r} split {split!r} has no images")
        return data

    return shared_split(load, cache, f"dataset {dataset.name!r} split {split!r}", say=say)


def _term_names(recipe: Recipe) -> list[str]:
    """One unique name per objective table: its plugin name, numbered when repeated."""
    names: list[str] = []
    for section in recipe.objectives:
        base = section.entry.name
        count = sum(1 for n in names if n == base or n.startswith(base + "#"))
        names.append(base if count == 0 else f"{base}#{count + 1}")
    return names


_ENCODER_STATE = "backbone._extra_state"
"""Where a model's state keeps its frozen encoder's identity (torch's name for the backbone's extra state)."""


def build(
    recipe: Recipe,
    device: torch.device,
    rank: int = 0,
    world_size: int = 1,
    *,
    recorded: Mapping[str, Any] | None = None,
    say: Callable[[str], None] = print,
) -> Built:
    """Load the splits and build augmenter, model and objectives on ``device``; the training
    batches are those of process ``rank`` of ``world_size`` (see mihead/data.py). With a frozen
    encoder, the splits are encoded first (or read from the embedding cache; ``say`` tells why
    a cache entry is filled again) and training reads their embeddings (mihead/encoded_views.py);
    ``recorded``, the model state of the checkpoint a run resumes or evaluates, is checked for
    the same encoder before anything is encoded."""
    torch.manual_seed(recipe.run.seed)
    dataset: Dataset = recipe.data.cls(recipe.data.params)
    limit = recipe.data.params.limit
    train_split = recipe.data.core.split or dataset.train_split
    eval_split = recipe.eval.split or dataset.eval_split
    cache = cache_folder(recipe.data.params.cache)
    train_data = _load(dataset, train_split, limit, cache, say)
    eval_data = train_data if eval_split == train_split else _load(dataset, eval_split, limit, cache, say)
    protocol = resolve_protocol(recipe.eval.protocol, train_split, eval_split)
    if protocol.name == "union" and eval_data is not train_data:
        parts = [(train_split, train_data), (eval_split, eval_data)]
        what = f"dataset {dataset.name!r} splits {train_split!r} and {eval_split!r} together"
        train_data = eval_data = shared_split(lambda: union_data(parts), cache, what, say=say)
    fit_data = train_data if protocol.fitted == protocol.trained else eval_data

    h, w, c = train_data.images.shape[1:]
    augmenter: Augmenter = recipe.augment.cls(recipe.augment.params, ImageSpec(channels=c, size=h))
    shape = model_shape(recipe, augmenter, device, classes=len(train_data.classes))
    if shape is None:
        named = f"names only the class {train_data.classes[0]!r}" if train_data.classes else "names no classes (unlabelled)"
        raise DataError(
            f"dataset {dataset.name!r} split {train_split!r} {named}, so head.clusters cannot default to its "
            "class count; set head.clusters to the number of clusters wanted (at least 2)"
        )
    model, objectives = build_model(recipe, augmenter, shape, device)
    source: ViewBatches
    if isinstance(model.backbone, FrozenEncoder):
        assert isinstance(augmenter, EmbeddingAugmenter)  # the recipe loader pairs them
        if recorded is not None and _ENCODER_STATE in recorded:
            model.backbone.set_extra_state(recorded[_ENCODER_STATE])  # another encoder: one line, nothing encoded
        splits = {id(d.images): d for d in (train_data, eval_data, fit_data)}
        tables = {
            key: encode_split(model.backbone, d.images, augmenter, ids=d.sample_ids(), seed=recipe.run.seed, device=device, say=say)
            for key, d in splits.items()
        }
        source = EncodedViews(
            tables, train_data.images, augmenter, batch_size=recipe.train.batch_size, seed=recipe.run.seed, device=device, rank=rank, world_size=world_size
        )
    else:
        source = ViewSource(
            train_data.images,
            augmenter,
            on_device=shape.views_on_device,
            original_view=recipe.augment.core.original_view,
            batch_size=recipe.train.batch_size,
            num_workers=recipe.train.num_workers,
            seed=recipe.run.seed,
            device=device,
            rank=rank,
            world_size=world_size,
        )
    return Built(train_data, eval_data, augmenter, source, model, objectives, device, fit_data, protocol, shape)


def build_declared(recipe: Recipe) -> tuple[ModelShape, Augmenter, MultiHeadModel] | None:
    """Without loading data: the recipe's augmenter, model and objectives built on the CPU for
    the images and classes its dataset declares (``Dataset.image_spec``, ``class_count``), so
    that values wrong for that data (a crop larger than the images, a head index out of range)
    raise here as they would in a run. None when the dataset declares either too little."""
    dataset: Dataset = recipe.data.cls(recipe.data.params)
    spec = dataset.image_spec()
    if spec is None or _clusters(recipe, dataset.class_count(), {}) < 2:  # then nothing is built, not even the augmenter
        return None
    cpu = torch.device("cpu")
    augmenter: Augmenter = recipe.augment.cls(recipe.augment.params, spec)
    shape = model_shape(recipe, augmenter, cpu, classes=dataset.class_count())
    assert shape is not None  # its K was checked above
    model, _ = build_model(recipe, augmenter, shape, cpu)
    return shape, augmenter, model


@contextmanager
def _building(what: str) -> Iterator[None]:
    """A plugin's own failure to build from recipe values (a size torch rejects or cannot
    allocate) as a one-line RecipeError naming the recipe section, not a traceback."""
    try:
        with reporting_out_of_memory(f"building [{what}]", f"lower the sizes in [{what}]"):  # too large for the device
            yield
    except (RuntimeError, ValueError, MemoryError, OverflowError) as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise RecipeError(f"[{what}] cannot be built from the recipe's values: {type(exc).__name__}: {first}") from exc


def build_model(
    recipe: Recipe, augmenter: Augmenter, shape: ModelShape, device: torch.device
) -> tuple[MultiHeadModel, list[ObjectiveTerm]]:
    """The recipe's model (backbone and heads of ``shape``: its K per main head, its
    overclusters per overclustering head) for the views that ``augmenter`` makes, and its
    objectives as :class:`ObjectiveTerm` (name, weight, module), on ``device``. Needs no data:
    benchmarks build the exact model of a recipe from it."""
    head_params = recipe.head.params
    with _building("backbone"):
        backbone = recipe.backbone.cls(recipe.backbone.params, augmenter.output)
    per = recipe.head.core.per_attachment
    points = [ch for ch in backbone.attach_channels for _ in range(per)]
    clusters, over = shape.clusters, shape.overclusters
    with _building("head"):
        heads = [recipe.head.cls(head_params, ch, clusters) for ch in points]
        over_heads = [recipe.head.cls(head_params, ch, over) for ch in points] if over else []
    model = MultiHeadModel(backbone, heads, over_heads, per).to(device)

    with torch.no_grad(), _building("backbone"):
        probe = torch.zeros(1, 2, *backbone.input_shape(), device=device)
        was = model.training
        model.eval()
        features = model(probe).features
        model.train(was)
    context = ObjectiveContext(
        heads=len(heads),
        views=augmenter.num_views,
        clusters=clusters,
        overclusters=over,
        feature_channels={k: int(f.shape[2]) for k, f in features.items()},
    )
    objectives = []
    for i, (name, s) in enumerate(zip(_term_names(recipe), recipe.objectives, strict=True)):
        with _building(f"objective.{i}"):  # numbered from 0, as recipe errors and --set number them
            objectives.append(ObjectiveTerm(name, s.params.weight, s.cls(s.params, context).to(device)))
    return model, objectives
