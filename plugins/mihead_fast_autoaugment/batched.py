"""Fast AutoAugment on batches of uint8 tensors on the training device.

Each op is a torch function of images [N, C, H, W] and per-image values [N], with the meaning
the op has in the paper's (PIL based) code and in the albumentations path of this package:
geometric ops are PIL affine maps (output to input, nearest, black outside) done by a gather;
enhancement ops blend with PIL's degenerate images and truncate as PIL does.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from mihead_fast_autoaugment.policy import CUTOUT_FILL, OPS, SIGNED, Policy

__all__ = ["BatchedPolicy", "apply_op", "crop_resize", "cutout", "grayscale", "pil_affine", "pil_coefficients"]

Tensor = torch.Tensor


def pil_coefficients(name: str, values: Tensor, height: int, width: int) -> Tensor:
    """PIL's ``Image.transform(AFFINE, (a, b, c, d, e, f))`` coefficients [N, 6] of a
    geometric op, as the paper's code calls it: output (x, y) reads input (ax+by+c, dx+ey+f)."""
    one, zero = torch.ones_like(values), torch.zeros_like(values)
    if name == "ShearX":
        return torch.stack([one, values, zero, zero, one, zero], 1)
    if name == "ShearY":
        return torch.stack([one, zero, zero, values, one, zero], 1)
    if name == "TranslateX":
        return torch.stack([one, zero, values * width, zero, one, zero], 1)
    if name == "TranslateY":
        return torch.stack([one, zero, zero, zero, one, values * height], 1)
    if name == "Rotate":  # PIL's Image.rotate: counter-clockwise about (w/2, h/2)
        theta = -values * (math.pi / 180)
        a, b, d, e = theta.cos(), theta.sin(), -theta.sin(), theta.cos()
        cx, cy = width / 2, height / 2
        return torch.stack([a, b, cx - a * cx - b * cy, d, e, cy - d * cx - e * cy], 1)
    raise KeyError(name)


def pil_affine(images: Tensor, coeffs: Tensor) -> Tensor:
    """PIL's nearest-neighbour affine transform of uint8 [N, C, H, W], 0 outside.

    Output pixel (x, y) takes input pixel floor(a(x+.5) + b(y+.5) + c), floor(d(x+.5) + ...).
    As Pillow does, a pure shift/scale (b = d = 0) is computed in double precision and any
    other map in 16.16 fixed point, which decides the ties that shears of round values make.
    """
    n, c, h, w = images.shape
    k = coeffs.to(torch.float64)
    ys, xs = torch.meshgrid(
        torch.arange(h, device=images.device, dtype=torch.int64),
        torch.arange(w, device=images.device, dtype=torch.int64),
        indexing="ij",
    )

    def fix(v: Tensor) -> Tensor:
        return (v * 65536.0 + 0.5).floor().long()[:, None, None]

    def fixed(a: Tensor, b: Tensor, c: Tensor) -> Tensor:
        return (fix(c + a * 0.5 + b * 0.5) + xs * fix(a) + ys * fix(b)) >> 16

    def double(a: Tensor, b: Tensor, c: Tensor) -> Tensor:
        v = a[:, None, None] * (xs + 0.5) + b[:, None, None] * (ys + 0.5) + c[:, None, None]
        return v.floor().long()

    scale_only = ((k[:, 1] == 0) & (k[:, 3] == 0))[:, None, None]
    xin = torch.where(scale_only, double(k[:, 0], k[:, 1], k[:, 2]), fixed(k[:, 0], k[:, 1], k[:, 2]))
    yin = torch.where(scale_only, double(k[:, 3], k[:, 4], k[:, 5]), fixed(k[:, 3], k[:, 4], k[:, 5]))
    inside = (xin >= 0) & (xin < w) & (yin >= 0) & (yin < h)
    index = (yin.clamp(0, h - 1) * w + xin.clamp(0, w - 1)).view(n, 1, h * w).expand(n, c, h * w)
    out = images.reshape(n, c, h * w).gather(2, index).view(n, c, h, w)
    return out * inside[:, None].to(images.dtype)


def _luminance(images: Tensor) -> Tensor:
    """PIL's ``convert("L")`` of uint8 RGB [N, 3, H, W]: (19595 R + 38470 G + 7471 B + 2^15) >> 16."""
    r, g, b = images.int().unbind(1)
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16)[:, None]


def _blend(images: Tensor, degenerate: Tensor, factor: Tensor) -> Tensor:
    """PIL's ``Image.blend(degenerate, image, factor)``, truncated to uint8."""
    deg = degenerate.float()
    out = deg + factor.float().view(-1, 1, 1, 1) * (images.float() - deg)
    return out.clamp_(0, 255).to(torch.uint8)


_SMOOTH = torch.tensor([[1.0, 1, 1], [1, 5, 1], [1, 1, 1]]) / 13


def _smooth(images: Tensor) -> Tensor:
    """PIL's ``ImageFilter.SMOOTH``, rounded, the one-pixel border unchanged."""
    n, c, h, w = images.shape
    kernel = _SMOOTH.to(images.device).expand(c, 1, 3, 3)
    inner = F.conv2d(images.float(), kernel, groups=c).add_(0.5).floor_().clamp_(0, 255)
    out = images.clone()
    out[:, :, 1:-1, 1:-1] = inner.to(torch.uint8)
    return out


