"""Run directories as the commands see them: what makes a folder one, where a new run may be
made, whether a command may write in one, and the record of the recipe its run trains with.

A run directory is a folder holding ``recipe.toml``. Besides what training and evaluation
write there (metrics.jsonl, the checkpoints, summary.json, the plots, ...), it holds:

    recipe.toml     the resolved recipe the run trains with now: every default filled in,
                    a relative data.root made absolute, the --set of every resume applied
    plugins.json    name, package and version of each plugin used
    history.jsonl   one line per command that started or continued the run: when, at which
                    step, from which recipe file, with which --set overrides

A new run is made only in a new or empty folder, so that nothing of the user's is
overwritten; only ``--resume`` writes into an existing run directory.
"""

from __future__ import annotations

import datetime
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from mihead.checkpoint import CHECKPOINT, PREVIOUS
from mihead.errors import RecipeError, UsageError
from mihead.files import append_text, write_text_atomically
from mihead.recipe import Recipe
from mihead.training_log import LOG_FILE

__all__ = [
    "HISTORY_FILE",
    "PLUGINS_FILE",
    "RECIPE_FILE",
    "check_writable",
    "continue_hint",
    "discard_unstarted",
    "record_resume",
    "require_run_directory",
    "start_run",
]

RECIPE_FILE = "recipe.toml"
PLUGINS_FILE = "plugins.json"
HISTORY_FILE = "history.jsonl"


def require_run_directory(folder: Path) -> Path:
    """``folder`` when it is a run directory, else a one-line RecipeError."""
    if not (folder / RECIPE_FILE).is_file():
        raise RecipeError(f"{folder}: not a run directory (no {RECIPE_FILE})")
    return folder


def _holds_checkpoint(run_dir: Path) -> bool:
    return any((run_dir / name).exists() for name in (CHECKPOINT, PREVIOUS))


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
    for name in (RECIPE_FILE, PLUGINS_FILE, HISTORY_FILE, LOG_FILE):
        (run_dir / name).unlink(missing_ok=True)
    if not any(run_dir.iterdir()):
        run_dir.rmdir()


def record_resume(run_dir: Path, recipe: Recipe, overrides: Sequence[str], step: int) -> None:
    """Record a resume that is about to train: ``recipe`` (the run's own with ``overrides``
    applied) becomes recipe.toml, which eval and later resumes read, and history.jsonl gets
    the overrides and the step from which they apply."""
    _write_recipe(run_dir, recipe)
    append_text(run_dir / HISTORY_FILE, _history_line("resume", step, str(run_dir / RECIPE_FILE), overrides))
