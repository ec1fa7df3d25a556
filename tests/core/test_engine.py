"""End-to-end runs on digits: the run directory, determinism, schedule, eval, resume after
kill or signal, numerical faults and bad inputs."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from rich.console import Console

from corehelp import QUICKSTART, error_line, sets, subprocess_env
from mihead import hookimpl
from mihead.contracts import ModelOutputs, Objective, ObjectiveContext, ObjectiveParams, param
from mihead.engine import Interrupted, NumericalError, Trainer
from mihead.finite import first_non_finite
from mihead.mi import joint_table, mutual_information
from mihead.optim import learning_rate
from mihead.plugins import load_registry
from mihead.recipe import TrainParams, load_recipe

DESIGN_SUMMARY_KEYS = {
    "acc", "nmi", "ari", "selected_head", "selection", "heads", "heads_nmi", "protocol",
    "epochs", "steps", "seconds", "images_per_second", "device",
}
HEAD_KEYS = {"index", "acc", "nmi", "ari", "nmi_zz", "clusters", "clusters_used", "usage_entropy"}
STEPS_PER_EPOCH = 2  # data.limit=200 / train.batch_size=100


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def metrics_of(summary: dict[str, Any]) -> tuple[Any, ...]:
    return summary["acc"], summary["nmi"], summary["ari"], summary["selected_head"], summary["heads"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny run (2 epochs of 2 steps) shared by the run-directory tests."""
    from mihead import cli

    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    assert cli.main(["run", str(QUICKSTART), "--out", str(run_dir), *sets()]) == 0
    return run_dir


# --- the run directory (2.5) -----------------------------------------------------------------


