"""Data past one machine's memory: a folder of small JPEGs decoded once into the image cache's
memory-mapped store, a million-entry store mapped, and the memory of 1, 2 and 4 gloo ranks.

    python bench/scale.py                                  # 200,000 JPEGs, a 1,000,000-entry store
    python bench/scale.py --images 2000 --store 20000 --ranks 1 2 --eval-ranks 1 --steps 2 --batch 32

The folder (git-ignored ``data/scale_jpg_N/``, made once) holds N JPEG files of 32x32 pixels in
folders of 1,000: the CIFAR-10 JPEGs of the shared pack, repeated under new names. Printed, each
measured in its own process with fresh caches ($XDG_CACHE_HOME in a temporary folder):

* decoding the folder into the store with 1 and 2 workers: images/s, and the decoding process's
  peak private memory (``RssAnon``, sampled) above what it held before decoding (the interpreter
  with torch and mihead imported), for a quarter of the folder and for all of it;
* a store of ``--store`` entries made directly (random pixels), then mapped by a process that
  reads batches from it: its private memory, before and after;
* ``mihead run`` (recipes/folder.toml, smallcnn, ``--steps`` steps of ``--batch`` (256) images per rank, then
  its evaluation of every image) on a tenth of the folder in one process, then on all of it with
  1, 2 and 4 gloo ranks (torchrun): each rank's peak private memory, its peak proportional set
  size (``Pss``: a shared page, such as one of the mapped store, divided among the processes
  mapping it) alone and with its loader workers, and the job's total (the sum of the latter);
* ``mihead eval`` of the first whole-folder run's checkpoint in 1 process and under 2 ranks.

Memory is read from /proc (Linux). Every figure comes from this one invocation.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PACK = REPO.parent / "shared" / "data" / "cifar10" / "cifar10_jpeg_q75.npz"
RECIPE = REPO / "recipes" / "folder.toml"
MIB = 2**20


def jpeg_folder(root: Path, n: int) -> Path:
    """``n`` 32x32 JPEG files under ``root``, 1,000 per folder: the pack's, repeated."""
    done = root / ".complete"
    if done.exists() and int(done.read_text()) == n:
        return root
    pack = np.load(PACK)
    offsets, jpeg = pack["offsets"], pack["jpeg"]
    for i in range(n):
        j = i % (len(offsets) - 1)
        path = root / f"{i // 1000:04d}" / f"{i:07d}.jpg"
        if i % 1000 == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(jpeg[offsets[j] : offsets[j + 1]].tobytes())
    done.write_text(str(n))
    return root


def _status(pid: str = "self") -> dict[str, int]:
    """A process's memory counters of /proc/PID/status and smaps_rollup, in bytes (empty when
    it has ended)."""
    found: dict[str, int] = {}
    for name in (f"/proc/{pid}/status", f"/proc/{pid}/smaps_rollup"):
        try:
            with open(name) as f:
                for line in f:
                    m = re.match(r"(\w+):\s+(\d+) kB", line)
                    if m:
                        found[m.group(1)] = int(m.group(2)) * 1024
        except OSError:
            return {}
    return found


def _descendants(pid: str = "self") -> list[str]:
    """The processes this one started, and theirs (a rank's loader workers)."""
    found: list[str] = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            for child in children.read_text().split():
                found += [child, *_descendants(child)]
        except OSError:
            continue
    return found


class Sampler:
    """Peaks, sampled every 50 ms in a thread, of this process's private memory (RssAnon) and
    proportional set size (Pss), and of the Pss of this process with its descendants (loader
    workers)."""

    def __init__(self) -> None:
        first = _status()
        self.base = first["RssAnon"]
        self.anon, self.pss, self.tree = first["RssAnon"], first["Pss"], first["Pss"]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(0.05):
            self.sample()

    def sample(self) -> None:
        now = _status()
        tree = now["Pss"] + sum(_status(pid).get("Pss", 0) for pid in _descendants())
        self.anon, self.pss, self.tree = max(self.anon, now["RssAnon"]), max(self.pss, now["Pss"]), max(self.tree, tree)

    def result(self) -> dict[str, int]:
        self.stop.set()
        self.thread.join()
        self.sample()
        return {"base_anon": self.base, "peak_anon": self.anon, "peak_pss": self.pss, "peak_tree_pss": self.tree}


def _decode_worker(folder: str, cache: str, workers: int, limit: int, out: str) -> None:
    """One decode of the first ``limit`` files of ``folder`` into ``cache``, measured."""
    from mihead.image_cache import decode_cached
    from mihead.images import find_images

    paths = find_images([Path(folder)])[:limit]
    sampler = Sampler()
    start = time.perf_counter()
    decoded = decode_cached(Path(folder), paths, 32, 3, cache=Path(cache), workers=workers)
    seconds = time.perf_counter() - start
    Path(out).write_text(json.dumps({"images": len(decoded.images), "seconds": seconds, **sampler.result()}))


def _map_worker(folder: str, key: str, entries: int, out: str) -> None:
    """Map the store, read 200 random batches of 256 from it, measured."""
    import torch

    from mihead.data import _gathered
    from mihead.store import stored

    sampler = Sampler()
    start = time.perf_counter()
    images = stored(Path(folder), key, (entries, 32, 32, 3), "uint8")
    assert images is not None
    mapped = _status()["RssAnon"]
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        _gathered(images, torch.randint(entries, (256,), generator=g))
    seconds = time.perf_counter() - start
    Path(out).write_text(json.dumps({"mapped_anon": mapped, "seconds": seconds, **sampler.result()}))


