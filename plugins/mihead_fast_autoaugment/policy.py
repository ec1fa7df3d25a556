"""The Fast AutoAugment policy file: ops, magnitude ranges and sub-policies.

Lim et al., "Fast AutoAugment", NeurIPS 2019. The file (a copy ships with this package) lists,
per op, the range ``[low, high]`` that an op's level in [0, 1] maps to ("its value is
level*(high-low)+low") and the sub-policies, each two ``[op, probability, level]`` triples:
"per image, pick one sub-policy uniformly at random; apply each of its two ops in order, each
with its probability p".
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

from mihead.errors import DataError

__all__ = ["CUTOUT_FILL", "DEFAULT_POLICY", "OPS", "SIGNED", "Op", "Policy", "cutout_box", "cutout_side", "load_policy"]

DEFAULT_POLICY = Path(__file__).with_name("fast_autoaugment_cifar10.json")

OPS = (
    "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "AutoContrast", "Invert",
    "Equalize", "Solarize", "Posterize", "Contrast", "Color", "Brightness", "Sharpness", "Cutout",
)  # fmt: skip
SIGNED = frozenset({"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"})
"""Ops whose value's sign is flipped with probability 0.5 ("random_mirror" in the paper's code)."""

CUTOUT_FILL = (125, 123, 114)


@dataclasses.dataclass(frozen=True)
class Op:
    """One op of a sub-policy: its name, the probability of applying it and its value (the
    level already mapped through the op's range)."""

    name: str
    prob: float
    value: float


@dataclasses.dataclass(frozen=True)
class Policy:
    """The sub-policies of a policy file, each a pair of :class:`Op`."""

    source: str
    subpolicies: tuple[tuple[Op, ...], ...]


def load_policy(path: str | Path = DEFAULT_POLICY) -> Policy:
    """Read and check a policy file; a :class:`DataError` names the file and the problem."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        ranges = {name: (float(r["low"]), float(r["high"])) for name, r in data["ops"].items()}
        raw = data["policy"]
    except FileNotFoundError:
        raise DataError(f"{path}: no such Fast AutoAugment policy file") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: not a Fast AutoAugment policy file ({type(exc).__name__}: {exc})") from None
    unknown = sorted(set(ranges) - set(OPS))
    if unknown:
        raise DataError(f"{path}: unknown op(s) {', '.join(unknown)}; known: {', '.join(OPS)}")
    subpolicies = []
    for i, sub in enumerate(raw):
        ops = []
        for triple in sub:
            try:
                name, prob, level = triple
                low, high = ranges[name]
                prob, level = float(prob), float(level)
            except (ValueError, TypeError, KeyError):
                raise DataError(f"{path}: sub-policy {i}: bad op {triple!r}") from None
            if not (0 <= prob <= 1 and 0 <= level <= 1):
                raise DataError(f"{path}: sub-policy {i}: probability and level must lie in [0, 1]: {triple!r}")
            ops.append(Op(name, prob, level * (high - low) + low))
        subpolicies.append(tuple(ops))
    if not subpolicies:
        raise DataError(f"{path}: the policy has no sub-policies")
    return Policy(str(path), tuple(subpolicies))


def cutout_box(cx: float, cy: float, side: int, width: int, height: int) -> tuple[int, int, int, int]:
    """The hole ``(x0, y0, x1, y1)`` (end exclusive) of Fast AutoAugment's ``CutoutAbs``: a
    square of ``side`` px whose centre (cx, cy) is uniform over the image, its corner clamped
    to the image at the top/left and its far edge cut at the bottom/right."""
    x0 = int(max(0.0, cx - side / 2))
    y0 = int(max(0.0, cy - side / 2))
    return x0, y0, min(width, x0 + side), min(height, y0 + side)


def cutout_side(value: float, width: int) -> int:
    """The hole's side in px for a Cutout value (a fraction of the width)."""
    return int(math.floor(value * width + 0.5))
