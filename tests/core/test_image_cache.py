"""The cache of decoded image folders: its default folder, a miss that decodes and writes one
entry, a hit that decodes nothing, what makes an entry stale (a changed file, another target)
and what keeps entries side by side (another target or selection), skipped files kept in the
entry, and an entry that cannot be read or written costing a decode, never the run."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mihead import image_cache
from mihead.errors import DataError
from mihead.images import DecodedImages, decode_images


def test_cache_folder_of_each_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert image_cache.cache_folder("auto") == tmp_path / "mihead" / "images"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert image_cache.cache_folder("auto") == Path.home() / ".cache" / "mihead" / "images"
    assert image_cache.cache_folder("") is None
    assert image_cache.cache_folder("~/x") == Path.home() / "x"


class Decoder:
    """mihead.images.decode_images, recording how many files each call decodes."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, paths: Sequence[Path], size: int, channels: int, **kwargs: object) -> DecodedImages:
        self.calls.append(len(paths))
        return decode_images(paths, size, channels, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def decoder(monkeypatch: pytest.MonkeyPatch) -> Decoder:
    counting = Decoder()
    monkeypatch.setattr(image_cache, "decode_images", counting)
    return counting


def folder(root: Path, values: Sequence[int]) -> list[Path]:
    """PNGs 0.png, 1.png, ... of one grey value each (6x6 RGB)."""
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, value in enumerate(values):
        Image.fromarray(np.full((6, 6, 3), value, np.uint8)).save(root / f"{i}.png")
        paths.append(root / f"{i}.png")
    return paths


def test_a_miss_writes_one_entry_and_a_hit_decodes_nothing(tmp_path: Path, decoder: Decoder) -> None:
    root, cache = tmp_path / "images", tmp_path / "cache"
    paths = folder(root, [10, 20, 30])
    said: list[str] = []
    first = image_cache.decode_cached(root, paths, 4, 3, cache=cache, say=said.append, workers=1)
    assert decoder.calls == [3] and said == [] and len(list(cache.glob("*.npz"))) == 1
    again = image_cache.decode_cached(root, paths, 4, 3, cache=cache, say=said.append, workers=1)
    assert decoder.calls == [3]  # read back, not decoded
    (entry,) = cache.glob("*.npz")
    assert said == [f"3 decoded images read from the cache {entry}"]
    assert entry.name.startswith("images-")  # named after the folder
    np.testing.assert_array_equal(again.images, first.images)
    assert again.images.shape == (3, 4, 4, 3) and again.images[:, 0, 0, 0].tolist() == [10, 20, 30]
    assert again.paths == paths and again.skipped == []
    assert image_cache.decode_cached(root, paths, 4, 3, cache=None, workers=1).images.tolist() == first.images.tolist()
    assert decoder.calls == [3, 3] and len(list(cache.glob("*.npz"))) == 1  # no cache: decoded, nothing written


def test_a_changed_file_replaces_the_entry_and_other_targets_and_selections_sit_beside_it(tmp_path: Path, decoder: Decoder) -> None:
    root, cache = tmp_path / "images", tmp_path / "cache"
    paths = folder(root, [10, 20, 30])

    def decode(size: int = 4, channels: int = 3, selection: str = "", files: Sequence[Path] = paths) -> DecodedImages:
        return image_cache.decode_cached(root, files, size, channels, cache=cache, selection=selection, workers=1)

    decode()
    decode(channels=1)
    decode(size=2)
    decode(selection="limit=2", files=paths[:2])
    assert decoder.calls == [3, 3, 3, 2] and len(list(cache.glob("*.npz"))) == 4
    stat = paths[1].stat()
    os.utime(paths[1], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched: the entry is stale
    decode()
    assert decoder.calls[-1] == 3 and len(list(cache.glob("*.npz"))) == 4  # replaced, not added
    Image.fromarray(np.full((6, 6, 3), 99, np.uint8)).save(paths[1])  # rewritten: new pixels show
    assert decode().images[1, 0, 0, 0] == 99 and decoder.calls[-1] == 3
    for target in ({"channels": 1}, {"size": 2}):
        decode(**target)  # type: ignore[arg-type]
    assert len(decoder.calls) == 8 and len(list(cache.glob("*.npz"))) == 4  # each target's own stale entry replaced
    decode(selection="limit=2", files=paths[:2])
    assert len(decoder.calls) == 9  # its first file changed too
    decode()
    assert len(decoder.calls) == 9  # and the whole folder's entry is still there


def test_skipped_files_are_kept_in_the_entry(tmp_path: Path, decoder: Decoder) -> None:
    root, cache = tmp_path / "images", tmp_path / "cache"
    paths = folder(root, [10, 20, 30])
    paths[1].write_text("not a png")
    decoded = image_cache.decode_cached(root, paths, 4, 3, cache=cache, skip_bad=True, workers=1)
    assert decoded.paths == [paths[0], paths[2]] and [p for p, _ in decoded.skipped] == [paths[1]]
    again = image_cache.decode_cached(root, paths, 4, 3, cache=cache, skip_bad=True, workers=1)
    assert decoder.calls == [3] and again.skipped == decoded.skipped and again.paths == decoded.paths
    with pytest.raises(DataError, match=f"^cannot read image {paths[1]}: "):  # from the entry, as without it
        image_cache.decode_cached(root, paths, 4, 3, cache=cache, workers=1)
    assert decoder.calls == [3]


def test_an_unreadable_entry_is_a_miss_and_an_unwritable_cache_a_warning(tmp_path: Path, decoder: Decoder) -> None:
    root, cache = tmp_path / "images", tmp_path / "cache"
    paths = folder(root, [10, 20])
    image_cache.decode_cached(root, paths, 4, 3, cache=cache, workers=1)
    (entry,) = cache.glob("*.npz")
    entry.write_bytes(entry.read_bytes()[:100])  # torn
    assert image_cache.decode_cached(root, paths, 4, 3, cache=cache, workers=1).images[:, 0, 0, 0].tolist() == [10, 20]
    assert decoder.calls == [2, 2]
    with open(entry, "wb") as f:  # readable, but not uint8 [N, H, W, C]
        np.savez(f, images=np.zeros((2, 4, 4, 3)), paths=np.array(["0.png", "1.png"]), skipped=np.array([], dtype=str), reasons=np.array([], dtype=str))
    image_cache.decode_cached(root, paths, 4, 3, cache=cache, workers=1)
    assert decoder.calls == [2, 2, 2]
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder would be")
    said: list[str] = []
    decoded = image_cache.decode_cached(root, paths, 4, 3, cache=blocked / "cache", say=said.append, workers=1)
    assert decoded.images[:, 0, 0, 0].tolist() == [10, 20]
    assert len(said) == 1 and said[0].startswith("warning: cannot write the image cache ")
    assert said[0].endswith('set data.cache = "" to turn it off')
