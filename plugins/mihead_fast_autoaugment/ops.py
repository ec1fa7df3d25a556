"""Fast AutoAugment's ops as albumentations transforms.

Each op keeps the meaning it has in the paper's code (PIL based): geometric ops map output to
input pixels with PIL's affine convention (origin at the top-left corner, nearest neighbour,
black outside), enhancement factors blend with PIL's degenerate images. Albumentations'
transforms are used where they do the same thing (its Affine warp, InvertImg, Solarize, Posterize,
AutoContrast in its PIL mode, ColorJitter's torchvision-style brightness,
contrast and saturation); custom albumentations transforms cover the rest: PIL's Sharpness,
PIL's Equalize and the Cutout hole placement of the paper's ``CutoutAbs``.
"""

from __future__ import annotations

from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch

from mihead_fast_autoaugment.batched import pil_coefficients
from mihead_fast_autoaugment.policy import CUTOUT_FILL, SIGNED, cutout_box, cutout_side

__all__ = ["FaaCutout", "PilAffine", "PilEqualize", "PilSharpness", "fixed_op", "policy_op", "pil_smooth"]

_NEAREST = cv2.INTER_NEAREST
_SMOOTH = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], np.float32) / 13


def pil_smooth(img: np.ndarray) -> np.ndarray:
    """PIL's ``ImageFilter.SMOOTH`` (the degenerate image of ``ImageEnhance.Sharpness``): a
    3x3 kernel [[1,1,1],[1,5,1],[1,1,1]]/13, rounded, the one-pixel border left unchanged."""
    out = img.copy()
    blurred = cv2.filter2D(img.astype(np.float32), -1, _SMOOTH, borderType=cv2.BORDER_REPLICATE)
    inner = np.floor(blurred[1:-1, 1:-1] + 0.5).clip(0, 255).astype(np.uint8)
    out[1:-1, 1:-1] = inner.reshape(out[1:-1, 1:-1].shape)
    return out


class PilSharpness(A.ImageOnlyTransform):
    """``PIL.ImageEnhance.Sharpness(img).enhance(factor)``: blend of the SMOOTH-filtered image
    and the image, ``smooth + factor * (img - smooth)``, truncated to uint8 as PIL does."""

    def __init__(self, factor: float, p: float = 1.0) -> None:
        super().__init__(p=p)
        self.factor = factor

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        smooth = pil_smooth(img).astype(np.float32)
        return (smooth + self.factor * (img - smooth)).clip(0, 255).astype(np.uint8)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("factor",)


