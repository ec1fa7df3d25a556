"""The ``neighbours`` and ``augmented_embeddings`` views of cached embeddings, and the chunked
neighbour mining against a brute-force reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mihead.contracts import ImageSpec
from mihead.testing import check_augmenter
from mihead_embedding_views import AugmentedEmbeddings, AugmentedEmbeddingsParams, Neighbours, NeighboursParams
from mihead_embedding_views.mining import nearest_neighbours

SPEC = ImageSpec(3, 8)


def unit(n: int, d: int, seed: int = 0) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=1)


def brute_force(x: np.ndarray, k: int) -> np.ndarray:
    """Each row's k most cosine-similar other rows, by a full N x N table in float64."""
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    similarity = x @ x.T
    np.fill_diagonal(similarity, -np.inf)
    return np.argsort(-similarity, axis=1, kind="stable")[:, :k]


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
def test_mining_in_chunks_finds_the_brute_force_neighbours(chunk: int) -> None:
    x = torch.randn(150, 16, generator=torch.Generator().manual_seed(1)) * 3  # not unit: mining normalises
    found = nearest_neighbours(x, 10, chunk).numpy()
    assert found.shape == (150, 10) and found.dtype == np.int64
    np.testing.assert_array_equal(found, brute_force(x.double().numpy(), 10))


def test_mining_never_returns_the_embedding_itself_even_with_duplicates() -> None:
    x = unit(20, 4).repeat(2, 1)  # every embedding twice: its copy is its nearest neighbour
    found = nearest_neighbours(x, 3, chunk=8)
    assert not (found == torch.arange(40)[:, None]).any()
    assert torch.equal(found[:, 0], (torch.arange(40) + 20) % 40)


def test_mining_refuses_more_neighbours_than_others() -> None:
    with pytest.raises(ValueError, match="k = 5 neighbours"):
        nearest_neighbours(unit(5, 3), 5)


def test_a_neighbour_view_pairs_each_sample_with_one_of_its_k_nearest() -> None:
    aug = Neighbours(NeighboursParams(views=3, k=4), SPEC)
    x = unit(30, 8)
    prepared = aug.prepare(x)
    index = torch.tensor([5, 0, 29, 11])
    rows = aug.view_rows(index, prepared, 30, torch.Generator().manual_seed(0))
    assert rows.shape == (3, 4) and torch.equal(rows[0], index)
    for v in (1, 2):
        for b in range(4):
            assert rows[v, b].item() in set(prepared[index[b]].tolist())


def test_neighbour_views_change_with_the_key_and_cover_the_k_neighbours() -> None:
    aug = Neighbours(NeighboursParams(k=5), SPEC)
    prepared = aug.prepare(unit(40, 8))
    index = torch.zeros(2000, dtype=torch.int64)
    drawn = aug.view_rows(index, prepared, 40, torch.Generator().manual_seed(0))[1]
    assert set(drawn.tolist()) == set(prepared[0].tolist())  # all five drawn, nothing else
    other = aug.view_rows(index, prepared, 40, torch.Generator().manual_seed(1))[1]
    assert not torch.equal(drawn, other)


def test_k_larger_than_the_split_takes_every_other_sample() -> None:
    prepared = Neighbours(NeighboursParams(k=50), SPEC).prepare(unit(6, 3))
    assert prepared.shape == (6, 5)


def test_augmented_views_of_a_sample_are_distinct_encodings_of_it() -> None:
    aug = AugmentedEmbeddings(AugmentedEmbeddingsParams(views=3, copies=2), SPEC)
    n, index = 10, torch.arange(10)
    rows = aug.view_rows(index, aug.prepare(unit(n, 4)), n, torch.Generator().manual_seed(0))
    assert rows.shape == (3, 10)
    assert torch.equal(rows % n, index.expand(3, -1))  # every view is the sample itself
    copies = (rows // n).sort(dim=0).values
    assert torch.equal(copies, torch.arange(3)[:, None].expand(3, 10))  # plain, copy 1, copy 2: each once


def test_neighbours_with_copies_take_each_view_in_some_encoding() -> None:
    aug = Neighbours(NeighboursParams(k=3, copies=2), SPEC)
    n = 20
    prepared = aug.prepare(unit(n, 4))
    rows = aug.view_rows(torch.arange(n), prepared, n, torch.Generator().manual_seed(0))
    assert torch.equal(rows[0] % n, torch.arange(n))
    assert ((rows // n) <= 2).all() and (rows // n).unique().numel() == 3


def test_augment_without_crop_or_flip_gives_the_image_back() -> None:
    aug = AugmentedEmbeddings(AugmentedEmbeddingsParams(crop_min=1.0, flip=0.0), SPEC)
    x = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(aug.augment(x, torch.Generator().manual_seed(0)), x)


def test_augment_with_a_certain_flip_and_no_crop_mirrors() -> None:
    aug = AugmentedEmbeddings(AugmentedEmbeddingsParams(crop_min=1.0, flip=1.0), SPEC)
    x = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(aug.augment(x, torch.Generator().manual_seed(0)), x.flip(-1))


def test_crops_zoom_in() -> None:
    aug = AugmentedEmbeddings(AugmentedEmbeddingsParams(crop_min=0.25, flip=0.0), ImageSpec(1, 32))
    ramp = torch.arange(32, dtype=torch.uint8).mul(8).expand(64, 1, 32, 32).contiguous()  # left to right 0..248
    out = aug.augment(ramp, torch.Generator().manual_seed(0)).float()
    spread = out[:, 0, 0, -1] - out[:, 0, 0, 0]
    assert (spread <= 248 + 1).all() and spread.min() < 248 * 0.6  # some crops of half the side or less


@pytest.mark.parametrize("cls", [Neighbours, AugmentedEmbeddings])
def test_contract(cls: type[Neighbours] | type[AugmentedEmbeddings]) -> None:
    check_augmenter(cls, cls.Params(copies=2), SPEC)


def test_both_flavours_share_cached_copies_unless_the_crops_differ() -> None:
    neighbours = Neighbours(NeighboursParams(k=5, views=3, copies=2), SPEC)
    augmented = AugmentedEmbeddings(AugmentedEmbeddingsParams(copies=2), SPEC)
    assert neighbours.augmentation() == augmented.augmentation()  # the cache key's part: k and views left out
    other = AugmentedEmbeddings(AugmentedEmbeddingsParams(copies=2, crop_min=0.5), SPEC)
    assert other.augmentation() != augmented.augmentation()
