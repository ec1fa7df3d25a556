"""What ``mihead --help`` and ``mihead COMMAND --help`` say beyond the options: what each
command writes, where, and an example, laid out by hand for an 80-column terminal (argparse
prints them as they are, with RawDescriptionHelpFormatter)."""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Sequence
from typing import Any

from mihead.run_directory import CHECKPOINT_FILE, EVALUATION_FILES, HISTORY_FILE, PREVIOUS_CHECKPOINT_FILE, RECIPE_FILE, RUN_FILES

__all__ = ["command_help", "main_help"]



def _listed(items: Sequence[str]) -> str:
    """``items`` as prose: "a, b and c"."""
    return ", ".join(items[:-1]) + f" and {items[-1]}" if len(items) > 1 else "".join(items)


def _paragraph(text: str) -> str:
    """``text`` filled for an 80-column terminal."""
    return textwrap.fill(text, width=78, break_on_hyphens=False, break_long_words=False)


_RUN_FILES = _listed([f"{name} ({what})" for name, what in RUN_FILES])
_EVALUATION_FILES = _listed([name for name, _ in EVALUATION_FILES])

_STREAMS = """\
Results go to stdout; progress, warnings and errors to stderr. A bad recipe,
--set, missing data or a corrupt checkpoint ends with one line
"mihead: error: ..." naming the file, section and key, and exit status 2."""

_MAIN_EPILOG = f"""\
{_STREAMS}

examples:
  mihead check recipes/quickstart.toml       validate it, build its model
  mihead run recipes/quickstart.toml         train; writes runs/quickstart-TIME/
  mihead eval runs/quickstart-TIME           metrics again, from the checkpoint
  mihead predict runs/quickstart-TIME img/   new images' clusters, as CSV
  mihead plugins --verbose                   every plugin and its parameters

"mihead COMMAND --help" says what each command writes."""

_COMMANDS: dict[str, tuple[str, str]] = {
    "run": (
        _paragraph(
            "Train a recipe and write a run directory (--out, a new or empty folder, or run.out/NAME-TIME): "
            f"{_RUN_FILES}. --resume RUN_DIR continues a run; its --set overrides are applied to the run's "
            f"{RECIPE_FILE} and recorded in {HISTORY_FILE}."
        )
        + """

Progress goes to stderr; the per-head results table and the run directory to
stdout. Exit status: 0 done, 1 a loss became NaN or infinite, or a file could
not be written (a full disk; the last checkpoint is kept), 2 bad input (a
folder --out that is not empty, a run directory that cannot be written),
130 stopped by Ctrl-C or SIGTERM after a checkpoint (continue with --resume).""",
        """\
examples:
  mihead run recipes/quickstart.toml
  mihead run recipes/dhog_cifar10.toml --out runs/smoke --set data.limit=512 \\
      --set train.max_steps=5 --set train.device=cpu
  mihead run --resume runs/smoke

--set addresses objectives by name or by position from 0, as errors name them:
  --set objective.iic.lamb=1.5     --set objective.0.weight=2""",
    ),
    "check": (
        """\
Validate a recipe without training: every section, name, key, type and range,
after the --set overrides. When the dataset declares its image size and
classes, also build the augmenter and model on the CPU, so that values wrong
for that data fail here. Writes nothing.

On success prints one "RECIPE: ok (...)" line on stdout (plugins, heads,
clusters, parameter count, and the memory a training step needs: weights,
gradients and optimiser state, and the model's activations for a batch,
against the CPU's available RAM or the CUDA device's memory) and exits 0,
with a warning on stderr when training would not fit; otherwise one error
line on stderr, exit status 2.""",
        """\
example:
  mihead check recipes/dhog_cifar10.toml --set train.batch_size=64""",
    ),
    "eval": (
        _paragraph(
            f"Recompute the metrics of a run from its {CHECKPOINT_FILE} ({PREVIOUS_CHECKPOINT_FILE}, with a warning, "
            f"when it is damaged) and its {RECIPE_FILE}, on the recipe's evaluation split or --split: rewrites the "
            f"run directory's {_EVALUATION_FILES} (the CSV and the gallery of the reported head, or --head N), and "
            "prints the per-head results table on stdout. A run directory that cannot be written is refused first "
            "(exit 2)."
        ),
        """\
examples:
  mihead eval runs/dhog_cifar10-20250101-120000 --split train
  mihead eval runs/quickstart-20250101-120000 --head 2""",
    ),
    "predict": (
        """\
Assign new images (files, and folders searched recursively) to clusters with a
run's checkpoint: one CSV row per image (path, cluster, confidence and every
head's cluster), on stdout, or written atomically to --out FILE.csv (then one
line on stdout says how many images went where; a folder or a place that
cannot be written is refused before any work). Progress bars and skipped
files (--skip-bad) go to stderr. The cluster column is the run's reported
head's unless --head N.""",
        """\
examples:
  mihead predict runs/quickstart-20250101-120000 new_digits/ > clusters.csv
  mihead predict runs/folder-20250101-120000 photos/ --out clusters.csv --head 3""",
    ),
    "plugins": (
        """\
List every registered plugin (kind, name, package, version) on stdout.
--verbose adds each parameter a recipe can set (type, default, bounds, help),
one block per plugin; --json prints all of that as JSON for scripts. Plugins
that fail to load are warnings on stderr (errors with MIHEAD_STRICT_PLUGINS=1).""",
        """\
examples:
  mihead plugins --verbose
  mihead plugins --json | jq -r '.[] | "\\(.kind) \\(.name)"'""",
    ),
}


def main_help() -> dict[str, Any]:
    """Keyword arguments of the top-level ArgumentParser."""
    return {
        "description": "Cluster images without labels by mutual information: IIC, DHOG, DCCM and\nany mix of their loss terms, from one TOML recipe.",
        "epilog": _MAIN_EPILOG,
        "formatter_class": argparse.RawDescriptionHelpFormatter,
    }


def command_help(name: str, summary: str) -> dict[str, Any]:
    """Keyword arguments of ``add_parser(name, ...)``: ``summary`` for the command list, the
    description and example(s) for ``mihead NAME --help``."""
    description, epilog = _COMMANDS[name]
    return {"help": summary, "description": description, "epilog": epilog, "formatter_class": argparse.RawDescriptionHelpFormatter}