class PilEqualize(A.ImageOnlyTransform):
    """``PIL.ImageOps.equalize``, per channel. (albumentations 2.0's ``Equalize(mode="pil")``
    builds its table from the cumulative count including each bin, one bin off PIL's, which
    counts the pixels below it: up to 3 levels apart on CIFAR images.)"""

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        out = np.empty_like(img)
        for c in range(img.shape[2]):
            channel = img[:, :, c]
            hist = np.bincount(channel.ravel(), minlength=256)
            used = hist[hist > 0]
            step = (used.sum() - used[-1]) // 255 if len(used) > 1 else 0
            if step == 0:
                out[:, :, c] = channel
                continue
            below = np.concatenate([[0], np.cumsum(hist)[:-1]])
            lut = np.minimum((below + step // 2) // step, 255).astype(np.uint8)
            out[:, :, c] = lut[channel]
        return out

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ()


class FaaCutout(A.CoarseDropout):
    """One square hole of ``fraction`` of the width, placed as Fast AutoAugment's
    ``CutoutAbs`` places it (see :func:`cutout_box`) and filled with (125, 123, 114)."""

    def __init__(self, fraction: float, p: float = 1.0) -> None:
        super().__init__(num_holes_range=(1, 1), fill=CUTOUT_FILL, p=p)
        self.fraction = fraction

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        height, width = params["shape"][:2]
        side = cutout_side(self.fraction, width)
        cx, cy = self.random_generator.uniform(0, width), self.random_generator.uniform(0, height)
        holes = np.array([cutout_box(cx, cy, side, width, height)] if side > 0 else [], np.int64).reshape(-1, 4)
        return {"holes": holes, "seed": self.random_generator.integers(0, 2**32 - 1)}

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("fraction",)


class PilAffine(A.Affine):
    """A geometric op as PIL's ``img.transform(size, AFFINE, coefficients)`` does it in the
    paper's code: output (x, y) reads the input pixel nearest to (ax + by + c, dx + ey + f),
    about the top-left corner, black outside.

    albumentations' Affine parameters cannot say this (it truncates shifts to whole pixels and
    shears about the centre), so the matrix it warps with is given directly; cv2's nearest
    neighbour rounds, as PIL does (ties aside: cv2 maps in 10-bit, PIL in 16-bit fixed point).
    """

    def __init__(self, op: str, value: float, p: float = 1.0) -> None:
        super().__init__(interpolation=_NEAREST, border_mode=cv2.BORDER_CONSTANT, fill=0, p=p)
        self.op = op
        self.value = value

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        height, width = params["shape"][:2]
        a, b, c, d, e, f = pil_coefficients(self.op, torch.tensor([self.value], dtype=torch.float64), height, width)[0].tolist()
        # PIL reads input corner coordinates K (out + 0.5); in pixel-index coordinates that is
        # (K (out + 0.5)) - 0.5, and cv2 wants the inverse (input -> output) map
        half = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
        to_input = np.linalg.inv(half) @ np.array([[a, b, c], [d, e, f], [0, 0, 1]]) @ half
        matrix = np.linalg.inv(to_input)
        return {"rotate": 0.0, "scale": {"x": 1.0, "y": 1.0}, "matrix": matrix, "bbox_matrix": matrix,
                "output_shape": (height, width)}  # fmt: skip

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("op", "value")


def fixed_op(name: str, value: float, height: int, width: int, p: float = 1.0) -> A.BasicTransform:
    """Op ``name`` with exactly this value (no sign flip), applied with probability ``p``."""
    if name in SIGNED:
        return PilAffine(name, value, p=p)
    if name == "AutoContrast":
        return A.AutoContrast(method="pil", p=p)
    if name == "Invert":
        return A.InvertImg(p=p)
    if name == "Equalize":
        return PilEqualize(p=p)
    if name == "Solarize":  # PIL: a pixel >= threshold becomes 255 - pixel
        return A.Solarize(threshold_range=(value / 255,) * 2, p=p) if value <= 255 else A.NoOp()
    if name == "Posterize":  # keep int(value) high bits; 8 bits is the identity
        bits = int(value)
        return A.Posterize(num_bits=bits, p=p) if bits < 8 else A.NoOp()
    jitter = {"brightness": (1, 1), "contrast": (1, 1), "saturation": (1, 1), "hue": (0, 0)}
    if name in ("Brightness", "Contrast", "Color"):
        key = {"Brightness": "brightness", "Contrast": "contrast", "Color": "saturation"}[name]
        return A.ColorJitter(**{**jitter, key: (value, value)}, p=p)
    if name == "Sharpness":
        return PilSharpness(value, p=p)
    if name == "Cutout":
        return FaaCutout(value, p=p)
    raise KeyError(f"unknown Fast AutoAugment op {name!r}")


def policy_op(name: str, value: float, p: float, height: int, width: int) -> A.BasicTransform:
    """Op ``name`` as a policy applies it: with probability ``p``, and for the geometric ops
    with the sign of ``value`` flipped with probability 0.5."""
    if name in SIGNED:
        both = [PilAffine(name, s * value) for s in (1.0, -1.0)]
        return A.OneOf(both, p=p)
    return fixed_op(name, value, height, width, p)