def cutout(images: Tensor, side: Tensor, centre: Tensor) -> Tensor:
    """Fast AutoAugment's Cutout: a hole of ``side`` px per image, centre [N, 2] (x, y),
    placed as :func:`~mihead_fast_autoaugment.policy.cutout_box` places it."""
    n, c, h, w = images.shape
    x0 = (centre[:, 0] - side / 2).clamp(min=0).floor()
    y0 = (centre[:, 1] - side / 2).clamp(min=0).floor()
    xs = torch.arange(w, device=images.device)
    ys = torch.arange(h, device=images.device)
    in_x = (xs[None] >= x0[:, None]) & (xs[None] < x0[:, None] + side[:, None])
    in_y = (ys[None] >= y0[:, None]) & (ys[None] < y0[:, None] + side[:, None])
    hole = (in_y[:, :, None] & in_x[:, None, :])[:, None]
    fill = torch.tensor(CUTOUT_FILL[:c], dtype=images.dtype, device=images.device).view(1, c, 1, 1)
    return torch.where(hole, fill, images)


def apply_op(name: str, images: Tensor, values: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Op ``name`` with per-image values [N] (signs already drawn) on uint8 RGB [N, 3, H, W];
    Cutout draws its hole centres from ``generator``."""
    n, _, h, w = images.shape
    if name in SIGNED:
        return pil_affine(images, pil_coefficients(name, values, h, w))
    if name == "AutoContrast":
        return TF.autocontrast(images)
    if name == "Invert":
        return 255 - images
    if name == "Equalize":
        return TF.equalize(images)
    if name == "Solarize":
        return torch.where(images >= values.view(-1, 1, 1, 1), 255 - images, images)
    if name == "Posterize":
        mask = (255 << (8 - values.long().clamp(0, 8))) & 255
        return images & mask.view(-1, 1, 1, 1).to(images.dtype)
    if name == "Brightness":
        return _blend(images, torch.zeros_like(images), values)
    if name == "Contrast":
        mean = _luminance(images).float().mean((1, 2, 3)).add(0.5).floor()
        return _blend(images, mean.view(-1, 1, 1, 1).expand_as(images), values)
    if name == "Color":
        return _blend(images, _luminance(images).expand_as(images), values)
    if name == "Sharpness":
        return _blend(images, _smooth(images), values)
    if name == "Cutout":
        side = (values * w).add(0.5).floor()
        centre = torch.rand(n, 2, generator=generator, device=images.device) * images.new_tensor([w, h]).float()
        return cutout(images, side, centre)
    raise KeyError(f"unknown Fast AutoAugment op {name!r}")


def grayscale(images: Tensor) -> Tensor:
    """The weighted-average grey (0.299 R + 0.587 G + 0.114 B, rounded) kept as 3 channels,
    as ``albumentations.ToGray`` makes it."""
    weights = images.new_tensor([0.299, 0.587, 0.114], dtype=torch.float32).view(1, 3, 1, 1)
    grey = (images.float() * weights).sum(1, keepdim=True).add_(0.5).floor_().clamp_(0, 255)
    return grey.to(torch.uint8).expand_as(images)


def crop_resize(images: Tensor, top: Tensor, left: Tensor, crop: int, size: int) -> Tensor:
    """Square crops of ``crop`` px at per-image (top, left), resized bilinearly (half-pixel
    centres, as cv2's INTER_LINEAR) to ``size``; float in [0, 255]."""
    n, c = images.shape[:2]
    steps = torch.arange(crop, device=images.device)
    rows = (top[:, None] + steps)[:, :, None]
    cols = (left[:, None] + steps)[:, None, :]
    batch = torch.arange(n, device=images.device)[:, None, None]
    patches = images.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2).float()
    if size == crop:
        return patches
    return F.interpolate(patches, size=(size, size), mode="bilinear", align_corners=False, antialias=size < crop)


class BatchedPolicy:
    """The policy's sub-policies as tensors, applied to a batch with one random sub-policy,
    op draws and signs per image."""

    def __init__(self, policy: Policy) -> None:
        subs = policy.subpolicies
        self.op_ids = torch.tensor([[OPS.index(op.name) for op in sub] for sub in subs])
        self.probs = torch.tensor([[op.prob for op in sub] for sub in subs])
        self.values = torch.tensor([[op.value for op in sub] for sub in subs])
        self.signed = torch.tensor([name in SIGNED for name in OPS])

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        n, device = len(images), images.device
        pick = torch.randint(len(self.op_ids), (n,), generator=generator, device=device)
        op_ids, probs, values = (t.to(device)[pick] for t in (self.op_ids, self.probs, self.values))
        for slot in range(op_ids.shape[1]):
            applied = torch.rand(n, generator=generator, device=device) < probs[:, slot]
            flip = torch.rand(n, generator=generator, device=device) < 0.5
            signed = self.signed.to(device)[op_ids[:, slot]] & flip
            value = torch.where(signed, -values[:, slot], values[:, slot])
            for op in op_ids[applied, slot].unique().tolist():
                rows = (applied & (op_ids[:, slot] == op)).nonzero().squeeze(1)
                images = images.index_copy(0, rows, apply_op(OPS[op], images[rows], value[rows], generator))
        return images

