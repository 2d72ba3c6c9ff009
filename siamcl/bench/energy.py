"""Energy to target: the training energy, CPU time and FLOPs each method needs to first reach
target accuracies, multi-class and class-incremental, measured in one run.

Multi-class (one task holding every class): the standard network, the Siamese learner, the
Siamese learner on selected data, int8 QAT, and KD / quantized-KD students learning from
cached teacher outputs, each scored on the test split after every epoch, or
``--checks-per-epoch`` times an epoch (the scoring is not counted as training; the prototype
pass that makes an encoder a classifier is). Also each
model's inference energy per 10,000 predictions and its lifecycle energy (training plus N
predictions), with the N at which a compressed model has paid for its extra training.
Class-incremental (``--tasks`` tasks): the Siamese learner and Avalanche's baselines, each at
the epoch budgets of ``--cil-epochs``; the energy to a target is that of the cheapest budget
whose mean final accuracy reaches it. Writes ``energy_<dataset>.json``, ``.md`` and ``.png``.
``--summarise FILE`` recomputes a saved result's summaries, bars and report from its runs,
training nothing (after the bars or tables changed, say).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from tqdm.auto import tqdm

from siamcl._extras import ensure_installed
from siamcl.bench.energy_cil import (
    CIL_METHODS,
    LEARNS_RAW_STREAM,
    budgets_of,
    check_cil_rows,
    run_cil,
    summarise_cil,
)
from siamcl.bench.energy_multiclass import (
    METHODS,
    MulticlassRunner,
    check_rows,
    is_student,
    multiclass_row,
)
from siamcl.bench.energy_summary import bars, summarise_multiclass
from siamcl.bench.variants import parse_variant
from siamcl.bench.warm_up import few_rows, warm_up_on_a_small_stream
from siamcl.data import class_incremental, load_dataset, subsample
from siamcl.reporting import run_record, write_results
from siamcl.reporting.energy import plot_results, render_markdown
from siamcl.reporting.figures import draw_or_skip
from siamcl.reporting.records import (
    add_threads_option,
    choice_list,
    command_line,
    git_commit,
    parsed_list,
    positive_int_list,
)
from siamcl.threads import cpu_threads

__all__ = ["configure", "run", "warm_up_cil"]

DEFAULT_SEEDS = (0, 1, 2)
PARTS = ("multiclass", "cil")


def _floats(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}")
    if not values or not all(0 < v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"targets are accuracies in (0, 1], got {text!r}")
    return values


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the energy-to-target suite's options to ``parser``."""
    add = parser.add_argument
    add("--parts", type=choice_list(PARTS), default=list(PARTS), help="multiclass,cil (both)")
    add(
        "--methods",
        type=parsed_list(multiclass_row),
        default=list(METHODS),
        help="multi-class rows: a method and suffixes, such as standard-b64 (docs/energy.md "
        "lists them; default: every row there)",
    )
    add("--epochs", type=int, default=6, help="multi-class epochs of the fp32 and QAT networks (6)")
    add("--student-epochs", type=int, default=10, help="epochs of the conv4-small networks (10)")
    add("--student-lr", type=float, default=3e-3, help="learning rate of the students (3e-3)")
    add("--data-fraction", type=float, default=0.25, help="share of the data selected (0.25)")
    add("--data-selection", default="coreset", help="stratified or coreset (coreset)")
    add("--targets", type=_floats, default=[0.90, 0.95], help="multi-class targets (0.9,0.95)")
    add(
        "--checks-per-epoch",
        type=int,
        default=1,
        help="score each multi-class model this many times an epoch, evenly spaced, the last at "
        "its end, so energy to target is read to a fraction of an epoch (1: at epoch ends)",
    )
    add(
        "--holdout",
        type=float,
        default=0.0,
        help="score on this share of the training data, held out (stratified), instead of the "
        "test split: for choosing settings without the test split (0: the test split)",
    )
    _add_cil_options(add)
    add("--batch-size", type=int, default=128, help="batch size (128)")
    add_threads_option(parser, 1, "steadier figures")
    add(
        "--summarise",
        metavar="JSON",
        default=None,
        help="recompute a saved energy_*.json's summaries, bars and report from its runs, "
        "training nothing; written under --out",
    )


