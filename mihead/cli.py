"""``mihead run | check | eval | predict | plugins``.

Every user-fixable problem (bad recipe, bad ``--set``, missing data, corrupt checkpoint,
broken plugin in strict mode) ends with one line on stderr and exit status 2, no traceback.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from mihead.errors import MiheadError, RecipeError, UsageError, WriteError
from mihead.help_texts import command_help, main_help
from mihead.plugins import Registry, load_registry
from mihead.recipe import load_recipe
from mihead.run_directory import check_writable, load_run_recipe, require_run_directory

__all__ = ["main"]


def _warn(console: Console, message: str) -> None:
    console.print(Text(f"mihead: warning: {message}", style="yellow"), soft_wrap=True)  # one line, however long


def _registry(console: Console) -> Registry:
    registry = load_registry()
    for problem in registry.problems:
        _warn(console, problem)
    return registry


def _resume_state(run_dir: Path, console: Console) -> dict[str, Any]:
    """The checkpoint a resume continues from, once the run directory is known writable."""
    from mihead.checkpoint import load_checkpoint

    hint = "a run writes its checkpoints there: copy the run directory somewhere writable and resume the copy"
    check_writable(run_dir, label=f"--resume {run_dir}", hint=hint)
    return load_checkpoint(run_dir, warn=lambda m: _warn(console, m), set_aside=True)


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    """Train; under torchrun, as one rank of DDP training (rank 0 makes and writes the run
    directory and reads the checkpoint, see mihead/distributed.py)."""
    from mihead.distributed import process_group
    from mihead.engine import Trainer
    from mihead.finite import NumericalError
    from mihead.memory import OutOfMemory
    from mihead.run_directory import continue_hint, discard_unstarted, record_resume, start_run

    registry = _registry(console)
    if args.resume:
        run_dir = require_run_directory(Path(args.resume))
        if args.recipe or args.out:
            raise RecipeError("--resume continues the run directory's own recipe: give no RECIPE or --out")
        recipe = load_run_recipe(run_dir, registry, args.set)
    else:
        if not args.recipe:
            raise RecipeError("give a RECIPE.toml to run, or --resume RUN_DIR")
        recipe = load_recipe(args.recipe, registry, args.set)
    for message in recipe.warnings():
        _warn(console, message)
    recipe = recipe.with_absolute_data_root()
    with process_group(recipe.train.device) as ranks:
        if not ranks.is_main:
            console = Console(stderr=True, quiet=True)
        if args.resume:
            state = ranks.from_main(lambda: _resume_state(run_dir, console))
            console.print(f"resuming [bold]{run_dir}[/] at step {state['step']}", highlight=False, soft_wrap=True)  # a path to copy: never broken across lines
            trainer = Trainer(recipe, run_dir, console, recorded=state["model"])
            trainer.load_state(state)
            ranks.from_main(lambda: record_resume(run_dir, recipe, args.set, trainer.step))
        else:
            run_dir = ranks.from_main(lambda: start_run(recipe, args.out, args.set))
            try:
                trainer = Trainer(recipe, run_dir, console)
            except MiheadError:
                if ranks.is_main:
                    discard_unstarted(run_dir)
                raise
            console.print(f"run directory: [bold]{run_dir}[/]", highlight=False, soft_wrap=True)
        try:
            trainer.fit()
        except WriteError as exc:
            raise WriteError(f"{exc}; {continue_hint(run_dir)}") from None
        except (NumericalError, OutOfMemory) as exc:
            if ranks.is_main and not args.resume and trainer.saved_step is None:
                discard_unstarted(run_dir)
                if not run_dir.exists():
                    raise type(exc)(f"{exc}; its run directory {run_dir} was removed") from None
            raise
        if ranks.is_main:
            Console().print(f"run directory: [bold]{run_dir}[/]", highlight=False, soft_wrap=True)
    return 0


def cmd_check(args: argparse.Namespace, console: Console) -> int:
    from mihead.build import build_declared
    from mihead.contracts import FrozenEncoder
    from mihead.memory import training_fit

    recipe = load_recipe(args.recipe, _registry(console), args.set)
    for message in recipe.warnings():
        _warn(console, message)
    names = ", ".join(s.entry.name for s in recipe.objectives)
    built = build_declared(recipe)
    if built is None:
        what = f"not built: dataset {recipe.data.entry.name} gives its image size or classes only once loaded"
    else:
        shape, augmenter, model = built
        size = sum(p.numel() for p in model.parameters())
        images = f"{shape.image.size} px x {shape.image.channels} channel images"
        on = f"{model.backbone.input_shape()[0]}-d embeddings of {images}" if isinstance(model.backbone, FrozenEncoder) else images
        what = f"built for {on}: {model.num_heads} heads of {shape.clusters} clusters, {size:,} parameters"
        memory, shortfall = training_fit(recipe.train, model, augmenter)
        what += f"; {memory}"
    Console().print(
        f"{args.recipe}: ok (data {recipe.data.entry.name}, backbone {recipe.backbone.entry.name}, "
        f"head {recipe.head.entry.name}, objectives {names}; model {what})",
        highlight=False,
    )
    if built is not None and shortfall:
        _warn(console, shortfall)
    return 0


def cmd_eval(args: argparse.Namespace, console: Console) -> int:
    """Evaluate a run's checkpoint; under torchrun every rank assigns its shard of the split
    and rank 0 scores it and writes the outputs (see mihead/evaluate.py)."""
    from mihead.build import build
    from mihead.checkpoint import load_checkpoint, load_weights
    from mihead.device import resolve_device
    from mihead.distributed import process_group
    from mihead.evaluate import evaluate_run
    from mihead.outputs import check_head_index, report, training_facts

    run_dir = require_run_directory(Path(args.run_dir))
    hint = "eval writes the run's outputs there: copy the run directory somewhere writable and evaluate the copy"
    check_writable(run_dir, hint=hint)
    overrides = [f"eval.split={json.dumps(args.split)}"] if args.split else []
    recipe = load_run_recipe(run_dir, _registry(console), overrides)
    device = resolve_device(args.device, "--device")
    with process_group(args.device) as ranks:
        if not ranks.is_main:
            console = Console(stderr=True, quiet=True)
        state = load_checkpoint(run_dir, warn=lambda m: _warn(console, m))
        device = ranks.device(device)
        built = build(recipe, device, recorded=state["model"])
        if args.head is not None:
            check_head_index(args.head, built.model.num_heads)
        load_weights(built.model, state["model"], run_dir, "model")
        evaluation = evaluate_run(built, recipe, ranks)

        def write() -> None:  # rank 0's part
            assert evaluation is not None
            facts = training_facts(state, device, recipe)
            report(Console(), run_dir, evaluation, built.eval_data.images, facts, head=args.head, gallery_images=recipe.eval.gallery_images)  # a result: stdout

        ranks.on_main(write)
    return 0


def cmd_predict(args: argparse.Namespace, console: Console) -> int:
    """Assign new image files with a run's checkpoint: CSV on stdout or in ``--out``."""
    from mihead.device import resolve_device
    from mihead.outputs import check_head_index
    from mihead.outputs.assignments import head_columns, write_csv, write_csv_file
    from mihead.outputs.summary import read_summary
    from mihead.predict import load_run_model, predict

    run_dir = require_run_directory(Path(args.run_dir))
    out = Path(args.out) if args.out else None
    if out is not None:
        if not out.parent.is_dir():
            raise UsageError(f"--out {out}: no such folder {out.parent}")
        if out.is_dir():
            raise UsageError(f"--out {out}: is a folder; give the CSV file to write, e.g. {out / 'clusters.csv'}")
        check_writable(out.parent, label=f"--out {out}")
    device = resolve_device(args.device, "--device")
    recipe = load_run_recipe(run_dir, _registry(console))
    run = load_run_model(run_dir, recipe, device, warn=lambda m: _warn(console, m))
    head = args.head
    if head is None:
        summary = read_summary(run_dir)
        if summary is None:
            raise UsageError(f"{run_dir}: no summary.json (the run has not finished), so no reported head; choose one with --head N")
        head = int(summary["selected_head"])
    check_head_index(head, run.model.num_heads)
    predictions = predict(run, [Path(p) for p in args.paths], skip_bad=args.skip_bad, console=console)
    for path, reason in predictions.skipped:
        _warn(console, f"skipped {path}: {reason}")
    columns = {"path": [str(p) for p in predictions.paths], **head_columns(predictions.assignments, predictions.confidence, head)}
    if out is None:
        write_csv(sys.stdout, columns)
    else:
        write_csv_file(out, columns)
        Console().print(f"{len(predictions.paths)} images assigned by head {head}: [bold]{out}[/]", highlight=False, soft_wrap=True)  # a result: stdout
    return 0


