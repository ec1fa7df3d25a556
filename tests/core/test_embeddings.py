"""Embedding tables: encoded once into the cache, again whenever what decides them changes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from corehelp import Flips
from mihead.contracts import AugmenterParams, FrozenEncoderParams, ImageSpec
from mihead.data import derive_seed
from mihead.embeddings import encode_batches, encode_split
from mihead.errors import CheckpointError
from mihead_pixel_encoder import PixelEncoder


class Counted(PixelEncoder):
    """The pixels encoder, counting the images it encodes."""

    def __init__(self, params: FrozenEncoderParams, image: ImageSpec) -> None:
        super().__init__(params, image)
        self.encoded = 0

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        self.encoded += len(images)
        return super().encode(images)


SPEC = ImageSpec(channels=1, size=4)
CPU = torch.device("cpu")


def images(seed: int = 0, n: int = 10) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 4, 4, 1), dtype=np.uint8)


def encoder(tmp_path: Path, **params: object) -> Counted:
    return Counted(FrozenEncoderParams(**{"cache": str(tmp_path), "batch_size": 3, **params}), SPEC)  # type: ignore[arg-type]


def table(enc: Counted, data: np.ndarray, copies: int = 0, seed: int = 0) -> np.ndarray:
    views = Flips(AugmenterParams(views=2), SPEC, copies)
    return encode_split(enc, data, views, ids=[str(i) for i in range(len(data))], seed=seed, device=CPU).rows


def test_rows_are_the_plain_then_the_augmented_embeddings(tmp_path: Path) -> None:
    data = images()
    rows = table(encoder(tmp_path, dtype="float32"), data, copies=2, seed=5)
    flat = data.reshape(10, -1).astype(np.float64) / 255
    plain = flat / np.linalg.norm(flat, axis=1, keepdims=True)
    np.testing.assert_allclose(rows[:10], plain, rtol=1e-6)
    views = Flips(AugmenterParams(), SPEC)
    for copy in (1, 2):
        for first in range(0, 10, 3):  # the copies' randomness is keyed by (seed, copy, batch start)
            chunk = torch.from_numpy(data[first : first + 3]).permute(0, 3, 1, 2)
            flipped = views.augment(chunk, torch.Generator().manual_seed(derive_seed(5, copy, first)))
            expected = PixelEncoder(FrozenEncoderParams(), SPEC).encode(flipped).numpy()
            np.testing.assert_allclose(rows[copy * 10 + first : copy * 10 + first + len(chunk)], expected, rtol=1e-6)


def test_a_second_run_encodes_nothing(tmp_path: Path) -> None:
    data = images()
    first = encoder(tmp_path)
    rows = table(first, data)
    assert first.encoded == 10 and rows.dtype == np.float16
    second = encoder(tmp_path)
    np.testing.assert_array_equal(table(second, data), rows)
    assert second.encoded == 0


@pytest.mark.parametrize(
    ("change", "encodes"),
    [
        ("another image", 10),
        ("another encoder", 10),
        ("another storage type", 10),
        ("another seed without copies", 0),
        ("another seed with copies", 30),
    ],
)
def test_what_encodes_again(tmp_path: Path, change: str, encodes: int) -> None:
    data, copies = images(), 2 if "with copies" in change else 0
    table(encoder(tmp_path), data, copies)
    enc = encoder(tmp_path, normalize=False) if change == "another encoder" else encoder(tmp_path, dtype="float32") if "storage" in change else encoder(tmp_path)
    if change == "another image":
        data = data.copy()
        data[3, 0, 0, 0] ^= 1
    table(enc, data, copies, seed=1 if "seed" in change else 0)
    assert enc.encoded == encodes


def test_without_a_cache_nothing_is_written(tmp_path: Path) -> None:
    enc = Counted(FrozenEncoderParams(cache=""), SPEC)
    rows = table(enc, images())
    assert rows.shape == (10, 16) and enc.encoded == 10
    assert list(tmp_path.iterdir()) == []


def test_encode_batches_gives_the_tables_plain_rows(tmp_path: Path) -> None:
    data = images()
    enc = encoder(tmp_path, dtype="float32")
    batches = list(encode_batches(enc, data, 4, CPU))
    assert [len(b) for b in batches] == [4, 4, 2]
    np.testing.assert_allclose(torch.cat(batches).numpy(), table(enc, data), rtol=1e-6)


def test_the_identity_is_recorded_and_checked() -> None:
    enc = PixelEncoder(FrozenEncoderParams(), SPEC)
    state = enc.state_dict()
    assert list(state) == ["_extra_state"] and state["_extra_state"] == {"model": "pixels", "normalize": "true"}
    other = PixelEncoder(dataclasses.replace(FrozenEncoderParams(), normalize=False), SPEC)
    with pytest.raises(CheckpointError, match="frozen encoder was normalize = 'true', the recipe's is now 'false'"):
        other.load_state_dict(state)
