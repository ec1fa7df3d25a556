"""augment.original_view: view 0 of each training batch is the evaluation view, on both the
worker path and the device path; the random views and evaluation batches are unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mihead.contracts import AugmenterParams, BatchAugmenter, ImageAugmenter, ImageSpec
from mihead.data import ViewSource, make_view_source

SPEC = ImageSpec(channels=1, size=4)
QUICKSTART = Path(__file__).resolve().parents[2] / "recipes" / "quickstart.toml"


class NoisyImages(ImageAugmenter, BatchAugmenter):
    """Random views = image + uniform noise; the evaluation view is the image itself."""

    name = "test_noisy"

    def views(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        noise = rng.integers(1, 50, size=(self.num_views, *image.shape))
        return (image[None].astype(np.int64) + noise).clip(0, 255).astype(np.uint8)

    def eval_view(self, image: np.ndarray) -> np.ndarray:
        return image

    def batch_views(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        x = images.float().div(255)[None].repeat(self.num_views, 1, 1, 1, 1)
        return (x + torch.rand(x.shape, generator=generator, device=x.device) * 0.2 + 0.01).clamp(0, 1)

    def eval_batch(self, images: torch.Tensor) -> torch.Tensor:
        return images.float().div(255)


def images() -> np.ndarray:
    """12 constant images, image i of value 10 i, so a view's pixels name its image."""
    return (np.arange(12, dtype=np.uint8)[:, None, None, None] * 10).repeat(4, 1).repeat(4, 2)


def view_source(where: str, original_view: bool) -> ViewSource:
    return make_view_source(
        images(),
        NoisyImages(AugmenterParams(views=3), SPEC),
        where,
        batch_size=4,
        num_workers=0,
        seed=7,
        device=torch.device("cpu"),
        original_view=original_view,
    )


def first_batch(where: str, original_view: bool) -> torch.Tensor:
    return next(iter(view_source(where, original_view).train_batches(epoch=0)))


@pytest.mark.parametrize("where", ["workers", "device"])
def test_view_zero_is_the_untransformed_image(where: str) -> None:
    plain = first_batch(where, original_view=False)
    with_original = first_batch(where, original_view=True)
    assert with_original.shape == plain.shape == (3, 4, 1, 4, 4)
    torch.testing.assert_close(with_original[1:], plain[1:])  # the random views are unchanged
    view0 = with_original[0]
    values = view0.flatten(1)
    assert torch.all(values == values[:, :1])  # constant: no noise added
    assert set(torch.round(values[:, 0] * 255).int().tolist()) <= set(range(0, 120, 10))
    # and it is the image that the random views of the same sample come from
    noisy = plain[1].flatten(1).min(1).values
    assert torch.all(noisy > values[:, 0])
    assert torch.all(noisy - values[:, 0] < 50 / 255 + 1e-6)
    assert not torch.equal(plain[0], view0)


@pytest.mark.parametrize("where", ["workers", "device"])
def test_evaluation_batches_do_not_change(where: str) -> None:
    def eval_batches(original_view: bool) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return list(view_source(where, original_view).eval_batches(images(), batch_size=5))

    for (a, pair_a), (b, pair_b) in zip(eval_batches(False), eval_batches(True), strict=True):
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(pair_a, pair_b)


def test_the_recipe_key_reaches_the_view_source() -> None:
    from mihead.build import build
    from mihead.plugins import load_registry
    from mihead.recipe import load_recipe

    overrides = ["augment.original_view=true", "augment.size=0", "data.limit=64", "train.batch_size=32", "augment.views=2"]
    recipe = load_recipe(QUICKSTART, load_registry(strict=False), overrides)
    assert recipe.augment.core.original_view is True  # type: ignore[attr-defined]
    assert "original_view = true" in recipe.to_toml()
    built = build(recipe, torch.device("cpu"))
    assert built.source.original_view is True
    views = next(iter(built.source.train_batches(epoch=0)))
    # each sample's view 0 is the evaluation view (small_affine at the source size: the image itself)
    evaluated = torch.from_numpy(np.array(built.train_data.images)).permute(0, 3, 1, 2).float().div(255)
    matches = (views[0][:, None] - evaluated[None]).abs().flatten(2).amax(-1) == 0  # [B, N]
    assert torch.all(matches.any(1))
