"""Run directories: the files that make one (the one place their names are defined), where a
new run may be made, whether a command may write in one, the record of the recipe its run
trains with, the metrics log, and what a checkpoint records of the model's shape.

A run directory is a folder holding ``recipe.toml``. :data:`RUN_FILES` lists every file of
the contract with what it holds; the help texts are made from it, and a test holds README.md
and docs/clusters.md to it.

A new run is made only in a new or empty folder, so that nothing of the user's is
overwritten; only ``--resume`` writes into an existing run directory.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import re
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mihead.contracts import ImageSpec
from mihead.errors import RecipeError, UsageError
from mihead.files import append_text, write_text_atomically
from mihead.plugins import Registry
from mihead.recipe import Recipe, load_recipe

__all__ = [
    "ASSIGNMENTS_FILE",
    "CHECKPOINT_FILE",
    "CONFUSION_PLOT",
    "DAMAGED_CHECKPOINT_FILE",
    "EMBEDDINGS_FILE",
    "EVALUATION_FILES",
    "GALLERY_FILE",
    "HEADS_NMI_PLOT",
    "HEADS_PLOT",
    "HISTORY_FILE",
    "METRICS_FILE",
    "PLUGINS_FILE",
    "PREVIOUS_CHECKPOINT_FILE",
    "RECIPE_FILE",
    "RUN_FILES",
    "SUMMARY_FILE",
    "TRAINING_PLOT",
    "ModelShape",
    "append_metrics",
    "check_writable",
    "continue_hint",
    "discard_unstarted",
    "gallery_file",
    "gallery_page",
    "read_metrics",
    "load_run_recipe",
    "record_resume",
    "recorded_shape",
    "require_run_directory",
    "shape_record",
    "start_run",
    "truncate_metrics",
]

RECIPE_FILE = "recipe.toml"
PLUGINS_FILE = "plugins.json"
HISTORY_FILE = "history.jsonl"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_FILE = "checkpoint.pt"
PREVIOUS_CHECKPOINT_FILE = "checkpoint.prev.pt"
DAMAGED_CHECKPOINT_FILE = "checkpoint.damaged.pt"
"""Where a resume puts a damaged checkpoint.pt that it could not read (it resumed from the previous one)."""
SUMMARY_FILE = "summary.json"
HEADS_PLOT = "heads.png"
HEADS_NMI_PLOT = "heads_nmi.png"
CONFUSION_PLOT = "confusion.png"
TRAINING_PLOT = "training.png"
ASSIGNMENTS_FILE = "assignments.csv"
GALLERY_FILE = "gallery.png"
EMBEDDINGS_FILE = "embeddings.csv"
_GALLERY_PAGE = re.compile(r"gallery-(\d+)\.png")


def gallery_file(page: int) -> str:
    """The name of page ``page`` (from 1) of the gallery: gallery.png, gallery-2.png, ..."""
    return GALLERY_FILE if page == 1 else f"gallery-{page}.png"


def gallery_page(name: str) -> int | None:
    """The page number of a gallery file named ``name`` past the first (gallery-N.png), else None."""
    match = _GALLERY_PAGE.fullmatch(name)
    return int(match.group(1)) if match else None


EVALUATION_FILES: tuple[tuple[str, str], ...] = (
    (SUMMARY_FILE, "every head's scores and the training facts"),
    (HEADS_PLOT, "per-head scores"),
    (HEADS_NMI_PLOT, "the NMI between every two heads"),
    (CONFUSION_PLOT, "the reported head's, with labels"),
    (TRAINING_PLOT, "loss terms and scores against time"),
    (ASSIGNMENTS_FILE, "each image's cluster in every head"),
    (GALLERY_FILE, f"the shown head's clusters; {gallery_file(2)}, ... past one file"),
    (EMBEDDINGS_FILE, "a frozen encoder's embedding of each image"),
)
"""What an evaluation writes (``mihead run`` at its end, ``mihead eval``), with what each holds."""

RUN_FILES: tuple[tuple[str, str], ...] = (
    (RECIPE_FILE, "the resolved recipe, data.root absolute"),
    (HISTORY_FILE, "each command and its --set"),
    (PLUGINS_FILE, "each plugin's package and version"),
    (METRICS_FILE, "one line per epoch"),
    (CHECKPOINT_FILE, "written atomically"),
    (PREVIOUS_CHECKPOINT_FILE, "the one before"),
    (DAMAGED_CHECKPOINT_FILE, "a damaged checkpoint.pt a resume set aside"),
    *EVALUATION_FILES,
)
"""Every file of a run directory, with what it holds, in the order the help texts list them."""


def require_run_directory(folder: Path) -> Path:
    """``folder`` when it is a run directory, else a one-line RecipeError."""
    if not (folder / RECIPE_FILE).is_file():
        raise RecipeError(f"{folder}: not a run directory (no {RECIPE_FILE})")
    return folder


def load_run_recipe(run_dir: Path, registry: Registry, overrides: Sequence[str] = ()) -> Recipe:
    """The recipe the run of ``run_dir`` (a run directory) trains with, ``overrides`` applied."""
    return load_recipe(require_run_directory(run_dir) / RECIPE_FILE, registry, overrides)


def _holds_checkpoint(run_dir: Path) -> bool:
    return any((run_dir / name).exists() for name in (CHECKPOINT_FILE, PREVIOUS_CHECKPOINT_FILE))


def check_writable(folder: Path, *, label: str = "", hint: str = "") -> None:
    """A one-line UsageError unless a file can be made in ``folder``: "LABEL: cannot write in
    FOLDER: REASON; HINT". Tried by making one: file modes do not stop root, and only a write
    shows a read-only file system."""
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".mihead-write-test-"):
            pass
    except OSError as exc:
        prefix = f"{label}: " if label else ""
        suffix = f"; {hint}" if hint else ""
        raise UsageError(f"{prefix}cannot write in {folder}: {exc.strerror or exc}{suffix}") from None


def continue_hint(run_dir: Path) -> str:
    """What a run stopped by a failed write leaves to its user: its last checkpoint to resume
    from, or none yet."""
    if _holds_checkpoint(run_dir):
        return f"the run's last checkpoint is intact: make room, then continue with: mihead run --resume {run_dir}"
    return f"the run wrote no checkpoint yet: make room, then start it again in a new folder (or remove {run_dir})"


def _new_run_dir(recipe: Recipe, out: str | None) -> Path:
    if out is not None:
        return Path(out)
    name = recipe.run.name or Path(recipe.path).stem
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = Path(recipe.run.out) / f"{name}-{stamp}"
    n = 1
    while run_dir.exists():
        n += 1
        run_dir = Path(recipe.run.out) / f"{name}-{stamp}-{n}"
    return run_dir


def _check_new_place(run_dir: Path, what: str) -> None:
    """A RecipeError unless ``run_dir`` is absent or an empty folder: a new run never writes
    among other files (a run directory is continued with --resume, not run into again)."""
    if not run_dir.exists():
        return
    if not run_dir.is_dir():
        raise RecipeError(f"{what}: {run_dir} is a file, not a folder; choose a new or empty folder for the run")
    try:
        empty = not any(run_dir.iterdir())
    except OSError as exc:
        raise RecipeError(f"{what}: cannot read the folder {run_dir}: {exc.strerror or exc}") from None
    if empty:
        return
    if _holds_checkpoint(run_dir):
        raise RecipeError(f"{run_dir} already holds a run; continue it with --resume {run_dir} or choose another --out")
    raise RecipeError(
        f"{what}: {run_dir} is a folder that is not empty (and holds no checkpoint to continue); "
        "a new run needs a new or empty folder, so that none of its files is overwritten"
    )


def _history_line(command: str, step: int, recipe: str, overrides: Sequence[str]) -> str:
    when = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    return json.dumps({"time": when, "command": command, "step": step, "recipe": recipe, "set": list(overrides)}) + "\n"


def _write_recipe(run_dir: Path, recipe: Recipe) -> None:
    write_text_atomically(run_dir / RECIPE_FILE, recipe.to_toml())
    used = [
        {"kind": e.kind, "name": e.name, "plugin": e.plugin, "package": e.package, "version": e.version}
        for e in recipe.plugins_used()
    ]
    write_text_atomically(run_dir / PLUGINS_FILE, json.dumps(used, indent=2) + "\n")


def start_run(recipe: Recipe, out: str | None, overrides: Sequence[str]) -> Path:
    """The new run directory (``out``, or a new one in ``run.out``) made with its first files,
    or a RecipeError naming the option or key that chose a place where it cannot be made (a
    file, a path under a file, a folder that is not empty or cannot be written). ``recipe``
    should have an absolute data.root (:meth:`Recipe.with_absolute_data_root`)."""
    run_dir = _new_run_dir(recipe, out)
    what = "--out" if out is not None else f"{recipe.path}: [run] out"
    _check_new_place(run_dir, what)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RecipeError(f"{what}: cannot make or write the run directory {run_dir}: {exc.strerror or exc}") from None
    check_writable(run_dir, label=what)
    try:
        _write_recipe(run_dir, recipe)
        append_text(run_dir / HISTORY_FILE, _history_line("run", 0, recipe.path, overrides))
    except BaseException:
        discard_unstarted(run_dir)
        raise
    return run_dir


def discard_unstarted(run_dir: Path) -> None:
    """Remove what :func:`start_run` wrote when the run could not even start (e.g. its data
    is missing) or stopped before its first checkpoint (its loss diverged), so that no
    half-made run directory is left behind."""
    for name in (RECIPE_FILE, PLUGINS_FILE, HISTORY_FILE, METRICS_FILE):
        (run_dir / name).unlink(missing_ok=True)
    if not any(run_dir.iterdir()):
        run_dir.rmdir()


def record_resume(run_dir: Path, recipe: Recipe, overrides: Sequence[str], step: int) -> None:
    """Record a resume that is about to train: ``recipe`` (the run's own with ``overrides``
    applied) becomes recipe.toml, which eval and later resumes read, and history.jsonl gets
    the overrides and the step from which they apply."""
    _write_recipe(run_dir, recipe)
    append_text(run_dir / HISTORY_FILE, _history_line("resume", step, str(run_dir / RECIPE_FILE), overrides))


def read_metrics(run_dir: Path) -> list[tuple[str, dict[str, Any]]]:
    """The lines of ``run_dir``'s metrics.jsonl and their records, less a line cut short (by a
    kill: :func:`truncate_metrics` drops it on resume)."""
    log = run_dir / METRICS_FILE
    if not log.exists():
        return []
    records = []
    for line in log.read_text().splitlines():
        try:
            records.append((line, json.loads(line)))
        except json.JSONDecodeError:
            continue
    return records


def append_metrics(run_dir: Path, record: Mapping[str, Any]) -> None:
    """One epoch's ``record`` as a line of metrics.jsonl (see :mod:`mihead.training_log`)."""
    append_text(run_dir / METRICS_FILE, json.dumps(record) + "\n")