def _mihead_worker(out: str, args: Sequence[str]) -> None:
    """``mihead ARGS`` in this process (a torchrun rank, or one process), measured."""
    from mihead import cli

    sampler = Sampler()
    start = time.perf_counter()
    code = cli.main(list(args))
    seconds = time.perf_counter() - start
    Path(f"{out}.{os.environ.get('RANK', '0')}").write_text(json.dumps({"seconds": seconds, "code": code, **sampler.result()}))
    sys.exit(code)


def _run(command: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")


def _ranks(out: Path, world: int) -> list[dict[str, float]]:
    return [json.loads(Path(f"{out}.{r}").read_text()) for r in range(world)]


def _launcher(world: int) -> list[str]:
    """How a command of ``world`` ranks starts: torchrun, or one plain process."""
    if world == 1:
        return [sys.executable]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(world)]


def measure(args: argparse.Namespace, tmp: Path, say: Callable[[str], None]) -> None:
    folder = jpeg_folder(REPO / "data" / f"scale_jpg_{args.images}", args.images)
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp / "xdg")}  # torchrun gives each of several ranks one thread
    me = [str(Path(__file__).resolve())]
    say(f"folder: {args.images:,} JPEGs of 32x32 in {folder}")

    rows = []
    for workers, limit in ((1, args.images), (2, args.images // 4), (2, args.images)):
        out = tmp / f"decode-{workers}-{limit}.json"
        _run([sys.executable, *me, "--decode-worker", str(folder), str(tmp / f"cache-{workers}-{limit}"), str(workers), str(limit), str(out)], env)
        r = json.loads(out.read_text())
        rows.append(r)
        say(
            f"decode {r['images']:>9,} images, {workers} worker{'s' if workers > 1 else ''}: {r['images'] / r['seconds']:>7,.0f} images/s; "
            f"private memory {r['base_anon'] / MIB:,.0f} MiB before, peak {(r['peak_anon'] - r['base_anon']) / MIB:+,.0f} MiB"
        )

    from mihead.store import filled_store

    entries = args.store
    start = time.perf_counter()
    step = 16384
    rng = np.random.default_rng(0)
    block = rng.integers(0, 256, (step, 32, 32, 3), dtype=np.uint8)
    filled_store(tmp / "big", "store", (entries, 32, 32, 3), "uint8", lambda a, b: block[: b - a], [*range(0, entries, step), entries], say=say)
    size = (tmp / "big" / "store.npy").stat().st_size
    say(f"store of {entries:,} entries ({size / 2**30:,.2f} GiB) written in {time.perf_counter() - start:,.1f} s")
    out = tmp / "map.json"
    _run([sys.executable, *me, "--map-worker", str(tmp / "big"), "store", str(entries), str(out)], env)
    r = json.loads(out.read_text())
    say(
        f"mapped it and read 200 random batches of 256 in {r['seconds']:,.2f} s: private memory "
        f"{(r['mapped_anon'] - r['base_anon']) / MIB:+,.1f} MiB after mapping, peak {(r['peak_anon'] - r['base_anon']) / MIB:+,.1f} MiB"
    )

    sets = [f"data.root={folder}", "data.recursive=true", "data.channels=3", "head.clusters=10", f"train.max_steps={args.steps}", f"train.batch_size={args.batch}", "train.device=cpu"]
    runs = [(1, args.images // 10), *((world, 0) for world in args.ranks)]
    for world, limit in runs:
        run_dir = tmp / f"run-{world}-{limit}"
        out = tmp / f"train-{world}-{limit}"
        overrides = [a for s in [*sets, f"data.limit={limit}"] for a in ("--set", s)]
        start = time.perf_counter()
        _run([*_launcher(world), *me, "--mihead-worker", str(out), "--", "run", str(RECIPE), "--out", str(run_dir), *overrides], env)
        seconds = time.perf_counter() - start
        ranks = _ranks(out, world)
        say(
            f"run, {limit or args.images:,} images, {world} rank{'s' if world > 1 else ''} ({args.steps} step{'s' if args.steps > 1 else ''} of {args.batch} per rank, "
            f"then the evaluation of every image): {seconds:,.1f} s; job total {sum(r['peak_tree_pss'] for r in ranks) / MIB:,.0f} MiB"
        )
        for i, r in enumerate(ranks):
            say(
                f"    rank {i}: private {r['peak_anon'] / MIB:,.0f} MiB, Pss {r['peak_pss'] / MIB:,.0f} MiB, "
                f"with its loader workers {r['peak_tree_pss'] / MIB:,.0f} MiB"
            )

    for world in args.eval_ranks:
        out = tmp / f"eval-{world}"
        start = time.perf_counter()
        _run([*_launcher(world), *me, "--mihead-worker", str(out), "--", "eval", str(tmp / f"run-{args.ranks[0]}-0")], env)
        seconds = time.perf_counter() - start
        say(f"mihead eval of {args.images:,} images, {world} rank{'s' if world > 1 else ''}: {seconds:,.1f} s (start to end)")


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--decode-worker"]:
        return _decode_worker(argv[1], argv[2], int(argv[3]), int(argv[4]), argv[5])
    if argv[:1] == ["--map-worker"]:
        return _map_worker(argv[1], argv[2], int(argv[3]), argv[4])
    if argv[:1] == ["--mihead-worker"]:
        return _mihead_worker(argv[1], argv[3:])
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--images", type=int, default=200_000)
    parser.add_argument("--store", type=int, default=1_000_000)
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--eval-ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=256, help="train.batch_size (per rank)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        measure(args, Path(tmp), lambda line: print(line, flush=True))


if __name__ == "__main__":
    main()
