"""Checkpoints: atomic writes, the previous one kept, safe loading, damaged files (8.1)."""

from __future__ import annotations

import errno
import io
import json
import os
import re
import shlex
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from corehelp import QUICKSTART, error_line, sets, with_private_mounts
from mihead import checkpoint
from mihead.checkpoint import load_checkpoint, save_checkpoint
from mihead.errors import CheckpointError, WriteError
from mihead.run_directory import CHECKPOINT_FILE as CHECKPOINT
from mihead.run_directory import DAMAGED_CHECKPOINT_FILE as DAMAGED
from mihead.run_directory import PREVIOUS_CHECKPOINT_FILE as PREVIOUS


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


def filling_up(room: int) -> Callable[[Path, str], io.BufferedWriter]:
    """An ``open`` for mihead.checkpoint whose files take ``room`` bytes, then fail as on a full
    disk: torch.save's own writer meets the error, buffered as a real file's writes are."""

    class Full(io.FileIO):
        def write(self, data: object) -> int:
            size = memoryview(data).nbytes  # type: ignore[arg-type]
            if self.tell() + size > room:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return super().write(data)  # type: ignore[arg-type]

    return lambda path, mode: io.BufferedWriter(Full(path, "w"))


def test_a_full_disk_keeps_both_checkpoints_and_leaves_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save_checkpoint(tmp_path, state(1))
    save_checkpoint(tmp_path, state(2))
    monkeypatch.setattr(checkpoint, "open", filling_up(100), raising=False)
    with pytest.raises(WriteError) as failed:
        save_checkpoint(tmp_path, state(3))
    assert str(failed.value) == f"cannot write checkpoint.pt in {tmp_path}: No space left on device"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([CHECKPOINT, PREVIOUS])  # no temporary keeps the disk full
    assert load_checkpoint(tmp_path, fallback=False)["step"] == 2
    assert torch.load(tmp_path / PREVIOUS, weights_only=True)["step"] == 1


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
def test_eval_of_a_damaged_checkpoint_falls_back_to_the_previous_one(run_copy: Path, run_cli, how: str) -> None:  # type: ignore[no-untyped-def]
    """As a resume does, with the same warning; with no good checkpoint, one line naming it."""
    damage(run_copy / CHECKPOINT, how)
    code, out, err = run_cli("eval", str(run_copy))
    assert code == 0, err
    assert f"mihead: warning: {run_copy / CHECKPOINT}: truncated or corrupt checkpoint" in err
    assert f"; using the previous checkpoint {run_copy / PREVIOUS}" in err and "Per-head results" in out
    assert json.loads((run_copy / "summary.json").read_text())["steps"] == 4  # the previous checkpoint's
    assert not (run_copy / DAMAGED).exists()  # eval leaves the run's files as they are
    (run_copy / PREVIOUS).unlink()
    code, _, err = run_cli("eval", str(run_copy))
    assert code == 2
    assert error_line(err).startswith(f"mihead: error: {run_copy / CHECKPOINT}: truncated or corrupt checkpoint")


def test_resume_falls_back_to_the_previous_checkpoint(run_copy: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    """The run was finished at step 6; with checkpoint.pt damaged it resumes from step 4
    (checkpoint.prev.pt) and trains the last epoch again. The damaged file is set aside, so
    that the good one it resumed from stays the previous checkpoint."""
    damage(run_copy / CHECKPOINT, "truncated")
    damaged = (run_copy / CHECKPOINT).read_bytes()
    code, _, err = run_cli("run", "--resume", str(run_copy))
    assert code == 0, err
    assert "warning:" in err and "using the previous checkpoint" in " ".join(err.split())
    assert f"(the damaged file is kept as {DAMAGED})" in " ".join(err.split())
    assert "at step 4" in " ".join(err.split())
    summary = json.loads((run_copy / "summary.json").read_text())
    assert summary["steps"] == 6 and summary["epochs"] == 3
    lines = [json.loads(line) for line in (run_copy / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2, 3]
    assert torch.load(run_copy / CHECKPOINT, weights_only=True)["step"] == 6
    assert torch.load(run_copy / PREVIOUS, weights_only=True)["step"] == 4
    assert (run_copy / DAMAGED).read_bytes() == damaged


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


# --- a full disk ----------------------------------------------------------------------------


def test_a_run_that_cannot_write_its_checkpoint_stops_in_one_line_and_resumes(run_copy: Path, run_cli, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """A disk that fills up as the 4th epoch's checkpoint is written: exit status 1 (the
    command was right; the machine could not take it), one line naming the file and the
    folder, no temporary left, the last checkpoint intact; once there is room, --resume
    finishes the run."""
    monkeypatch.setattr(checkpoint, "open", filling_up(100), raising=False)
    code, out, err = run_cli("run", "--resume", str(run_copy), "--set", "train.epochs=4")
    assert code == 1 and "Per-head results" not in out
    assert error_line(err) == (
        f"mihead: error: cannot write checkpoint.pt in {run_copy}: No space left on device; the run's last "
        f"checkpoint is intact: make room, then continue with: mihead run --resume {run_copy}"
    )
    assert not list(run_copy.glob("*.tmp")) and not list(run_copy.glob(".*"))
    assert load_checkpoint(run_copy, fallback=False)["step"] == 6
    monkeypatch.undo()
    code, _, err = run_cli("run", "--resume", str(run_copy))  # recipe.toml recorded the 4 epochs
    assert code == 0, err
    assert json.loads((run_copy / "summary.json").read_text())["steps"] == 8


def test_a_full_file_system(finished_run: Path, tmp_path: Path) -> None:
    """The same on a real one: a small tmpfs, mounted in a mount namespace of the test's own,
    filled to within 48 KB (room for the small files, not for a checkpoint)."""
    run = tmp_path / "small" / "run"
    script = f"""
import json, os, shutil, sys, torch
from pathlib import Path
from mihead import cli
torch.set_num_threads(1)
run = Path({str(run)!r})
shutil.copytree({str(finished_run)!r}, run)
free = os.statvfs(run.parent)
with open(run.parent / "filler", "wb") as f:
    f.write(bytes(free.f_bavail * free.f_frsize - 48 * 1024))
full = cli.main(["run", "--resume", str(run), "--set", "train.epochs=4"])
left = sorted(p.name for p in run.iterdir())
step = torch.load(run / "checkpoint.pt", weights_only=True)["step"]
(run.parent / "filler").unlink()
again = cli.main(["run", "--resume", str(run)])
steps = json.loads((run / "summary.json").read_text())["steps"]
print("RESULT", json.dumps([full, left, step, again, steps]), file=sys.stderr)
"""
    small = shlex.quote(str(run.parent))
    done = with_private_mounts(f"mkdir -p {small} && mount -t tmpfs -o size=2m tmpfs {small}", script, tmp_path)
    result = [line for line in done.stderr.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and result, done.stderr
    full, left, step, again, steps = json.loads(result[0][len("RESULT "):])
    assert error_line(done.stderr.split("RESULT")[0]).startswith(
        f"mihead: error: cannot write checkpoint.pt in {run}: No space left on device; the run's last checkpoint is intact"
    )
    assert full == 1 and step == 6 and again == 0 and steps == 8
    assert not [name for name in left if name.startswith(".") or name.endswith(".tmp")], left
