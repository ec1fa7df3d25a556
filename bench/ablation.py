"""An ablation over seeds: one recipe, several settings, the same budget; DHOG's tables.

    python bench/ablation.py RECIPE [--seeds 3] [--alpha A] [--term dhog_push]
        [--setting 'NAME:key=value;key=value' ...] [--set key=value ...] [--out DIR]

Trains RECIPE once per setting and seed (``run.seed`` = 0 .. N-1), one run after another in
this process, with the ``--set`` overrides common to all (the budget: epochs, data.limit, ...)
and each setting's own. The default settings are DHOG's ablation: the push term (``--term``)
at weight alpha (``--alpha``, default: the recipe's weight) and at 0. ``--setting`` adds a
setting (e.g. ``'heads 4:backbone.final_copies=1'``); ``--no-default`` keeps only those. A run
whose summary.json is already in DIR is read, not trained again, so a bench can be extended.

Prints, as Markdown, with mean +- sample standard deviation over seeds:

* DHOG's Table 1 form: ACC, NMI, ARI of the unsupervised head (the recipe's selection under its
  protocol) and of the best head by labels, per setting; and the mean ACC over all heads;
* DHOG's Table 2 form: NMI(z, z') of the unsupervised head on the training data (the fitting
  split's scores when the protocol fits on the training split, else the scored split's when
  it is the training data; "n/a" when the run never scored its training images);
* the mean NMI between every two heads' assignments (summary.json ``heads_nmi``);
* each head's ACC (mean over seeds), and each loss term as logged for the last epoch
  (metrics.jsonl: e.g. ``iic``, minus the pull's MI, and ``dhog_push``, the heads' summed
  cross-head MI, logged at weight 0 too), the terms early in training at a CPU budget.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mihead import cli
from mihead.plugins import load_registry
from mihead.recipe import load_recipe
from mihead.run_directory import read_metrics

__all__ = ["Setting", "main", "parse_setting", "training_nmi_zz"]

Setting = tuple[str, list[str]]


def parse_setting(text: str) -> Setting:
    """'NAME:key=value;key=value' -> (NAME, ["key=value", ...])."""
    name, sep, rest = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"--setting {text!r}: expected 'NAME:key=value;key=value'")
    return name.strip(), [kv.strip() for kv in rest.split(";") if kv.strip()]


def training_nmi_zz(summary: dict[str, Any]) -> float | None:
    """The reported head's NMI(z, z') on the training images, when the run scored them."""
    splits = summary.get("splits") or {}
    head = int(summary["selected_head"])
    if "fit_heads" in summary and splits.get("fitted") == splits.get("trained"):
        return float(summary["fit_heads"][head]["nmi_zz"])
    if splits.get("scored") == splits.get("trained"):
        return float(summary["heads"][head]["nmi_zz"])
    return None


def recipe_weight(recipe: Path, term: str, overrides: list[str]) -> float:
    """The weight of objective ``term`` in ``recipe`` with ``overrides``."""
    resolved = load_recipe(recipe, load_registry(), overrides)
    weights = [section.params.weight for section in resolved.objectives if section.entry.name == term]  # type: ignore[attr-defined]
    if not weights:
        raise SystemExit(f"ablation: {recipe} has no objective {term!r} (--term)")
    return float(weights[0])


def _mean_std(values: Sequence[float | None]) -> str:
    known = [v for v in values if v is not None]
    if not known:
        return "n/a"
    if len(known) == 1:
        return f"{known[0]:.4f}"
    return f"{np.mean(known):.4f} ± {np.std(known, ddof=1):.4f}"


def _mean_off_diagonal(table: list[list[float]]) -> float | None:
    matrix = np.asarray(table, dtype=float)
    if matrix.shape[0] < 2:
        return None
    return float(matrix[~np.eye(len(matrix), dtype=bool)].mean())


def _run(recipe: Path, run_dir: Path, overrides: list[str]) -> dict[str, Any]:
    summary_file = run_dir / "summary.json"
    if not summary_file.exists():
        args = ["run", str(recipe), "--out", str(run_dir), *[a for kv in overrides for a in ("--set", kv)]]
        print(f"  mihead {shlex.join(args)}", flush=True)
        code = cli.main(args)
        if code != 0:
            raise SystemExit(f"ablation: the run in {run_dir} failed with exit status {code}")
    summary: dict[str, Any] = json.loads(summary_file.read_text())
    records = [record for _, record in read_metrics(run_dir)]
    summary["last_losses"] = records[-1]["losses"] if records else {}  # in memory only
    return summary


def tables(results: dict[str, list[dict[str, Any]]]) -> str:
    """The Markdown tables of ``results`` (setting -> one summary per seed)."""
    lines = ["Table 1 form (scored split; mean ± sample std over seeds):", "",
             "| setting | head | ACC | NMI | ARI | mean ACC of all heads |", "|---|---|---|---|---|---|"]  # fmt: skip
    for name, runs in results.items():
        mean_acc = _mean_std([float(np.mean([h["acc"] for h in s["heads"]])) if s["acc"] is not None else None for s in runs])
        unsup = [s["heads"][s["selected_head"]] for s in runs]
        best = [s["heads"][s["best_head"]] if s.get("best_head") is not None else None for s in runs]
        for label, heads in (("unsup.", unsup), ("best", best)):
            cells = [_mean_std([h[k] if h else None for h in heads]) for k in ("acc", "nmi", "ari")]
            lines.append(f"| {name} | {label} | {' | '.join(cells)} | {mean_acc if label == 'unsup.' else ''} |")
    lines += ["", "Table 2 form (unsupervised head's NMI(z, z') on the training data) and head diversity:", "",
              "| setting | NMI(z, z') training data | mean NMI between heads | selected heads |", "|---|---|---|---|"]  # fmt: skip
    for name, runs in results.items():
        zz = _mean_std([training_nmi_zz(s) for s in runs])
        between = _mean_std([_mean_off_diagonal(s["heads_nmi"]) for s in runs])
        chosen = " ".join(str(s["selected_head"]) for s in runs)
        lines.append(f"| {name} | {zz} | {between} | {chosen} |")
    terms = sorted({t for runs in results.values() for s in runs for t in s["last_losses"]})
    lines += ["", "Each head's ACC (mean over seeds) and the terms logged for the last epoch:", "",
              f"| setting | ACC of heads 0, 1, ... | {' | '.join(terms)} |", "|---|---|" + "---|" * len(terms)]  # fmt: skip
    for name, runs in results.items():
        per_head = " ".join(f"{np.mean([s['heads'][h]['acc'] for s in runs]):.3f}" for h in range(len(runs[0]["heads"])))
        values = [_mean_std([s["last_losses"].get(t) for s in runs]) for t in terms]
        lines.append(f"| {name} | {per_head if runs[0]['acc'] is not None else 'n/a'} | {' | '.join(values)} |")
    protocols = sorted({s.get("protocol", "") for runs in results.values() for s in runs})
    seconds = [s["seconds"] for runs in results.values() for s in runs]
    lines += ["", f"protocol: {'; '.join(protocols)}", f"{len(seconds)} runs, training {np.sum(seconds) / 60:.1f} minutes in all"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("recipe", type=Path)
    ap.add_argument("--seeds", type=int, default=3, help="runs per setting, run.seed = 0 .. N-1")
    ap.add_argument("--term", default="dhog_push", help="the objective whose weight the default settings vary")
    ap.add_argument("--alpha", type=float, default=None, help="its weight in the first setting (default: the recipe's)")
    ap.add_argument("--setting", type=parse_setting, action="append", default=[], help="another setting, 'NAME:key=value;key=value'")
    ap.add_argument("--no-default", action="store_true", help="only the --setting settings, not alpha and 0")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help="override common to every run")
    ap.add_argument("--out", type=Path, default=None, help="folder of the runs (default: a new temporary one)")
    args = ap.parse_args(argv)
    settings: list[Setting] = []
    if not args.no_default:
        alpha = recipe_weight(args.recipe, args.term, args.sets) if args.alpha is None else args.alpha
        weight = f"objective.{args.term}.weight"
        settings += [(f"alpha = {alpha:g}", [f"{weight}={alpha}"]), ("alpha = 0", [f"{weight}=0"])]
    settings += args.setting
    if not settings:
        ap.error("no setting: drop --no-default or add --setting")
    out = args.out or Path(tempfile.mkdtemp(prefix="ablation_"))
    print(f"command: python bench/ablation.py {shlex.join(argv if argv is not None else sys.argv[1:])}", flush=True)
    results: dict[str, list[dict[str, Any]]] = {}
    for index, (name, overrides) in enumerate(settings):
        print(f"setting {name}: {' '.join(overrides) or '(the recipe as it is)'}", flush=True)
        results[name] = [
            _run(args.recipe, out / f"setting{index}" / f"seed{seed}", [*args.sets, *overrides, f"run.seed={seed}"])
            for seed in range(args.seeds)
        ]
    print(f"\nruns in {out}\n")
    print(tables(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
