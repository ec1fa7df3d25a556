"""The ``fast_autoaugment`` augmenter: DHOG's views (Fast AutoAugment, grey, crop, flip).

DHOG (section 3.3): "We make use of the fast auto-augment CIFAR-10 data augmentation strategy
(for all tested datasets) found by (Lim et al., 2019). We then randomly apply (with p = 0.5)
grayscale and take random square crops of sizes 64 and 20 pixels for STL-10 and other
datasets." Each view: one sub-policy of the policy file chosen uniformly, each of its two ops
applied with its probability; grey with probability ``grayscale`` (kept as 3 channels); a
random ``crop`` px square resized to ``size``; a horizontal flip with probability ``flip``.

Two paths with the same meaning: per image on CPU loader workers with albumentations
(:mod:`.ops`), or batched on the training device with torch (:mod:`.batched`;
``augment.where = "device"``). albumentations is imported only when the per-image path is
first used, so the batched path (and the plugin's registration) works without it. The
evaluation view is the centre ``crop`` px square resized
to ``size``, as IIC evaluates. The instance is also a lightly-style multi-view transform:
calling it on a PIL image (or uint8 HWC array) returns ``views`` float tensors [C, H, W].
"""

from __future__ import annotations

import dataclasses
import functools
import os
import random
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from mihead import hookimpl
from mihead.contracts import Augmenter, AugmenterParams, BatchAugmenter, ImageAugmenter, ImageSpec, param
from mihead.errors import RecipeError
from mihead_fast_autoaugment.batched import BatchedPolicy, crop_resize, grayscale
from mihead_fast_autoaugment.policy import DEFAULT_POLICY, Policy, load_policy

if TYPE_CHECKING:
    import albumentations as A

__all__ = ["FastAutoAugment", "FastAutoAugmentParams"]

# albumentations asks the internet for a newer release when it is imported (a delay, or a
# warning, offline) unless this is set; the plugin imports it, so the plugin sets it first
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


@dataclasses.dataclass(frozen=True)
class FastAutoAugmentParams(AugmenterParams):
    policy: str = param("", "Fast AutoAugment policy JSON ('' = the CIFAR-10 policy shipped with the plugin)")
    crop: int = param(20, "side of the random square crop in px (DHOG: 20 for 32 px data, 64 for STL-10)", ge=1)
    size: int = param(0, "side the crop is resized to (0 = the source images' side)", ge=0)
    grayscale: float = param(0.5, "probability of turning a view grey (3 channels kept)", ge=0, le=1)
    flip: float = param(0.5, "probability of a horizontal flip", ge=0, le=1)


def _rgb(image: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3] from [H, W], [H, W, 1] or [H, W, 3]."""
    if image.ndim == 2:
        image = image[:, :, None]
    return np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image


class FastAutoAugment(ImageAugmenter[FastAutoAugmentParams], BatchAugmenter[FastAutoAugmentParams]):
    """DHOG's augmentation on CPU workers (albumentations) or on the device (torch)."""

    name = "fast_autoaugment"

    def __init__(self, params: FastAutoAugmentParams, image: ImageSpec) -> None:
        super().__init__(params, image)
        if image.channels not in (1, 3):
            raise RecipeError(f"[augment] name: fast_autoaugment needs 1- or 3-channel images, got {image.channels}")
        if params.crop > image.size:
            raise RecipeError(
                f"[augment] crop: {params.crop} px is larger than the {image.size} px images; "
                f"set augment.crop to at most {image.size}"
            )
        self.size = params.size or image.size
        self.policy: Policy = load_policy(params.policy or DEFAULT_POLICY)
        self._np_random = np.random.default_rng(0)
        self._py_random = random.Random(0)
        self.batched = BatchedPolicy(self.policy)

    @functools.cached_property
    def pipeline(self) -> A.Compose:
        """One albumentations Compose for a view, made on first use. Its transforms share one
        numpy and one Python generator, re-seeded in place per image: ``Compose(seed=...)``
        would give every transform its own generator with the same seed (albumentations 2.0),
        so e.g. grey and flip would always be drawn together."""
        import albumentations as A

        from mihead_fast_autoaugment.ops import policy_op

        p, side = self.params, self.image.size
        subpolicies = [
            A.Sequential([policy_op(op.name, op.value, op.prob, side, side) for op in sub], p=1.0)
            for sub in self.policy.subpolicies
        ]
        pipeline = A.Compose(
            [
                A.OneOf(subpolicies, p=1.0),  # equal weights: a uniform choice
                A.ToGray(num_output_channels=3, p=p.grayscale),
                A.RandomCrop(p.crop, p.crop),
                A.Resize(self.size, self.size),
                A.HorizontalFlip(p=p.flip),
            ]
        )
        pipeline.set_random_state(self._np_random, self._py_random)
        return pipeline

    @functools.cached_property
    def eval_pipeline(self) -> A.Compose:
        """The evaluation view's albumentations Compose (centre crop, resize), made on first use."""
        import albumentations as A

        return A.Compose([A.CenterCrop(self.params.crop, self.params.crop), A.Resize(self.size, self.size)])

    @property
    def output(self) -> ImageSpec:
        return ImageSpec(channels=3, size=self.size)

    def views(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        seed = int(rng.integers(2**63))
        self._np_random.bit_generator.state = np.random.PCG64(seed).state
        self._py_random.seed(seed)
        image = _rgb(image)
        out = np.empty((self.num_views, self.size, self.size, 3), np.uint8)
        for v in range(self.num_views):
            out[v] = self.pipeline(image=image)["image"]
        return out

    def eval_view(self, image: np.ndarray) -> np.ndarray:
        view: np.ndarray = self.eval_pipeline(image=_rgb(image))["image"]
        return view

    def __call__(self, image: Image.Image | np.ndarray) -> list[torch.Tensor]:
        """lightly's multi-view transform interface: ``views`` float tensors [3, H, W] in
        [0, 1] of one PIL image, seeded from torch's RNG (per worker in a DataLoader)."""
        rng = np.random.default_rng(int(torch.randint(2**62, ()).item()))
        views = self.views(np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image), rng)
        return list(torch.from_numpy(views).permute(0, 3, 1, 2).float().div(255).unbind(0))

    def batch_views(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b, c, h, w = images.shape
        device, n, crop = images.device, self.num_views * b, self.params.crop
        x = images.expand(-1, 3, -1, -1) if c == 1 else images
        x = self.batched(x.repeat(self.num_views, 1, 1, 1), generator)
        grey = torch.rand(n, generator=generator, device=device) < self.params.grayscale
        x = torch.where(grey[:, None, None, None], grayscale(x), x)
        top = torch.randint(h - crop + 1, (n,), generator=generator, device=device)
        left = torch.randint(w - crop + 1, (n,), generator=generator, device=device)
        x = crop_resize(x, top, left, crop, self.size)
        flip = torch.rand(n, generator=generator, device=device) < self.params.flip
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        return x.div_(255).clamp_(0, 1).view(self.num_views, b, 3, self.size, self.size)

    def eval_batch(self, images: torch.Tensor) -> torch.Tensor:
        b, c, h, w = images.shape
        x = images.expand(-1, 3, -1, -1) if c == 1 else images
        top = torch.full((b,), (h - self.params.crop) // 2, device=images.device)
        left = torch.full((b,), (w - self.params.crop) // 2, device=images.device)
        return crop_resize(x, top, left, self.params.crop, self.size).div_(255).clamp_(0, 1)


@hookimpl
def register_augmenters() -> list[type[Augmenter]]:
    return [FastAutoAugment]
