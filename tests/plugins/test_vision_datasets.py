"""Vision datasets: the rebuilt CIFAR-10, a tiny CIFAR-100 layout, image folders, errors."""

from __future__ import annotations

import os
import pickle
import re
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torchvision.datasets import CIFAR10

from mihead import images
from mihead.contracts import DatasetParams, ImageData, ImageSpec
from mihead.errors import DataError
from mihead.images import decode_image
from mihead_vision_datasets._common import data_root
from mihead_vision_datasets.cifar import CIFAR100_20, CIFAR10Dataset
from mihead_vision_datasets.folders import CINIC10Dataset, ImageFolderDataset, ImageFolderParams
from mihead_vision_datasets.stl10 import STL10Dataset
from mihead_vision_datasets.svhn import SVHNDataset


def test_cifar10_rebuilt_copy_needs_verify_false(cifar10_root: Path) -> None:
    data = CIFAR10Dataset(DatasetParams(root=str(cifar10_root), verify=False)).load("test")
    assert data.images.shape == (10000, 32, 32, 3) and data.images.dtype == np.uint8
    assert np.bincount(data.labels).tolist() == [1000] * 10
    assert data.classes[0] == "airplane" and len(data.classes) == 10
    with pytest.raises(DataError, match="data.verify = false"):
        CIFAR10Dataset(DatasetParams(root=str(cifar10_root))).load("test")


@pytest.mark.parametrize(
    ("cls", "split", "expected"),
    [
        (CIFAR10Dataset, "train", "cifar-10-batches-py/data_batch_1"),
        (CIFAR100_20, "test", "cifar-100-python/test"),
        (SVHNDataset, "train", "train_32x32.mat"),
        (STL10Dataset, "train+unlabeled", "stl10_binary/train_X.bin"),
        (CINIC10Dataset, "train", "train"),
    ],
)
def test_absent_data_names_the_expected_path(tmp_path: Path, cls: type, split: str, expected: str) -> None:
    with pytest.raises(DataError, match=re.escape(str(tmp_path / expected))):
        cls(DatasetParams(root=str(tmp_path))).load(split)


def _write_cifar100(root: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    fine = rng.integers(0, 100, n)
    coarse = fine // 5  # any map: the loader must read the coarse labels, not guess them
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    for name in ("train", "test"):
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "fine_labels": fine.tolist(), "coarse_labels": coarse.tolist()}, f)
    meta = {"fine_label_names": [f"f{i}" for i in range(100)], "coarse_label_names": [f"c{i}" for i in range(20)]}
    with open(folder / "meta", "wb") as f:
        pickle.dump(meta, f)
    return data, coarse


def test_cifar100_20_reads_the_superclass_labels(tmp_path: Path) -> None:
    pixels, coarse = _write_cifar100(tmp_path, 12)
    data = CIFAR100_20(DatasetParams(root=str(tmp_path), verify=False)).load("test")
    assert data.labels.tolist() == coarse.tolist()
    assert data.classes == tuple(f"c{i}" for i in range(20))
    np.testing.assert_array_equal(data.images[3], pixels[3].reshape(3, 32, 32).transpose(1, 2, 0))


def _png(path: Path, size: tuple[int, int], value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path)


def test_image_folder_labelled_resizes_mixed_sizes(tmp_path: Path) -> None:
    _png(tmp_path / "cat" / "a.png", (40, 30), 10)
    _png(tmp_path / "cat" / "b.png", (16, 16), 20)
    _png(tmp_path / "dog" / "c.png", (64, 48), 200)
    data = ImageFolderDataset(ImageFolderParams(root=str(tmp_path), size=24)).load("all")
    assert data.images.shape == (3, 24, 24, 3)
    assert data.labels.tolist() == [0, 0, 1] and data.classes == ("cat", "dog")
    assert data.images[2].min() == 200 and data.images[0].max() == 10


