"""The command line's own contract: results on stdout, progress, warnings and errors on stderr;
a run directory that cannot be made is a one-line error; every ``--help`` says what the
command writes and gives examples that parse."""

from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from corehelp import QUICKSTART, error_line, read_only, sets, with_private_mounts
from mihead import cli
from mihead.help_texts import _COMMANDS

CliResult = tuple[int, str, str]
COMMANDS = sorted(_COMMANDS)


# --- --out -----------------------------------------------------------------------------------


def _unwritable(tmp_path: Path) -> Path:
    """A folder in which a run directory cannot be made: read-only, or (as root, whom file
    modes do not stop) a place in /sys, where nobody may make folders."""
    parent = tmp_path / "read-only"
    parent.mkdir()
    parent.chmod(0o500)
    if os.access(parent, os.W_OK):
        if not Path("/sys/kernel").is_dir():
            pytest.skip("no read-only folder to try: running as root without /sys")
        return Path("/sys/mihead-test")
    return parent


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda t: t / "a-file", "is a file, not a folder"),
        (lambda t: t / "a-file" / "run", "Not a directory"),
        (lambda t: _unwritable(t) / "run", ""),
    ],
    ids=["a-file", "under-a-file", "unwritable-parent"],
)
def test_out_where_no_run_directory_can_be_made(run_cli: Callable[..., CliResult], tmp_path: Path, make: Callable[[Path], Path], reason: str) -> None:
    (tmp_path / "a-file").write_text("keep me\n")
    out = make(tmp_path)
    code, stdout, err = run_cli("run", str(QUICKSTART), *sets(), "--out", str(out))
    assert code == 2 and stdout == ""
    line = error_line(err)
    assert line.startswith("mihead: error: --out: ") and str(out) in line and reason in line
    assert (tmp_path / "a-file").read_text() == "keep me\n"
    assert not out.is_dir()  # nothing made


