"""Loaded splits kept once per machine: an array split copied into a store of its content and
mapped, a folder's decode cache mapped as it is, and under several ranks (2 gloo processes,
torch.multiprocessing spawn, file:// rendezvous): the split made by local rank 0 alone and mapped
by the other rank, a failure on one node raised on every rank, nodes holding different data
stopped with one line, and a rank that waits for a local rank 0 making no progress stopped with
a line naming it."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch.distributed as dist
import torch.multiprocessing as mp

from mihead.contracts import ImageData
from mihead.distributed import STALL_VARIABLE
from mihead.errors import DataError, MiheadError
from mihead.shared_split import shared_split


def split(value: int = 0, n: int = 6, folder: str = "") -> ImageData:
    images = (np.arange(n * 4 * 4 * 3) % 251 + value).astype(np.uint8).reshape(n, 4, 4, 3)
    return ImageData(images, np.arange(n) % 2, ("a", "b"), tuple(f"{folder}{i}.png" for i in range(n)))


def test_an_array_split_is_copied_into_a_store_of_its_content_once(tmp_path: Path) -> None:
    made: list[int] = []

    def make() -> ImageData:
        made.append(1)
        return split()

    first = shared_split(make, tmp_path, "the split")
    assert isinstance(first.images, np.memmap) and not first.images.flags.writeable
    np.testing.assert_array_equal(first.images, split().images)
    assert first.ids == split().ids and first.classes == ("a", "b") and first.labels is not None
    (store,) = tmp_path.glob("array-*.npy")
    again = shared_split(make, tmp_path, "the split")
    assert made == [1, 1] and list(tmp_path.glob("array-*.npy")) == [store]  # loaded again, stored once
    assert store.stat().st_mtime_ns == Path(str(again.images.filename)).stat().st_mtime_ns
    shared_split(lambda: split(1), tmp_path, "the split")
    assert len(list(tmp_path.glob("array-*.npy"))) == 2  # other content, another store
    in_memory = shared_split(make, None, "the split")
    assert not isinstance(in_memory.images, np.memmap)


def test_a_mapped_split_is_shared_as_it_is_and_its_first_rows_too(tmp_path: Path) -> None:
    np.save(tmp_path / "decoded.npy", split().images)
    mapped = ImageData(np.load(tmp_path / "decoded.npy", mmap_mode="r"), None, (), None)
    shared = shared_split(lambda: mapped.first(4), tmp_path / "cache", "the split")
    assert str(shared.images.filename) == str(mapped.images.filename) and len(shared) == 4  # type: ignore[attr-defined]
    np.testing.assert_array_equal(shared.images, split().images[:4])
    assert not list((tmp_path / "cache").glob("*.npy"))  # nothing copied


def _worker(rank: int, rendezvous: str, scenario: str, cache: str, out: str) -> None:
    nodes = scenario == "two nodes"
    os.environ.update({"LOCAL_RANK": "0" if nodes else str(rank), "LOCAL_WORLD_SIZE": "1" if nodes else "2", STALL_VARIABLE: "1"})
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=2)

    def make() -> ImageData:
        (Path(out) / f"made by {rank}").touch()
        if scenario == "failing":
            raise DataError("/photos is not a folder")
        if scenario == "stalled":
            time.sleep(30)
        return split(rank, folder=f"node{rank}/") if nodes else split()

    try:
        data = shared_split(make, Path(cache) / str(rank if nodes else 0), "the split")
        np.save(Path(out) / f"rank {rank}.npy", data.images)
        (Path(out) / f"rank {rank}.type").write_text(type(data.images).__name__)
    except MiheadError as exc:
        (Path(out) / f"rank {rank}.error").write_text(f"{type(exc).__name__}: {exc}")
    if scenario != "stalled":
        dist.barrier()
        dist.destroy_process_group()


def run_ranks(tmp_path: Path, scenario: str) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    context = mp.spawn(_worker, args=(str(tmp_path / "rendezvous"), scenario, str(tmp_path / "cache"), str(out)), nprocs=2, join=False)
    deadline = time.time() + 60
    while not context.join(timeout=0.5):
        if scenario == "stalled" and (out / "rank 1.error").exists() or time.time() > deadline:
            for process in context.processes:
                process.kill()
            break
    return out


def test_local_rank_0_makes_the_split_and_the_other_rank_maps_it(tmp_path: Path) -> None:
    out = run_ranks(tmp_path, "one node")
    assert sorted(p.name for p in out.glob("made by *")) == ["made by 0"]
    for rank in (0, 1):
        np.testing.assert_array_equal(np.load(out / f"rank {rank}.npy"), split().images)
        assert (out / f"rank {rank}.type").read_text() == "memmap"


def test_a_failure_of_local_rank_0_is_one_line_on_every_rank(tmp_path: Path) -> None:
    out = run_ranks(tmp_path, "failing")
    assert (out / "rank 0.error").read_text() == "DataError: /photos is not a folder"
    assert (out / "rank 1.error").read_text() == "DataError: rank 0: /photos is not a folder"


def test_nodes_holding_different_data_stop_with_one_line(tmp_path: Path) -> None:
    out = run_ranks(tmp_path, "two nodes")
    assert sorted(p.name for p in out.glob("made by *")) == ["made by 0", "made by 1"]  # each node its own
    for rank in (0, 1):
        assert (out / f"rank {rank}.error").read_text() == (
            "DataError: the ranks disagree about the split: rank 0 and rank 1 hold 6 images, but not the same "
            "files, labels or classes; give every node the same data"
        )


def test_a_rank_waiting_for_a_local_rank_0_that_makes_no_progress_names_it(tmp_path: Path) -> None:
    out = run_ranks(tmp_path, "stalled")
    assert (out / "rank 1.error").read_text().startswith(
        f"MiheadError: rank 1 waited 1 s for rank 0 (local rank 0 of its node) to load the split, and nothing changed in {tmp_path / 'cache' / '0'}"
    )
