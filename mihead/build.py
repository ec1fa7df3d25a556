"""From a validated recipe to live objects: data, augmenter, model and objectives."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from mihead.contracts import (
    Augmenter,
    Dataset,
    ImageData,
    ImageSpec,
    Objective,
    ObjectiveContext,
)
from mihead.data import ViewSource, make_view_source
from mihead.errors import DataError, RecipeError
from mihead.memory import reporting_out_of_memory
from mihead.model import MultiHeadModel
from mihead.protocol import Protocol, resolve_protocol, union_data
from mihead.recipe import Recipe

__all__ = ["Built", "ObjectiveTerm", "build", "build_declared", "build_model", "prediction_facts"]


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
    source: ViewSource
    model: MultiHeadModel
    objectives: list[ObjectiveTerm]
    device: torch.device
    fit_data: ImageData
    protocol: Protocol


def prediction_facts(built: Built) -> dict[str, object]:
    """What a checkpoint records so that ``mihead predict`` can rebuild the model and prepare
    new images as the run's evaluation did, without its data: the images' side and channels,
    the clusters of each main head, and whether the evaluation views were made on the device
    (batched) or per image (the two paths of an augmenter may differ slightly)."""
    return {
        "image_spec": dataclasses.asdict(built.augmenter.image),
        "clusters": built.model.clusters,
        "views_on_device": built.source.on_device,
    }


def _load(dataset: Dataset, split: str, limit: int) -> ImageData:
    with _building("data"):  # e.g. an image size too large to allocate: one line, not a traceback
        data = dataset.load(split).first(limit)
    if len(data) == 0:
        raise DataError(f"dataset {dataset.name!r} split {split!r} has no images")
    return data


def _term_names(recipe: Recipe) -> list[str]:
    """One unique name per objective table: its plugin name, numbered when repeated."""
    names: list[str] = []
    for section in recipe.objectives:
        base = section.entry.name
        count = sum(1 for n in names if n == base or n.startswith(base + "#"))
        names.append(base if count == 0 else f"{base}#{count + 1}")
    return names


def build(recipe: Recipe, device: torch.device, rank: int = 0, world_size: int = 1) -> Built:
    """Load the splits and build augmenter, model and objectives on ``device``; the training
    batches are those of process ``rank`` of ``world_size`` (see mihead/data.py)."""
    torch.manual_seed(recipe.run.seed)
    dataset: Dataset = recipe.data.cls(recipe.data.params)
    limit = recipe.data.params.limit
    train_split = recipe.data.core.split or dataset.train_split
    eval_split = recipe.eval.split or dataset.eval_split
    train_data = _load(dataset, train_split, limit)
    eval_data = train_data if eval_split == train_split else _load(dataset, eval_split, limit)
    protocol = resolve_protocol(recipe.eval.protocol, train_split, eval_split)
    if protocol.name == "union" and eval_data is not train_data:
        train_data = eval_data = union_data([(train_split, train_data), (eval_split, eval_data)])
    fit_data = train_data if protocol.fitted == protocol.trained else eval_data

    h, w, c = train_data.images.shape[1:]
    augmenter: Augmenter = recipe.augment.cls(recipe.augment.params, ImageSpec(channels=c, size=h))
    source = make_view_source(
        train_data.images,
        augmenter,
        recipe.augment.core.where,
        original_view=recipe.augment.core.original_view,
        batch_size=recipe.train.batch_size,
        num_workers=recipe.train.num_workers,
        seed=recipe.run.seed,
        device=device,
        rank=rank,
        world_size=world_size,
    )

    clusters = recipe.head.params.clusters or len(train_data.classes)
    if clusters < 2:
        named = f"names only the class {train_data.classes[0]!r}" if train_data.classes else "names no classes (unlabelled)"
        raise DataError(
            f"dataset {dataset.name!r} split {train_split!r} {named}, so head.clusters cannot default to its "
            "class count; set head.clusters to the number of clusters wanted (at least 2)"
        )
    model, objectives = build_model(recipe, augmenter, clusters, device)
    return Built(train_data, eval_data, augmenter, source, model, objectives, device, fit_data, protocol)


def build_declared(recipe: Recipe) -> tuple[ImageSpec, int, MultiHeadModel] | None:
    """Without loading data: the recipe's augmenter, model and objectives built on the CPU for
    the images and classes its dataset declares (``Dataset.image_spec``, ``class_count``), so
    that values wrong for that data (a crop larger than the images, a head index out of range)
    raise here as they would in a run. None when the dataset declares either too little."""
    dataset: Dataset = recipe.data.cls(recipe.data.params)
    spec = dataset.image_spec()
    clusters = recipe.head.params.clusters or dataset.class_count()
    if spec is None or clusters < 2:
        return None
    augmenter: Augmenter = recipe.augment.cls(recipe.augment.params, spec)
    model, _ = build_model(recipe, augmenter, clusters, torch.device("cpu"))
    return spec, clusters, model


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
    recipe: Recipe, augmenter: Augmenter, clusters: int, device: torch.device
) -> tuple[MultiHeadModel, list[ObjectiveTerm]]:
    """The recipe's model (backbone and heads, ``clusters`` per main head) for the views that
    ``augmenter`` makes, and its objectives as (term name, weight, module), on ``device``.
    Needs no data: benchmarks build the exact model of a recipe from it."""
    head_params = recipe.head.params
    with _building("backbone"):
        backbone = recipe.backbone.cls(recipe.backbone.params, augmenter.output)
    per = head_params.per_attachment
    points = [ch for ch in backbone.attach_channels for _ in range(per)]
    over = head_params.overclusters
    with _building("head"):
        heads = [recipe.head.cls(head_params, ch, clusters) for ch in points]
        over_heads = [recipe.head.cls(head_params, ch, over) for ch in points] if over else []
    model = MultiHeadModel(backbone, heads, over_heads, per).to(device)

    with torch.no_grad(), _building("backbone"):
        probe = torch.zeros(1, 2, augmenter.output.channels, augmenter.output.size, augmenter.output.size, device=device)
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
