"""The ``small_affine`` augmenter: batched random warps, crops and noise on the device."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from mihead.contracts import ImageSpec
from mihead.errors import RecipeError
from mihead_tensor_augment import SmallAffine, SmallAffineParams

IDENTITY = SmallAffineParams(views=3, rotate=0.0, scale_min=1.0, scale_max=1.0, shear=0.0, translate=0.0, crop=0.0, noise=0.0)


def images(b: int = 4, size: int = 8) -> torch.Tensor:
    return torch.randint(0, 256, (b, 1, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def views(params: SmallAffineParams, x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    return SmallAffine(params, ImageSpec(1, x.shape[-1])).batch_views(x, torch.Generator().manual_seed(seed))


def test_identity_parameters_give_the_image_back() -> None:
    x = images()
    out = views(IDENTITY, x)
    assert out.shape == (3, 4, 1, 8, 8) and out.dtype == torch.float32
    for v in range(3):
        torch.testing.assert_close(out[v], x.float() / 255, atol=1e-5, rtol=0)


def test_rotation_angles_spread_over_the_asked_range() -> None:
    x = images()
    params = dataclasses.replace(IDENTITY, rotate=90.0)
    aug = SmallAffine(params, ImageSpec(1, 8))
    theta = aug._matrices(4, torch.Generator().manual_seed(0), x.device)
    angles = torch.atan2(theta[:, 1, 0], theta[:, 0, 0]) * 180 / torch.pi
    assert (angles.abs() <= 90 + 1e-4).all() and angles.std() > 10  # spread over the range


def test_translation_shifts_by_whole_pixels_at_the_extreme() -> None:
    x = torch.zeros(1, 1, 8, 8, dtype=torch.uint8)
    x[0, 0, 3, 3] = 255
    params = dataclasses.replace(IDENTITY, views=2, translate=0.125)
    out = views(params, x)
    for v in range(2):
        assert out[v].sum() > 0  # the dot moved by at most a pixel: still inside
        peak = (out[v, 0, 0] == out[v, 0, 0].max()).nonzero()[0]
        assert (peak - torch.tensor([3, 3])).abs().max() <= 1


def test_views_differ_and_are_reproducible() -> None:
    x = images()
    params = SmallAffineParams(views=2)
    a, b = views(params, x, seed=1), views(params, x, seed=1)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a[0], a[1])
    assert not torch.allclose(a, views(params, x, seed=2))


def test_noise_has_the_asked_spread_and_values_stay_in_range() -> None:
    x = torch.full((64, 1, 8, 8), 128, dtype=torch.uint8)
    out = views(dataclasses.replace(IDENTITY, noise=0.05), x)
    assert out.min() >= 0 and out.max() <= 1
    assert abs(float((out - 128 / 255).std()) - 0.05) < 0.005


def test_crop_zooms_in_by_the_inverse_fraction_and_stays_inside() -> None:
    params = dataclasses.replace(IDENTITY, crop=1.0, crop_frac=0.5)
    theta = SmallAffine(params, ImageSpec(1, 8))._matrices(50, torch.Generator().manual_seed(0), torch.device("cpu"))
    # output coordinates map to input ones scaled by the crop fraction: a 2x zoom
    torch.testing.assert_close(theta[:, :, :2], 0.5 * torch.eye(2).expand(50, 2, 2))
    # the crop's centre keeps the whole crop inside the image ([-1, 1] in grid units)
    assert (theta[:, :, 2].abs() <= 0.5 + 1e-6).all() and theta[:, :, 2].std() > 0.1


def test_eval_view_is_the_image() -> None:
    x = images()
    aug = SmallAffine(SmallAffineParams(), ImageSpec(1, 8))
    torch.testing.assert_close(aug.eval_batch(x), x.float() / 255)


def test_size_upsamples_views_and_eval_view_alike() -> None:
    x = images()
    aug = SmallAffine(dataclasses.replace(IDENTITY, size=16), ImageSpec(1, 8))
    assert aug.output == ImageSpec(1, 16)
    out = aug.batch_views(x, torch.Generator().manual_seed(0))
    assert out.shape == (3, 4, 1, 16, 16)
    # an identity warp onto a 16x16 grid is a bilinear 2x upsample: each view is the eval view,
    # equal to interpolate inside the image (zero padding only darkens the one-pixel border)
    direct = torch.nn.functional.interpolate(x.float() / 255, size=(16, 16), mode="bilinear", align_corners=False)
    torch.testing.assert_close(aug.eval_batch(x)[..., 1:-1, 1:-1], direct[..., 1:-1, 1:-1])
    direct = aug.eval_batch(x)
    for v in range(3):
        torch.testing.assert_close(out[v], direct, atol=1e-5, rtol=0)


def test_thicken_and_thin_are_3x3_max_and_min_filters() -> None:
    x = torch.zeros(1, 1, 8, 8, dtype=torch.uint8)
    x[0, 0, 2:6, 3] = 255  # a vertical stroke one pixel wide
    thick = views(dataclasses.replace(IDENTITY, thicken=1.0), x)[0, 0, 0]
    expected = torch.zeros(8, 8)
    expected[1:7, 2:5] = 1
    torch.testing.assert_close(thick, expected)
    x[0, 0, 2:6, 2:5] = 255  # a stroke three pixels wide thins to its middle column
    thin = views(dataclasses.replace(IDENTITY, thin=1.0), x)[0, 0, 0]
    expected = torch.zeros(8, 8)
    expected[3:5, 3] = 1
    torch.testing.assert_close(thin, expected)


def test_stroke_width_changes_the_asked_share_of_views() -> None:
    x = torch.zeros(1000, 1, 8, 8, dtype=torch.uint8)
    x[:, 0, 2:6, 2:5] = 255
    out = views(dataclasses.replace(IDENTITY, views=2, thicken=0.3, thin=0.2), x)
    mass = out.sum((2, 3, 4)).flatten()  # 12 pixels as drawn, 30 thickened, 2 thinned
    assert set(mass.round().tolist()) == {2.0, 12.0, 30.0}
    assert abs(float((mass > 20).float().mean()) - 0.3) < 0.04
    assert abs(float((mass < 5).float().mean()) - 0.2) < 0.04


def test_stroke_shares_over_one_are_refused() -> None:
    with pytest.raises(RecipeError, match="thicken \\+ thin is 1.2"):
        SmallAffine(dataclasses.replace(IDENTITY, thicken=0.6, thin=0.6), ImageSpec(1, 8))
