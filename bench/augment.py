"""Images/s of the fast_autoaugment augmenter beside a torchvision.transforms.v2 baseline.

    python bench/augment.py [--workers N] [--images 2000] [--views 4]

Prints, for CIFAR-10 images (the compact pack in ../shared/data, else random 32x32 images):
per core (one process, one thread) the fast_autoaugment views/s and those of an equivalent
torchvision v2 pipeline (AutoAugment with its CIFAR-10 policy, grey p=0.5, a random 20 px crop
resized to 32, flip), their ratio; then mihead's loader with N workers (default: every core)
and the batched device path on CPU (and on CUDA when present), with its ops applied to the
drawing images only (indexed) and to all images kept by masks (no host sync). Measurements only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import io
import os
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2

from mihead.contracts import Augmenter
from mihead.data import make_view_source
from mihead.standalone import augmenter

PACK = Path(__file__).resolve().parents[2] / "shared/data/cifar10/cifar10_jpeg_q75.npz"


def cifar_images(n: int) -> np.ndarray:
    if not PACK.exists():
        return np.random.default_rng(0).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    data = np.load(PACK)
    offsets, jpeg = data["offsets"], data["jpeg"]
    return np.stack([np.asarray(Image.open(io.BytesIO(jpeg[offsets[i] : offsets[i + 1]].tobytes())).convert("RGB")) for i in range(n)])


def torchvision_baseline() -> v2.Compose:
    return v2.Compose([
        v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10),
        v2.RandomGrayscale(p=0.5),
        v2.RandomCrop(20),
        v2.Resize(32, antialias=False),
        v2.RandomHorizontalFlip(),
    ])  # fmt: skip


def rate(fn, count: int) -> float:
    start = time.perf_counter()
    fn()
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(1)
    images = cifar_images(args.images)
    n, v = len(images), args.views
    aug = augmenter("fast_autoaugment", size=32, views=v, crop=20)
    tv = torchvision_baseline()
    tensors = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()

    ours = rate(lambda: [aug.views(im, np.random.default_rng(i)) for i, im in enumerate(images)], n * v)
    base = rate(lambda: [[tv(t) for _ in range(v)] for t in tensors], n * v)
    print(f"per core  fast_autoaugment (albumentations): {ours:8.0f} views/s = {ours / v:7.0f} images/s")
    print(f"per core  torchvision v2 AutoAugment(CIFAR10): {base:6.0f} views/s = {base / v:7.0f} images/s")
    print(f"ratio fast_autoaugment / torchvision: {ours / base:.2f}")

    cpu = torch.device("cpu")
    for workers in sorted({0, args.workers}):
        source = make_view_source(images, aug, "workers", batch_size=args.batch_size, num_workers=workers, seed=0, device=cpu)
        list(source.train_batches(0))  # start the workers
        steps = source.steps_per_epoch
        got = rate(lambda source=source: list(source.train_batches(1)), steps * args.batch_size * v)
        print(f"loader    {workers:2d} workers: {got:8.0f} views/s = {got / v:7.0f} images/s")

    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for device in devices:
        batch = tensors[: args.batch_size].to(device)
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU, 1 thread"
        for masked in (False, True):  # ops on the drawing images (indexed) or on all, kept by masks
            aug.batched.masked = masked
            got = batched_rate(aug, batch, v)
            way = "masked, no host sync" if masked else "indexed"
            default = " (default here)" if masked == (device.type != "cpu") else ""
            print(f"batched   device path on {name}, ops {way}{default}: {got:8.0f} views/s")
        aug.batched.masked = None


def batched_rate(aug: Augmenter, batch: torch.Tensor, views: int, repeats: int = 10) -> float:
    """views/s of ``aug.batch_views`` on ``batch``, after one warm-up call."""
    generator = torch.Generator(device=batch.device).manual_seed(0)

    def run() -> None:
        for _ in range(repeats):
            aug.batch_views(batch, generator)
        if batch.device.type == "cuda":
            torch.cuda.synchronize(batch.device)

    run()
    return rate(run, repeats * len(batch) * views)


if __name__ == "__main__":
    main()