def _add_cil_options(add: Any) -> None:
    """The class-incremental part's options."""
    add(
        "--cil-methods",
        type=parsed_list(parse_variant),
        default=list(CIL_METHODS),
        help="class-incremental rows: a method and suffixes, such as replay-16px-half-b32 "
        "(docs/energy.md lists them; default: every row there)",
    )
    add(
        "--cil-targets",
        type=_floats,
        default=[0.85, 0.90, 0.95],
        help="class-incremental targets (0.85,0.9,0.95)",
    )
    add(
        "--cil-epochs",
        type=positive_int_list,
        default=[1, 3],
        help="epoch budgets per task, class-incremental (1,3)",
    )
    add(
        "--cil-repeats",
        type=int,
        default=1,
        help="class-incremental runs of each method, budget and seed, in interleaved rounds; "
        "the run of median energy counts (1)",
    )
    add("--tasks", type=int, default=5, help="class-incremental tasks (5)")
    add("--memory", type=int, default=20, help="exemplars per class, class-incremental (20)")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the parts asked for on every seed; write JSON, markdown and the figure."""
    if args.summarise:
        return summarise_saved(args.summarise, args.out, args.quiet)
    _check(args)
    with cpu_threads(args.threads):  # torch's, and BLAS / OpenMP pools' (siamcl.threads)
        return _run(args)


def _run(args: argparse.Namespace) -> dict[str, Any]:
    seeds = args.seeds or ([0] if args.quick else list(DEFAULT_SEEDS))
    X, y, X_test, y_test = load_dataset(args.dataset, data_root=args.data_root)
    if args.holdout:  # the test split is set aside unused; a share of training data scores
        X, X_test, y, y_test = train_test_split(
            X, y, test_size=args.holdout, stratify=y, random_state=0
        )
    epochs, student_epochs, budgets = args.epochs, args.student_epochs, args.cil_epochs
    if args.quick:  # a smoke test of the whole suite, not a measurement
        X, y = subsample(X, y, 0.1, seed=0, min_per_class=4)
        X_test, y_test = subsample(X_test, y_test, 0.2, seed=0)
        epochs, student_epochs, budgets = 2, 2, [1]
    settings = {
        "dataset": args.dataset,
        "device": args.device,
        "batch_size": args.batch_size,
        "epochs": epochs,
        "student_epochs": student_epochs,
        "student_lr": args.student_lr,
        "data_fraction": args.data_fraction,
        "data_selection": args.data_selection,
        "targets": args.targets,
        "checks_per_epoch": args.checks_per_epoch,
        "cil_targets": args.cil_targets,
        "cil_epochs": budgets,
        "cil_repeats": args.cil_repeats,
        "holdout": args.holdout,
        "tasks": args.tasks,
        "memory_per_class": args.memory,
        "torch_threads": torch.get_num_threads(),
        "parts": args.parts,
    }
    results: dict[str, Any] = {**run_record("energy", seeds, quick=args.quick, **settings)}
    results["train_size"], results["test_size"] = len(X), len(X_test)
    if "multiclass" in args.parts:
        results["multiclass"] = {"runs": _multiclass(args, (X, y, X_test, y_test), settings, seeds)}
    if "cil" in args.parts:
        results["cil"] = {"runs": _cil(args, (X, y, X_test, y_test), budgets, seeds)}
    _conclude(results, {"multiclass": args.methods, "cil": args.cil_methods})
    name = f"energy_{args.dataset}" + ("" if len(args.parts) == len(PARTS) else f"_{args.parts[0]}")
    name += "_holdout" if args.holdout else ""  # never mistaken for a test-split result
    write_results(args.out, name, results, "")  # the measurements first: nothing lost
    _report(results, args.out, name, args.quiet)
    return results


def summarise_saved(path: str | Path, out: str | Path, quiet: bool = True) -> dict[str, Any]:
    """A saved result with its summaries, bars, markdown and figure recomputed from its runs
    (runs, settings and record as they were; ``summarised`` names the code that redid it),
    written under ``out`` with the saved file's name. Reads JSON only."""
    path = Path(path)
    try:
        results = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read a result file from {path}: {error}") from None
    if not isinstance(results, dict) or results.get("suite") != "energy":
        raise ValueError(f"{path} is not a result of siamcl bench energy")
    parts = [part for part in PARTS if part in results]
    _conclude(
        results, {part: [row["method"] for row in results[part]["summary"]] for part in parts}
    )
    date = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    results["summarised"] = {"command": command_line(), "git": git_commit(), "date": date}
    write_results(out, path.stem, results, "")
    _report(results, out, path.stem, quiet)
    return results


