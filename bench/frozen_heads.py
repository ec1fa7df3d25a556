"""Heads on cached embeddings: how long mining neighbours and one head epoch take.

    python bench/frozen_heads.py                          # 50,000 embeddings, 384-d and 768-d, k = 50, 16 heads
    python bench/frozen_heads.py --n 2000 --heads 2       # a quick look

Printed, from one run:

* mining: the k nearest neighbours by cosine similarity of N random unit embeddings of each
  dimension (``mihead_embedding_views.mining``, in chunks of rows: memory O(chunk x N)), seconds;
* head epoch: N/batch training steps of the ``neighbours`` views of a memory-mapped float16
  table of N x 768 embeddings, with ``--heads`` MLP heads of each ``--hidden`` width (0: linear)
  and IIC, each step what the engine does (rows gathered from the map, forward, the loss,
  :func:`mihead.gradients.backward`, Adam), seconds and embeddings/s.

The embeddings are random (timing does not depend on their values); the model and objective are
built from a recipe as a run builds them (the ``pixels`` encoder on 3 x 16 x 16 images is the
768-d identity the heads sit on).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from mihead.build import build_model, model_shape
from mihead.contracts import EmbeddingAugmenter, ImageSpec
from mihead.embeddings import EmbeddingTable
from mihead.encoded_views import EncodedViews
from mihead.gradients import backward
from mihead.optim import make_optimizer
from mihead.plugins import load_registry
from mihead.recipe import load_recipe
from mihead_embedding_views.mining import nearest_neighbours

RECIPE = """
[run]
name = "frozen_heads_bench"
[data]
name = "digits"
[backbone]
name = "pixels"
cache = ""
[augment]
name = "neighbours"
views = 2
[head]
name = "mlp"
clusters = 10
logit_batchnorm = true
[[objective]]
name = "iic"
[train]
device = "cpu"
"""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=50_000, help="embeddings (default 50,000)")
    parser.add_argument("--dims", type=int, nargs="+", default=[384, 768], help="dimensions mined (default 384 768)")
    parser.add_argument("--k", type=int, default=50, help="neighbours mined (default 50, TEMI's)")
    parser.add_argument("--heads", type=int, default=16, help="heads trained (default 16, TEMI's)")
    parser.add_argument("--hidden", type=int, nargs="+", default=[0, 128, 512], help="hidden widths of the heads timed (0 = linear; default 0 128 512)")
    parser.add_argument("--batch", type=int, default=1024, help="embeddings per step (default 1024)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    return parser.parse_args(argv)


def unit(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=1)


def head_epoch(args: argparse.Namespace, table: EmbeddingTable, hidden: int) -> float:
    """Seconds of one epoch of training steps with heads of ``hidden`` width."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "recipe.toml"
        path.write_text(RECIPE)
        sets = [f"head.per_attachment={args.heads}", f"head.hidden={hidden}", f"train.batch_size={args.batch}", f"augment.k={args.k}"]
        recipe = load_recipe(path, load_registry(), sets)
    cpu = torch.device("cpu")
    augmenter = recipe.augment.cls(recipe.augment.params, ImageSpec(3, 16))
    assert isinstance(augmenter, EmbeddingAugmenter)
    shape = model_shape(recipe, augmenter, cpu, classes=10)
    assert shape is not None
    model, objectives = build_model(recipe, augmenter, shape, cpu)
    images = np.zeros((table.n, 1, 1, 1), np.uint8)  # stands for the split the table was encoded from
    views = EncodedViews({id(images): table}, images, augmenter, batch_size=args.batch, seed=0, device=cpu)
    optimizer = make_optimizer(list(model.parameters()), recipe.train)
    start = time.perf_counter()
    for batch in views.train_batches(0):
        optimizer.zero_grad(set_to_none=True)
        outputs = model(batch)
        backward({t.name: t.module(outputs) for t in objectives}, objectives, model)
        optimizer.step()
    return time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"{args.n:,} embeddings, k = {args.k}, {args.threads} threads")
    for d in args.dims:
        x = unit(args.n, d, d)
        start = time.perf_counter()
        found = nearest_neighbours(x, args.k)
        seconds = time.perf_counter() - start
        assert found.shape == (args.n, args.k)
        print(f"mining {args.n:,} x {d}: {seconds:,.2f} s")
    with tempfile.TemporaryDirectory() as folder:
        rows = np.lib.format.open_memmap(Path(folder) / "table.npy", mode="w+", dtype=np.float16, shape=(args.n, 768))
        rows[:] = unit(args.n, 768, 0).numpy()
        rows.flush()
        table = EmbeddingTable(np.load(Path(folder) / "table.npy", mmap_mode="r"), args.n, 0)
        for hidden in args.hidden:
            seconds = head_epoch(args, table, hidden)  # the neighbours are mined before the clock starts
            steps = args.n // args.batch
            kind = "linear" if hidden == 0 else f"hidden {hidden}"
            print(
                f"head epoch, {args.heads} {kind} heads on {args.n:,} x 768 (batch {args.batch}, {steps} steps, 2 views): "
                f"{seconds:,.2f} s ({steps * args.batch / seconds:,.0f} embeddings/s)"
            )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