def test_run_directory_files(tiny_run: Path, registry) -> None:  # type: ignore[no-untyped-def]
    names = {p.name for p in tiny_run.iterdir()}
    assert {"recipe.toml", "plugins.json", "metrics.jsonl", "checkpoint.pt", "summary.json", "heads.png", "heads_nmi.png", "confusion.png", "training.png", "assignments.csv", "gallery.png"} <= names
    assert not [n for n in names if n.endswith(".tmp")]
    assert "checkpoint.prev.pt" in names  # two checkpoints were written, the older one kept
    assert (tiny_run / "heads.png").read_bytes()[:4] == b"\x89PNG"
    assert (tiny_run / "heads_nmi.png").read_bytes()[:4] == b"\x89PNG"
    assert (tiny_run / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    assert (tiny_run / "training.png").read_bytes()[:4] == b"\x89PNG"
    assert (tiny_run / "gallery.png").read_bytes()[:4] == b"\x89PNG"

    # recipe.toml is the resolved recipe: every default filled in, the overrides applied
    resolved = load_recipe(tiny_run / "recipe.toml", registry)
    expected = load_recipe(QUICKSTART, registry, [s for s in sets() if s != "--set"])
    assert resolved.to_dict() == expected.to_dict()
    assert "warmup_steps = 0" in (tiny_run / "recipe.toml").read_text()

    used = json.loads((tiny_run / "plugins.json").read_text())
    assert {(u["kind"], u["name"]) for u in used} == {
        ("dataset", "digits"), ("augmenter", "small_affine"), ("backbone", "smallcnn"), ("head", "mlp"), ("objective", "iic")
    }
    assert all(u["package"] == "mihead" and u["version"] for u in used)


def test_metrics_jsonl_has_one_line_per_epoch(tiny_run: Path) -> None:
    lines = read_lines(tiny_run / "metrics.jsonl")
    assert [line["epoch"] for line in lines] == [1, 2]
    assert [line["step"] for line in lines] == [2, 4]
    train = TrainParams(lr=2e-3)
    for line in lines:
        assert set(line["losses"]) == {"iic"} and math.isfinite(line["losses"]["iic"])
        assert line["lr"] == pytest.approx(learning_rate(line["step"] - 1, 4, train))
        assert line["images_per_second"] > 0
        assert [h["index"] for h in line["eval"]["heads"]] == [0, 1]
        assert set(line["eval"]["heads"][0]) == HEAD_KEYS


def test_summary_keys(tiny_run: Path) -> None:
    summary = json.loads((tiny_run / "summary.json").read_text())
    assert DESIGN_SUMMARY_KEYS <= set(summary)
    assert summary["epochs"] == 2 and summary["steps"] == 4 and summary["device"] == "cpu"
    assert summary["protocol"] == "split: mapping fitted and head chosen on all, scored on all; trained on all"
    nmi = np.array(summary["heads_nmi"])
    assert nmi.shape == (2, 2) and np.allclose(np.diag(nmi), 1) and nmi[0, 1] == nmi[1, 0]
    assert summary["selection"] == "nmi_zz" and isinstance(summary["selected_head"], int)
    assert summary["seconds"] > 0 and summary["images_per_second"] > 0
    assert [set(h) for h in summary["heads"]] == [HEAD_KEYS, HEAD_KEYS]
    chosen = summary["heads"][summary["selected_head"]]
    assert (summary["acc"], summary["nmi"], summary["ari"]) == (chosen["acc"], chosen["nmi"], chosen["ari"])
    assert chosen["nmi_zz"] == max(h["nmi_zz"] for h in summary["heads"])
    # the last metrics line's evaluation is the one summarised
    last = read_lines(tiny_run / "metrics.jsonl")[-1]["eval"]
    assert last["heads"] == summary["heads"] and last["selected_head"] == summary["selected_head"]


def test_checkpoint_loads_with_weights_only(tiny_run: Path) -> None:
    state = torch.load(tiny_run / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 2 and state["step"] == 4 and state["step_in_epoch"] == 0
    assert {"model", "optimizer", "rng_cpu", "recipe"} <= set(state)
    previous = torch.load(tiny_run / "checkpoint.prev.pt", weights_only=True)
    assert previous["epoch"] == 1 and previous["step"] == 2


def test_eval_recomputes_the_same_metrics(tiny_run: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    before = json.loads((tiny_run / "summary.json").read_text())
    code, _, err = run_cli("eval", str(tiny_run))
    assert code == 0, err
    after = json.loads((tiny_run / "summary.json").read_text())
    assert metrics_of(after) == metrics_of(before)
    assert (after["epochs"], after["steps"], after["device"]) == (2, 4, "cpu")


def test_same_seed_gives_the_same_summary(tiny_run: Path, tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run_cli("run", str(QUICKSTART), "--out", str(tmp_path / "again"), *sets())
    assert code == 0, err
    first = json.loads((tiny_run / "summary.json").read_text())
    again = json.loads((tmp_path / "again" / "summary.json").read_text())
    assert metrics_of(again) == metrics_of(first)
    losses = [line["losses"] for line in read_lines(tmp_path / "again" / "metrics.jsonl")]
    assert losses == [line["losses"] for line in read_lines(tiny_run / "metrics.jsonl")]


def test_compiled_run_trains_as_the_eager_one(tiny_run: Path, tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    """train.compile = true (the GPU switch) through the whole engine: torch.compile of the
    model with its 5-D views and ModelOutputs gives the eager run's loss terms, up to the
    rounding that inductor's fused kernels change, and the same steps."""
    code, _, err = run_cli("run", str(QUICKSTART), "--out", str(tmp_path / "compiled"), *sets("train.compile=true"))
    assert code == 0, err
    eager = read_lines(tiny_run / "metrics.jsonl")
    compiled = read_lines(tmp_path / "compiled" / "metrics.jsonl")
    assert [line["step"] for line in compiled] == [line["step"] for line in eager]
    for a, b in zip(compiled, eager, strict=True):
        assert a["losses"]["iic"] == pytest.approx(b["losses"]["iic"], rel=1e-4, abs=1e-5)
    assert json.loads((tmp_path / "compiled" / "summary.json").read_text())["steps"] == json.loads((tiny_run / "summary.json").read_text())["steps"]


def test_max_steps_stops_early(tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run_cli("run", str(QUICKSTART), "--out", str(tmp_path / "r"), *sets("train.epochs=5", "train.max_steps=3", "eval.every=0"))
    assert code == 0, err
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["epochs"] == 2
    lines = read_lines(tmp_path / "r" / "metrics.jsonl")
    assert [(line["epoch"], line["step"]) for line in lines] == [(1, 2), (2, 3)]
    assert "eval" not in lines[0] and "eval" in lines[1]  # eval.every=0: only at the end
    assert lines[-1]["lr"] == pytest.approx(0.0, abs=1e-12)  # the schedule spans max_steps


# --- bad inputs (8.4) ------------------------------------------------------------------------


def test_dataset_smaller_than_the_batch(tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run_cli("run", str(QUICKSTART), "--out", str(tmp_path / "r"), *sets("data.limit=50"))
    assert code == 2
    assert "50 images, fewer than train.batch_size = 100" in error_line(err)
    assert not (tmp_path / "r").exists()  # a run that could not start leaves no run directory
    # ... and an existing folder given as --out keeps what it held
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "notes.txt").write_text("mine")
    code, _, err = run_cli("run", str(QUICKSTART), "--out", str(tmp_path / "kept"), *sets("data.limit=50"))
    assert code == 2 and sorted(p.name for p in (tmp_path / "kept").iterdir()) == ["notes.txt"]


def test_resume_on_a_folder_that_is_not_a_run(tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run_cli("run", "--resume", str(tmp_path))
    assert code == 2 and f"{tmp_path}: not a run directory" in error_line(err)
    code, _, err = run_cli("eval", str(tmp_path))
    assert code == 2 and f"{tmp_path}: not a run directory" in error_line(err)


def test_out_on_an_existing_run(tiny_run: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    before = (tiny_run / "summary.json").read_text()
    code, _, err = run_cli("run", str(QUICKSTART), "--out", str(tiny_run), *sets())
    assert code == 2 and "already holds a run" in error_line(err) and f"--resume {tiny_run}" in err
    assert (tiny_run / "summary.json").read_text() == before


def test_resume_with_a_recipe_is_refused(tiny_run: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run_cli("run", str(QUICKSTART), "--resume", str(tiny_run))
    assert code == 2 and "--resume continues the run directory's own recipe" in error_line(err)


# --- kill, signals and resume (8.2) ----------------------------------------------------------

LONG = ("train.epochs=40", "eval.every=0")


def start_run(run_dir: Path, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "mihead", "run", str(QUICKSTART), "--out", str(run_dir), *sets(*LONG)],
        cwd=cwd,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_checkpoint(process: subprocess.Popen[str], run_dir: Path) -> None:
    deadline = time.monotonic() + 120
    while not (run_dir / "checkpoint.pt").exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.005)


def check_finished(run_dir: Path, reference: Path) -> None:
    """A run of 40 epochs, resumed exactly: the same result as ``reference``'s, which was not
    interrupted, down to each image's id, clusters and confidence in assignments.csv."""
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 40 * STEPS_PER_EPOCH and summary["epochs"] == 40
    assert [line["epoch"] for line in read_lines(run_dir / "metrics.jsonl")] == list(range(1, 41))
    assert metrics_of(summary) == metrics_of(json.loads((reference / "summary.json").read_text()))
    assert (run_dir / "assignments.csv").read_text() == (reference / "assignments.csv").read_text()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mihead import cli

    run_dir = tmp_path_factory.mktemp("runs") / "long"
    assert cli.main(["run", str(QUICKSTART), "--out", str(run_dir), *sets(*LONG)]) == 0
    return run_dir


def test_sigkill_then_resume(tmp_path: Path, run_cli, uninterrupted: Path) -> None:  # type: ignore[no-untyped-def]
    run_dir = tmp_path / "run"
    process = start_run(run_dir, tmp_path)
    wait_for_checkpoint(process, run_dir)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL
    assert not (run_dir / "summary.json").exists(), "the run ended before it was killed"
    killed_at = torch.load(run_dir / "checkpoint.pt", weights_only=True)["step"]
    assert killed_at < 40 * STEPS_PER_EPOCH
    code, _, err = run_cli("run", "--resume", str(run_dir))
    assert code == 0, err
    assert f"resuming {run_dir} at step {killed_at}" in " ".join(err.split())
    check_finished(run_dir, uninterrupted)


def test_sigterm_stops_cleanly_then_resume(tmp_path: Path, run_cli, uninterrupted: Path) -> None:  # type: ignore[no-untyped-def]
    run_dir = tmp_path / "run"
    process = start_run(run_dir, tmp_path)
    wait_for_checkpoint(process, run_dir)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    line = error_line(err)
    assert f"stopped by signal {int(signal.SIGTERM)} at step" in line and f"--resume {run_dir}" in line
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert f"at step {state['step']};" in line  # the checkpoint holds the step it stopped at
    assert not (run_dir / "summary.json").exists()
    code, _, err = run_cli("run", "--resume", str(run_dir))
    assert code == 0, err
    check_finished(run_dir, uninterrupted)


def test_partial_metrics_line_from_a_kill_is_dropped_on_resume(tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    run_dir = tmp_path / "run"
    assert run_cli("run", str(QUICKSTART), "--out", str(run_dir), *sets("train.epochs=3", "train.max_steps=4"))[0] == 0
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 3, "step": 6, "lo')  # a line cut short by SIGKILL
    code, _, err = run_cli("run", "--resume", str(run_dir), "--set", "train.max_steps=0")
    assert code == 0, err
    assert [line["epoch"] for line in read_lines(run_dir / "metrics.jsonl")] == [1, 2, 3]


# --- test plugins for SIGINT and numerical faults --------------------------------------------


@dataclasses.dataclass(frozen=True)
class ScriptedParams(ObjectiveParams):
    at: int = param(3, "1-based training step at which the objective misbehaves", ge=1)
    value: str = param(
        "nan", "what the term is multiplied by from that step on", choices=("nan", "inf", "-inf")
    )


class _Scripted(Objective):
    """IIC's pull between views 0 and 1, counting its calls (one per training step)."""

    Params = ScriptedParams

    def __init__(self, params: ScriptedParams, context: ObjectiveContext) -> None:
        super().__init__(params, context)
        self.params: ScriptedParams = params
        self.calls = 0

    def mi_loss(self, outputs: ModelOutputs) -> torch.Tensor:
        self.calls += 1
        return -mutual_information(joint_table(outputs.probs[:, 0], outputs.probs[:, 1])).mean()


class BecomesNonFinite(_Scripted):
    name = "becomes_nonfinite"

    def forward(self, outputs: ModelOutputs) -> torch.Tensor:
        loss = self.mi_loss(outputs)
        return loss * float(self.params.value) if self.calls >= self.params.at else loss


class _InfiniteGradient(torch.autograd.Function):
    """The identity, whose gradient is infinite: a finite loss whose step ruins the weights."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return torch.full_like(grad, math.inf)


class DivergesInItsStep(_Scripted):
    """A finite loss at every step, whose step ``at`` makes the weights NaN (the loss check
    before the step cannot see it)."""

    name = "diverges_in_its_step"

    def forward(self, outputs: ModelOutputs) -> torch.Tensor:
        loss = self.mi_loss(outputs)
        return _InfiniteGradient.apply(loss) if self.calls == self.params.at else loss  # type: ignore[no-any-return]


class SendsSigint(_Scripted):
    name = "sends_sigint"

    def forward(self, outputs: ModelOutputs) -> torch.Tensor:
        loss = self.mi_loss(outputs)
        if self.calls == self.params.at:
            os.kill(os.getpid(), signal.SIGINT)
        return loss


def _scripted_plugin() -> types.ModuleType:
    """A plugin with objectives that misbehave at a chosen step."""
    module = types.ModuleType("mihead_test_scripted")
    module.register_objectives = hookimpl(lambda: [BecomesNonFinite, DivergesInItsStep, SendsSigint])  # type: ignore[attr-defined]
    return module


def quickstart_for_scripted(directory: Path) -> Path:
    """The quickstart recipe without its IIC-only keys (the scripted objectives lack them)."""
    path = directory / "quickstart.toml"
    path.write_text(re.sub(r"^lamb = .*\n", "", QUICKSTART.read_text(), flags=re.M))
    return path


def trainer_for(run_dir: Path, objective: str, *extra: str) -> Trainer:
    registry = load_registry(strict=False, plugins=[_scripted_plugin()])
    overrides = [s for s in sets(*LONG[1:], "train.epochs=4", f"objective.iic.name={objective}", *extra) if s != "--set"]
    recipe = load_recipe(quickstart_for_scripted(run_dir.parent), registry, overrides)
    run_dir.mkdir()
    (run_dir / "recipe.toml").write_text(recipe.to_toml())
    return Trainer(recipe, run_dir, Console(stderr=True, quiet=True))


def test_sigint_stops_cleanly_after_a_checkpoint(tmp_path: Path) -> None:
    trainer = trainer_for(tmp_path / "run", "sends_sigint", "objective.0.at=3")
    before = signal.getsignal(signal.SIGINT)  # Python's default, or SIG_IGN in a background job
    with pytest.raises(Interrupted) as info:
        trainer.fit()
    assert info.value.exit_code == 130
    assert f"stopped by signal {int(signal.SIGINT)} at step 3;" in str(info.value)
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert (state["step"], state["epoch"], state["step_in_epoch"]) == (3, 1, 1)
    assert signal.getsignal(signal.SIGINT) is before  # handler restored


@pytest.mark.parametrize(("at", "value"), [(3, "nan"), (5, "inf"), (1, "-inf")])
def test_nonfinite_loss_stops_the_run_and_keeps_the_good_checkpoint(tmp_path: Path, at: int, value: str) -> None:
    run_dir = tmp_path / "run"
    trainer = trainer_for(run_dir, "becomes_nonfinite", f"objective.0.at={at}", f'objective.0.value="{value}"')
    with pytest.raises(NumericalError) as info:
        trainer.fit()
    message = str(info.value)
    assert f"loss term 'becomes_nonfinite' became non-finite at step {at};" in message
    good_epochs = (at - 1) // STEPS_PER_EPOCH
    if good_epochs == 0:
        assert message.endswith("the run stopped before its first checkpoint, so it left nothing to resume")
        assert not (run_dir / "checkpoint.pt").exists()
        return
    assert message.endswith(f"its last good checkpoint (step {good_epochs * STEPS_PER_EPOCH}) in {run_dir} was kept")
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == good_epochs and state["step"] == good_epochs * STEPS_PER_EPOCH
    assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())
    assert [line["epoch"] for line in read_lines(run_dir / "metrics.jsonl")] == list(range(1, good_epochs + 1))
    assert not (run_dir / "summary.json").exists()


def test_nonfinite_loss_exit_status_from_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_cli) -> None:  # type: ignore[no-untyped-def]
    from mihead import cli

    registry = load_registry(strict=False, plugins=[_scripted_plugin()])
    monkeypatch.setattr(cli, "load_registry", lambda: registry)
    code, _, err = run_cli(
        "run", str(quickstart_for_scripted(tmp_path)), "--out", str(tmp_path / "r"), *sets("objective.iic.name=becomes_nonfinite", "objective.0.at=2")
    )
    assert code == NumericalError.exit_code and code != 0
    assert "'becomes_nonfinite' became non-finite at step 2" in error_line(err)
    assert "the run stopped before its first checkpoint" in error_line(err)
    assert not (tmp_path / "r").exists()  # nothing half-made: no checkpoint, no run directory


@pytest.mark.parametrize("at", [2, 4])  # the last step of epoch 1, of epoch 2: a checkpoint follows
def test_a_step_that_ruins_the_weights_never_replaces_the_good_checkpoint(tmp_path: Path, at: int) -> None:
    run_dir = tmp_path / "run"
    trainer = trainer_for(run_dir, "diverges_in_its_step", f"objective.0.at={at}")
    with pytest.raises(NumericalError) as info:
        trainer.fit()
    message = str(info.value)
    assert re.match(rf"model\.\S+ became non-finite by step {at}; ", message), message
    if at == 2:
        assert message.endswith("the run stopped before its first checkpoint, so it left nothing to resume")
        assert not (run_dir / "checkpoint.pt").exists() and not (run_dir / "metrics.jsonl").exists()
        return
    assert message.endswith(f"its last good checkpoint (step 2) in {run_dir} was kept")
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert state["step"] == 2 and first_non_finite(state) is None
    assert [line["epoch"] for line in read_lines(run_dir / "metrics.jsonl")] == [1]
    assert not (run_dir / "checkpoint.prev.pt").exists()  # never rotated out by a bad save


def test_a_checkpoint_holding_nan_is_not_resumed(tmp_path: Path) -> None:
    """One written before checkpoints were checked (the issue's reproduction wrote such)."""
    trainer = trainer_for(tmp_path / "run", "becomes_nonfinite", "objective.0.at=100")
    state = trainer.state()
    name = next(iter(state["model"]))
    state["model"][name] = torch.full_like(state["model"][name], math.nan)
    with pytest.raises(NumericalError, match=rf"the checkpoint holds a non-finite value \(model\.{re.escape(name)}\) from a diverged step; it cannot be resumed"):
        trainer.load_state(state)


def test_first_non_finite_names_the_tensor() -> None:
    finite = {"model": {"w": torch.ones(2)}, "optimizer": {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.zeros(2)}}}, "rng_cpu": torch.zeros(4, dtype=torch.uint8)}
    assert first_non_finite(finite) is None
    finite["optimizer"]["state"][0]["exp_avg"] = torch.tensor([0.0, -math.inf])  # type: ignore[index]
    assert first_non_finite(finite) == "optimizer.state.0.exp_avg"
    finite["model"]["w"] = torch.tensor([math.nan, 1.0])
    assert first_non_finite(finite) == "model.w"  # the first in the state's order
    assert first_non_finite({"lists": [torch.ones(1), (torch.zeros(0), torch.tensor([math.inf]))]}) == "lists.1.1"


def test_a_learning_rate_too_large_for_torch_is_refused_and_one_it_takes_stops_non_finite(tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    run_dir = tmp_path / "r"
    code, _, err = run_cli("run", str(QUICKSTART), "--out", str(run_dir), *sets("train.lr=1e38"))
    assert code == 2 and "[train] lr: 1e+38 is out of range: must be > 0, <= 1e+37" in error_line(err)
    assert not run_dir.exists()
    code, _, err = run_cli("run", str(QUICKSTART), "--out", str(run_dir), *sets("train.lr=1e37"))  # torch takes it; it diverges
    assert code == NumericalError.exit_code
    assert "became non-finite" in error_line(err) and "before its first checkpoint" in error_line(err)
    assert not run_dir.exists()


def test_non_finite_outputs_at_the_final_evaluation_say_what_was_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Finite weights whose outputs overflow: the evaluation stops the run, naming the checkpoint."""
    import mihead.engine

    def overflowing(*args: object) -> None:
        raise NumericalError("the model's cluster probabilities are non-finite")

    run_dir = tmp_path / "run"
    trainer = trainer_for(run_dir, "becomes_nonfinite", "objective.0.at=100")
    monkeypatch.setattr(mihead.engine, "evaluate_run", overflowing)
    with pytest.raises(NumericalError, match=rf"non-finite; the run stopped and its last good checkpoint \(step 8\) in {re.escape(str(run_dir))} was kept$"):
        trainer.fit()
    assert not (run_dir / "summary.json").exists()


def test_an_allocation_failure_in_training_is_one_line_saying_what_to_shrink(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_cli) -> None:  # type: ignore[no-untyped-def]
    from mihead.memory import OutOfMemory

    run_dir = tmp_path / "run"
    trainer = trainer_for(run_dir, "becomes_nonfinite", "objective.0.at=100")
    step = trainer._train_step

    def failing(views: torch.Tensor) -> dict[str, torch.Tensor]:
        if trainer.step == 2:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 9 bytes. Error code 12\nmore")
        return step(views)

    monkeypatch.setattr(trainer, "_train_step", failing)
    with pytest.raises(OutOfMemory) as info:
        trainer.fit()
    assert info.value.exit_code == 2
    assert str(info.value) == (
        "training with batches of 100 images ran out of memory (DefaultCPUAllocator: can't allocate memory: you tried to "
        "allocate 9 bytes. Error code 12); lower train.batch_size, head.clusters, head.overclusters or the backbone's "
        f"widths; the run stopped and its last good checkpoint (step 2) in {run_dir} was kept"
    )
    # from the command line, before the first checkpoint: one line, exit 2, no half-made run directory
    import mihead.engine

    def out_of_memory(self: Trainer, views: torch.Tensor) -> dict[str, torch.Tensor]:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(mihead.engine.Trainer, "_train_step", out_of_memory)
    code, _, err = run_cli("run", str(QUICKSTART), "--out", str(tmp_path / "r"), *sets())
    assert code == 2 and "ran out of memory (CUDA out of memory. Tried to allocate 2.00 GiB); lower train.batch_size" in error_line(err)
    assert not (tmp_path / "r").exists()


def test_an_allocation_failure_while_building_says_what_to_shrink() -> None:
    from mihead.build import _building
    from mihead.memory import OutOfMemory

    with pytest.raises(OutOfMemory, match=r"^building \[head\] ran out of memory \(DefaultCPUAllocator: can't allocate memory\); lower the sizes in \[head\]$"):
        with _building("head"):
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory")
    with pytest.raises(OutOfMemory, match=r"^building \[data\] ran out of memory \(MemoryError\)"):
        with _building("data"):
            raise MemoryError


def test_a_weighted_objective_shows_the_weighted_loss_and_weight_0_is_warned(tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run_cli("run", str(QUICKSTART), "--out", str(tmp_path / "r"), *sets("train.epochs=1", "objective.0.weight=0.5"))
    assert code == 0, err
    (line,) = read_lines(tmp_path / "r" / "metrics.jsonl")
    shown = re.findall(r"loss (-?\d+\.\d{4})", err)[-1]  # the progress bar at the epoch's last step
    assert float(shown) == pytest.approx(0.5 * line["losses"]["iic"], abs=1e-4)
    assert "warning" not in err
    code, out, err = run_cli("check", str(QUICKSTART), *sets("objective.0.weight=0"))
    assert code == 0 and ": ok" in out
    assert "mihead: warning: every objective has weight = 0: the loss trained on is 0 and the model learns nothing" in err
    code, _, err = run_cli("run", str(QUICKSTART), "--out", str(tmp_path / "z"), *sets("train.epochs=1", "objective.0.weight=0"))
    assert code == 0 and "every objective has weight = 0" in err
    assert re.findall(r"loss (-?\d+\.\d{4})", err)[-1] == "0.0000"
