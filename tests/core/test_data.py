"""mihead.data: keyed seeding of views, whatever the number of loader workers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mihead.contracts import AugmenterParams, BatchAugmenter, ImageAugmenter, ImageSpec
from mihead.data import eval_shard, make_view_source


class NoiseViews(ImageAugmenter):
    """Views = image + a random offset per pixel, every draw from ``rng``."""

    name = "noise_views"

    def views(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        noise = rng.integers(0, 50, (self.num_views, *image.shape))
        return (image[None].astype(int) + noise).clip(0, 255).astype(np.uint8)

    def eval_view(self, image: np.ndarray) -> np.ndarray:
        return image


class NoiseBatch(BatchAugmenter):
    name = "noise_batch"

    def batch_views(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        x = images.float().div(255)[None].repeat(self.num_views, 1, 1, 1, 1)
        return (x + 0.1 * torch.rand(x.shape, generator=generator, device=x.device)).clamp(0, 1)

    def eval_batch(self, images: torch.Tensor) -> torch.Tensor:
        return images.float().div(255)


IMAGES = np.full((24, 4, 4, 3), 100, np.uint8)  # identical images: any difference is the augmenter's


def source(num_workers: int = 0, seed: int = 0, on_device: bool = False, views: int = 3):
    cls = NoiseBatch if on_device else NoiseViews
    aug = cls(AugmenterParams(views=views), ImageSpec(3, 4))
    where = "device" if on_device else "workers"
    return make_view_source(IMAGES, aug, where, batch_size=8, num_workers=num_workers, seed=seed,
                            device=torch.device("cpu"))  # fmt: skip


def epoch(src, e: int, skip: int = 0) -> list[torch.Tensor]:
    return list(src.train_batches(e, skip))


def test_batches_do_not_depend_on_the_number_of_workers() -> None:
    serial = epoch(source(num_workers=0), 0) + epoch(source(num_workers=0), 1)
    parallel_src = source(num_workers=2)
    parallel = epoch(parallel_src, 0) + epoch(parallel_src, 1)
    assert len(serial) == len(parallel) == 6
    assert serial[0].shape == (3, 8, 3, 4, 4) and serial[0].dtype == torch.float32
    assert all(torch.equal(a, b) for a, b in zip(serial, parallel, strict=True))


def test_epochs_items_and_views_differ_and_seeds_reproduce() -> None:
    src = source()
    first, second = torch.cat(epoch(src, 0), 1), torch.cat(epoch(src, 1), 1)
    assert not torch.equal(first, second)
    flat = first.flatten(2)  # [V, all images, pixels]: identical images get different views
    assert all(not torch.equal(flat[0, i], flat[0, j]) for i in range(24) for j in range(i))
    assert all(not torch.equal(flat[v], flat[w]) for v in range(3) for w in range(v))
    assert torch.equal(first, torch.cat(epoch(source(), 0), 1))
    assert not torch.equal(first, torch.cat(epoch(source(seed=1), 0), 1))


@pytest.mark.parametrize("on_device", [False, True])
def test_skipping_steps_resumes_the_same_batches(on_device: bool) -> None:
    full = epoch(source(on_device=on_device), 2)
    resumed = epoch(source(on_device=on_device), 2, skip=1)
    assert len(resumed) == len(full) - 1
    assert all(torch.equal(a, b) for a, b in zip(full[1:], resumed, strict=True))


def test_device_path_is_keyed_by_epoch_and_step() -> None:
    src = source(on_device=True)
    a, b = epoch(src, 0), epoch(src, 1)
    assert a[0].shape == (3, 8, 3, 4, 4)
    assert all(torch.equal(x, y) for x, y in zip(a, epoch(source(on_device=True), 0), strict=True))
    assert not torch.equal(a[0], b[0]) and not torch.equal(a[0], a[1])


def test_eval_batches_are_fixed() -> None:
    src = source()
    (single, pair), *_ = src.eval_batches(IMAGES, 8)
    assert single.shape == (8, 3, 4, 4) and pair.shape == (2, 8, 3, 4, 4)
    assert torch.allclose(single, torch.full_like(single, 100 / 255))
    (_, again), *_ = source(num_workers=2).eval_batches(IMAGES, 8)
    assert torch.equal(pair, again)


def test_eval_shards_are_contiguous_runs_of_whole_batches_covering_the_split_once() -> None:
    for n, batch_size, world in [(200, 70, 2), (24, 5, 3), (24, 8, 5), (5, 8, 3), (23, 5, 4)]:
        shards = [eval_shard(n, batch_size, r, world) for r in range(world)]
        assert [i for shard in shards for i in shard] == list(range(n)), (n, batch_size, world)  # in rank order
        assert all(shard.start % batch_size == 0 for shard in shards if shard)
        batches = [-(-len(shard) // batch_size) for shard in shards]
        assert max(batches) - min(batches) <= 1
    assert [len(eval_shard(200, 70, r, 2)) for r in range(2)] == [70, 130]  # unequal: 1 and 2 batches
    assert [len(eval_shard(5, 8, r, 3)) for r in range(3)] == [0, 0, 5]  # fewer batches than ranks


@pytest.mark.parametrize("on_device", [False, True])
def test_the_eval_batches_of_shards_are_those_of_one_process(on_device: bool) -> None:
    """The fixed random views of an image do not depend on the shard: on the workers they are
    keyed by the image's index in the split, on the device by its batch's start in the split."""
    whole = list(source(on_device=on_device).eval_batches(IMAGES, 5))  # 5 batches: 5, 5, 5, 5, 4
    assert not torch.equal(whole[0][1], whole[1][1])  # the views differ by batch: the key shows
    for world in (2, 3):
        parts = [b for r in range(world) for b in source(on_device=on_device).eval_batches(IMAGES, 5, eval_shard(24, 5, r, world))]
        assert len(parts) == len(whole)
        for (single, pair), (part_single, part_pair) in zip(whole, parts, strict=True):
            assert torch.equal(single, part_single) and torch.equal(pair, part_pair)


class NoiseBoth(NoiseViews, NoiseBatch):
    """An augmenter with both paths, as fast_autoaugment has."""

    name = "noise_both"


@pytest.mark.parametrize(
    ("cls", "device", "on_device"),
    [
        (NoiseBoth, "cpu", False),  # CPU training: loader workers
        (NoiseBoth, "meta", True),  # any accelerator: batched on it
        (NoiseViews, "meta", False),  # per image only: workers even on an accelerator
        (NoiseBatch, "cpu", True),  # batched only: the device even on the CPU
    ],
)
def test_auto_picks_the_device_path_on_an_accelerator(cls: type, device: str, on_device: bool) -> None:
    aug = cls(AugmenterParams(views=2), ImageSpec(3, 4))
    src = make_view_source(IMAGES, aug, "auto", batch_size=8, num_workers=0, seed=0, device=torch.device(device))
    assert src.on_device is on_device