def _conclude(results: dict[str, Any], methods: dict[str, Sequence[str]]) -> None:
    """Each part's summary from its runs (rows in the order of ``methods[part]``), then the
    bars: what a run and a re-summarised saved run both conclude."""
    summarisers = {
        "multiclass": (summarise_multiclass, "targets"),
        "cil": (summarise_cil, "cil_targets"),
    }
    for part, (summarise, targets) in summarisers.items():
        if part in results:
            runs = results[part]["runs"]
            results[part]["summary"] = summarise(runs, methods[part], results["settings"][targets])
    results["bars"] = bars(results)


def _report(results: dict[str, Any], out: str | Path, name: str, quiet: bool) -> None:
    """The markdown (printed unless ``quiet``) and the figure of ``results``."""
    markdown = render_markdown(results, f"{name}.png")
    write_results(out, name, results, markdown)
    draw_or_skip(plot_results, results, f"{out}/{name}.png")
    if not quiet:
        print(markdown)


def _check(args: argparse.Namespace) -> None:
    counts = "epochs student_epochs checks_per_epoch tasks batch_size threads cil_repeats"
    for name in counts.split():
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
    if not 0 <= args.holdout < 1:
        raise ValueError(f"--holdout must be in [0, 1), got {args.holdout}")
    if not 0 < args.data_fraction <= 1:
        raise ValueError(f"--data-fraction must be in (0, 1], got {args.data_fraction}")
    if args.data_selection not in ("stratified", "coreset"):
        raise ValueError(
            f"--data-selection must be stratified or coreset, got {args.data_selection!r}"
        )
    if "multiclass" in args.parts:
        check_rows(args.methods)
    students = {name for name in args.methods if is_student(name)}
    if students and "siamese" not in args.methods:
        raise ValueError(
            f"{', '.join(sorted(students))} learn from the siamese run: add siamese to --methods"
        )
    if "cil" in args.parts:
        if any(parse_variant(n).method not in LEARNS_RAW_STREAM for n in args.cil_methods):
            ensure_installed("avalanche", "siamcl bench energy (class-incremental baselines)")
        check_cil_rows(args.cil_methods)


def _multiclass(
    args: argparse.Namespace,
    data: tuple[np.ndarray, ...],
    settings: dict[str, Any],
    seeds: list[int],
) -> list[dict[str, Any]]:
    order = sorted(args.methods, key=is_student)  # the teacher first
    _warm_up(data, settings)
    runs = []
    with tqdm(total=len(seeds) * len(order), desc="multi-class", disable=args.quiet) as bar:
        for seed in seeds:
            runner = MulticlassRunner(data, settings, seed)
            for name in order:
                runs.append({"method": name, "seed": seed, **runner.run(name)})
                bar.update(1)
    return runs


def _warm_up(data: tuple[np.ndarray, ...], settings: dict[str, Any]) -> None:
    """One throwaway epoch of each kind of learner on a few rows, so the process's one-off
    costs (library imports, first-call kernel set-up) fall on no measured method."""
    X, y = data[0], data[1]
    rows = few_rows(y)
    few = (X[rows], y[rows], X[rows], y[rows])
    runner = MulticlassRunner(few, {**settings, "epochs": 1, "student_epochs": 1}, seed=0)
    for name in ("standard", "siamese", "qat-int8", "kd-student"):
        runner.run(name)


def warm_up_cil(args: argparse.Namespace, data: tuple[np.ndarray, ...]) -> None:
    """Every class-incremental method once, one epoch a task, on a two-task stream of a few
    rows, thrown away: the process's one-off costs (lazy imports such as the optimiser's,
    first-call kernel set-up) would otherwise be metered in the first measured run of each
    method, the multi-class part's warm-up (:func:`_warm_up`) covering only its own."""
    once = argparse.Namespace(**{**vars(args), "cil_repeats": 1})
    warm_up_on_a_small_stream(
        data[0], data[1], lambda tasks, *test: run_cil(once, tasks, test, 0, args.cil_methods, [1])
    )


def _cil(
    args: argparse.Namespace, data: tuple[np.ndarray, ...], budgets: list[int], seeds: list[int]
) -> list[dict[str, Any]]:
    X, y, X_test, y_test = data
    args.checkpoint = None  # what StreamRunner reads of bench cl's options
    warm_up_cil(args, data)
    total = len(seeds) * sum(len(budgets_of(m, budgets)) for m in args.cil_methods)
    total *= args.cil_repeats
    runs = []
    with tqdm(total=total, desc="class-incremental", disable=args.quiet) as bar:
        for seed in seeds:
            tasks = class_incremental(X, y, n_tasks=args.tasks, seed=seed)
            runs += run_cil(args, tasks, (X_test, y_test), seed, args.cil_methods, budgets, bar)
    return runs
