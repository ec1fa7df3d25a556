"""Checkpoints: atomic writes, the previous one kept, safe loading, damaged files (8.1)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from corehelp import QUICKSTART, error_line, sets
from mihead.checkpoint import CHECKPOINT, PREVIOUS, load_checkpoint, save_checkpoint
from mihead.errors import CheckpointError


def state(step: int) -> dict[str, object]:
    return {"model": {"w": torch.full((3,), float(step))}, "step": step, "recipe": "x = 1\n"}


def test_save_keeps_the_previous_checkpoint_and_no_temporary(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, state(1))
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT]
    save_checkpoint(tmp_path, state(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([CHECKPOINT, PREVIOUS])
    assert torch.load(tmp_path / CHECKPOINT, weights_only=True)["step"] == 2
    assert torch.load(tmp_path / PREVIOUS, weights_only=True)["step"] == 1
    assert load_checkpoint(tmp_path)["step"] == 2


def test_a_crash_while_writing_leaves_the_old_checkpoint_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save_checkpoint(tmp_path, state(1))
    save_checkpoint(tmp_path, state(2))

    def dies_half_way(obj: object, f) -> None:  # type: ignore[no-untyped-def]
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt  # as if killed in the middle of torch.save

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, state(3))
    monkeypatch.undo()
    assert load_checkpoint(tmp_path, fallback=False)["model"]["w"].tolist() == [2.0, 2.0, 2.0]
    assert torch.load(tmp_path / PREVIOUS, weights_only=True)["step"] == 1
    save_checkpoint(tmp_path, state(4))  # a stale temporary file is simply replaced
    assert load_checkpoint(tmp_path)["step"] == 4 and not list(tmp_path.glob("*.tmp"))


def test_code_in_a_checkpoint_is_refused(tmp_path: Path) -> None:
    class Payload:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (print, ("pwned",))

    torch.save({"model": {}, "evil": Payload()}, tmp_path / CHECKPOINT)
    with pytest.raises(CheckpointError, match=rf"^{tmp_path / CHECKPOINT}: truncated or corrupt checkpoint"):
        load_checkpoint(tmp_path, fallback=False)


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if how == "truncated" else b"\x00garbage" * 64)


@pytest.mark.parametrize("how", ["truncated", "garbage"])
def test_damaged_checkpoint_falls_back_to_the_previous_one(tmp_path: Path, how: str) -> None:
    save_checkpoint(tmp_path, state(1))
    save_checkpoint(tmp_path, state(2))
    damage(tmp_path / CHECKPOINT, how)
    warnings: list[str] = []
    assert load_checkpoint(tmp_path, warn=warnings.append)["step"] == 1
    assert len(warnings) == 1
    assert re.search(r"checkpoint\.pt: truncated or corrupt.*previous checkpoint", warnings[0])
    with pytest.raises(CheckpointError, match=rf"^{tmp_path / CHECKPOINT}: truncated or corrupt"):
        load_checkpoint(tmp_path, fallback=False)
    damage(tmp_path / PREVIOUS, how)
    with pytest.raises(CheckpointError, match=rf"^{tmp_path / PREVIOUS}: truncated or corrupt"):
        load_checkpoint(tmp_path)


def test_missing_and_foreign_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path)
    torch.save({"weights": torch.ones(2)}, tmp_path / CHECKPOINT)
    with pytest.raises(CheckpointError, match="not a mihead checkpoint"):
        load_checkpoint(tmp_path)


# --- through the CLI, on a real run ----------------------------------------------------------


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mihead import cli

    run_dir = tmp_path_factory.mktemp("runs") / "run"
    assert cli.main(["run", str(QUICKSTART), "--out", str(run_dir), *sets("train.epochs=3", "eval.every=0")]) == 0
    return run_dir


@pytest.fixture
def run_copy(finished_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(finished_run, tmp_path / "run"))


@pytest.mark.parametrize("how", ["truncated", "garbage"])
def test_eval_of_a_damaged_checkpoint_names_the_file(run_copy: Path, run_cli, how: str) -> None:  # type: ignore[no-untyped-def]
    damage(run_copy / CHECKPOINT, how)
    code, _, err = run_cli("eval", str(run_copy))
    assert code == 2
    assert error_line(err).startswith(f"mihead: error: {run_copy / CHECKPOINT}: truncated or corrupt checkpoint")


def test_resume_falls_back_to_the_previous_checkpoint(run_copy: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    """The run was finished at step 6; with checkpoint.pt damaged it resumes from step 4
    (checkpoint.prev.pt) and trains the last epoch again."""
    damage(run_copy / CHECKPOINT, "truncated")
    code, _, err = run_cli("run", "--resume", str(run_copy))
    assert code == 0, err
    assert "warning:" in err and "using the previous checkpoint" in " ".join(err.split())
    assert "at step 4" in " ".join(err.split())
    summary = json.loads((run_copy / "summary.json").read_text())
    assert summary["steps"] == 6 and summary["epochs"] == 3
    lines = [json.loads(line) for line in (run_copy / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2, 3]
    assert torch.load(run_copy / CHECKPOINT, weights_only=True)["step"] == 6


def test_resume_with_both_checkpoints_damaged_fails_cleanly(run_copy: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    damage(run_copy / CHECKPOINT, "garbage")
    damage(run_copy / PREVIOUS, "truncated")
    code, _, err = run_cli("run", "--resume", str(run_copy))
    assert code == 2
    assert f"{run_copy / PREVIOUS}: truncated or corrupt checkpoint" in error_line(err)


def test_resume_without_a_checkpoint(run_copy: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    (run_copy / CHECKPOINT).unlink()
    (run_copy / PREVIOUS).unlink()
    code, _, err = run_cli("run", "--resume", str(run_copy))
    assert code == 2 and f"{run_copy / CHECKPOINT}: no such checkpoint" in error_line(err)


def rewrite_weights(path: Path, how: str) -> None:
    """A checkpoint whose model no longer fits its recipe: a renamed tensor, or a resized one."""
    state = torch.load(path, weights_only=True)
    model = state["model"]
    key = next(k for k in model if k.startswith("heads.0.") and k.endswith("weight"))
    if how == "renamed":
        model[key.replace("heads.0.", "heads.0.old_")] = model.pop(key)
    else:
        model[key] = torch.zeros(3, 3)
    torch.save(state, path)


@pytest.mark.parametrize("command", ["eval", "resume"])
@pytest.mark.parametrize("how", ["renamed", "resized"])
def test_weights_that_do_not_fit_the_recipe_are_one_line(run_copy: Path, run_cli, command: str, how: str) -> None:  # type: ignore[no-untyped-def]
    for path in (run_copy / CHECKPOINT, run_copy / PREVIOUS):
        rewrite_weights(path, how)
    args = ("eval", str(run_copy)) if command == "eval" else ("run", "--resume", str(run_copy))
    code, _, err = run_cli(*args)
    assert code == 2
    line = error_line(err)
    assert line.startswith(f"mihead: error: {run_copy}: the checkpoint's model does not fit its recipe's: ")
    assert ("1 missing (e.g. 'heads.0." in line and "1 unexpected (e.g. 'heads.0.old_" in line) if how == "renamed" else "size mismatch for heads.0." in line
    assert line.endswith("was it written by another version of a plugin?")
