"""mihead.encoded_views: the evaluation batches of a frozen encoder's embedding table are the
same whether one process reads them all or each rank its shard (mihead.data.eval_shard)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from corehelp import Flips
from mihead.contracts import AugmenterParams, FrozenEncoderParams, ImageSpec
from mihead.data import eval_shard
from mihead.embeddings import encode_split
from mihead.encoded_views import EncodedViews
from mihead_pixel_encoder import PixelEncoder

SPEC = ImageSpec(channels=1, size=4)


class RandomCopies(Flips):
    """Three copies, each image flipped left-right or not at random; a view is a copy picked
    at random: every view depends on the generator its batch is given."""

    name = "test_random_copies"

    def view_rows(self, index: torch.Tensor, prepared: torch.Tensor | None, n: int, generator: torch.Generator) -> torch.Tensor:
        return index + n * torch.randint(1, 4, (self.num_views, len(index)), generator=generator)


def test_the_eval_batches_of_shards_are_those_of_one_process(tmp_path: Path) -> None:
    images = np.random.default_rng(0).integers(0, 256, (23, 4, 4, 1), dtype=np.uint8)
    augmenter = RandomCopies(AugmenterParams(views=2), SPEC, copies=3)
    encoder = PixelEncoder(FrozenEncoderParams(cache=str(tmp_path), batch_size=8), SPEC)  # type: ignore[call-arg]
    table = encode_split(encoder, images, augmenter, ids=[str(i) for i in range(23)], seed=3, device=torch.device("cpu"))
    views = EncodedViews({id(images): table}, images, augmenter, batch_size=4, seed=3, device=torch.device("cpu"))
    whole = list(views.eval_batches(images, 5))  # 5 batches: 5, 5, 5, 5, 3
    assert not torch.equal(whole[0][1][0], whole[0][1][1])  # the two fixed views differ: the draw shows
    for world in (2, 3):
        parts = [b for r in range(world) for b in views.eval_batches(images, 5, eval_shard(23, 5, r, world))]
        assert len(parts) == len(whole)
        for (plain, pair), (part_plain, part_pair) in zip(whole, parts, strict=True):
            assert torch.equal(plain, part_plain) and torch.equal(pair, part_pair)