def truncate_metrics(run_dir: Path, epoch: int) -> None:
    """Drop metrics.jsonl lines of epochs after ``epoch`` (the checkpoint's: written before a
    kill) and lines cut short."""
    log = run_dir / METRICS_FILE
    if not log.exists():
        return
    kept = [line for line, record in read_metrics(run_dir) if record["epoch"] <= epoch]
    write_text_atomically(log, "".join(line + "\n" for line in kept))


@dataclasses.dataclass(frozen=True)
class ModelShape:
    """The model's shape, resolved once (:func:`mihead.build.model_shape`): the images it sees
    (``image``: side and channels, what the augmenter is made for), ``clusters`` K of each main
    head, ``overclusters`` of each overclustering head (0 = none), and whether evaluation views
    are made on the device (batched) or per image (the two paths of an augmenter may differ
    slightly, so ``mihead predict`` makes them as the run did)."""

    image: ImageSpec
    clusters: int
    overclusters: int
    views_on_device: bool


_SHAPE_KEY = "model_shape"


def shape_record(shape: ModelShape) -> dict[str, Any]:
    """What a checkpoint records of the model's shape, so that ``eval`` and ``predict`` rebuild
    the model (and prepare new images) as the run did."""
    return {_SHAPE_KEY: dataclasses.asdict(shape)}


def recorded_shape(state: Mapping[str, Any]) -> dict[str, Any]:
    """What checkpoint ``state`` records of the model's shape, as :class:`ModelShape`'s fields
    (``image`` an ImageSpec): all of them, or, in a checkpoint written before the shape was
    recorded whole, those it recorded apart (``image_spec``, ``clusters``,
    ``views_on_device``), or none; the caller resolves the rest as the run would."""
    whole = state.get(_SHAPE_KEY)
    fields = dict(whole) if isinstance(whole, dict) else {
        k: state[v] for k, v in (("image", "image_spec"), ("clusters", "clusters"), ("views_on_device", "views_on_device")) if v in state
    }
    image = fields.get("image")
    if isinstance(image, dict):
        fields["image"] = ImageSpec(channels=int(image["channels"]), size=int(image["size"]))
    else:
        fields.pop("image", None)
    return fields
