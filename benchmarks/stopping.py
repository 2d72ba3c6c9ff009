"""Stopping when the model is good enough, as a user would decide it: a target accuracy and
patience on a validation share carved from the training data (never the test split),
against the fixed epoch count, for the standard network and the Siamese learner trained as
``siamcl bench energy`` trains them (multi-class mnist5k, one task of ten digits).

``bench energy`` finds each method's energy to a target by scoring the test split after every
epoch, an oracle no user has. Here each learner decides for itself: it trains on the rest of
the data, scores the held-out share after every epoch (or ``--checks-per-epoch`` times an
epoch), and stops at the first policy that says so. Its energy is its whole task (validation
included), so the two rows of a method say what stopping early saves and what the held-out
share costs in test accuracy.

    python benchmarks/stopping.py [--targets 0.97,0.98] [--patience 2] [--validation 0.2]
        [--epochs 6] [--checks-per-epoch 1] [--seeds 0,1,2] [--methods standard,siamese,...]
        [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from siamcl.allocator import retain_unless_disabled
from siamcl.bench.energy_cil import median_run
from siamcl.bench.energy_multiclass import MulticlassRunner, check_rows, is_readout, is_student
from siamcl.data import load_dataset
from siamcl.reporting import markdown_table, run_record, write_results
from siamcl.reporting.records import (
    DEFAULT_OUT,
    command_line,
    git_commit,
    parse_seeds,
    positive_int,
    record_markdown,
)
from siamcl.threads import cpu_threads
from siamcl.training import Patience, TargetScore

METHODS = ("standard", "standard-bf16", "siamese", "siamese-whitened", "siamese-whitened-bf16")


def row_list(text: str) -> list[str]:
    """An argparse ``type``: comma-separated rows of ``siamcl bench energy`` (a method and
    suffixes, ``siamese-whitened-k5``), each refused before anything runs if its learner
    lacks an option, it is a student (it would need its teacher's run) or the standard
    network read out by prototypes (its learner validates with its head)."""
    names = list(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    try:
        check_rows(names)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if not names:
        raise argparse.ArgumentTypeError(f"no rows in {text!r}")
    students = [name for name in names if is_student(name)]
    if students:
        raise argparse.ArgumentTypeError(
            f"{students}: a student learns from its teacher's run, which is not trained here"
        )
    readouts = [name for name in names if is_readout(name)]
    if readouts:
        raise argparse.ArgumentTypeError(
            f"{readouts}: the bench reads the standard network out by prototypes; the learner "
            "validates and predicts with its head, so it cannot stop on that rule"
        )
    return names


def run_one(
    runner: MulticlassRunner, method: str, target: float | None, args: argparse.Namespace
) -> dict:
    """Train ``method`` on the runner's data for its fixed epochs (``target`` None) or until
    the validation share reaches ``target`` or stops improving."""
    learner = runner.learner(method)  # the settings bench energy trains it with
    if target is not None:
        learner.validation_fraction = args.validation
        learner.stopping = [TargetScore(target), Patience(args.patience)]
        learner.checks_per_epoch = args.checks_per_epoch
    report = learner.fit_task(runner.X, runner.y)
    return {
        "method": method,
        "target": target,
        "seed": runner.seed,
        "accuracy": float(np.mean(learner.predict(runner.X_test) == runner.y_test)),
        "energy_j": report.energy_j,
        "energy_method": report.energy_method,
        "cpu_s": report.cpu_s,
        "epochs_run": report.extra["epochs_run"],
        "stopped_by": report.stopped_by,
        "validation_score": report.extra.get("validation_score"),
        "validation_cpu_s": report.extra.get("validation_cpu_s", 0.0),
        "rows_trained": report.extra["rows_trained"],
    }


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per method and target (None: fixed epochs), means over seeds, and the energy of each
    row, seed by seed, against the same method's fixed epochs and against the standard
    network in the same precision trained the same way."""
    by = {(r["method"], r["target"], r["seed"]): r for r in runs}
    seeds = sorted({r["seed"] for r in runs})
    rows = []
    for method in dict.fromkeys(r["method"] for r in runs):
        for target in dict.fromkeys(r["target"] for r in runs):
            mine = [by[method, target, s] for s in seeds]
            row = {
                "method": method,
                "target": target,
                "accuracy": statistics.mean(r["accuracy"] for r in mine),
                "energy_j": statistics.mean(r["energy_j"] for r in mine),
                "epochs_run": statistics.mean(r["epochs_run"] for r in mine),
                "stopped_by": sorted({r["stopped_by"] for r in mine}),
                "validation_cpu_s": statistics.mean(r["validation_cpu_s"] for r in mine),
            }
            fixed = [by[method, None, s]["energy_j"] for s in seeds]
            row["vs_fixed"] = [r["energy_j"] / f for r, f in zip(mine, fixed)]
            standard = "standard-bf16" if method.endswith("-bf16") else "standard"
            if (standard, target, seeds[0]) in by:
                other = [by[standard, target, s]["energy_j"] for s in seeds]
                row["vs_standard"] = [r["energy_j"] / o for r, o in zip(mine, other)]
            rows.append(row)
    return rows


def render(results: dict[str, Any]) -> str:
    s = results["settings"]
    table = markdown_table(
        [
            "method",
            "training",
            "test accuracy",
            "energy J",
            "vs fixed (seeds)",
            "vs standard network (seeds)",
            "epochs",
            "stopped by",
            "validation CPU s",
        ],
        [
            [
                r["method"],
                "fixed epochs" if r["target"] is None else f"to {r['target']} on validation",
                f"{r['accuracy']:.3f}",
                f"{r['energy_j']:.0f}",
                _ratio(r["vs_fixed"]),
                _ratio(r.get("vs_standard")),
                f"{r['epochs_run']:.2f}",
                "; ".join(r["stopped_by"]),
                f"{r['validation_cpu_s']:.1f}",
            ]
            for r in results["summary"]
        ],
    )
    return (
        "# Stopping when good enough: validation target and patience against fixed epochs\n\n"
        f"{record_markdown(results)}\n\n"
        f"{_summarised_line(results.get('summarised'))}"
        f"Multi-class mnist5k, means over seeds {results['seeds']}; at most {s['epochs']} epochs. "
        f"A stopped run holds out {s['validation']:.0%} of each class, trains on the rest, scores "
        f"the held-out share {_checks(s)} and stops once it reaches the target or has not "
        f"improved for {s['patience']} epochs. {_repeats_note(results)}Every learner trains once on a few rows before "
        "anything is measured, so the process's one-off costs fall on none. Energy is the learner's whole task, validation "
        "included (its CPU seconds in the last column); it is estimated from CPU time where no "
        "counter is readable, so compare it within this file only. Each ratio is the mean of "
        "the seeds' ratios (their range in brackets); a method in bf16 is compared with the "
        "standard network in bf16, trained the same way.\n\n"
        f"{table}\n"
    )


def _checks(settings: dict[str, Any]) -> str:
    checks = settings.get("checks_per_epoch", 1)  # records made before the option: 1
    return "after every epoch" if checks == 1 else f"{checks} times an epoch, evenly spaced,"


def _summarised_line(summarised: dict[str, Any] | None) -> str:
    if not summarised:
        return ""
    commit = (summarised.get("git") or {}).get("commit", "unknown")[:12]
    return (
        f"Summary recomputed from these runs by `{summarised['command']}` "
        f"(commit {commit}, {summarised['date']}).\n\n"
    )


def _repeats_note(results: dict[str, Any]) -> str:
    """How far the repeats of a run spread in energy, and whether they trained one model."""
    runs = [r for r in results["runs"] if len(r.get("repeat_energies_j", [])) > 1]
    if not runs:
        return ""
    spread = [max(r["repeat_energies_j"]) / min(r["repeat_energies_j"]) for r in runs]
    same = all(len(set(r["repeat_accuracies"])) == 1 for r in runs)
    return (
        f"Each run was repeated {results['settings']['repeats']} times in interleaved rounds and "
        f"the repeat of median energy counts; a run's repeats spread up to {max(spread):.2f}x "
        f"in energy (median {statistics.median(spread):.2f}x) and "
        f"{'always' if same else 'not always'} gave the same test accuracy. "
    )


def _ratio(values: list[float] | None) -> str:
    if not values:
        return ""
    return f"{statistics.mean(values):.2f}x ({min(values):.2f}-{max(values):.2f})"


def warm_up(data: tuple, settings: dict[str, Any], methods: list[str]) -> None:
    """One epoch of every method on a few rows, validation included, measured by nothing."""
    X, y = data[0], data[1]
    rows = np.concatenate([np.flatnonzero(y == c)[:8] for c in np.unique(y)])
    runner = MulticlassRunner((X[rows], y[rows], X[rows], y[rows]), {**settings, "epochs": 1}, 0)
    for method in methods:
        learner = runner.learner(method)
        learner.validation_fraction = 0.25
        learner.fit_task(runner.X, runner.y)


def _accuracies(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or not all(0 < v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected accuracies in (0, 1], got {text!r}")
    return values


def main() -> None:
    retain_unless_disabled()  # freed memory kept for reuse, as the siamcl command starts
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--targets",
        type=_accuracies,
        default=[0.97, 0.98],
        help="validation accuracies (0.97,0.98)",
    )
    parser.add_argument("--patience", type=int, default=2, help="epochs without gain (2)")
    parser.add_argument("--validation", type=float, default=0.2, help="held-out share (0.2)")
    parser.add_argument("--epochs", type=int, default=6, help="at most, as bench energy (6)")
    parser.add_argument(
        "--checks-per-epoch",
        type=positive_int,
        default=1,
        help="validations an epoch of a stopped run, evenly spaced (1: at epoch ends)",
    )
    parser.add_argument("--seeds", type=parse_seeds, default=[0, 1, 2], help="seeds (0,1,2)")
    parser.add_argument(
        "--methods",
        type=row_list,
        default=list(METHODS),
        help=f"{','.join(METHODS)}, or any row of bench energy but a student's",
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="runs of each, interleaved; median energy (1)"
    )
    parser.add_argument("--out", default=DEFAULT_OUT, help="result folder")
    parser.add_argument(
        "--summarise", metavar="JSON", help="redo a saved result's summary and table from its runs"
    )
    args = parser.parse_args()
    if args.summarise:
        results = json.loads(Path(args.summarise).read_text())
        results["summary"] = summarise(results["runs"])
        when = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        results["summarised"] = {"command": command_line(), "git": git_commit(), "date": when}
        print(write_results(args.out, "stopping_mnist5k", results, render(results)))
        return
    settings = {
        "targets": args.targets,
        "patience": args.patience,
        "validation": args.validation,
        "epochs": args.epochs,
        "checks_per_epoch": args.checks_per_epoch,
        "batch_size": 128,
        "device": "cpu",
        "torch_threads": 1,
        "repeats": args.repeats,
    }
    results = run_record("stopping", args.seeds, **settings)
    data = load_dataset("mnist5k")
    runs = []
    with cpu_threads(1):
        warm_up(data, settings, args.methods)
        for seed in args.seeds:
            runner = MulticlassRunner(data, settings, seed)
            repeats: dict[tuple, list[dict[str, Any]]] = {}
            for _ in range(args.repeats):  # interleaved: a machine slowing down slows all
                for method in args.methods:
                    for target in [None, *args.targets]:
                        r = run_one(runner, method, target, args)
                        repeats.setdefault((method, target), []).append(r)
                        print(
                            f"seed {seed} {method} to {target}: {r['accuracy']:.3f}, "
                            f"{r['energy_j']:.0f} J, {r['epochs_run']:.2f} epochs "
                            f"({r['stopped_by']})",
                            flush=True,
                        )
            runs += [median_run(same, lambda run: run["energy_j"]) for same in repeats.values()]
    results["runs"] = runs
    results["summary"] = summarise(runs)
    print(write_results(args.out, "stopping_mnist5k", results, render(results)))


if __name__ == "__main__":
    main()
