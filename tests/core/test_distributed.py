"""Data-parallel training: sharding, MI over the global batch, DDP gradients, torchrun runs.

The equivalence test runs 2 gloo processes on CPU (torch.multiprocessing spawn, file://
rendezvous in tmp_path), each with the engine's model-plus-objectives module in DDP, and
compares them with one process: holding both processes' samples for the global terms (MI),
holding each process's samples for the per-rank terms (DCCM's), whose DDP gradient must be the
mean of the per-rank gradients.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import pickle
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from PIL import Image
from torch import nn

from corehelp import QUICKSTART, ROOT, TINY, sets, subprocess_env
from mihead import cli
from mihead.build import ObjectiveTerm, build
from mihead.contracts import (
    AugmenterParams,
    BatchAugmenter,
    ImageAugmenter,
    ImageData,
    ImageSpec,
    ModelOutputs,
    Objective,
    ObjectiveContext,
)
from mihead.data import make_view_source
from mihead.distributed import Ranks, current, global_batch_mean
from mihead.engine import _LossTerms
from mihead.errors import RecipeError
from mihead.evaluate import Evaluation, evaluate
from mihead.finite import NumericalError
from mihead.plugins import Registry, load_registry
from mihead.protocol import resolve_protocol
from mihead.recipe import load_recipe

HEADS, VIEWS, BATCH, K, K_OVER, DIM = 3, 2, 6, 4, 7, 5
GLOBAL = ("iic", "dhog_push")  # terms of the global batch's joint tables
PER_RANK = ("dccm_graph", "dccm_label", "dccm_triplet_mi")  # terms of each rank's own batch
LINEAR = ("dccm_label",)  # per-sample terms: per rank, yet with the global batch's gradient
# thresholds low enough for the tiny model's predictions to make graph edges and labels
PARAMS = {
    "dccm_graph": {"thres1": 0.5},
    "dccm_label": {"thres2": 0.3},
    "dccm_triplet_mi": {"thres1": 0.5, "hidden": 8},
}


class TinyHeads(nn.Module):
    """Inputs [V, B, DIM] -> three main heads and one overclustering head on a shared trunk,
    the same weights in every process, and the trunk's output as ``deep`` [V, B, 16] and
    ``shallow`` [V, B, 4, 2, 2] features."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.trunk = nn.Linear(DIM, 16)
        self.heads = nn.ModuleList(nn.Linear(16, K) for _ in range(HEADS))
        self.over = nn.Linear(16, K_OVER)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))

    def forward(self, x: torch.Tensor) -> ModelOutputs:
        f = torch.tanh(self.trunk(x))
        probs = torch.stack([h(f).softmax(-1) for h in self.heads])
        features = {"deep": f, "shallow": f.unflatten(-1, (4, 2, 2))}
        return ModelOutputs(probs=probs, over_probs=self.over(f).softmax(-1)[None], features=features)


def loss_terms(objective: type[Objective]) -> _LossTerms:
    """The engine's module of the tiny model and one objective, built from seed 0 (an
    objective's own weights and random draws come from torch's global generator)."""
    torch.manual_seed(0)
    context = ObjectiveContext(HEADS, VIEWS, K, K_OVER, feature_channels={"deep": 16, "shallow": 4})
    params = objective.Params(**PARAMS.get(objective.name, {}))
    return _LossTerms(TinyHeads(), [ObjectiveTerm(objective.name, 1.0, objective(params, context))])


