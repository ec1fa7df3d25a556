"""Frozen encoders' throughput: embeddings per second of timm models through mihead's ``timm``
encoder (preprocessing on the device included), from 32 px decoded images.

    python bench/encoders.py                                   # resnet18, resnet50, vit_small_patch16_224 at 224 px
    python bench/encoders.py --models resnet18 --batches 2     # a quick look
    python bench/encoders.py --device cuda --models vit_base_patch16_224 --batch 256

Weights are random (the speed does not depend on them; a model's weights are saved to a
temporary file and loaded as a user's file is). Per model: its input size and the side it
resizes to, the embedding size, the median seconds of a batch after a warm-up batch, and
embeddings/s (images of the timed batches over their summed seconds), under
``torch.inference_mode`` with bf16 autocast on CUDA, as mihead encodes a split
(mihead/embeddings.py).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import timm
import torch
from safetensors.torch import save_file

from mihead.contracts import ImageSpec
from mihead.device import autocast
from mihead_timm import TimmEncoder, TimmEncoderParams


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["resnet18", "resnet50", "vit_small_patch16_224"], help="timm names")
    parser.add_argument("--batch", type=int, default=64, help="images per pass (default 64)")
    parser.add_argument("--batches", type=int, default=3, help="timed batches after one warm-up (default 3)")
    parser.add_argument("--size", type=int, default=32, help="side of the decoded images (default 32: CIFAR-10's)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads on CPU (default 2)")
    parser.add_argument("--device", default="cpu")
    return parser.parse_args(argv)


def batch_seconds(name: str, args: argparse.Namespace, folder: Path) -> tuple[TimmEncoder, list[float]]:
    """The encoder of ``name`` with random weights, and the seconds of each timed batch."""
    device = torch.device(args.device)
    path = folder / f"{name}.safetensors"
    save_file(timm.create_model(name, pretrained=False).state_dict(), str(path))
    encoder = TimmEncoder(TimmEncoderParams(model=name, weights=str(path)), ImageSpec(3, args.size))
    encoder.prepare(device)
    images = torch.randint(0, 256, (args.batch, 3, args.size, args.size), dtype=torch.uint8, device=device)
    seconds = []
    with torch.inference_mode(), autocast(device, "auto"):
        for _ in range(1 + args.batches):
            start = time.perf_counter()
            encoder.encode(images).cpu()
            seconds.append(time.perf_counter() - start)
    return encoder, seconds[1:]


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    command = " ".join([sys.executable, *sys.argv]) if argv is None else f"main({list(argv)!r})"
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {args.threads} threads"
    print(f"command: {command}")
    print(f"device: {name} | torch {torch.__version__} | timm {timm.__version__}")
    print(f"batch {args.batch}, {args.size} px decoded images, {args.batches} timed batches after 1 warm-up")
    print(f"{'model':<24} {'input':>6} {'resize':>6} {'D':>5} {'s/batch':>8} {'embeddings/s':>13}")
    with tempfile.TemporaryDirectory() as folder:
        for model in args.models:
            encoder, seconds = batch_seconds(model, args, Path(folder))
            rate = args.batch * len(seconds) / sum(seconds)
            print(f"{model:<24} {encoder.input_side:>6} {encoder.resize_side:>6} {encoder.embedding_dim:>5} {statistics.median(seconds):>8.3f} {rate:>13,.1f}", flush=True)


if __name__ == "__main__":
    main()