def test_run_out_is_named_when_it_cannot_hold_run_directories(run_cli: Callable[..., CliResult], tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    code, _, err = run_cli("run", str(QUICKSTART), *sets(f"run.out={tmp_path / 'a-file'}"))
    assert code == 2
    assert error_line(err).startswith(f"mihead: error: {QUICKSTART}: [run] out: cannot make or write the run directory {tmp_path / 'a-file'}/")


def test_out_refuses_a_folder_that_is_not_empty(run_cli: Callable[..., CliResult], tmp_path: Path) -> None:
    """A user's folder is never written into; nor is a run directory that stopped before its
    first checkpoint (nothing to --resume; a new run would mix its files with the old)."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "summary.json").write_text("my own\n")
    stopped = tmp_path / "stopped"
    stopped.mkdir()
    (stopped / "recipe.toml").write_text("")
    (stopped / "metrics.jsonl").write_text("{}\n")
    for folder in (mine, stopped):
        before = {p.name: p.read_bytes() for p in folder.iterdir()}
        code, out, err = run_cli("run", str(QUICKSTART), *sets(), "--out", str(folder))
        assert code == 2 and out == ""
        assert error_line(err) == (
            f"mihead: error: --out: {folder} is a folder that is not empty (and holds no checkpoint to continue); "
            "a new run needs a new or empty folder, so that none of its files is overwritten"
        )
        assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_out_may_be_an_empty_folder(run_cli: Callable[..., CliResult], tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run_cli("run", str(QUICKSTART), *sets("train.epochs=1", "eval.every=0"), "--out", str(empty))
    assert code == 0, err
    assert (empty / "checkpoint.pt").is_file() and (empty / "summary.json").is_file()


# --- read-only places: refused before the work -------------------------------------------


@pytest.fixture
def run_copy(digits_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(digits_run, tmp_path / "run"))


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(folder / f"{i}.png")
    return folder


def test_eval_and_resume_refuse_a_read_only_run_directory(run_copy: Path, run_cli: Callable[..., CliResult]) -> None:
    before = {p.name: p.read_bytes() for p in run_copy.iterdir()}
    with read_only(run_copy):
        code, out, err = run_cli("eval", str(run_copy))
        assert code == 2 and out == ""
        line = error_line(err)
        assert line.startswith(f"mihead: error: cannot write in {run_copy}: ")
        assert line.endswith("; eval writes the run's outputs there: copy the run directory somewhere writable and evaluate the copy")
        code, out, err = run_cli("run", "--resume", str(run_copy))
        assert code == 2 and out == "" and "resuming" not in err
        line = error_line(err)
        assert line.startswith(f"mihead: error: --resume {run_copy}: cannot write in {run_copy}: ")
        assert line.endswith("; a run writes its checkpoints there: copy the run directory somewhere writable and resume the copy")
    assert {p.name: p.read_bytes() for p in run_copy.iterdir()} == before


def test_predict_out_is_checked_before_the_images_are_assigned(
    digits_run: Path, images: Path, tmp_path: Path, run_cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mihead import predict

    monkeypatch.setattr(predict, "predict", lambda *args, **kwargs: pytest.fail("images assigned before --out was checked"))
    place = tmp_path / "place"
    place.mkdir()
    with read_only(place):
        code, out, err = run_cli("predict", str(digits_run), str(images), "--out", str(place / "c.csv"))
    assert code == 2 and out == ""
    assert error_line(err).startswith(f"mihead: error: --out {place / 'c.csv'}: cannot write in {place}: ")
    code, out, err = run_cli("predict", str(digits_run), str(images), "--out", str(place))
    assert code == 2 and out == ""
    assert error_line(err) == f"mihead: error: --out {place}: is a folder; give the CSV file to write, e.g. {place / 'clusters.csv'}"
    assert list(place.iterdir()) == []


def test_a_read_only_mount(run_copy: Path, images: Path, tmp_path: Path) -> None:
    """The same three on a real read-only file system (a bind mount remounted read-only in a
    mount namespace of the test's own), where root is refused too."""
    place = tmp_path / "place"
    place.mkdir()
    commands = [["eval", str(run_copy)], ["run", "--resume", str(run_copy)], ["predict", str(run_copy), str(images), "--out", str(place / "c.csv")]]
    script = f"""
import sys
from mihead import cli
for args in {commands!r}:
    print("EXIT", cli.main(args), file=sys.stderr)
"""
    mounts = " && ".join(f"mount --bind {q} {q} && mount -o remount,bind,ro {q}" for q in map(shlex.quote, (str(run_copy), str(place))))
    done = with_private_mounts(mounts, script, tmp_path)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert [line for line in done.stderr.splitlines() if line.startswith("EXIT")] == ["EXIT 2"] * 3, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("mihead: error:")]
    assert [line.split(": Read-only file system")[0] for line in errors] == [
        f"mihead: error: cannot write in {run_copy}",
        f"mihead: error: --resume {run_copy}: cannot write in {run_copy}",
        f"mihead: error: --out {place / 'c.csv'}: cannot write in {place}",
    ], done.stderr


# --- stdout and stderr -----------------------------------------------------------------------


def test_run_and_eval_print_results_on_stdout_and_progress_on_stderr(run_cli: Callable[..., CliResult], tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    code, out, err = run_cli("run", str(QUICKSTART), *sets(), "--out", str(run_dir))
    assert code == 0, err
    assert "Per-head results" in out and out.rstrip().endswith(f"run directory: {run_dir}")
    assert "Per-head results" not in err and "head 0" not in err
    assert "epoch" in err and f"run directory: {run_dir}" in err  # progress, and where it goes

    code, out, err = run_cli("eval", str(run_dir))
    assert code == 0, err
    assert "Per-head results" in out and "ACC" in out
    assert err == ""


def test_errors_go_to_stderr_only(run_cli: Callable[..., CliResult]) -> None:
    code, out, err = run_cli("check", str(QUICKSTART), "--set", "train.epochs=99999999999999999999999")
    assert code == 2 and out == ""
    assert error_line(err) == (
        f"mihead: error: {QUICKSTART}: [train] epochs: 99999999999999999999999 is out of range: "
        "must be >= 1, <= 2147483647 (passes over the training split)"
    )


# --- --help ----------------------------------------------------------------------------------


def _help(args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("COLUMNS", "80")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        cli.main([*args, "--help"])
    assert exited.value.code == 0
    out, err = capsys.readouterr()
    assert err == ""
    return out


def _examples(text: str) -> list[list[str]]:
    """The argument lists of the ``  mihead ...`` example lines (a trailing backslash
    continues a line; a pipe ends the command)."""
    joined = text.replace("\\\n", " ")
    commands = []
    for line in joined.splitlines():
        if line.startswith("  mihead "):
            command = line.split("|")[0].split("   ")[0]  # the command, without a comment in a column beside it
            commands.append(shlex.split(command)[1:])
    return commands


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_fits_80_columns_and_its_examples_parse(command: str | None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    text = _help([command] if command else [], capsys, monkeypatch)
    assert all(len(line) <= 80 for line in text.splitlines()), text
    examples = _examples(text)
    assert examples, text
    for argv in examples:
        if command:
            assert argv[0] == command, argv
        args = cli.make_parser().parse_args(argv)
        assert args.command == argv[0]


def test_top_level_help_lists_every_command_and_the_streams(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    text = _help([], capsys, monkeypatch)
    assert {argv[0] for argv in _examples(text)} == set(COMMANDS)
    assert "Results go to stdout; progress, warnings and errors to stderr." in text


@pytest.mark.parametrize(
    ("command", "writes"),
    [
        ("run", ["recipe.toml", "metrics.jsonl", "checkpoint.pt", "summary.json", "heads.png", "assignments.csv", "gallery.png", "stdout", "stderr"]),
        ("check", ["Writes nothing", "stdout", "exit status 2"]),
        ("eval", ["summary.json", "heads.png", "assignments.csv", "gallery.png", "stdout"]),
        ("plugins", ["stdout", "--json", "--verbose"]),
        ("predict", ["CSV", "stdout", "--out", "stderr"]),
    ],
)
def test_each_command_help_says_what_it_writes(command: str, writes: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    text = " ".join(_help([command], capsys, monkeypatch).split())
    for word in writes:
        assert word in text, word


def test_check_states_the_memory_training_needs_and_warns_past_the_device(run_cli, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    import mihead.memory

    code, out, err = run_cli("check", str(QUICKSTART), *sets())
    assert code == 0 and "warning" not in err
    flat = " ".join(out.split())
    assert "parameters; training needs about " in flat and " of the CPU's available RAM, " in flat
    monkeypatch.setattr(mihead.memory, "available_bytes", lambda device: 2**20)
    code, out, err = run_cli("check", str(QUICKSTART), *sets())
    assert code == 0
    warning = " ".join(err.split())
    assert "mihead: warning: training needs about " in warning and "more than the CPU's available RAM (1 MiB): lower train.batch_size, head.clusters" in warning


def test_memory_estimate_counts_weights_and_scales_activations_with_the_batch(registry) -> None:  # type: ignore[no-untyped-def]
    from mihead.build import build_declared
    from mihead.memory import estimate
    from mihead.recipe import load_recipe

    recipe = load_recipe(QUICKSTART, registry, [s for s in sets() if s != "--set"])
    built = build_declared(recipe)
    assert built is not None
    _, augmenter, model = built
    views, side = augmenter.num_views, augmenter.output.size
    adam = estimate(model, recipe.train, views)
    assert adam.parameters == sum(p.numel() for p in model.parameters())
    assert adam.weights == adam.parameters * 4 * 4  # weights, gradients, Adam's two moments
    plain_sgd = dataclasses.replace(recipe.train, optimizer="sgd", momentum=0.0, batch_size=4 * recipe.train.batch_size)
    sgd = estimate(model, plain_sgd, views)
    assert sgd.weights == adam.parameters * 4 * 2
    assert sgd.activations == 4 * adam.activations > 0
    # at least the first convolution's output for every view of every image is kept (float32)
    first_width = recipe.backbone.params.widths[0]  # type: ignore[attr-defined]
    assert adam.activations >= recipe.train.batch_size * views * first_width * side * side * 4
