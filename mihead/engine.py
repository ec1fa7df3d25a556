"""The training loop: steps, schedule, logs, checkpoints, resume, and the final evaluation,
whose outputs (summary, plots, assignments, gallery) :mod:`mihead.outputs` writes.

Under torchrun (see mihead/distributed.py and docs/distributed.md) every rank trains its shard
of each global batch in DistributedDataParallel and assigns its shard of each evaluation; rank
0 scores the whole evaluation split and writes the run directory, and every rank returns rank
0's summary.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn, cast

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from mihead.build import Built, ObjectiveTerm, build
from mihead.checkpoint import load_weights, save_checkpoint
from mihead.device import autocast, resolve_device
from mihead.distributed import Ranks, current
from mihead.errors import MiheadError
from mihead.evaluate import Evaluation, evaluate_run
from mihead.finite import NumericalError, first_non_finite
from mihead.gradients import backward
from mihead.memory import OutOfMemory, reporting_out_of_memory
from mihead.optim import learning_rate, make_optimizer
from mihead.outputs import report, training_facts
from mihead.recipe import Recipe
from mihead.run_directory import append_metrics, read_metrics, shape_record, truncate_metrics

__all__ = ["Interrupted", "NumericalError", "Trainer"]


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

    def __init__(self, model: torch.nn.Module, objectives: list[ObjectiveTerm]) -> None:
        super().__init__()
        self.model = model
        self.objectives = torch.nn.ModuleDict({term.name: term.module for term in objectives})

    def forward(self, views: torch.Tensor) -> dict[str, torch.Tensor]:
        outputs = self.model(views)
        return {name: objective(outputs) for name, objective in self.objectives.items()}


class _ProgressDisplay:
    """The progress bar of training on the console: the epoch, the steps done of the run's
    total, the time, and the loss and speed of the epoch so far."""

    def __init__(self, console: Console, total_steps: int, step: int, epoch: int) -> None:
        columns = [
            TextColumn("[bold]epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"),
        ]
        self.progress = Progress(*columns, console=console, transient=False)
        self.task = self.progress.add_task("train", total=total_steps, completed=step, epoch=epoch + 1, status="")

    def __enter__(self) -> _ProgressDisplay:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def show(self, step: int, status: str | None = None) -> None:
        """``step`` steps done; ``status``, when given, replaces the loss and speed shown."""
        if status is None:
            self.progress.update(self.task, completed=step)
        else:
            self.progress.update(self.task, completed=step, status=status)

    def start_epoch(self, epoch: int) -> None:
        """Show ``epoch`` (counted from 0) as the current one."""
        self.progress.update(self.task, epoch=epoch + 1)


class _EpochSteps:
    """One epoch's steps so far: their count, each loss term's sum and the first step at which
    it was not finite (-1: none), kept on the device so that a step never waits on the host,
    and the times of the epoch's start and of the host's last read of them."""

    def __init__(self, weights: dict[str, float], device: torch.device) -> None:
        self.weights = weights  # each term's weight in the loss trained on, by name
        self.sums = {n: torch.zeros((), device=device) for n in self.weights}
        self.first_bad = {n: torch.full((), -1, device=device, dtype=torch.long) for n in self.weights}
        self.count = 0
        self.start = time.perf_counter()
        self.synced = self.start
        self.stopping = False  # a stop request ended the epoch early

    def add(self, terms: dict[str, torch.Tensor], step: int) -> None:
        """Count the terms of step ``step`` (from 0)."""
        for n, t in terms.items():
            self.sums[n] += t
            bad = ~torch.isfinite(t) & (self.first_bad[n] < 0)
            self.first_bad[n] = self.first_bad[n].masked_fill(bad, step)  # no host-to-device copy: no sync
        self.count += 1

    def sync_due(self, final: bool) -> bool:
        """Whether the host reads the sums now: half a second after its last read, or at the
        run's ``final`` step. When it does, now is its last read."""
        now = time.perf_counter()
        if now - self.synced > 0.5 or final:
            self.synced = now
            return True
        return False

    def status(self, images_per_step: int) -> str:
        """The weighted loss trained on, averaged over the epoch's steps, and the speed, as of
        the last read."""
        rate = self.count * images_per_step / (self.synced - self.start)
        loss = sum(w * float(self.sums[n]) for n, w in self.weights.items()) / self.count
        return f"loss {loss:.4f} | {rate:,.0f} img/s"

    def mean_losses(self, ranks: Ranks) -> dict[str, float]:
        """Each term's mean over the epoch's steps and over the ranks: the epoch's record."""
        losses = ranks.mean(torch.stack(list(self.sums.values()))) / max(self.count, 1)
        return {n: float(v) for n, v in zip(self.sums, losses, strict=True)}