def cmd_plugins(args: argparse.Namespace, console: Console) -> int:
    from mihead.catalog import catalog, describe_text, sorted_entries

    registry = _registry(console)
    if args.json:
        print(json.dumps(catalog(registry), indent=2))
    elif args.verbose:
        print(describe_text(registry, shutil.get_terminal_size().columns), end="")
    else:
        table = Table(title="mihead plugins", title_justify="left")
        for column in ("kind", "name", "package", "version"):
            table.add_column(column)
        for entry in sorted_entries(registry):
            table.add_row(entry.kind, entry.name, entry.package, entry.version)
        Console().print(table)
    return 0


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mihead", **main_help())
    sub = parser.add_subparsers(dest="command", required=True)

    def add_device(command: argparse.ArgumentParser) -> None:
        text = "where the model runs (default: CUDA when present, so a GPU run is read on a CPU-only machine)"
        command.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help=text)

    def add_sets(command: argparse.ArgumentParser) -> None:
        command.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a recipe value (repeatable)")

    run = sub.add_parser("run", **command_help("run", "train a recipe and write a run directory"))
    run.add_argument("recipe", nargs="?", help="the recipe TOML file")
    add_sets(run)
    run.add_argument("--out", metavar="RUN_DIR", help="the run directory to make: a new or empty folder (default: a new one in run.out)")
    run.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its checkpoint")
    run.set_defaults(func=cmd_run)

    check = sub.add_parser("check", **command_help("check", "validate a recipe without running it"))
    check.add_argument("recipe", help="the recipe TOML file")
    add_sets(check)
    check.set_defaults(func=cmd_check)

    ev = sub.add_parser("eval", **command_help("eval", "recompute metrics, plots, assignments and gallery from a run's checkpoint"))
    ev.add_argument("run_dir", help="a run directory written by mihead run")
    ev.add_argument("--split", help="split to evaluate (default: the recipe's eval.split)")
    ev.add_argument("--head", type=int, metavar="N", help="head that assignments.csv and gallery.png show (default: the reported one)")
    add_device(ev)
    ev.set_defaults(func=cmd_eval)

    pr = sub.add_parser("predict", **command_help("predict", "assign new images (files, folders) with a run's checkpoint; CSV to stdout or --out"))
    pr.add_argument("run_dir", help="a run directory written by mihead run")
    pr.add_argument("paths", nargs="+", metavar="PATH", help="image files and folders (searched recursively)")
    pr.add_argument("--head", type=int, metavar="N", help="head whose cluster is the 'cluster' column (default: the run's reported head)")
    pr.add_argument("--out", metavar="FILE.csv", help="write the CSV here (atomically) instead of to stdout")
    add_device(pr)
    pr.add_argument("--skip-bad", action="store_true", help="leave out unreadable files, listing each on stderr, instead of stopping")
    pr.set_defaults(func=cmd_predict)

    plugins = sub.add_parser("plugins", **command_help("plugins", "list registered plugins"))
    plugins.add_argument("--verbose", "-v", action="store_true", help="show each plugin's parameters")
    plugins.add_argument("--json", action="store_true", help="print every plugin and its parameters as JSON")
    plugins.set_defaults(func=cmd_plugins)
    return parser


def _one_line(message: str) -> str:
    """``message`` with line breaks and other unprintable characters (which may come from the
    user's keys and values) escaped, so that an error stays one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    console = Console(stderr=True)
    try:
        return int(args.func(args, console))
    except MiheadError as exc:
        print(f"mihead: error: {_one_line(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("mihead: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