def test_image_folder_flat_is_unlabelled(tmp_path: Path) -> None:
    for i in range(3):
        _png(tmp_path / f"{i}.jpg", (20 + i, 20), 5 * i)
    data = ImageFolderDataset(ImageFolderParams(root=str(tmp_path), size=16)).load("all")
    assert data.labels is None and data.classes == () and data.images.shape == (3, 16, 16, 3)


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="holds no images"):
        ImageFolderDataset(ImageFolderParams(root=str(tmp_path))).load("all")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "scan.pdf").write_text("x")
    with pytest.raises(DataError) as raised:
        ImageFolderDataset(ImageFolderParams(root=str(tmp_path))).load("all")
    assert "holds no images: no file in it or below it ends in .jpg, .jpeg, .png" in str(raised.value)
    assert "recursive" not in str(raised.value)  # it would find nothing either
    (tmp_path / "notes.txt").unlink()
    (tmp_path / "sub" / "scan.pdf").unlink()
    (tmp_path / "sub").rmdir()
    with pytest.raises(DataError, match="is not a folder"):
        ImageFolderDataset(ImageFolderParams(root=str(tmp_path / "absent"))).load("all")
    _png(tmp_path / "x.png", (8, 8), 0)
    _png(tmp_path / "cls" / "y.png", (8, 8), 0)
    with pytest.raises(DataError, match="both images and class subfolders"):
        ImageFolderDataset(ImageFolderParams(root=str(tmp_path))).load("all")


def _folder(root: Path, **params: object) -> ImageFolderDataset:
    return ImageFolderDataset(ImageFolderParams(root=str(root), **params))  # type: ignore[arg-type]


def _assert_ids_map_back(root: Path, data: ImageData, channels: int, size: int) -> None:
    """Each id is a file below ``root`` whose own decoding is the image at its index."""
    for image, rel in zip(data.images, data.sample_ids(), strict=True):
        np.testing.assert_array_equal(image, decode_image(root / rel, size, channels)[0])


def test_image_folder_recursive_tree_is_unlabelled_with_relative_path_ids(tmp_path: Path) -> None:
    for i, rel in enumerate(["2019/jan/a.png", "2019/b.jpg", "2020/deep/er/c.png", "d.png", ".trash/e.png"]):
        _png(tmp_path / rel, (10 + i, 12), 40 * i)
    data = _folder(tmp_path, recursive=True, size=8, cache="").load("all")
    assert data.labels is None and data.classes == ()
    assert data.ids == ("2019/b.jpg", "2019/jan/a.png", "2020/deep/er/c.png", "d.png")  # hidden left out
    _assert_ids_map_back(tmp_path, data, 3, 8)
    with pytest.raises(DataError, match="both images and class subfolders.*data.recursive = true"):
        _folder(tmp_path, size=8, cache="").load("all")


def test_image_folder_nested_labelled_tree_labels_by_top_folder(tmp_path: Path) -> None:
    """Without ``recursive`` the top-level subfolders are the classes, each holding its images
    at any depth (torchvision's ImageFolder layout)."""
    for rel, value in [("cat/a.png", 1), ("cat/indoor/b.png", 2), ("dog/c.png", 3), ("dog/x/y/d.png", 4), ("empty/notes.txt", 0)]:
        if rel.endswith(".png"):
            _png(tmp_path / rel, (9, 9), value)
        else:
            (tmp_path / rel).parent.mkdir()
            (tmp_path / rel).write_text("no images here")
    data = _folder(tmp_path, size=8, cache="").load("all")
    assert data.classes == ("cat", "dog") and data.labels.tolist() == [0, 0, 1, 1]
    assert data.ids == ("cat/a.png", "cat/indoor/b.png", "dog/c.png", "dog/x/y/d.png")
    assert data.images[:, 0, 0, 0].tolist() == [1, 2, 3, 4]
    every = _folder(tmp_path, size=8, cache="", recursive=True).load("all")
    assert every.labels is None and every.ids == data.ids


