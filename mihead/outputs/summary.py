"""summary.json: an evaluation's scores and the training facts of the run."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from mihead.evaluate import Evaluation
from mihead.files import write_text_atomically
from mihead.recipe import Recipe
from mihead.run_directory import SUMMARY_FILE

__all__ = ["read_summary", "training_facts", "write_summary"]


def _data_facts(recipe: Recipe) -> dict[str, str]:
    """The dataset and, for one that reads files, the folder it read: ``data.root`` made
    absolute ('' = the dataset's default place)."""
    facts = {"dataset": recipe.data.entry.name}
    if "root" not in recipe.data.unused_keys:
        root = str(recipe.data.params.root)
        facts["root"] = os.path.abspath(root) if root else ""
    return facts


def training_facts(state: dict[str, Any], device: torch.device, recipe: Recipe) -> dict[str, Any]:
    """The training part of summary.json, from a checkpoint's counters, and where the data
    was (``data``: the dataset's name and the folder it read)."""
    seconds = float(state["seconds"])
    return {
        "epochs": int(state["epoch"]),
        "steps": int(state["step"]),
        "seconds": round(seconds, 3),
        "images_per_second": round(int(state["images_seen"]) / seconds, 1) if seconds else None,
        "device": str(device),
        "world_size": int(state["world_size"]),
        "data": _data_facts(recipe),
    }


def write_summary(run_dir: Path, evaluation: Evaluation, facts: dict[str, Any]) -> dict[str, Any]:
    """RUN_DIR/summary.json: ``evaluation``'s scores and ``facts``; returns what it wrote."""
    summary = {**evaluation.summary(), **facts}
    write_text_atomically(run_dir / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
    return summary


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    """RUN_DIR/summary.json, or None when the run has not finished (or it is unreadable)."""
    try:
        summary = json.loads((run_dir / SUMMARY_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return summary if isinstance(summary, dict) else None