def loss_and_grads(module: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The loss of ``x`` and every parameter's gradient (zeros where a term leaves it unused)."""
    loss = sum(module(x).values())
    assert isinstance(loss, torch.Tensor)
    loss.backward()
    if isinstance(module, nn.parallel.DistributedDataParallel):
        module = module.module
    grads = {n: p.grad.clone() if p.grad is not None else torch.zeros_like(p) for n, p in module.named_parameters()}
    return loss.detach(), grads


def _rank_worker(
    rank: int, world: int, rendezvous: str, x: torch.Tensor, objectives: list[type[Objective]], out: str
) -> None:
    """One rank: its shard of ``x`` through each objective, in DDP; results saved to ``out``."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world)
    try:
        ranks = current()
        assert (ranks.rank, ranks.world_size) == (rank, world)
        shard = x[:, rank * BATCH : (rank + 1) * BATCH]
        results = {cls.name: loss_and_grads(ranks.wrap(loss_terms(cls)), shard) for cls in objectives}
        torch.save(results, Path(out) / f"rank{rank}.pt")
        dist.barrier()  # both ranks done before either tears gloo down (else one may abort at exit)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def objectives(registry: Registry) -> list[type[Objective]]:
    names = [n for n in (*GLOBAL, *PER_RANK) if n in registry.names("objective")]
    assert "iic" in names
    return [registry.get("objective", n).cls for n in names]


def assert_grads_close(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor], what: str) -> None:
    assert got.keys() == want.keys()
    for name, g in want.items():
        torch.testing.assert_close(got[name], g, rtol=1e-4, atol=1e-6, msg=f"{what}: d/d{name}")


def test_two_processes_give_the_loss_and_gradients_of_one_process_with_both_batches(
    tmp_path: Path, objectives: list[type[Objective]]
) -> None:
    """N = 2 processes of batch B, their joint tables all-reduced and their gradients averaged
    by DDP, give the loss and the gradients of one process of batch 2B: the all-reduce's
    backward sums the ranks' gradients (factor N) and DDP divides by N. A per-rank term is
    each rank's own loss, with the mean of the ranks' gradients (objective weights included)."""
    world = 2
    x = torch.randn(VIEWS, world * BATCH, DIM, generator=torch.Generator().manual_seed(1))
    mp.spawn(_rank_worker, args=(world, str(tmp_path / "rendezvous"), x, objectives, str(tmp_path)), nprocs=world)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(world)]
    for cls in objectives:
        loss, grads = loss_and_grads(loss_terms(cls), x)
        shards = [loss_and_grads(loss_terms(cls), x[:, r * BATCH : (r + 1) * BATCH]) for r in range(world)]
        mean_grads = {n: sum(g[n] for _, g in shards) / world for n in grads}
        assert any(g.abs().max() > 1e-4 for g in grads.values()), f"{cls.name} has no gradient: proves nothing"
        assert abs(float(shards[0][0] - loss)) > 1e-4, f"{cls.name}: the shards alone must differ"
        for r, (rank_loss, rank_grads) in enumerate(ranks[i][cls.name] for i in range(world)):
            if cls.name in GLOBAL:
                torch.testing.assert_close(rank_loss, loss, rtol=1e-5, atol=1e-6, msg=f"{cls.name} loss, rank {r}")
                assert_grads_close(rank_grads, grads, f"{cls.name}, rank {r} vs one process")
                assert any(not torch.allclose(mean_grads[n], g, atol=1e-4) for n, g in grads.items())
            else:
                message = f"{cls.name} loss, rank {r} vs its shard"
                torch.testing.assert_close(rank_loss, shards[r][0], rtol=1e-5, atol=1e-6, msg=message)
                assert_grads_close(rank_grads, mean_grads, f"{cls.name}, rank {r} vs the ranks' mean")
            if cls.name in LINEAR:
                assert_grads_close(rank_grads, grads, f"{cls.name}, rank {r} vs one process")


def _start(rank: int, world: int, rendezvous: str) -> Ranks:
    """Join a gloo group of ``world`` processes on CPU; a collective that waits a minute fails."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world, timeout=timedelta(seconds=60))
    return current()


def _refused() -> None:
    raise RecipeError("refused on rank 0")


def _collectives_worker(rank: int, world: int, rendezvous: str, out: str) -> None:
    """Unequal parts (rank 1's empty) gathered, and rank 0's work kept there or refused."""
    ranks = _start(rank, world, rendezvous)
    try:
        lengths = [3, 0, 2]
        start = sum(lengths[:rank])
        part = np.stack([np.arange(start, start + lengths[rank]), 10 * np.arange(start, start + lengths[rank])])  # [2, n]
        gathered = ranks.gather(part, axis=1)
        kept = ranks.on_main(lambda: f"made on rank {rank}")
        try:
            ranks.on_main(_refused)
            caught = ""
        except RecipeError as exc:
            caught = str(exc)
        (Path(out) / f"rank{rank}.pkl").write_bytes(pickle.dumps((gathered, kept, caught)))
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_gather_joins_unequal_parts_in_rank_order_on_rank_0_and_on_main_keeps_its_result_there(tmp_path: Path) -> None:
    world = 3
    mp.spawn(_collectives_worker, args=(world, str(tmp_path / "rendezvous"), str(tmp_path)), nprocs=world)
    results = [pickle.loads((tmp_path / f"rank{r}.pkl").read_bytes()) for r in range(world)]
    gathered, kept, caught = results[0]
    np.testing.assert_array_equal(gathered, [[0, 1, 2, 3, 4], [0, 10, 20, 30, 40]])
    assert kept == "made on rank 0" and caught == "refused on rank 0"
    for r in (1, 2):
        assert results[r] == (None, None, "refused on rank 0")  # the error reaches every rank, the result does not


def _evaluate_worker(rank: int, world: int, rendezvous: str, out: str) -> None:
    """The tiny quickstart model (the same weights in every process: build seeds them) scores
    100 images with a fitting split of 100 others, sharded; rank 0 also alone, for reference.
    Then non-finite probabilities in rank 1's shard only stop every rank."""
    ranks = _start(rank, world, rendezvous)
    try:
        recipe = load_recipe(QUICKSTART, load_registry(), [*TINY, "head.per_attachment=3"])
        built = build(recipe, torch.device("cpu"))
        data = built.eval_data
        assert data.labels is not None
        scored = ImageData(data.images[:100], data.labels[:100], data.classes)
        fit = ImageData(data.images[100:], data.labels[100:], data.classes)
        batches = built.source.eval_batches
        assigned: list[tuple[int, int]] = []

        def recording(images: np.ndarray, batch_size: int, rows: range | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            assert rows is not None
            assigned.append((rows.start, rows.stop))
            for single, pair in batches(images, batch_size, rows):
                yield (single * math.nan if poisoned and rank == 1 else single), pair

        built.source.eval_batches = recording  # type: ignore[method-assign]
        kwargs: dict[str, Any] = {"batch_size": 30, "precision": "fp32", "selection": "nmi_zz", "fit": fit, "protocol": resolve_protocol("fit_on_train", "train", "test")}
        poisoned = False
        sharded = evaluate(built.model, built.source, scored, ranks=ranks, **kwargs)
        alone = evaluate(built.model, built.source, scored, **kwargs) if ranks.is_main else None
        poisoned = True
        try:
            evaluate(built.model, built.source, scored, ranks=ranks, **kwargs)
            caught = ""
        except NumericalError as exc:
            caught = str(exc)
        (Path(out) / f"rank{rank}.pkl").write_bytes(pickle.dumps((sharded, alone, assigned[:2], caught)))
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ranks_assign_their_shards_and_rank_0_scores_them_as_one_process(tmp_path: Path) -> None:
    world = 2
    mp.spawn(_evaluate_worker, args=(world, str(tmp_path / "rendezvous"), str(tmp_path)), nprocs=world)
    results = [pickle.loads((tmp_path / f"rank{r}.pkl").read_bytes()) for r in range(world)]
    sharded, alone, _, _ = results[0]
    assert isinstance(sharded, Evaluation) and isinstance(alone, Evaluation)
    assert len(np.unique(alone.assignments)) > 1 and alone.fit_heads is not None  # something to get wrong
    np.testing.assert_array_equal(sharded.assignments, alone.assignments)
    np.testing.assert_array_equal(sharded.confidence, alone.confidence)
    assert sharded.summary() == alone.summary()  # scores of the fixed random views (NMI(z, z')) and the fitting split's too
    # 100 images in 4 batches of 30: rank 0 assigns the first 2 batches, rank 1 the last 2, of each split
    assert [r[2] for r in results] == [[(0, 60), (0, 60)], [(60, 100), (60, 100)]]
    assert results[1][:2] == (None, None)
    for r in range(world):  # rank 1's non-finite shard stops both ranks; the count is the split's
        assert results[r][3].startswith("the model's cluster probabilities are non-finite for 40 of 100 images")


@pytest.mark.slow
def test_mihead_eval_under_torchrun_writes_the_outputs_of_one_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A run trained in one process, evaluated by ``mihead eval`` in one process and by two
    gloo processes under torchrun (200 images in batches of 70: shards of 70 and 130 images):
    the same summary.json and assignments.csv, byte for byte. No field of summary.json differs:
    its training facts (world size, seconds, steps) are the checkpoint's, and the device is the
    CPU in both (on CUDA it would read cuda in one process and cuda:0 under torchrun)."""
    run_dir = tmp_path / "run"
    assert cli.main(["run", str(QUICKSTART), *sets("train.epochs=1", "eval.every=0", "eval.batch_size=70"), "--out", str(run_dir)]) == 0
    capsys.readouterr()
    outputs = ("summary.json", "assignments.csv")

    def evaluated(*launcher: str) -> dict[str, bytes]:
        for name in outputs:
            (run_dir / name).unlink()
        done = subprocess.run(
            [sys.executable, *launcher, "-m", "mihead", "eval", str(run_dir)],
            cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=240,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.count("Per-head results") == 1  # rank 0 alone reports
        return {name: (run_dir / name).read_bytes() for name in outputs}

    one = evaluated()
    two = evaluated("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2")
    assert one == two
    assert assignment_ids(run_dir) == [str(i) for i in range(200)]
    assert json.loads(one["summary.json"])["world_size"] == 1  # the training's, from the checkpoint


def test_one_process_ranks_are_the_identity() -> None:
    ranks = current()
    assert ranks == Ranks() and ranks.is_main
    module = nn.Linear(2, 2)
    assert ranks.wrap(module) is module
    assert ranks.from_main(lambda: 7) == 7 and ranks.on_main(lambda: 7) == 7
    part = np.arange(6).reshape(2, 3)
    assert ranks.gather(part, axis=1) is part
    assert ranks.any(True) and not ranks.any(False)
    values = torch.tensor([1.0, 4.0])
    assert torch.equal(ranks.mean(values), values)
    assert torch.equal(global_batch_mean(values, 4), values / 4)
    assert ranks.device(torch.device("cpu")) == torch.device("cpu")
    assert Ranks(1, 2, 1).device(torch.device("cuda")) == torch.device("cuda", 1)


def test_sync_batchnorm_converts_only_with_several_processes_on_cuda() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    keys = set(model.state_dict())
    assert Ranks().sync_batchnorm(model, torch.device("cpu")) is model
    with pytest.raises(RecipeError, match="sync_batchnorm"):
        Ranks(0, 2).sync_batchnorm(model, torch.device("cpu"))
    synced = Ranks(0, 2).sync_batchnorm(model, torch.device("cuda"))  # conversion needs no GPU
    assert isinstance(synced[1], nn.SyncBatchNorm) and set(synced.state_dict()) == keys


class IndexViews(ImageAugmenter, BatchAugmenter):
    """Views that are the image itself, whose one pixel holds its index: batches read back
    as the indices of the images they hold."""

    name = "index_views"

    def views(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return np.stack([image] * self.num_views)

    def eval_view(self, image: np.ndarray) -> np.ndarray:
        return image

    def batch_views(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return images.float().div(255)[None].expand(self.num_views, *images.shape)

    def eval_batch(self, images: torch.Tensor) -> torch.Tensor:
        return images.float().div(255)


def batch_indices(where: str, batch_size: int, rank: int, world: int, epoch: int, skip: int = 0) -> list[list[int]]:
    images = np.arange(23, dtype=np.uint8).reshape(23, 1, 1, 1)
    augmenter = IndexViews(AugmenterParams(views=2), ImageSpec(channels=1, size=1))
    source = make_view_source(
        images, augmenter, where, batch_size=batch_size, num_workers=0, seed=5,
        device=torch.device("cpu"), rank=rank, world_size=world,
    )  # fmt: skip
    assert source.steps_per_epoch == 23 // (batch_size * world)
    return [views[0, :, 0, 0, 0].mul(255).round().long().tolist() for views in source.train_batches(epoch, skip)]


@pytest.mark.parametrize("where", ["workers", "device"])
def test_each_rank_takes_its_chunk_of_the_single_process_global_batch(where: str) -> None:
    for epoch in (0, 1):
        single = batch_indices(where, 10, 0, 1, epoch)
        ranks = [batch_indices(where, 5, r, 2, epoch) for r in range(2)]
        assert len(single) == 2
        assert [a + b for a, b in zip(*ranks, strict=True)] == single
        assert batch_indices(where, 5, 1, 2, epoch, skip=1) == ranks[1][1:]
    assert batch_indices(where, 10, 0, 1, 0) != batch_indices(where, 10, 0, 1, 1)


@pytest.mark.slow
def test_torchrun_two_cpu_processes_write_one_run_that_resumes_in_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """torchrun, 2 gloo processes of 50 images on 200 digits: one run directory, one summary,
    one log line per epoch, with the evaluation of epoch 1 that both ranks took part in; then
    the run continues in one process (another world size)."""
    run_dir = tmp_path / "run"
    tiny = sets("train.epochs=2", "train.batch_size=50", "head.overclusters=5", "eval.every=1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    done = subprocess.run(
        [*command, "-m", "mihead", "run", str(QUICKSTART), *tiny, "--out", str(run_dir)],
        cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert [p.relative_to(tmp_path) for p in tmp_path.rglob("summary.json")] == [Path("run/summary.json")]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["world_size"], summary["epochs"], summary["steps"]) == (2, 2, 4)  # 200 // (2 x 50) per epoch
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2] and all(len(line["eval"]["heads"]) == 2 for line in lines)
    assert done.stdout.count("Per-head results") == 1 and "Per-head results" not in done.stderr  # a result, and rank 1 is quiet
    assert assignment_ids(run_dir) == [str(i) for i in range(200)]  # the ranks' shards gathered: the whole split

    assert cli.main(["run", "--resume", str(run_dir), "--set", "train.epochs=3"]) == 0
    capsys.readouterr()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["world_size"], summary["epochs"], summary["steps"]) == (1, 3, 12)  # 3 epochs of 4 steps of 50: the step counts in the new steps
    assert [json.loads(line)["epoch"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    assert assignment_ids(run_dir) == [str(i) for i in range(200)]


def assignment_ids(run_dir: Path) -> list[str]:
    with open(run_dir / "assignments.csv", newline="") as f:
        return [row["id"] for row in csv.DictReader(f)]


# recipes/frozen_digits.toml without a batch norm or a random view: linear heads on the pixels
# encoder, each view pair an image and its one nearest neighbour; SGD; 3 epochs of 4 steps of 100
STATIC = [
    "data.limit=400",
    'backbone.cache=""',
    "augment.k=1",
    "augment.views=2",
    "head.hidden=0",
    "head.logit_batchnorm=false",
    "train.epochs=3",
    "train.optimizer=sgd",
    "train.lr=2",
    "eval.every=0",
]


def free_port() -> int:
    """A TCP port of the loopback interface that was free a moment ago (node 0 binds it next)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def loopback_nodes(tmp_path: Path, runs: Sequence[tuple[Path, list[str]]]) -> list[int]:
    """``mihead ARGS`` on two torchrun "nodes" of this machine (``--nnodes 2 --node_rank 0|1``,
    one gloo process each, static rendezvous over 127.0.0.1), node i in the folder and with the
    arguments of ``runs[i]``, its output in ``tmp_path/nodeI.log``; their exit statuses."""
    port = free_port()
    nodes: list[subprocess.Popen[bytes]] = []
    for node, (cwd, args) in enumerate(runs):
        command = [
            sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node_rank", str(node),
            "--nproc_per_node", "1", "--master_addr", "127.0.0.1", "--master_port", str(port), "-m", "mihead", *args,
        ]  # fmt: skip
        with open(tmp_path / f"node{node}.log", "w") as log:  # a file, not a pipe: no node waits on a full pipe
            nodes.append(subprocess.Popen(command, cwd=cwd, env=subprocess_env(), stdout=log, stderr=subprocess.STDOUT))
    try:
        return [process.wait(timeout=120) for process in nodes]
    finally:
        for process in nodes:
            process.kill()


@pytest.mark.slow
def test_two_loopback_nodes_train_as_one_process_with_the_global_batch(tmp_path: Path) -> None:
    """Two torchrun "nodes" on this machine (``--nnodes 2 --node_rank 0|1``, one gloo process
    each, static rendezvous over 127.0.0.1), of batch 50 each, end with the weights and the
    logged losses of ``mihead run`` in one process of batch 100, and node 1 writes nothing.

    The recipe is frozen_digits without what makes the two differ by design rather than by a
    bug: batch normalisation is per rank on CPU (torch's SyncBatchNorm needs CUDA), so the
    heads are linear, with no hidden layer and no logit batch norm; a frozen encoder's views
    are drawn from a generator keyed by the chunk (``step x N + rank``), so ``k = 1`` makes the
    second view the image's nearest neighbour, with nothing to draw. SGD rather than Adam,
    whose update divides a gradient's scale out: a gradient off by the factor N would go
    unseen, and Adam magnifies rounding where a gradient is near zero. (Training the one
    process at half the learning rate, as that factor would, moves the weights about 7e-3 away.)

    Close, not bitwise: one process sums the joint table over 100 samples in one product, two
    processes sum 50 each and all-reduce the sums, and DDP averages two gradients instead of
    taking one; float32 rounds these differently. Measured on a 2-core CPU: weights within
    1.3e-7 of each other (a few units in the last place of values near 0.1), the logged losses
    equal; the tolerance, 1e-6 absolute and relative, is 10 times that."""
    recipe = str(ROOT / "recipes" / "frozen_digits.toml")
    options = [arg for item in STATIC for arg in ("--set", item)]
    one = tmp_path / "one"
    done = subprocess.run(
        [sys.executable, "-m", "mihead", "run", recipe, *options, "--set", "train.batch_size=100", "--out", str(one)],
        cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]

    for node in (0, 1):
        (tmp_path / f"node{node}").mkdir()
    runs = [(tmp_path / f"node{node}", ["run", recipe, *options, "--set", "train.batch_size=50", "--out", str(tmp_path / f"node{node}" / "run")]) for node in (0, 1)]
    codes = loopback_nodes(tmp_path, runs)
    for node, code in enumerate(codes):
        assert code == 0, (tmp_path / f"node{node}.log").read_text()[-3000:]
    assert list((tmp_path / "node1").iterdir()) == []  # node 1 trained into node 0's run directory, leaving its own --out unmade
    two = tmp_path / "node0" / "run"

    first, second = (torch.load(run / "checkpoint.pt", weights_only=True) for run in (one, two))
    assert (first["world_size"], second["world_size"]) == (1, 2)
    assert first["step"] == second["step"] == 12 and first["images_per_step"] == second["images_per_step"] == 100
    weights = {name: w for name, w in first["model"].items() if isinstance(w, torch.Tensor)}
    assert weights and weights.keys() == {name for name, w in second["model"].items() if isinstance(w, torch.Tensor)}
    for name, w in weights.items():
        assert torch.allclose(second["model"][name], w, rtol=1e-6, atol=1e-6), name

    logs = [[json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()] for run in (one, two)]
    assert [e["epoch"] for e in logs[0]] == [e["epoch"] for e in logs[1]] == [1, 2, 3]
    for a, b in zip(*logs, strict=True):
        assert a["losses"].keys() == b["losses"].keys() == {"iic"}
        assert b["losses"]["iic"] == pytest.approx(a["losses"]["iic"], rel=1e-6, abs=1e-6), f"epoch {a['epoch']}"
    losses = [e["losses"]["iic"] for e in logs[0]]
    assert all(abs(a - b) > 1e-4 for a, b in itertools.pairwise(losses)), losses  # far beyond the tolerance: the steps did something


@pytest.mark.slow
def test_a_node_without_the_folder_stops_every_rank_with_one_line(tmp_path: Path) -> None:
    """Two loopback torchrun nodes, one process each, each with its own image cache: node 1's
    ``data.root`` does not exist. Node 0 decodes its folder, then both stop with exit status 2
    and mihead's one line, node 0's naming the rank it came from; nothing hangs."""
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(24):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(photos / f"{i}.png")
    shrink = ["data.size=8", "head.clusters=3", "head.per_attachment=1", "train.batch_size=6", "train.max_steps=1", "train.device=cpu"]
    runs = []
    for node, root in ((0, photos), (1, tmp_path / "missing")):
        overrides = [*shrink, f"data.root={root}", f"data.cache={tmp_path / f'cache{node}'}"]
        args = ["run", str(ROOT / "recipes" / "folder.toml"), *[a for o in overrides for a in ("--set", o)], "--out", str(tmp_path / f"run{node}")]
        runs.append((tmp_path, args))
    codes = loopback_nodes(tmp_path, runs)
    logs = [(tmp_path / f"node{node}.log").read_text() for node in (0, 1)]
    assert codes[0] != 0 and codes[1] != 0, logs
    reason = f"dataset 'image_folder': {tmp_path / 'missing'} is not a folder; set data.root to the image folder"
    assert f"mihead: error: rank 1: {reason}\n" in logs[0], logs[0][-3000:]
    assert f"mihead: error: {reason}\n" in logs[1], logs[1][-3000:]
    assert "exitcode  : 2" in logs[0] and "exitcode  : 2" in logs[1]  # torchrun's report of its process
    assert len(list((tmp_path / "cache0").glob("*.npy"))) == 1 and not (tmp_path / "run0").exists()
