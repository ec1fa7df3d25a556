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

__all__ = ["BatchedPolicy", "apply_op", "autocontrast", "crop_resize", "cutout", "grayscale", "pil_affine", "pil_coefficients"]

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


def drawn_coefficients(op_ids: Tensor, values: Tensor, height: int, width: int) -> Tensor:
    """Per image, the affine coefficients [N, 6] of the geometric op ``OPS[op_ids]`` with its
    value, and the identity for an image that drew another op (or none, -1): one
    :func:`pil_affine` then does every geometric op of a slot."""
    one, zero = torch.ones_like(values), torch.zeros_like(values)
    coeffs = torch.stack([one, zero, zero, zero, one, zero], 1)
    for name in sorted(SIGNED):
        coeffs = torch.where((op_ids == OPS.index(name))[:, None], pil_coefficients(name, values, height, width), coeffs)
    return coeffs


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


def _smooth(images: Tensor) -> Tensor:
    """PIL's ``ImageFilter.SMOOTH`` (the 3x3 kernel [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13),
    rounded, the one-pixel border unchanged. The 3x3 sums are exact integers, so rounding their
    quotient by 13 matches PIL's float sum, whose error never reaches a rounding boundary."""
    x = images.float()
    rows = x[:, :, :-2] + x[:, :, 1:-1] + x[:, :, 2:]
    box = rows[..., :-2] + rows[..., 1:-1] + rows[..., 2:]
    inner = (box + 4 * x[:, :, 1:-1, 1:-1]).div_(13).add_(0.5).floor_().clamp_(0, 255)
    out = images.clone()
    out[:, :, 1:-1, 1:-1] = inner.to(torch.uint8)
    return out


def autocontrast(images: Tensor) -> Tensor:
    """PIL's ``ImageOps.autocontrast`` (no cutoff) per image and channel: the range [lo, hi]
    stretched to [0, 255] and truncated; a flat channel (hi = lo) is left as it is. Written
    with masks rather than torchvision's masked assignments, so that it never syncs the host."""
    x = images.float()
    lo = x.amin((-2, -1), keepdim=True)
    hi = x.amax((-2, -1), keepdim=True)
    flat = hi == lo
    inv_scale = (hi - lo).mul_(1.0 / 255).masked_fill_(flat, 1.0)
    return (x - lo.masked_fill_(flat, 0.0)).div_(inv_scale).clamp_(0, 255).to(torch.uint8)


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
    fill = torch.stack([images.new_full((), v) for v in CUTOUT_FILL[:c]]).view(1, c, 1, 1)  # no host copy
    return torch.where(hole, fill, images)


def apply_op(name: str, images: Tensor, values: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Op ``name`` with per-image values [N] (signs already drawn) on uint8 RGB [N, 3, H, W];
    Cutout draws its hole centres from ``generator``."""
    n, _, h, w = images.shape
    if name in SIGNED:
        return pil_affine(images, pil_coefficients(name, values, h, w))
    if name == "AutoContrast":
        return autocontrast(images)
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
        unit = torch.rand(n, 2, generator=generator, device=images.device)
        return cutout(images, side, torch.stack([unit[:, 0] * w, unit[:, 1] * h], 1))
    raise KeyError(f"unknown Fast AutoAugment op {name!r}")


def grayscale(images: Tensor) -> Tensor:
    """The weighted-average grey (0.299 R + 0.587 G + 0.114 B, rounded) kept as 3 channels,
    as ``albumentations.ToGray`` makes it."""
    r, g, b = images.float().unbind(1)
    grey = (r * 0.299 + g * 0.587 + b * 0.114)[:, None].add_(0.5).floor_().clamp_(0, 255)
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
    op draws and signs per image.

    A slot's geometric ops (shears, translations, rotation) are done together, by one affine
    gather with each image's own coefficients. Two ways to apply an op to the images that drew
    it, with the same meaning: on the CPU, the op runs on just those images (found with
    ``nonzero``, which costs nothing there); on an accelerator, each op of the slot runs on the
    whole batch and a mask keeps its images, so that no step waits on the host (a ``nonzero``
    would stall the GPU queue about 20 times a step). Cutout's hole centres are drawn per
    drawing image on the CPU and per batch image on an accelerator, so the two ways give other
    holes for a seed. ``masked`` picks the way (None: masks on anything but the CPU).
    """

    def __init__(self, policy: Policy, masked: bool | None = None) -> None:
        self.masked = masked
        subs = policy.subpolicies
        self.op_ids = torch.tensor([[OPS.index(op.name) for op in sub] for sub in subs])
        self.probs = torch.tensor([[op.prob for op in sub] for sub in subs])
        self.values = torch.tensor([[op.value for op in sub] for sub in subs])
        self.signed = torch.tensor([name in SIGNED for name in OPS])
        self.slot_changes: list[list[int | None]] = []  # per slot: its ops, None = all geometric ones
        for slot in range(self.op_ids.shape[1]):
            drawn = sorted(set(self.op_ids[:, slot].tolist()))
            geometric = [None] if any(OPS[op] in SIGNED for op in drawn) else []
            self.slot_changes.append(geometric + [op for op in drawn if OPS[op] not in SIGNED])
        self._on: dict[torch.device, tuple[Tensor, ...]] = {}

    def _tables(self, device: torch.device) -> tuple[Tensor, ...]:
        """The policy's tables on ``device``, copied there once (a copy per call would sync)."""
        if device not in self._on:
            self._on[device] = tuple(t.to(device) for t in (self.op_ids, self.probs, self.values, self.signed))
        return self._on[device]

    @staticmethod
    def _change(op: int | None, images: Tensor, value: Tensor, drawn: Tensor, generator: torch.Generator) -> Tensor:
        """Op ``op`` (None: each image's geometric op) on ``images``."""
        if op is None:
            return pil_affine(images, drawn_coefficients(drawn, value, *images.shape[-2:]))
        return apply_op(OPS[op], images, value, generator)

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        n, device = len(images), images.device
        masked = device.type != "cpu" if self.masked is None else self.masked
        op_ids, probs, values, signed_ops = self._tables(device)
        pick = torch.randint(len(op_ids), (n,), generator=generator, device=device)
        op_ids, probs, values = op_ids[pick], probs[pick], values[pick]
        for slot, changes in enumerate(self.slot_changes):
            applied = torch.rand(n, generator=generator, device=device) < probs[:, slot]
            flip = torch.rand(n, generator=generator, device=device) < 0.5
            geometric = signed_ops[op_ids[:, slot]]
            value = torch.where(geometric & flip, -values[:, slot], values[:, slot])
            drawn = op_ids[:, slot].masked_fill(~applied, -1)  # -1: no op for this image
            for op in changes:
                hit = applied & geometric if op is None else drawn == op
                if masked:
                    changed = self._change(op, images, value, drawn, generator)
                    images = torch.where(hit.view(n, 1, 1, 1), changed, images)
                    continue
                rows = hit.nonzero().squeeze(1)
                if len(rows):
                    changed = self._change(op, images[rows], value[rows], drawn[rows], generator)
                    images = images.index_copy(0, rows, changed)
        return images