def _mixed_modes(folder: Path) -> None:
    """L, RGBA, P (with transparency), I;16 and RGB files of several sizes, 30 in all."""
    rng = np.random.default_rng(0)
    for i in range(30):
        h, w = 10 + i % 7, 12 + i % 5
        mode = ("L", "RGBA", "P", "I;16", "RGB")[i % 5]
        if mode == "L":
            image = Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8))
        elif mode == "RGBA":
            image = Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8))
        elif mode == "P":
            image = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).quantize(16)
            image.info["transparency"] = 0
        elif mode == "I;16":
            image = Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
        else:
            image = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        path = folder / f"{i:02d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, **({"transparency": 0} if mode == "P" else {}))
        assert Image.open(path).mode == mode


@pytest.mark.parametrize("channels", [3, 1])
def test_image_folder_mixed_modes(tmp_path: Path, channels: int) -> None:
    _mixed_modes(tmp_path)
    data = _folder(tmp_path, size=8, channels=channels, cache="").load("all")
    assert data.images.shape == (30, 8, 8, channels) and data.images.dtype == np.uint8
    _assert_ids_map_back(tmp_path, data, channels, 8)
    grey16 = data.images[3]  # uniform 16-bit noise scaled to 8 bits spans the range, not clipped to 255
    assert (grey16 == 255).mean() < 0.2 and 90 < grey16.mean() < 165


def test_image_folder_auto_channels(tmp_path: Path) -> None:
    for i in range(4):
        Image.fromarray(np.full((9, 9), 60 * i, np.uint8)).save(tmp_path / f"{i}.png")
    Image.fromarray(np.full((9, 9), 200 * 257, np.uint16)).save(tmp_path / "wide.png")
    grey = _folder(tmp_path, size=8, channels=0, cache="")
    assert grey.image_spec() is None  # known once loaded
    assert grey.load("all").images.shape == (5, 8, 8, 1)
    _png(tmp_path / "colour.png", (9, 9), 7)
    assert _folder(tmp_path, size=8, channels=0, cache="").load("all").images.shape == (6, 8, 8, 3)
    assert _folder(tmp_path, size=8, channels=1).image_spec() == ImageSpec(channels=1, size=8)


def test_image_folder_limit_keeps_ids(tmp_path: Path) -> None:
    for i in range(6):
        _png(tmp_path / f"{i}.png", (8, 8), i)
    data = _folder(tmp_path, size=8, limit=4, cache="").load("all")
    assert data.ids == ("0.png", "1.png", "2.png", "3.png") and data.images[:, 0, 0, 0].tolist() == [0, 1, 2, 3]
    assert data.first(2).ids == ("0.png", "1.png")


def test_image_folder_corrupt_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for i in range(4):
        _png(tmp_path / "c" / f"{i}.png", (8, 8), i)
    bad = tmp_path / "c" / "2.png"
    bad.write_bytes(bad.read_bytes()[:30])
    with pytest.raises(DataError, match=f"^cannot read image {re.escape(str(bad))}: [^\n]+$"):
        _folder(tmp_path, size=8, cache="").load("all")
    data = _folder(tmp_path, size=8, cache="", skip_bad=True).load("all")
    assert data.ids == ("c/0.png", "c/1.png", "c/3.png") and data.labels.tolist() == [0, 0, 0]
    err = " ".join(capsys.readouterr().err.split())
    assert f"skipped unreadable image {bad}" in err


def test_mihead_run_on_a_corrupt_folder_exits_2_naming_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mihead import cli

    for i in range(6):
        _png(tmp_path / "images" / f"{i}.png", (8, 8), i)
    (tmp_path / "images" / "4.png").write_text("not a png")
    recipe = Path(__file__).resolve().parents[2] / "recipes" / "folder.toml"
    sets = [f"data.root={tmp_path / 'images'}", "head.clusters=2", "train.max_steps=1"]
    code = cli.main(["run", str(recipe), "--out", str(tmp_path / "run"), *(a for s in sets for a in ("--set", s))])
    err = capsys.readouterr().err
    assert code == 2 and f"cannot read image {tmp_path / 'images' / '4.png'}" in " ".join(err.split())
    assert "Traceback" not in err


