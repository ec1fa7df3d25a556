"""Images/s of reading a folder of image files, as the image_folder dataset does.

    python bench/decode_folder.py [--images 10000] [--size 32] [--workers N] [--folder DIR]

Writes, once, a folder of small files of mixed kinds (RGB and grey JPEGs; RGB, grey, RGBA,
palette-with-transparency and 16-bit grey PNGs; 48 to 160 px a side) into the git-ignored
``data/bench_decode_folder_N/``, then times, in one run: listing the files
(``find_images``), decoding them to uint8 [N, size, size, 3] in this thread, with N threads
and with N processes (``decode_images``), and the cache (``decode_cached``): a first run that
decodes and writes the entry, a second that reads it back. Measurements only; nothing is
asserted.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from mihead.image_cache import decode_cached
from mihead.images import decode_images, default_workers, find_images

KINDS = ("rgb.jpg", "grey.jpg", "rgb.png", "grey.png", "rgba.png", "palette.png", "grey16.png")


def _image(kind: str, rng: np.random.Generator) -> tuple[Image.Image, dict[str, object]]:
    """A random smooth picture with a little noise (so that it compresses like a photo)."""
    h, w = rng.integers(48, 161, 2)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    waves = [np.sin(2 * np.pi * (rng.uniform(0.5, 3) * x + rng.uniform(0.5, 3) * y + rng.uniform())) for _ in range(3)]
    rgb = np.stack(waves, -1) * 100 + 128 + rng.normal(0, 8, (h, w, 3))
    rgb8 = np.clip(rgb, 0, 255).astype(np.uint8)
    grey8 = rgb8.mean(-1).astype(np.uint8)
    if kind.startswith("rgba"):
        alpha = np.clip(x * 255 * 2, 0, 255).astype(np.uint8)
        return Image.fromarray(np.dstack([rgb8, alpha])), {}
    if kind.startswith("palette"):
        return Image.fromarray(rgb8).quantize(64), {"transparency": 0}
    if kind.startswith("grey16"):
        return Image.fromarray(grey8.astype(np.uint16) * 257), {}
    if kind.startswith("grey"):
        return Image.fromarray(grey8), {"quality": 85} if kind.endswith("jpg") else {}
    return Image.fromarray(rgb8), {"quality": 85} if kind.endswith("jpg") else {}


def make_folder(folder: Path, count: int) -> list[Path]:
    """``count`` files in 10 subfolders, written unless the folder is complete already."""
    if len(find_images([folder])) == count if folder.is_dir() else False:
        return find_images([folder])
    rng = np.random.default_rng(0)
    for i in range(count):
        kind = KINDS[i % len(KINDS)]
        image, options = _image(kind, rng)
        path = folder / f"{i % 10}" / f"{i:05d}_{kind}"
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, **options)  # type: ignore[arg-type]
    return find_images([folder])


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--folder", type=Path, default=None)
    args = parser.parse_args(argv)
    folder = args.folder or Path(__file__).resolve().parents[1] / "data" / f"bench_decode_folder_{args.images}"
    start = time.perf_counter()
    paths = make_folder(folder, args.images)
    print(f"{len(paths):,} files in {folder} (ready in {time.perf_counter() - start:.1f} s)")
    n, size, workers = len(paths), args.size, args.workers

    rows: list[tuple[str, float]] = [("list the files (find_images)", timed(lambda: find_images([folder])))]
    rows.append(("decode, 1 worker (this thread)", timed(lambda: decode_images(paths, size, 3, workers=1))))
    rows.append((f"decode, {workers} threads", timed(lambda: decode_images(paths, size, 3, workers=workers))))
    rows.append((f"decode, {workers} processes", timed(lambda: decode_images(paths, size, 3, workers=workers, processes=True))))
    with tempfile.TemporaryDirectory() as cache:

        def cached() -> object:
            return decode_cached(folder, paths, size, 3, cache=Path(cache), workers=workers)

        rows.append((f"cache miss: decode ({workers} threads) + write", timed(cached)))
        rows.append(("cache hit: stat the files + read the entry", timed(cached)))

    serial = rows[1][1]
    print(f"{n:,} images to {size}x{size}x3, {workers} workers")
    print(f"{'what':<46} {'seconds':>8} {'images/s':>10} {'x 1 worker':>10}")
    for what, seconds in rows:
        print(f"{what:<46} {seconds:8.2f} {n / seconds:10,.0f} {serial / seconds:10.1f}")


if __name__ == "__main__":
    main()
