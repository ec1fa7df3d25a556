"""The ``small_affine`` augmenter: batched random affine warps, crops and noise for small
images, made on the training device with parameters drawn per image."""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F

from mihead import hookimpl
from mihead.contracts import Augmenter, AugmenterParams, BatchAugmenter, ImageSpec, param
from mihead.errors import RecipeError


@dataclasses.dataclass(frozen=True)
class SmallAffineParams(AugmenterParams):
    rotate: float = param(15.0, "largest rotation in degrees (uniform in [-rotate, rotate])", ge=0, le=180)
    scale_min: float = param(0.9, "smallest zoom factor", gt=0)
    scale_max: float = param(1.1, "largest zoom factor", gt=0)
    shear: float = param(0.1, "largest shear (uniform in [-shear, shear])", ge=0)
    translate: float = param(0.1, "largest shift as a fraction of the side", ge=0, le=1)
    crop: float = param(0.0, "probability of a random crop of crop_frac of the side, resized back", ge=0, le=1)
    crop_frac: float = param(0.75, "side of the random crop as a fraction of the image", gt=0, le=1)
    noise: float = param(0.05, "standard deviation of additive Gaussian noise (pixels in [0, 1])", ge=0)
    size: int = param(0, "side of the views in pixels, warped there in one bilinear resample (0 = the source side)", ge=0)
    thicken: float = param(0.0, "probability of thickening the strokes: a 3x3 grey dilation (max filter)", ge=0, le=1)
    thin: float = param(0.0, "probability of thinning the strokes: a 3x3 grey erosion (min filter)", ge=0, le=1)


def _uniform(n: int, low: float, high: float, g: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=g, device=device) * (high - low) + low


class SmallAffine(BatchAugmenter[SmallAffineParams]):
    """Each view of each image gets its own rotation, zoom, shear, shift, optional crop and
    noise, applied as one ``affine_grid``/``grid_sample`` warp (bilinear, zero padding)."""

    name = "small_affine"

    def __init__(self, params: SmallAffineParams, image: ImageSpec) -> None:
        super().__init__(params, image)
        if params.thicken + params.thin > 1:
            raise RecipeError(f"[augment] thicken + thin is {params.thicken + params.thin:g}: they are shares of the views, at most 1 together")

    @property
    def output(self) -> ImageSpec:
        """Views are ``size`` pixels wide when asked (an upsample lets later pooling keep detail)."""
        return ImageSpec(self.image.channels, self.params.size or self.image.size)

    def _matrices(self, n: int, g: torch.Generator, device: torch.device) -> torch.Tensor:
        p = self.params
        angle = _uniform(n, -p.rotate, p.rotate, g, device) * (math.pi / 180)
        scale = _uniform(n, p.scale_min, p.scale_max, g, device)
        shear = _uniform(n, -p.shear, p.shear, g, device)
        shift = _uniform(2 * n, -2 * p.translate, 2 * p.translate, g, device).view(n, 2)
        cropped = torch.rand(n, generator=g, device=device) < p.crop
        # a crop of side f resized back is a zoom by 1/f about a random centre inside the image
        frac = torch.where(cropped, torch.full_like(scale, p.crop_frac), torch.ones_like(scale))
        centre = _uniform(2 * n, -1, 1, g, device).view(n, 2) * (1 - frac)[:, None]
        cos, sin = torch.cos(angle), torch.sin(angle)
        # grid_sample maps output coordinates to input ones: dividing by the zoom enlarges
        inv = frac / scale
        rot = torch.stack([torch.stack([cos, -sin + shear], -1), torch.stack([sin, cos], -1)], -2)
        theta = torch.cat([rot * inv[:, None, None], (shift + centre)[:, :, None]], -1)
        return theta

    def batch_views(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        v = self.num_views
        b, c = images.shape[:2]
        side = self.output.size
        x = images.float().div(255).repeat(v, 1, 1, 1)
        theta = self._matrices(v * b, generator, images.device)
        # a grid of the output side samples the warped image there: warp and resize in one step
        grid = F.affine_grid(theta, [v * b, c, side, side], align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        x = self._stroke_width(x, generator)
        if self.params.noise:
            x = x + self.params.noise * torch.randn(x.shape, generator=generator, device=x.device)
        return x.clamp_(0, 1).view(v, b, c, side, side)

    def _stroke_width(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Thicken (3x3 max filter) or thin (3x3 min filter) the strokes of a random share of
        the views: handwriting varies in pen width, which an affine warp cannot imitate."""
        p = self.params
        if not (p.thicken or p.thin):
            return x
        u = torch.rand(x.shape[0], generator=g, device=x.device)[:, None, None, None]
        thick = F.max_pool2d(x, 3, stride=1, padding=1)
        thin = -F.max_pool2d(-x, 3, stride=1, padding=1)
        x = torch.where(u < p.thicken, thick, x)
        return torch.where((u >= p.thicken) & (u < p.thicken + p.thin), thin, x)

    def eval_batch(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float().div(255)
        side = self.output.size
        if side == x.shape[-1]:
            return x
        # an identity warp sampled like batch_views (zero padding at the border, unlike interpolate)
        theta = torch.eye(2, 3, device=x.device).expand(x.shape[0], 2, 3)
        grid = F.affine_grid(theta, [x.shape[0], x.shape[1], side, side], align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@hookimpl
def register_augmenters() -> list[type[Augmenter]]:
    return [SmallAffine]
