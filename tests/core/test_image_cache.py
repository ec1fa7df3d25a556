"""The cache of decoded image folders: its default folder, a miss that decodes into one entry
(a memory-mapped store), a hit that decodes nothing, what makes an entry stale (a changed file,
another target) and what keeps entries side by side (another target or selection), skipped files
recorded in the entry, a decode continued after an interruption, ``channels`` 0 resolved before
decoding, and an entry that cannot be read decoded again with a line saying why."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mihead import image_cache, images
from mihead.errors import DataError, UsageError, WriteError
from mihead.images import DecodedImages


def test_cache_folder_of_each_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert image_cache.cache_folder("auto") == tmp_path / "mihead" / "images"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert image_cache.cache_folder("auto") == Path.home() / ".cache" / "mihead" / "images"
    assert image_cache.cache_folder("") is None
    assert image_cache.cache_folder("~/x") == Path.home() / "x"


class Decoded:
    """Counts the files decoded (mihead.images' one-file decoder); ``stop_after`` files, it
    interrupts the run as a kill would."""

    def __init__(self) -> None:
        self.files = 0
        self.stop_after: int | None = None
        self.decode = images._decode_or_reason

    def __call__(self, path: Path, *args: int) -> tuple[np.ndarray | None, bool, str]:
        if self.stop_after is not None and self.files >= self.stop_after:
            raise KeyboardInterrupt
        self.files += 1
        return self.decode(path, *args)


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> Decoded:
    counting = Decoded()
    monkeypatch.setattr(images, "_decode_or_reason", counting)
    return counting


def folder(root: Path, values: Sequence[int], grey: Sequence[int] = ()) -> list[Path]:
    """PNGs 0.png, 1.png, ... of one grey value each (6x6 RGB, or L for the indices in ``grey``)."""
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, value in enumerate(values):
        Image.fromarray(np.full((6, 6) if i in grey else (6, 6, 3), value, np.uint8)).save(root / f"{i}.png")
        paths.append(root / f"{i}.png")
    return paths


def entries(cache: Path) -> list[Path]:
    """The complete entries (not one being filled)."""
    return sorted(p for p in cache.glob("*.npy") if not p.name.endswith(".partial.npy"))


def test_a_miss_writes_one_entry_and_a_hit_decodes_nothing(tmp_path: Path, decoded: Decoded) -> None:
    root, cache = tmp_path / "images", tmp_path / "cache"
    paths = folder(root, [10, 20, 30])
    said: list[str] = []
    first = image_cache.decode_cached(root, paths, 4, 3, cache=cache, say=said.append, workers=1)
    assert decoded.files == 3 and said == [] and len(entries(cache)) == 1
    again = image_cache.decode_cached(root, paths, 4, 3, cache=cache, say=said.append, workers=1)
    assert decoded.files == 3  # mapped, not decoded
    (entry,) = entries(cache)
    assert said == [f"3 decoded images mapped from the cache {entry}"]
    assert entry.name.startswith("images-")  # named after the folder
    assert isinstance(again.images, np.memmap) and not again.images.flags.writeable
    np.testing.assert_array_equal(again.images, first.images)
    assert again.images.shape == (3, 4, 4, 3) and again.images[:, 0, 0, 0].tolist() == [10, 20, 30]
    assert again.paths == paths and again.skipped == []
    assert image_cache.decode_cached(root, paths, 4, 3, cache=None, workers=1).images.tolist() == first.images.tolist()
    assert decoded.files == 6 and len(entries(cache)) == 1  # no cache: decoded, nothing written
    assert sorted(p.name.removeprefix(entry.stem) for p in cache.iterdir()) == [".json", ".lock", ".npy"]


def test_a_changed_file_replaces_the_entry_and_other_targets_and_selections_sit_beside_it(tmp_path: Path, decoded: Decoded) -> None:
    root, cache = tmp_path / "images", tmp_path / "cache"
    paths = folder(root, [10, 20, 30])

    def decode(size: int = 4, channels: int = 3, selection: str = "", files: Sequence[Path] = paths) -> DecodedImages:
        return image_cache.decode_cached(root, files, size, channels, cache=cache, selection=selection, workers=1)

    decode()
    decode(channels=1)
    decode(size=2)
    decode(selection="limit=2", files=paths[:2])
    assert decoded.files == 11 and len(entries(cache)) == 4
    stat = paths[1].stat()
    os.utime(paths[1], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched: the entry is stale
    decode()
    assert decoded.files == 14 and len(entries(cache)) == 4  # replaced, not added
    Image.fromarray(np.full((6, 6, 3), 99, np.uint8)).save(paths[1])  # rewritten: new pixels show
    assert decode().images[1, 0, 0, 0] == 99 and decoded.files == 17
    for target in ({"channels": 1}, {"size": 2}):
        decode(**target)  # type: ignore[arg-type]
    assert decoded.files == 23 and len(entries(cache)) == 4  # each target's own stale entry replaced
    assert len(list(cache.glob("*.json"))) == 4  # and its record with it
    decode(selection="limit=2", files=paths[:2])
    assert decoded.files == 25  # its first file changed too
    decode()
    assert decoded.files == 25  # and the whole folder's entry is still there


def test_skipped_files_are_recorded_in_the_entry_and_the_rows_after_them_move_up(tmp_path: Path, decoded: Decoded, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(image_cache, "CHUNK_BYTES", 1)  # chunks of 16 files
    root, cache = tmp_path / "images", tmp_path / "cache"
    paths = folder(root, range(40))
    for bad in (1, 20, 39):
        paths[bad].write_text("not a png")
    result = image_cache.decode_cached(root, paths, 4, 3, cache=cache, skip_bad=True, workers=1)
    kept = [i for i in range(40) if i not in (1, 20, 39)]
    assert result.paths == [paths[i] for i in kept] and [p for p, _ in result.skipped] == [paths[1], paths[20], paths[39]]
    assert result.images.shape == (37, 4, 4, 3) and result.images[:, 0, 0, 0].tolist() == kept
    again = image_cache.decode_cached(root, paths, 4, 3, cache=cache, skip_bad=True, workers=1)
    assert decoded.files == 40 and again.skipped == result.skipped and again.paths == result.paths
    with pytest.raises(DataError, match=f"^cannot read image {paths[1]}: "):  # from the entry, as without it
        image_cache.decode_cached(root, paths, 4, 3, cache=cache, workers=1)
    assert decoded.files == 40


def test_an_interrupted_decode_continues_where_it_stopped(tmp_path: Path, decoded: Decoded, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(image_cache, "CHUNK_BYTES", 1)  # chunks of 16 files
    root, cache = tmp_path / "images", tmp_path / "cache"
    paths = folder(root, range(40))
    decoded.stop_after = 20
    with pytest.raises(KeyboardInterrupt):
        image_cache.decode_cached(root, paths, 4, 3, cache=cache, workers=1)
    assert entries(cache) == [] and len(list(cache.glob("*.partial.npy"))) == 1  # nothing half-decoded is read as an entry
    decoded.stop_after = None
    result = image_cache.decode_cached(root, paths, 4, 3, cache=cache, workers=1)
    assert decoded.files == 20 + 24  # the first chunk of 16 was kept; files 16.. decoded again
    assert result.images[:, 0, 0, 0].tolist() == list(range(40)) and list(cache.glob("*.partial.*")) == []


def test_channels_0_is_resolved_from_the_headers_before_decoding(tmp_path: Path, decoded: Decoded) -> None:
    grey_root, mixed_root, cache = tmp_path / "grey", tmp_path / "mixed", tmp_path / "cache"
    grey = folder(grey_root, [10, 20], grey=(0, 1))
    mixed = folder(mixed_root, [10, 20], grey=(0,))
    assert image_cache.decode_cached(grey_root, grey, 4, 0, cache=cache, workers=1).images.shape == (2, 4, 4, 1)
    assert image_cache.decode_cached(mixed_root, mixed, 4, 0, cache=cache, workers=1).images.shape == (2, 4, 4, 3)
    assert decoded.files == 4
    assert image_cache.decode_cached(grey_root, grey, 4, 0, cache=cache, workers=1).images.shape == (2, 4, 4, 1)
    assert decoded.files == 4  # the entry's own channels, nothing decoded
    assert image_cache.decode_cached(grey_root, grey, 4, 0, cache=None, workers=1).images.tolist() == (
        image_cache.decode_cached(grey_root, grey, 4, 0, cache=cache, workers=1).images.tolist()
    )


def test_a_damaged_entry_is_decoded_again_with_a_line_and_an_old_npz_entry_is_replaced(tmp_path: Path, decoded: Decoded) -> None:
    root, cache = tmp_path / "images", tmp_path / "cache"
    paths = folder(root, [10, 20])
    image_cache.decode_cached(root, paths, 4, 3, cache=cache, workers=1)
    (entry,) = entries(cache)
    old = cache / f"{entry.name[: entry.name.rindex('-') + 1]}0123456789abcdef.npz"  # an earlier version's entry
    old.write_bytes(b"PK")
    entry.write_bytes(entry.read_bytes()[:-10])  # truncated
    said: list[str] = []
    again = image_cache.decode_cached(root, paths, 4, 3, cache=cache, say=said.append, workers=1)
    assert again.images[:, 0, 0, 0].tolist() == [10, 20] and decoded.files == 4
    assert len(said) == 1 and said[0].startswith(f"cache entry {entry} is filled again: it cannot be read")
    np.save(entry, np.zeros((2, 4, 4, 1), np.uint8))  # readable, but of another shape
    said.clear()
    image_cache.decode_cached(root, paths, 4, 3, cache=cache, say=said.append, workers=1)
    assert decoded.files == 6 and said == [f"cache entry {entry} is filled again: it holds uint8 (2, 4, 4, 1), not uint8 (2, 4, 4, 3)"]
    assert not old.exists()


def test_an_unwritable_cache_folder_is_one_line_before_anything_is_decoded(tmp_path: Path, decoded: Decoded) -> None:
    root = tmp_path / "images"
    paths = folder(root, [10, 20])
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder would be")
    with pytest.raises(UsageError, match=f"^data.cache: cannot make {blocked / 'cache'}: .*; give a writable folder, or \"\" for no cache$"):
        image_cache.decode_cached(root, paths, 4, 3, cache=blocked / "cache", workers=1)
    assert decoded.files == 0


def test_a_full_disk_is_one_line_naming_the_folder_and_the_room_needed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, cache = tmp_path / "images", tmp_path / "cache"
    paths = folder(root, [10, 20])

    def full(fd: int, offset: int, length: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(WriteError, match=rf"^cannot write the cache in {cache}: No space left on device \(it needs 0\.0 MiB\)$"):
        image_cache.decode_cached(root, paths, 4, 3, cache=cache, workers=1)
    assert [p.suffix for p in cache.iterdir()] == [".lock"]  # nothing half-written to read back
