"""``mihead predict``: a trained run's clusters for new image files.

The files are read as the run's own images were (:func:`mihead.images.decode_images` at the
side and channels recorded in its checkpoint), given the augmenter's evaluation view (made the
way the run's evaluation made it: batched or per image, as recorded) and assigned by every
main head, exactly as the run's evaluation assigned its images; with a frozen encoder, each file
is encoded by the run's encoder (the weights file it recorded, checked by digest) and its
embedding assigned. Nothing of
the training data is needed, and the checkpoint's tensors are read onto the CPU first, so a run
trained on a GPU predicts on a machine without one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from mihead.build import build_model, model_shape
from mihead.checkpoint import load_checkpoint, load_weights
from mihead.contracts import Augmenter, Dataset, FrozenEncoder, ImageSpec
from mihead.data import eval_view_batches
from mihead.embeddings import encode_batches
from mihead.errors import CheckpointError, DataError
from mihead.evaluate import assign_views
from mihead.images import MAX_PIXELS, decode_images, find_images
from mihead.model import MultiHeadModel
from mihead.recipe import Recipe
from mihead.run_directory import recorded_shape

__all__ = ["LONG_INPUT", "Predictions", "RunModel", "load_run_model", "predict"]

LONG_INPUT = 500
"""From this many files on, decoding and assigning show progress bars."""


@dataclasses.dataclass(frozen=True)
class RunModel:
    """A run's trained model, ready to assign images of ``spec``."""

    recipe: Recipe
    model: MultiHeadModel
    augmenter: Augmenter
    spec: ImageSpec
    device: torch.device
    views_on_device: bool


@dataclasses.dataclass(frozen=True)
class Predictions:
    """Every main head's cluster (int64 [H, N]) and its probability (float32 [H, N]) for each
    file of ``paths``; ``skipped`` lists (file, reason) of files left out as unreadable."""

    paths: list[Path]
    assignments: np.ndarray
    confidence: np.ndarray
    skipped: list[tuple[Path, str]]


def _image_spec(recorded: dict[str, Any], dataset: Dataset, run_dir: Path) -> ImageSpec:
    """The run's image side and channels: the checkpoint's record, else (a checkpoint written
    before it was recorded) what the dataset declares."""
    image = recorded.get("image")
    if isinstance(image, ImageSpec):
        return image
    declared = dataset.image_spec()
    if declared is None:
        raise CheckpointError(
            f"{run_dir}: the checkpoint does not record its images' size and channels and dataset {dataset.name!r} "
            "does not declare them (it was written by an older mihead); train the run again"
        )
    return declared


def load_run_model(run_dir: Path, recipe: Recipe, device: torch.device, *, warn: Callable[[str], None] = print) -> RunModel:
    """RUN_DIR's model (with ``recipe``, the run's own) from its latest good checkpoint (the
    previous one when the latest is damaged: ``warn`` says so), on ``device``, without loading
    its data. The model's shape is the one its checkpoint records; what an older checkpoint
    does not record is resolved as ``check`` resolves it (the recipe's [head] keys, the
    dataset's declared image size and classes)."""
    state = load_checkpoint(run_dir, warn=warn)
    recorded = recorded_shape(state)
    dataset: Dataset = recipe.data.cls(recipe.data.params)
    augmenter: Augmenter = recipe.augment.cls(recipe.augment.params, _image_spec(recorded, dataset, run_dir))
    shape = model_shape(recipe, augmenter, device, classes=dataset.class_count(), recorded=recorded)
    if shape is None:
        raise CheckpointError(f"{run_dir}: the checkpoint does not record its heads' clusters and the recipe does not say them")
    model, _ = build_model(recipe, augmenter, shape, device)
    load_weights(model, state["model"], run_dir, "model")
    return RunModel(recipe, model, augmenter, shape.image, device, shape.views_on_device)


def _with_progress(batches: Iterator[torch.Tensor], total: int, console: Console | None) -> Iterator[torch.Tensor]:
    """``batches``, advancing a progress bar of ``total`` images on ``console`` (when given)."""
    if console is None:
        yield from batches
        return
    columns = [TextColumn("assigning"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("assigning", total=total)
        for batch in batches:
            yield batch
            progress.advance(task, batch.shape[1])


def predict(run: RunModel, paths: Sequence[Path], *, skip_bad: bool = False, console: Console | None = None) -> Predictions:
    """The clusters of the image files among ``paths`` (files, and folders searched
    recursively). An unreadable file is a DataError naming it, unless ``skip_bad`` (then it is
    left out and listed in ``skipped``). Progress bars on ``console`` for long inputs."""
    files = find_images(paths)
    if not files:
        raise DataError(f"no image files in {', '.join(str(p) for p in paths)}")
    shown = console if len(files) >= LONG_INPUT else None
    max_pixels = getattr(run.recipe.data.params, "max_pixels", MAX_PIXELS)  # the run's limit, where its data had one
    decoded = decode_images(files, run.spec.size, run.spec.channels, skip_bad=skip_bad, console=shown, max_pixels=max_pixels)
    if not decoded.paths:
        raise DataError(f"none of the {len(files)} image files could be read (e.g. {decoded.skipped[0][0]}: {decoded.skipped[0][1]})")
    recipe = run.recipe
    batch_size = recipe.eval.batch_size
    backbone = run.model.backbone
    if isinstance(backbone, FrozenEncoder):  # the run's encoder and preprocessing, as its images were encoded
        inputs = encode_batches(backbone, decoded.images, backbone.params.batch_size, run.device)
    else:
        inputs = eval_view_batches(decoded.images, run.augmenter, batch_size, on_device=run.views_on_device, device=run.device)
    views = (v.unsqueeze(0) for v in inputs)
    clusters, confidence = assign_views(run.model, _with_progress(views, len(decoded.paths), shown), recipe.train.precision)
    return Predictions(decoded.paths, clusters[:, 0], confidence[:, 0], decoded.skipped)