class Trainer:
    """Trains one recipe in one run directory, from scratch or from a checkpoint."""

    def __init__(self, recipe: Recipe, run_dir: Path, console: Console | None = None, *, recorded: Mapping[str, Any] | None = None) -> None:
        """``recorded``: the model state of the checkpoint a resumed run will load (checked
        early for the same frozen encoder, see :func:`mihead.build.build`)."""
        self.recipe = recipe
        self.run_dir = run_dir
        self.ranks = current()
        if console is None or not self.ranks.is_main:  # only rank 0 shows progress
            console = Console(stderr=True, quiet=not self.ranks.is_main)
        self.console = console
        self.results = Console(quiet=console.quiet)  # the results table is a result: stdout, silenced with the progress
        self.device = self.ranks.device(resolve_device(recipe.train.device))
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = recipe.train.cudnn_benchmark
        self.built: Built = build(recipe, self.device, self.ranks.rank, self.ranks.world_size, recorded=recorded)
        if recipe.train.sync_batchnorm:
            self.built.model = self.ranks.sync_batchnorm(self.built.model, self.device)
        model = self.built.model
        if self.device.type == "cuda" and recipe.train.channels_last:
            model.to(memory_format=torch.channels_last)
            model.channels_last = True
        # torch.compile of a module is a module (OptimizedModule); its stubs say only "callable"
        forward = cast(torch.nn.Module, torch.compile(model)) if recipe.train.compile else model
        self.loss_terms = self.ranks.wrap(_LossTerms(forward, self.built.objectives))
        params = list(model.parameters()) + [p for term in self.built.objectives for p in term.module.parameters()]
        self.optimizer = make_optimizer(params, recipe.train)
        self.images_per_step = recipe.train.batch_size * self.ranks.world_size
        spe = self.built.source.steps_per_epoch
        planned = recipe.train.epochs * spe
        self.total_steps = min(planned, recipe.train.max_steps) if recipe.train.max_steps else planned
        self.epoch = 0
        self.step = 0
        self.step_in_epoch = 0
        self.seconds = 0.0
        self.images_seen = 0
        self.saved_step: int | None = None  # the step of the run's latest checkpoint, None before the first

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
            "world_size": self.ranks.world_size,
        }

    def state(self) -> dict[str, Any]:
        """Everything needed to continue exactly (weights, optimiser, counters, RNG states)
        and to rebuild the model without its data (:func:`mihead.run_directory.shape_record`)."""
        return {
            "model": self.built.model.state_dict(),
            **shape_record(self.built.shape),
            **self._trainable_state(),
            **self.state_counters(),
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "recipe": self.recipe.to_toml(),
        }

    def _trainable_state(self) -> dict[str, Any]:
        """The objectives' and the optimiser's state dicts: with the model's, what training changes."""
        return {
            "objectives": {term.name: term.module.state_dict() for term in self.built.objectives},
            "optimizer": self.optimizer.state_dict(),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        bad = first_non_finite(state)
        if bad is not None:  # written before checkpoints were checked: resuming would train on NaN
            raise NumericalError(f"{self.run_dir}: the checkpoint holds a non-finite value ({bad}) from a diverged step; it cannot be resumed")
        self.saved_step = int(state["step"])
        load_weights(self.built.model, state["model"], self.run_dir, "model")
        for term in self.built.objectives:
            load_weights(term.module, state["objectives"][term.name], self.run_dir, f"objective {term.name!r}")
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
        if self.ranks.is_main:  # drop the log lines of epochs after the checkpoint (written before a kill)
            truncate_metrics(self.run_dir, self.epoch)

    def checkpoint(self) -> None:
        """Save the state (rank 0); call :meth:`_check_state` first, at the same step."""
        if self.ranks.is_main:
            save_checkpoint(self.run_dir, self.state())
        self.saved_step = self.step

    def _stopped(self) -> str:
        """The end of a message that stops the run (non-finite values, out of memory): what it left to resume from."""
        if self.saved_step is None:
            return "the run stopped before its first checkpoint, so it left nothing to resume"
        return f"the run stopped and its last good checkpoint (step {self.saved_step}) in {self.run_dir} was kept"

    def _check_state(self) -> None:
        """A NumericalError, on every rank, when a weight, buffer or optimiser value is NaN or
        infinite: the loss is checked before each step, but the step's own update can overflow."""
        bad = first_non_finite({"model": self.built.model.state_dict(), **self._trainable_state()})
        if self.ranks.any(bad is not None):
            where = f"{bad} became non-finite" if bad is not None else "a value became non-finite on another rank"
            raise NumericalError(f"{where} by step {self.step}; {self._stopped()}")

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

    def _check_finite(self, steps: _EpochSteps) -> None:
        """A NumericalError naming the first loss term of the epoch that was NaN or infinite."""
        for name, bad in steps.first_bad.items():
            step = int(bad)
            if step >= 0:
                raise NumericalError(f"loss term {name!r} became non-finite at step {step + 1}; {self._stopped()}")

    def _evaluate(self) -> Evaluation | None:
        """The run's evaluation now, every rank assigning its shard: rank 0's, None on the
        other ranks. Non-finite outputs stop every rank, saying what checkpoint is kept."""
        try:
            return evaluate_run(self.built, self.recipe, self.ranks)
        except NumericalError as exc:
            raise NumericalError(f"{exc}; {self._stopped()}") from None

    def _log(self, record: dict[str, Any]) -> None:
        if not self.ranks.is_main:
            return
        append_metrics(self.run_dir, record)

    def fit(self) -> dict[str, Any]:
        """Train until ``total_steps``, then evaluate and write the reports; returns the summary.
        An allocation failure is one line (:class:`OutOfMemory`) saying what to shrink."""
        try:
            with reporting_out_of_memory(f"training with batches of {self.recipe.train.batch_size} images"):
                return self._fit()
        except OutOfMemory as exc:
            raise OutOfMemory(f"{exc}; {self._stopped()}") from None

    def _fit(self) -> dict[str, Any]:
        """Epochs until ``total_steps`` (each: its steps, then closing it), then the report."""
        self.built.model.train()
        record: dict[str, Any] = {"epoch": self.epoch, "step": self.step}
        with _stop_requests() as stops, _ProgressDisplay(self.console, self.total_steps, self.step, self.epoch) as display:
            while self.step < self.total_steps:
                steps = self._train_epoch(stops, display)
                record = self._close_epoch(steps, stops)
                if self.step < self.total_steps:
                    display.start_epoch(self.epoch)
        evaluation = self._evaluate()
        return self.ranks.from_main(lambda: self._report(record, evaluation))

    def _train_epoch(self, stops: list[int], display: _ProgressDisplay) -> _EpochSteps:
        """The epoch's steps from ``step_in_epoch`` to its end, the run's end or a stop request
        (every rank stops at the same step). The host reads the losses at most twice a second."""
        steps = _EpochSteps({term.name: term.weight for term in self.built.objectives}, self.device)
        for views in self.built.source.train_batches(self.epoch, skip=self.step_in_epoch):
            steps.add(self._train_step(views), self.step)
            self.step += 1
            self.step_in_epoch += 1
            if steps.sync_due(final=self.step == self.total_steps):
                self._check_finite(steps)
                display.show(self.step, steps.status(self.images_per_step))
            else:
                display.show(self.step)
            steps.stopping = self.ranks.any(bool(stops))
            if steps.stopping or self.step == self.total_steps:
                break
        return steps

    def _close_epoch(self, steps: _EpochSteps, stops: list[int]) -> dict[str, Any]:
        """After an epoch's steps: count them, check the state, stop on a stop request; else
        the epoch's record, logged (with an evaluation when one is due), and the checkpoint
        when one is due. Returns the record."""
        elapsed = time.perf_counter() - steps.start
        self.seconds += elapsed
        self.images_seen += steps.count * self.images_per_step
        self._check_finite(steps)
        self._check_state()  # before anything reads or saves the state: evaluation, checkpoint
        if steps.stopping:
            self._interrupt(stops)
        finished = self.step_in_epoch == self.built.source.steps_per_epoch or self.step == self.total_steps
        if not finished:  # the epoch generator ran dry early: cannot happen with drop_last
            raise RuntimeError("epoch ended before its planned steps")
        self.epoch += 1
        self.step_in_epoch = 0
        done = self.step == self.total_steps
        record = {
            "epoch": self.epoch,
            "step": self.step,
            "lr": learning_rate(self.step - 1, self.total_steps, self.recipe.train),
            "losses": steps.mean_losses(self.ranks),
            "images_per_second": steps.count * self.images_per_step / max(elapsed, 1e-9),
            "seconds": self.seconds,
        }
        every = self.recipe.eval.every
        if not done and every and self.epoch % every == 0:
            evaluation = self._evaluate()  # on every rank; logged by rank 0
            if evaluation is not None:
                record["eval"] = evaluation.epoch_metrics()
        if not done:  # the epoch's line goes before its checkpoint: a kill between
            self._log(record)  # the two repeats the epoch and drops the line on resume
        if done or self.epoch % self.recipe.train.checkpoint_every == 0:
            self.checkpoint()
        return record

    def _interrupt(self, stops: list[int]) -> NoReturn:
        """Checkpoint at this step and stop: a signal asked for it (here or on another rank)."""
        self.checkpoint()
        cause = f"signal {stops[0]}" if stops else "a signal to another rank"
        raise Interrupted(
            f"stopped by {cause} at step {self.step}; checkpoint written; "
            f"continue with: mihead run --resume {self.run_dir}"
        )

    def _report(self, record: dict[str, Any], evaluation: Evaluation | None) -> dict[str, Any]:
        """The final ``evaluation`` (rank 0's): logged with the last epoch's ``record``,
        written, printed."""
        assert evaluation is not None  # rank 0 alone reports
        record["eval"] = evaluation.epoch_metrics()
        if all(r["epoch"] != self.epoch for _, r in read_metrics(self.run_dir)):  # resuming a finished run
            self._log(record)
        facts = training_facts(self.state_counters(), self.device, self.recipe)
        images = self.built.eval_data.images
        return report(self.results, self.run_dir, evaluation, images, facts, gallery_images=self.recipe.eval.gallery_images)
