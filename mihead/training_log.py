"""The records of metrics.jsonl (:func:`mihead.run_directory.read_metrics`) read as the learning
curve (scores against training time) that the evaluated epochs trace.

The engine appends one JSON object per epoch (``epoch``, ``step``, ``lr``, ``losses``,
``images_per_second``, ``seconds``: training seconds so far, summed over resumed commands, not
counting evaluation) and ``eval`` on evaluated epochs (the selected head and every head's
scores). A line cut short by a kill is skipped, and truncated on resume.
"""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["CurvePoint", "head_curves", "learning_curve"]


@dataclasses.dataclass(frozen=True)
class CurvePoint:
    """One evaluated epoch: when it ended and how the heads scored (``acc`` and ``nmi`` are
    the selected head's, None without labels; ``best_acc`` the best head's)."""

    epoch: int
    step: int
    seconds: float
    selected: int
    acc: float | None
    nmi: float | None
    nmi_zz: float
    best_acc: float | None


def learning_curve(records: list[dict[str, Any]]) -> list[CurvePoint]:
    """The evaluated epochs of ``records``, in order."""
    points = []
    for r in records:
        if "eval" not in r:
            continue
        heads = r["eval"]["heads"]
        chosen = heads[r["eval"]["selected_head"]]
        accs = [h["acc"] for h in heads if h.get("acc") is not None]
        points.append(
            CurvePoint(
                epoch=int(r["epoch"]),
                step=int(r["step"]),
                seconds=float(r["seconds"]),
                selected=int(r["eval"]["selected_head"]),
                acc=chosen.get("acc"),
                nmi=chosen.get("nmi"),
                nmi_zz=float(chosen["nmi_zz"]),
                best_acc=max(accs) if accs else None,
            )
        )
    return points


def head_curves(records: list[dict[str, Any]], metric: str) -> list[list[float | None]]:
    """Each head's ``metric`` (e.g. "acc", "nmi_zz") at every evaluated epoch of ``records``:
    one list per head, in the order of :func:`learning_curve` (None where it was not logged)."""
    evaluated = [r["eval"]["heads"] for r in records if "eval" in r]
    heads = max((len(e) for e in evaluated), default=0)
    return [[e[h].get(metric) if h < len(e) else None for e in evaluated] for h in range(heads)]
