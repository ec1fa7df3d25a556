"""The training loop: steps, schedule, logs, checkpoints, resume, and the final evaluation,
whose outputs (summary, plots, assignments, gallery) :mod:`mihead.outputs` writes.

Under torchrun (see mihead/distributed.py and docs/distributed.md) every rank trains its shard
of each global batch in DistributedDataParallel; rank 0 alone evaluates, on the whole
evaluation split, and writes the run directory, and every rank returns rank 0's summary.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from mihead.build import Built, build, prediction_facts
from mihead.checkpoint import load_weights, save_checkpoint
from mihead.contracts import Objective
from mihead.device import autocast, resolve_device
from mihead.distributed import current
from mihead.errors import MiheadError
from mihead.evaluate import evaluate_run
from mihead.gradients import backward
from mihead.optim import learning_rate, make_optimizer
from mihead.outputs import report, training_facts
from mihead.recipe import Recipe
from mihead.training_log import LOG_FILE, read_log

__all__ = ["Interrupted", "NumericalError", "Trainer"]


class NumericalError(MiheadError):
    """A loss term became NaN or infinite; the last good checkpoint is kept."""

    exit_code = 1


class Interrupted(MiheadError):
    """SIGINT or SIGTERM stopped the run after a checkpoint was written."""

    exit_code = 130


@contextmanager
def _stop_requests() -> Iterator[list[int]]:
    """Collects SIGINT/SIGTERM during training so the loop can stop at a step boundary."""
    received: list[int] = []

    def handler(signum: int, frame: object) -> None:
        received.append(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


class _LossTerms(torch.nn.Module):
    """Views -> each objective's term of the model's outputs: the model and the objectives in
    one module, so that DistributedDataParallel also averages the gradients of the
    parameters an objective owns (e.g. a discriminator)."""

    def __init__(self, model: torch.nn.Module, objectives: list[tuple[str, float, Objective]]) -> None:
        super().__init__()
        self.model = model
        self.objectives = torch.nn.ModuleDict({name: o for name, _, o in objectives})

    def forward(self, views: torch.Tensor) -> dict[str, torch.Tensor]:
        outputs = self.model(views)
        return {name: objective(outputs) for name, objective in self.objectives.items()}


class Trainer:
    """Trains one recipe in one run directory, from scratch or from a checkpoint."""

    def __init__(self, recipe: Recipe, run_dir: Path, console: Console | None = None) -> None:
        self.recipe = recipe
        self.run_dir = run_dir
        self.cluster = current()
        if console is None or not self.cluster.is_main:  # only rank 0 shows progress
            console = Console(stderr=True, quiet=not self.cluster.is_main)
        self.console = console
        self.results = Console(quiet=console.quiet)  # the results table is a result: stdout, silenced with the progress
        self.device = self.cluster.device(resolve_device(recipe.train.device))
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = recipe.train.cudnn_benchmark
        self.built: Built = build(recipe, self.device, self.cluster.rank, self.cluster.world_size)
        if recipe.train.sync_batchnorm:
            self.built.model = self.cluster.sync_batchnorm(self.built.model, self.device)
        model = self.built.model
        if self.device.type == "cuda" and recipe.train.channels_last:
            model.to(memory_format=torch.channels_last)
            model.channels_last = True
        # torch.compile of a module is a module (OptimizedModule); its stubs say only "callable"
        forward = cast(torch.nn.Module, torch.compile(model)) if recipe.train.compile else model
        self.loss_terms = self.cluster.wrap(_LossTerms(forward, self.built.objectives))
        params = list(model.parameters()) + [p for _, _, o in self.built.objectives for p in o.parameters()]
        self.optimizer = make_optimizer(params, recipe.train)
        self.images_per_step = recipe.train.batch_size * self.cluster.world_size
        spe = self.built.source.steps_per_epoch
        planned = recipe.train.epochs * spe
        self.total_steps = min(planned, recipe.train.max_steps) if recipe.train.max_steps else planned
        self.epoch = 0
        self.step = 0
        self.step_in_epoch = 0
        self.seconds = 0.0
        self.images_seen = 0

    # --- state -----------------------------------------------------------------------------
    def state_counters(self) -> dict[str, Any]:
        """Where training stands: the plain-number part of a checkpoint."""
        return {
            "epoch": self.epoch,
            "step": self.step,
            "step_in_epoch": self.step_in_epoch,
            "seconds": self.seconds,
            "images_seen": self.images_seen,
            "images_per_step": self.images_per_step,
            "world_size": self.cluster.world_size,
        }

    def state(self) -> dict[str, Any]:
        """Everything needed to continue exactly (weights, optimiser, counters, RNG states)
        and to predict new images without the data (:func:`mihead.build.prediction_facts`)."""
        return {
            "model": self.built.model.state_dict(),
            **prediction_facts(self.built),
            "objectives": {n: o.state_dict() for n, _, o in self.built.objectives},
            "optimizer": self.optimizer.state_dict(),
            **self.state_counters(),
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "recipe": self.recipe.to_toml(),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        load_weights(self.built.model, state["model"], self.run_dir, "model")
        for n, _, o in self.built.objectives:
            load_weights(o, state["objectives"][n], self.run_dir, f"objective {n!r}")
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch = int(state["epoch"])
        self.step = int(state["step"])
        self.step_in_epoch = int(state["step_in_epoch"])
        self.seconds = float(state["seconds"])
        self.images_seen = int(state["images_seen"])
        saved = int(state.get("images_per_step", self.images_per_step))
        if saved != self.images_per_step:  # another world size (or batch size) than the checkpoint's:
            # keep the position in the epoch's image order, rounded down to a whole step
            self.step_in_epoch = self.step_in_epoch * saved // self.images_per_step
            self.step = self.epoch * self.built.source.steps_per_epoch + self.step_in_epoch
        torch.set_rng_state(state["rng_cpu"])
        if state["rng_cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng_cuda"])
        if self.cluster.is_main:
            self._truncate_log()

    def _truncate_log(self) -> None:
        """Drop metrics.jsonl lines of epochs after the checkpoint (written before a kill)."""
        log = self.run_dir / LOG_FILE
        if not log.exists():
            return
        kept = [line for line, record in read_log(self.run_dir) if record["epoch"] <= self.epoch]
        log.write_text("".join(line + "\n" for line in kept))

    def checkpoint(self) -> None:
        if self.cluster.is_main:
            save_checkpoint(self.run_dir, self.state())

    # --- training --------------------------------------------------------------------------
    def _train_step(self, views: torch.Tensor) -> dict[str, torch.Tensor]:
        lr = learning_rate(self.step, self.total_steps, self.recipe.train)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with autocast(self.device, self.recipe.train.precision):
            terms = self.loss_terms(views)
        self.optimizer.zero_grad(set_to_none=True)
        backward(terms, self.built.objectives, self.built.model)
        self.optimizer.step()
        return {name: t.detach() for name, t in terms.items()}

    def _check_finite(self, first_bad: dict[str, torch.Tensor]) -> None:
        for name, bad in first_bad.items():
            step = int(bad)
            if step >= 0:
                raise NumericalError(
                    f"loss term {name!r} became non-finite at step {step + 1}; the run stopped and "
                    f"its last good checkpoint in {self.run_dir} was kept"
                )

    def _log(self, record: dict[str, Any]) -> None:
        if not self.cluster.is_main:
            return
        with open(self.run_dir / LOG_FILE, "a") as f:
            f.write(json.dumps(record) + "\n")

    def fit(self) -> dict[str, Any]:
        """Train until ``total_steps``, then evaluate and write the reports; returns the summary."""
        recipe = self.recipe
        source = self.built.source
        batch = self.images_per_step
        names = [n for n, _, _ in self.built.objectives]
        columns = [
            TextColumn("[bold]epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"),
        ]
        self.built.model.train()
        record: dict[str, Any] = {"epoch": self.epoch, "step": self.step}
        with _stop_requests() as stops, Progress(*columns, console=self.console, transient=False) as progress:
            task = progress.add_task("train", total=self.total_steps, completed=self.step, epoch=self.epoch + 1, status="")
            while self.step < self.total_steps:
                sums = {n: torch.zeros((), device=self.device) for n in names}
                first_bad = {n: torch.full((), -1, device=self.device, dtype=torch.long) for n in names}
                epoch_steps, epoch_start = 0, time.perf_counter()
                last_sync = epoch_start
                stopping = False
                batches = source.train_batches(self.epoch, skip=self.step_in_epoch)
                for views in batches:
                    terms = self._train_step(views)
                    for n, t in terms.items():
                        sums[n] += t
                        bad = ~torch.isfinite(t) & (first_bad[n] < 0)
                        first_bad[n] = first_bad[n].masked_fill(bad, self.step)  # no host-to-device copy: no sync
                    self.step += 1
                    self.step_in_epoch += 1
                    epoch_steps += 1
                    now = time.perf_counter()
                    if now - last_sync > 0.5 or self.step == self.total_steps:
                        self._check_finite(first_bad)
                        rate = epoch_steps * batch / (now - epoch_start)
                        loss = sum(float(sums[n]) for n in names) / epoch_steps
                        status = f"loss {loss:.4f} | {rate:,.0f} img/s"
                        progress.update(task, completed=self.step, status=status)
                        last_sync = now
                    else:
                        progress.update(task, completed=self.step)
                    stopping = self.cluster.any(bool(stops))  # every rank stops at the same step
                    if stopping or self.step == self.total_steps:
                        break
                elapsed = time.perf_counter() - epoch_start
                self.seconds += elapsed
                self.images_seen += epoch_steps * batch
                self._check_finite(first_bad)
                if stopping:
                    self.checkpoint()
                    cause = f"signal {stops[0]}" if stops else "a signal to another rank"
                    raise Interrupted(
                        f"stopped by {cause} at step {self.step}; checkpoint written; "
                        f"continue with: mihead run --resume {self.run_dir}"
                    )
                finished = self.step_in_epoch == source.steps_per_epoch or self.step == self.total_steps
                if not finished:  # the epoch generator ran dry early: cannot happen with drop_last
                    raise RuntimeError("epoch ended before its planned steps")
                self.epoch += 1
                self.step_in_epoch = 0
                done = self.step == self.total_steps
                losses = self.cluster.mean(torch.stack([sums[n] for n in names])) / max(epoch_steps, 1)
                record = {
                    "epoch": self.epoch,
                    "step": self.step,
                    "lr": learning_rate(self.step - 1, self.total_steps, recipe.train),
                    "losses": {n: float(v) for n, v in zip(names, losses, strict=True)},
                    "images_per_second": epoch_steps * batch / max(elapsed, 1e-9),
                    "seconds": self.seconds,
                }
                every = recipe.eval.every
                if not done and every and self.epoch % every == 0 and self.cluster.is_main:
                    record["eval"] = evaluate_run(self.built, self.recipe).epoch_metrics()
                if not done:  # the epoch's line goes before its checkpoint: a kill between
                    self._log(record)  # the two repeats the epoch and drops the line on resume
                if done or self.epoch % recipe.train.checkpoint_every == 0:
                    self.checkpoint()
                if not done:
                    progress.update(task, epoch=self.epoch + 1)
        return self.cluster.from_main(lambda: self._report(record))

    def _report(self, record: dict[str, Any]) -> dict[str, Any]:
        """The final evaluation: logged with the last epoch's ``record``, written, printed."""
        evaluation = evaluate_run(self.built, self.recipe)
        record["eval"] = evaluation.epoch_metrics()
        if all(r["epoch"] != self.epoch for _, r in read_log(self.run_dir)):  # resuming a finished run
            self._log(record)
        facts = training_facts(self.state_counters(), self.device)
        images = self.built.eval_data.images
        return report(self.results, self.run_dir, evaluation, images, facts, gallery_images=self.recipe.eval.gallery_images)
