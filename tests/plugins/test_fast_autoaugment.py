"""The fast_autoaugment augmenter: each op against its PIL definition (the paper's code), in
both paths (albumentations per image, torch batched); sub-policy sampling; DHOG's views."""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np
import pytest

# the per-image path is albumentations; where it is absent (as on the H200 machine) this module is
# skipped, and test_fast_autoaugment_device.py checks the batched path without it
pytest.importorskip("albumentations", reason="the per-image path needs albumentations")

import torch
from PIL import Image, ImageEnhance, ImageOps

from mihead.contracts import ImageSpec
from mihead.errors import DataError, RecipeError
from mihead.op_audit import host_syncs
from mihead_fast_autoaugment import FastAutoAugment, FastAutoAugmentParams
from mihead_fast_autoaugment.batched import BatchedPolicy, apply_op, crop_resize, cutout
from mihead_fast_autoaugment.ops import FaaCutout, fixed_op, policy_op
from mihead_fast_autoaugment.policy import CUTOUT_FILL, DEFAULT_POLICY, cutout_box, load_policy

SIDE = 32


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    """A structured RGB image: colour gradients plus noise (every op changes it)."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 1, SIDE)
    ones = np.ones((SIDE, SIDE))
    base = np.stack([ramp[None, :] * 180 * ones, ramp[:, None] * 150 * ones, (1 - ramp[None, :]) * 120 * ones], -1)
    return (base + rng.integers(0, 60, (SIDE, SIDE, 3))).clip(0, 255).astype(np.uint8)


def pil_reference(name: str, value: float, image: np.ndarray) -> np.ndarray:
    """The op as the Fast AutoAugment code defines it, on a PIL image."""
    pil = Image.fromarray(image)
    w, h = pil.size
    affine = {
        "ShearX": (1, value, 0, 0, 1, 0),
        "ShearY": (1, 0, 0, value, 1, 0),
        "TranslateX": (1, 0, value * w, 0, 1, 0),
        "TranslateY": (1, 0, 0, 0, 1, value * h),
    }
    if name in affine:
        out = pil.transform(pil.size, Image.AFFINE, affine[name])
    elif name == "Rotate":
        out = pil.rotate(value)
    elif name == "AutoContrast":
        out = ImageOps.autocontrast(pil)
    elif name == "Equalize":
        out = ImageOps.equalize(pil)
    else:
        enhance = {"Contrast": ImageEnhance.Contrast, "Color": ImageEnhance.Color,
                   "Brightness": ImageEnhance.Brightness, "Sharpness": ImageEnhance.Sharpness}  # fmt: skip
        out = enhance[name](pil).enhance(value)
    return np.asarray(out)


def albumentations_op(name: str, value: float, image: np.ndarray) -> np.ndarray:
    return fixed_op(name, value, SIDE, SIDE)(image=image)["image"]


def batched_op(name: str, value: float, image: np.ndarray, generator: torch.Generator | None = None) -> np.ndarray:
    x = torch.from_numpy(image).permute(2, 0, 1)[None].contiguous()
    return apply_op(name, x, torch.tensor([float(value)]), generator)[0].permute(1, 2, 0).numpy()


# values chosen away from PIL's rounding ties (e.g. a shear of exactly 0.2 meets many)
GEOMETRIC = [("ShearX", 0.137), ("ShearX", -0.29), ("ShearY", 0.241), ("ShearY", -0.117),
             ("TranslateX", 0.3), ("TranslateX", -0.13), ("TranslateY", 0.41), ("TranslateY", -0.2),
             ("Rotate", 13.3), ("Rotate", -29.1)]  # fmt: skip
ENHANCE = [("Contrast", 1.63), ("Contrast", 0.31), ("Color", 1.71), ("Color", 0.2),
           ("Brightness", 1.4), ("Brightness", 0.55), ("Sharpness", 1.83), ("Sharpness", 0.17)]  # fmt: skip


@pytest.mark.parametrize(("name", "value"), GEOMETRIC)
def test_geometric_ops_match_pil(name: str, value: float, image: np.ndarray) -> None:
    ref = pil_reference(name, value, image)
    assert (ref == 0).all(-1).mean() > 0.02, "the op should move pixels out of the image"
    assert np.array_equal(batched_op(name, value, image), ref)
    alb = albumentations_op(name, value, image)
    assert (alb != ref).any(-1).mean() <= 0.01  # cv2 and PIL may break a rare tie differently


def test_geometric_signs_follow_pil(image: np.ndarray) -> None:
    """Positive Rotate turns counter-clockwise, positive TranslateX moves content left."""
    marked = np.zeros((SIDE, SIDE, 3), np.uint8)
    marked[2:6, 20:24] = 255  # top right quadrant
    rotated = albumentations_op("Rotate", 90, marked)
    assert rotated[2:14, 2:14].max() == 255 and rotated[:, 16:].max() == 0  # now top left
    moved = albumentations_op("TranslateX", 0.25, marked)
    assert moved[2:6, 12:16].min() == 255


@pytest.mark.parametrize(("name", "value"), ENHANCE)
def test_enhancements_match_pil_image_enhance(name: str, value: float, image: np.ndarray) -> None:
    ref = pil_reference(name, value, image).astype(int)
    assert np.abs(ref - image.astype(int)).max() > 10
    assert np.array_equal(batched_op(name, value, image), ref)
    # albumentations' ColorJitter rounds where PIL truncates, and takes the grey mean unrounded
    assert np.abs(albumentations_op(name, value, image).astype(int) - ref).max() <= 1


@pytest.mark.parametrize("name", ["AutoContrast", "Equalize"])
def test_histogram_ops_match_pil(name: str, image: np.ndarray) -> None:
    low_contrast = (image // 2 + 40).astype(np.uint8)
    ref = pil_reference(name, 0, low_contrast).astype(int)
    assert np.abs(batched_op(name, 0, low_contrast).astype(int) - ref).max() <= 1
    assert np.abs(albumentations_op(name, 0, low_contrast).astype(int) - ref).max() <= 1
    if name == "Equalize":
        assert np.array_equal(albumentations_op(name, 0, low_contrast), ref)


def test_invert_solarize_posterize_definitions(image: np.ndarray) -> None:
    for path in (albumentations_op, batched_op):
        assert np.array_equal(path("Invert", 0, image), 255 - image)
        threshold = 100.5  # PIL: a pixel >= threshold becomes 255 - pixel
        assert np.array_equal(path("Solarize", threshold, image), np.where(image >= threshold, 255 - image, image))
        assert np.array_equal(path("Solarize", 255.9, image), image)  # above every pixel: identity
        for value, bits in ((4.0, 4), (5.7, 5), (7.99, 7), (8.0, 8)):  # int(value) bits kept
            kept = np.uint8((0xFF << (8 - bits)) & 0xFF)
            assert np.array_equal(path("Posterize", value, image), image & kept)
        assert np.array_equal(np.asarray(ImageOps.posterize(Image.fromarray(image), 5)), image & np.uint8(0xF8))


def test_cutout_box_follows_cutout_abs() -> None:
    assert cutout_box(16.0, 16.0, 6, 32, 32) == (13, 13, 19, 19)
    assert cutout_box(1.0, 2.0, 6, 32, 32) == (0, 0, 6, 6)  # clamped at the top left, full size
    assert cutout_box(31.5, 30.0, 6, 32, 32) == (28, 27, 32, 32)  # cut at the bottom right


def test_cutout_size_fill_and_paths_agree(image: np.ndarray) -> None:
    value = 0.2  # 0.2 * 32 = 6.4 -> a 6 px square
    transform = FaaCutout(value)
    transform.set_random_seed(3)
    for _ in range(20):
        out = transform(image=image)["image"]
        hole = (out != image).any(-1)
        ys, xs = np.nonzero(hole)
        box = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        assert (out[hole] == CUTOUT_FILL).all()
        assert hole.sum() == (box[2] - box[0]) * (box[3] - box[1])
        assert box[2] - box[0] == 6 or box[2] == SIDE
        assert box[3] - box[1] == 6 or box[3] == SIDE
    centres = torch.tensor([[16.0, 16.0], [1.0, 2.0], [31.5, 30.0]])
    x = torch.from_numpy(image).permute(2, 0, 1)[None].repeat(3, 1, 1, 1)
    out = cutout(x, torch.full((3,), 6.0), centres).permute(0, 2, 3, 1).numpy()
    for i, (cx, cy) in enumerate(centres.tolist()):
        x0, y0, x1, y1 = cutout_box(cx, cy, 6, SIDE, SIDE)
        expected = image.copy()
        expected[y0:y1, x0:x1] = CUTOUT_FILL
        assert np.array_equal(out[i], expected)
        alb = transform.apply(image, holes=np.array([[x0, y0, x1, y1]]), seed=0)
        assert np.array_equal(alb, expected)


def test_signed_ops_flip_their_sign_half_the_time(image: np.ndarray) -> None:
    op = policy_op("Rotate", 13.3, 1.0, SIDE, SIDE)
    op.set_random_seed(0)
    plus, minus = albumentations_op("Rotate", 13.3, image), albumentations_op("Rotate", -13.3, image)
    outcomes = []
    for _ in range(200):
        out = op(image=image)["image"]
        outcomes.append(1 if np.array_equal(out, plus) else -1 if np.array_equal(out, minus) else 0)
    assert 0 not in outcomes
    assert 70 < outcomes.count(1) < 130


def write_policy(tmp_path: Path, subpolicies: list) -> str:
    data = json.loads(DEFAULT_POLICY.read_text())
    data["policy"] = subpolicies
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(data))
    return str(path)


def force_masked(aug: FastAutoAugment) -> FastAutoAugment:
    """``aug`` with its batched policy applying ops by masks, as it does on an accelerator."""
    aug.batched.masked = True
    return aug


def constant_views(aug: FastAutoAugment, n: int, path: str) -> np.ndarray:
    """The grey level of n views of a flat grey (100) image: crops, flips and grey keep it."""
    flat = np.full((SIDE, SIDE, 3), 100, np.uint8)
    if path != "albumentations":
        if path == "masked":
            force_masked(aug)
        x = torch.from_numpy(flat).permute(2, 0, 1)[None].repeat(n // aug.num_views, 1, 1, 1)
        views = aug.batch_views(x, torch.Generator().manual_seed(0)) * 255
        return views.round().flatten(0, 1)[:, 0, 0, 0].numpy()
    views = [aug.views(flat, np.random.default_rng(i)) for i in range(n // aug.num_views)]
    return np.concatenate(views)[:, 0, 0, 0].astype(float)


@pytest.mark.parametrize("path", ["albumentations", "indexed", "masked"])
def test_subpolicy_choice_is_uniform_and_ops_use_their_probability(tmp_path: Path, path: str) -> None:
    # Invert: 100 -> 155; Posterize level 0 = 4 bits: 100 -> 96, 155 -> 144
    policy = write_policy(tmp_path, [
        [["Invert", 1.0, 0.0], ["Invert", 0.0, 0.0]],
        [["Posterize", 1.0, 0.0], ["Invert", 0.0, 0.0]],
        [["Invert", 0.3, 0.0], ["Posterize", 0.6, 0.0]],
    ])  # fmt: skip
    aug = FastAutoAugment(FastAutoAugmentParams(policy=policy, crop=24), ImageSpec(3, SIDE))
    levels = constant_views(aug, 6000, path)
    freq = {v: np.mean(levels == v) for v in (100, 155, 96, 144)}
    assert sum(freq.values()) == pytest.approx(1.0)
    # sub-policies 1/3 each; in the third: neither .28, invert only .12, posterize only .42, both .18
    expected = {155: 1 / 3 + 0.12 / 3, 96: 1 / 3 + 0.42 / 3, 100: 0.28 / 3, 144: 0.18 / 3}
    for value, p in expected.items():
        assert freq[value] == pytest.approx(p, abs=0.025), (value, freq)


def test_views_are_reproducible_distinct_and_independent(image: np.ndarray) -> None:
    aug = FastAutoAugment(FastAutoAugmentParams(views=4), ImageSpec(3, SIDE))
    a = aug.views(image, np.random.default_rng(7))
    assert a.shape == (4, SIDE, SIDE, 3) and a.dtype == np.uint8
    assert np.array_equal(a, aug.views(image, np.random.default_rng(7)))
    assert not np.array_equal(a, aug.views(image, np.random.default_rng(8)))
    assert all(not np.array_equal(a[i], a[j]) for i in range(4) for j in range(i))
    # grey (equal channels) and flip must be drawn independently, unlike Compose(seed=...)
    plain = FastAutoAugment(FastAutoAugmentParams(views=2, policy=write_policy_identity(), crop=SIDE), ImageSpec(3, SIDE))
    grey, flipped = [], []
    for i in range(300):
        v = plain.views(image, np.random.default_rng(i))[0]
        grey.append(bool((v[..., 0] == v[..., 1]).all()))
        flipped.append(bool(np.array_equal(v, image[:, ::-1]) or np.array_equal(v[..., 0], rgb_grey(image)[:, ::-1])))
    grey_a, flip_a = np.array(grey), np.array(flipped)
    assert 0.4 < grey_a.mean() < 0.6 and 0.4 < flip_a.mean() < 0.6
    assert 0.15 < np.mean(grey_a & flip_a) < 0.35


def rgb_grey(image: np.ndarray) -> np.ndarray:
    return np.floor(image @ np.array([0.299, 0.587, 0.114]) + 0.5).astype(np.uint8)


_IDENTITY: list[str] = []


def write_policy_identity() -> str:
    """A policy whose one sub-policy never applies its ops (written once per session)."""
    if not _IDENTITY:
        import tempfile

        path = Path(tempfile.mkdtemp()) / "identity.json"
        data = json.loads(DEFAULT_POLICY.read_text())
        data["policy"] = [[["Invert", 0.0, 0.0], ["Invert", 0.0, 0.0]]]
        path.write_text(json.dumps(data))
        _IDENTITY.append(str(path))
    return _IDENTITY[0]


def test_eval_view_is_the_centre_crop_resized(image: np.ndarray) -> None:
    aug = FastAutoAugment(FastAutoAugmentParams(crop=20), ImageSpec(3, SIDE))
    view = aug.eval_view(image)
    assert view.shape == (SIDE, SIDE, 3)
    expected = np.asarray(Image.fromarray(image[6:26, 6:26]).resize((SIDE, SIDE), Image.BILINEAR)).astype(int)
    assert np.abs(view.astype(int) - expected).mean() < 3
    batch = aug.eval_batch(torch.from_numpy(image).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy() * 255
    assert np.abs(batch - view).max() <= 1


def test_batched_crop_resize_matches_albumentations(image: np.ndarray) -> None:
    import albumentations as A

    x = torch.from_numpy(image).permute(2, 0, 1)[None]
    out = crop_resize(x, torch.tensor([3]), torch.tensor([9]), 20, SIDE)[0].permute(1, 2, 0).numpy()
    ref = A.Resize(SIDE, SIDE)(image=np.ascontiguousarray(image[3:23, 9:29]))["image"]
    assert np.abs(out - ref).max() <= 1


def test_batched_views_shape_range_and_greyscale_channels() -> None:
    aug = FastAutoAugment(FastAutoAugmentParams(views=3, size=24), ImageSpec(1, SIDE))
    x = torch.randint(0, 256, (5, 1, SIDE, SIDE), dtype=torch.uint8)
    out = aug.batch_views(x, torch.Generator().manual_seed(1))
    assert out.shape == (3, 5, 3, 24, 24) and out.dtype == torch.float32
    assert 0 <= out.min() and out.max() <= 1
    assert torch.equal(out, aug.batch_views(x, torch.Generator().manual_seed(1)))
    assert aug.output == ImageSpec(3, 24)
    one = aug.views(x[0].permute(1, 2, 0).numpy(), np.random.default_rng(0))
    assert one.shape == (3, 24, 24, 3)


@pytest.mark.parametrize("masked", [False, True])
def test_batched_geometric_ops_are_the_single_ops_with_random_signs(tmp_path: Path, image: np.ndarray, masked: bool) -> None:
    """A slot's geometric ops share one affine gather: each image must still get exactly its
    own op with its own sign, as apply_op does it alone."""
    subs = [[["Rotate", 1.0, 0.8], ["ShearX", 1.0, 0.6]], [["TranslateY", 1.0, 0.7], ["Invert", 1.0, 0.0]]]
    policy = load_policy(write_policy(tmp_path, subs))
    (rotate, shear), (translate, _) = policy.subpolicies
    x = torch.from_numpy(image).permute(2, 0, 1)[None].repeat(200, 1, 1, 1)

    def single(name: str, value: float, images: torch.Tensor) -> torch.Tensor:
        return apply_op(name, images, torch.full((len(images),), value))

    candidates = [
        single("ShearX", b * shear.value, single("Rotate", a * rotate.value, x[:1]))[0]
        for a in (1, -1)
        for b in (1, -1)
    ] + [255 - single("TranslateY", a * translate.value, x[:1])[0] for a in (1, -1)]
    out = BatchedPolicy(policy, masked)(x, torch.Generator().manual_seed(0))
    match = torch.stack([(out == c).flatten(1).all(1) for c in candidates], 1)
    assert bool((match.sum(1) == 1).all())  # every image is exactly one of the six
    assert bool((match.sum(0) > 10).all())  # and each of the six occurs


def test_masked_batched_views_never_sync_the_host() -> None:
    aug = force_masked(FastAutoAugment(FastAutoAugmentParams(views=4), ImageSpec(3, SIDE)))
    x = torch.randint(0, 256, (64, 3, SIDE, SIDE), dtype=torch.uint8)
    generator = torch.Generator().manual_seed(0)
    assert host_syncs(lambda: aug.batch_views(x, generator)) == []
    assert host_syncs(lambda: aug.eval_batch(x)) == []
    assert "nonzero" in host_syncs(lambda: FastAutoAugment(aug.params, ImageSpec(3, SIDE)).batch_views(x, generator))


def test_lightly_call_returns_view_tensors(image: np.ndarray) -> None:
    aug = FastAutoAugment(FastAutoAugmentParams(views=2), ImageSpec(3, SIDE))
    torch.manual_seed(0)
    views = aug(Image.fromarray(image))
    assert len(views) == 2 and all(v.shape == (3, SIDE, SIDE) and v.dtype == torch.float32 for v in views)
    torch.manual_seed(0)
    assert all(torch.equal(a, b) for a, b in zip(views, aug(Image.fromarray(image)), strict=True))


def test_shipped_policy_is_the_shared_file() -> None:
    policy = load_policy()
    assert len(policy.subpolicies) == 493 and all(len(s) == 2 for s in policy.subpolicies)
    first = policy.subpolicies[0][0]  # ["Contrast", 0.832..., 0.498...] -> 0.1 + 1.8 * level
    assert first.name == "Contrast" and first.value == pytest.approx(0.1 + 1.8 * 0.49884310562180767)
    shared = Path(__file__).resolve().parents[3] / "shared/data/augment/fast_autoaugment_cifar10.json"
    if shared.exists():
        assert json.loads(shared.read_text()) == json.loads(DEFAULT_POLICY.read_text())


def test_bad_input_raises_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="crop"):
        FastAutoAugment(FastAutoAugmentParams(crop=20), ImageSpec(1, 8))
    with pytest.raises(DataError, match="no such"):
        load_policy(tmp_path / "missing.json")
    with pytest.raises(DataError, match="bad op"):
        load_policy(write_policy(tmp_path, [[["Nope", 0.5, 0.5], ["Invert", 0.5, 0.5]]]))

