"""The command line's own contract: results on stdout, progress, warnings and errors on stderr;
a run directory that cannot be made is a one-line error; every ``--help`` says what the
command writes and gives examples that parse."""

from __future__ import annotations

import dataclasses
import os
import shlex
from collections.abc import Callable
from pathlib import Path

import pytest

from corehelp import QUICKSTART, error_line, sets
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
    spec, _, model = built
    augmenter = recipe.augment.cls(recipe.augment.params, spec)
    views, side = augmenter.num_views, augmenter.output.size
    adam = estimate(model, recipe.train, views, 1, side)
    assert adam.parameters == sum(p.numel() for p in model.parameters())
    assert adam.weights == adam.parameters * 4 * 4  # weights, gradients, Adam's two moments
    plain_sgd = dataclasses.replace(recipe.train, optimizer="sgd", momentum=0.0, batch_size=4 * recipe.train.batch_size)
    sgd = estimate(model, plain_sgd, views, 1, side)
    assert sgd.weights == adam.parameters * 4 * 2
    assert sgd.activations == 4 * adam.activations > 0
    # at least the first convolution's output for every view of every image is kept (float32)
    first_width = recipe.backbone.params.widths[0]  # type: ignore[attr-defined]
    assert adam.activations >= recipe.train.batch_size * views * first_width * side * side * 4
