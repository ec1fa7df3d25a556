"""Frozen encoders' throughput: embeddings per second of timm models through mihead's ``timm``
encoder (preprocessing on the device included), from 32 px decoded images.

    python bench/encoders.py                                   # resnet18, resnet50, vit_small_patch16_224 at 224 px
    python bench/encoders.py --models resnet18 --batches 2     # a quick look
    python bench/encoders.py --device cuda --models vit_base_patch16_224 --batch 256

Weights are random (the speed does not depend on them; a model's weights are saved to a
temporary file and loaded as a user's file is). Per model: its input size, embedding size, the
batch's seconds after a warm-up batch, and embeddings/s, under ``torch.inference_mode`` with
bf16 autocast on CUDA, as mihead encodes a split (mihead/embeddings.py).
"""

from __future__ import annotations

import argparse
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


def embeddings_per_second(name: str, args: argparse.Namespace, folder: Path) -> tuple[TimmEncoder, float]:
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
    return encoder, args.batch * args.batches / sum(seconds[1:])


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    where = f"{args.threads} threads" if args.device == "cpu" else args.device
    print(f"batch {args.batch}, {args.size} px decoded images, {where}")
    with tempfile.TemporaryDirectory() as folder:
        for name in args.models:
            encoder, rate = embeddings_per_second(name, args, Path(folder))
            print(f"{name}: input {encoder.input_side} px, {encoder.embedding_dim}-d, {rate:,.1f} embeddings/s", flush=True)


if __name__ == "__main__":
    main()