def test_mihead_run_on_a_folder_of_one_image_says_it_is_too_small(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mihead import cli

    _png(tmp_path / "images" / "only.png", (8, 8), 0)
    recipe = Path(__file__).resolve().parents[2] / "recipes" / "folder.toml"
    sets = [f"data.root={tmp_path / 'images'}", "head.clusters=2", "data.cache="]
    code = cli.main(["run", str(recipe), "--out", str(tmp_path / "run"), *(a for s in sets for a in ("--set", s))])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2
    assert "the training split has 1 image, too few to train: each step needs at least 2; add images" in err
    assert "lower train.batch_size" not in err


class _CountingDecoder:
    """mihead.images' one-file decoder, counting the files decoded by each load that decodes any."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.files = 0
        self.decode = images._decode_or_reason

    def __call__(self, path: Path, *args: int) -> tuple[np.ndarray | None, bool, str]:
        self.files += 1
        return self.decode(path, *args)

    def count(self, data: ImageData) -> ImageData:
        """``data``, after counting what loading it decoded."""
        if self.files:
            self.calls.append(self.files)
            self.files = 0
        return data


def test_image_folder_cache_is_used_then_invalidated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, cache = tmp_path / "images", tmp_path / "cache"
    for i in range(5):
        _png(root / f"{i}.png", (8, 8), 10 * i)
    counter = _CountingDecoder()
    monkeypatch.setattr(images, "_decode_or_reason", counter)

    def load(**params: object) -> ImageData:
        return counter.count(_folder(root, size=8, cache=str(cache), **params).load("all"))

    first = load()
    again = load()
    assert counter.calls == [5]  # the second run read the cache
    np.testing.assert_array_equal(again.images, first.images)
    assert again.ids == first.ids and len(list(cache.glob("*[0-9a-f].npy"))) == 1

    load(channels=1)
    assert counter.calls == [5, 5]  # another target is another entry
    assert len(list(cache.glob("*[0-9a-f].npy"))) == 2

    stat = (root / "3.png").stat()
    os.utime(root / "3.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched
    load()
    assert counter.calls == [5, 5, 5]
    _png(root / "3.png", (8, 8), 99)  # rewritten: new pixels must show
    changed = load()
    assert counter.calls == [5, 5, 5, 5] and changed.images[3, 0, 0, 0] == 99
    _png(root / "5.png", (8, 8), 1)  # added
    assert len(load()) == 6 and counter.calls[-1] == 6
    (root / "0.png").unlink()  # removed
    assert load().ids == ("1.png", "2.png", "3.png", "4.png", "5.png") and counter.calls[-1] == 5
    load()
    assert len(counter.calls) == 6  # read from the cache again
    assert len(list(cache.glob("*[0-9a-f].npy"))) == 2  # stale entries of the same target replaced

    counter.count(_folder(root, size=8, cache="").load("all"))
    assert len(counter.calls) == 7 and len(list(cache.glob("*[0-9a-f].npy"))) == 2  # "" = no cache
    assert load(limit=2).ids == ("1.png", "2.png") and counter.calls[-1] == 2
    load()
    assert len(counter.calls) == 8  # a shrunk run keeps the whole folder's entry


def test_image_folder_cache_keeps_skipped_files_and_survives_a_torn_entry(tmp_path: Path) -> None:
    root, cache = tmp_path / "images", tmp_path / "cache"
    for i in range(3):
        _png(root / f"{i}.png", (8, 8), i)
    (root / "1.png").write_text("broken")
    assert _folder(root, size=8, cache=str(cache), skip_bad=True).load("all").ids == ("0.png", "2.png")
    with pytest.raises(DataError, match="cannot read image .*1.png"):  # from the cache, as without it
        _folder(root, size=8, cache=str(cache)).load("all")
    (entry,) = cache.glob("*[0-9a-f].npy")
    entry.write_bytes(entry.read_bytes()[:100])
    assert _folder(root, size=8, cache=str(cache), skip_bad=True).load("all").ids == ("0.png", "2.png")


@pytest.mark.parametrize("cache", ["", "cache"])
def test_symlink_loop_is_skipped_with_skip_bad_with_or_without_the_cache(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cache: str
) -> None:
    root = tmp_path / "images"
    for i in range(3):
        _png(root / "c" / f"{i}.png", (8, 8), i)
    loop = root / "c" / "1b.png"
    loop.symlink_to(loop.name)  # points at itself: stat fails with ELOOP
    where = str(tmp_path / cache) if cache else ""
    with pytest.raises(DataError, match=f"^cannot read image {re.escape(str(loop))}: .*symbolic links"):
        _folder(root, size=8, cache=where).load("all")
    for _ in range(2):  # decoded, then (with a cache) read back from it
        data = _folder(root, size=8, cache=where, skip_bad=True).load("all")
        assert data.ids == ("c/0.png", "c/1.png", "c/2.png")
        err = " ".join(capsys.readouterr().err.split())
        assert re.search(f"skipped unreadable image {re.escape(str(loop))}: .*Too many levels of symbolic links", err)


def test_the_default_folder_is_a_user_data_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert data_root("", "cifar10") == tmp_path / "mihead" / "datasets" / "cifar10"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert data_root("", "svhn") == Path.home() / ".local" / "share" / "mihead" / "datasets" / "svhn"
    assert data_root("data/x", "svhn") == Path("data/x")  # an explicit data.root as given


def _offline(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every URL opened is refused, as on a machine without internet; the list records them."""
    opened: list[str] = []

    def refuse(request: object, *args: object, **kwargs: object) -> None:
        opened.append(getattr(request, "full_url", str(request)))
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    return opened


def test_absent_data_in_the_default_folder_is_downloaded_and_offline_says_where_to_put_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    opened = _offline(monkeypatch)
    home = tmp_path / "mihead" / "datasets" / "cifar10"
    with pytest.raises(DataError) as raised:
        CIFAR10Dataset(DatasetParams()).load("test")
    assert opened and opened[0] == CIFAR10.url
    assert str(raised.value) == (
        f"dataset 'cifar10': the download into {home} failed (no network); without internet, copy "
        f"{CIFAR10.url} (or what it unpacks to) into that folder, or set data.root to a folder holding the data"
    )
    out, err = capsys.readouterr()
    assert out == "" and err == f"mihead: dataset 'cifar10' is not in {home}: downloading {CIFAR10.url}\n"
    assert not home.exists()  # nothing half-made left behind
    # an explicit data.root is read as given: absent data is an error, not a download
    with pytest.raises(DataError, match="not found; put the data there"):
        CIFAR10Dataset(DatasetParams(root=str(tmp_path / "mine"))).load("test")
    assert len(opened) == 1 and not (tmp_path / "mine").exists()


def test_a_download_cut_short_leaves_no_partial_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from torchvision.datasets import utils

    def cut_short(url: str, filename: str, *args: object) -> None:
        Path(filename).write_bytes(b"\x1f\x8b partial")
        raise ConnectionResetError(104, "Connection reset by peer")

    monkeypatch.setattr(utils, "_get_redirect_url", lambda url, max_hops: url)
    monkeypatch.setattr(utils, "_urlretrieve", cut_short)
    mine = tmp_path / "svhn"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match=r"download into .*svhn failed \(\[Errno 104\] Connection reset by peer\)"):
        SVHNDataset(DatasetParams(root=str(mine), download=True)).load("test")
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]  # the user's file kept, the partial one removed


def test_data_already_in_the_default_folder_is_read_without_a_download(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    opened = _offline(monkeypatch)
    _, coarse = _write_cifar100(tmp_path / "mihead" / "datasets" / "cifar100_20", 12)
    data = CIFAR100_20(DatasetParams(verify=False)).load("test")
    assert data.labels.tolist() == coarse.tolist() and opened == []
