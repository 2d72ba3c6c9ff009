"""Siamese learner vs standard network as the training set shrinks from 100% to 1%.

Both methods see the same per-class subsample of the training set (``siamcl.data.subsample``)
in two settings: plain multi-class classification (one task holding every class) and
class-incremental learning (``--tasks`` tasks of disjoint classes, tested after each). They
share backbone, optimiser, batch size, augmentation, exemplar budget and the number of
optimisation steps, so a difference comes from how they learn, not from how long.

Step rule: a task trains for ``max(epochs, ceil(min_steps / batches_per_epoch))`` epochs,
where ``batches_per_epoch`` counts the task's own samples. By default ``min_steps`` is the
number of steps a task of the full training set gets from ``epochs`` epochs, so every
fraction gets as many optimiser steps per task as full data does (on smaller batches): at 1%
a task of a few dozen samples fits one batch, and ``epochs`` alone would give it a handful
of gradient steps. The rule is the same for both methods, and each run records its epochs.

The default backbone is ``conv4-small`` (conv4 with a quarter of the channels, a seventh
of its CPU time a step), so that the full grid (7 fractions x 2 settings x 2 methods x 3
seeds) fits a CPU budget; ``--encoder conv4`` runs the same study on the full-size backbone.
Torch runs on ``--threads`` threads (1): on a busy machine a second thread mostly spins,
which inflates CPU time and with it the energy estimate. ``--quick``: one seed, 5% and
100%, one epoch.

Writes ``data_efficiency_<dataset>.{json,md,png}``: accuracy against fraction and against
energy, per setting, with the smallest fraction at which each method reaches 90% of its own
full-data accuracy.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from siamcl.bench.data_efficiency_analysis import (
    METHODS,
    MIN_PER_CLASS,
    SETTINGS,
    TARGET_SHARE,
    less_data_to_match,
    percent,
    siamese_ahead,
    smallest_fractions,
    summarise,
)
from siamcl.bench.warm_up import freeze_survivors, warm_up_on_a_small_stream
from siamcl.data import class_incremental, load_dataset, subsample
from siamcl.evaluation import evaluate_stream
from siamcl.learners.incremental import IncrementalClassifier
from siamcl.learners.softmax import SoftmaxClassifier
from siamcl.reporting import run_record, write_results
from siamcl.reporting.data_efficiency import (
    METHOD_LABELS,
    headline,
    plot_results,
    render_markdown,
    summary_table,
)
from siamcl.reporting.figures import draw_or_skip
from siamcl.reporting.records import add_threads_option
from siamcl.threads import cpu_threads

__all__ = [
    "METHODS",
    "METHOD_LABELS",
    "SETTINGS",
    "TARGET_SHARE",
    "analyse",
    "configure",
    "epochs_for",
    "full_data_steps",
    "headline",
    "less_data_to_match",
    "make_learner",
    "plot_results",
    "render_markdown",
    "run",
    "run_grid",
    "siamese_ahead",
    "smallest_fractions",
    "summarise",
    "summary_table",
    "write_outputs",
]

DEFAULT_FRACTIONS: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)
QUICK_FRACTIONS: tuple[float, ...] = (0.05, 1.0)
DEFAULT_ENCODER = "conv4-small"


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the data-efficiency suite's options to ``parser``."""
    parser.add_argument(
        "--fractions",
        type=_percents,
        default=None,
        help="training-set percentages, comma-separated (default 1,2,5,10,25,50,100)",
    )
    parser.add_argument("--tasks", type=int, default=5, help="class-incremental tasks (default 5)")
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="least epochs per task (default 8, the learner's own)",
    )
    parser.add_argument(
        "--min-steps",
        type=int,
        default=None,
        help="least optimiser steps per task, both methods (default: a full-data task's)",
    )
    parser.add_argument(
        "--memory", type=int, default=20, help="exemplars per class, both methods (default 20)"
    )
    parser.add_argument(
        "--encoder",
        default=DEFAULT_ENCODER,
        help=f"backbone of both methods (default {DEFAULT_ENCODER})",
    )
    add_threads_option(parser, 1, "least CPU wasted on a busy machine")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the whole grid; write JSON, markdown and figure."""
    settings = _settings(args)
    X_train, y_train, X_test, y_test = load_dataset(args.dataset, data_root=args.data_root)
    with cpu_threads(settings["threads"]):  # torch's, and BLAS / OpenMP pools'
        record = run_record(
            "data-efficiency",
            settings["seeds"],
            dataset=args.dataset,
            **{k: v for k, v in settings.items() if k != "seeds"},
        )
        started = time.perf_counter()
        rows = run_grid(settings, (X_train, y_train, X_test, y_test), args.device, args.quiet)
        record["run_wall_s"] = time.perf_counter() - started
    results = analyse(record, rows)
    write_outputs(results, args.out)
    if not args.quiet:
        print(summary_table(results["summary"]))
    return results


def analyse(record: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The result document: run record, per-seed rows and everything derived from them."""
    summary = summarise(rows)
    return {
        **record,
        "runs": rows,
        "summary": summary,
        "min_steps": {row["setting"]: row["min_steps"] for row in rows},
        "reach_90": smallest_fractions(summary),
        "siamese_ahead": siamese_ahead(summary, rows),
        "less_data_to_match": less_data_to_match(summary),
        "plot": f"{results_name(record)}.png",
    }


def results_name(results: dict[str, Any]) -> str:
    """The base name of the result files: ``data_efficiency_<dataset>``."""
    return f"data_efficiency_{results['settings']['dataset']}"


def write_outputs(results: dict[str, Any], out: str | Path) -> Path:
    """Write the JSON, markdown and plot of :func:`analyse`'s results under ``out``."""
    name = results_name(results)
    figure = Path(out) / results["plot"]
    if not draw_or_skip(plot_results, results["summary"], figure, results["settings"]["dataset"]):
        results["plot"] = None  # matplotlib is not installed
    return write_results(out, name, results, render_markdown(results))


# ---------------------------------------------------------------------- the experiment


def run_grid(
    settings: dict[str, Any],
    data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    device: str = "cpu",
    quiet: bool = False,
) -> list[dict[str, Any]]:
    """Every (seed, setting, fraction, method) run, one result row each."""
    X_train, y_train, X_test, y_test = data
    grid = [
        (seed, setting, fraction, method)
        for seed in settings["seeds"]
        for setting in SETTINGS
        for fraction in settings["fractions"]
        for method in METHODS
    ]
    n_tasks = {"multiclass": 1, "class-incremental": settings["tasks"]}
    min_steps = {
        setting: settings["min_steps"]
        if settings["min_steps"] is not None
        else full_data_steps(y_train, n, settings["epochs"], settings["batch_size"])
        for setting, n in n_tasks.items()
    }
    warm_up_on_a_small_stream(  # the process's one-off costs fall on no measured run
        X_train,
        y_train,
        lambda *run: [
            evaluate_stream(make_learner(m, 0, 1, settings, device), *run) for m in METHODS
        ],
    )
    rows = []
    bar = tqdm(grid, desc="data-efficiency", disable=quiet)
    for seed, setting, fraction, method in bar:
        bar.set_postfix_str(f"{setting} {percent(fraction)} {method} seed {seed}")
        X_part, y_part = subsample(X_train, y_train, fraction, seed, MIN_PER_CLASS)
        tasks = class_incremental(X_part, y_part, n_tasks=n_tasks[setting], seed=seed)
        epochs = epochs_for(
            max(len(task) for task in tasks),
            settings["epochs"],
            min_steps[setting],
            settings["batch_size"],
        )
        learner = make_learner(method, seed, epochs, settings, device)
        freeze_survivors()  # earlier runs' objects out of this run's garbage collections
        result = evaluate_stream(learner, tasks, X_test, y_test)
        row = _row(seed, setting, fraction, method, epochs, y_part, result)
        rows.append({**row, "min_steps": min_steps[setting]})
    bar.close()
    return rows


def full_data_steps(y_train: np.ndarray, n_tasks: int, epochs: int, batch_size: int) -> int:
    """Optimiser steps the largest task of the whole training set gets in ``epochs`` epochs."""
    _, counts = np.unique(y_train, return_counts=True)
    largest = max(int(part.sum()) for part in np.array_split(np.sort(counts)[::-1], n_tasks))
    return epochs * math.ceil(largest / batch_size)


def epochs_for(task_samples: int, epochs: int, min_steps: int, batch_size: int) -> int:
    """Epochs giving a task of ``task_samples`` at least ``min_steps`` optimiser steps."""
    if task_samples < 1:
        raise ValueError(f"a task needs samples, got {task_samples}")
    batches = math.ceil(task_samples / batch_size)
    return max(epochs, math.ceil(min_steps / batches))


def make_learner(
    method: str, seed: int, epochs: int, settings: dict[str, Any], device: str = "cpu"
) -> IncrementalClassifier | SoftmaxClassifier:
    """The Siamese learner or the standard network, on the same budget."""
    common = {
        "encoder": settings["encoder"],
        "epochs": epochs,
        "batch_size": settings["batch_size"],
        "memory_per_class": settings["memory_per_class"],
        "device": device,
        "seed": seed,
    }
    if method == "siamese":
        return IncrementalClassifier(**common)
    if method == "softmax":
        return SoftmaxClassifier(**common)
    raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")


def _row(
    seed: int,
    setting: str,
    fraction: float,
    method: str,
    epochs: int,
    y_part: np.ndarray,
    result: dict[str, Any],
) -> dict[str, Any]:
    report = result["report"]
    return {
        "setting": setting,
        "fraction": fraction,
        "method": method,
        "seed": seed,
        "train_samples": len(y_part),
        "samples_per_class": int(np.unique(y_part, return_counts=True)[1].min()),
        "epochs": epochs,
        "accuracy": result["accuracy"],
        "forgetting": result["forgetting"],
        "energy_j": report["energy_j"],
        "energy_method": report["energy_method"],
        "wall_s": report["wall_s"],
        "cpu_s": report["cpu_s"],
        "samples_seen": report["samples_seen"],
        "accuracy_matrix": result["accuracy_matrix"],
        "report": report,
    }


# ---------------------------------------------------------------------- options


def _percents(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--fractions must be percentages: {text!r}")
    if not values or not all(0 < v <= 100 for v in values):
        raise argparse.ArgumentTypeError(f"--fractions must be percentages in (0, 100]: {text!r}")
    return sorted({v / 100 for v in values})


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """Run settings from the options, with ``--quick`` choosing the small defaults."""
    quick = args.quick
    settings = {
        "seeds": args.seeds or ([0] if quick else [0, 1, 2]),
        "fractions": list(args.fractions or (QUICK_FRACTIONS if quick else DEFAULT_FRACTIONS)),
        "tasks": args.tasks,
        "epochs": args.epochs if args.epochs is not None else (1 if quick else 8),
        "min_steps": args.min_steps,
        "batch_size": 128,
        "memory_per_class": args.memory,
        "encoder": args.encoder,
        "threads": args.threads,
    }
    for name in ("tasks", "epochs", "memory_per_class"):
        if settings[name] < (0 if name == "memory_per_class" else 1):
            raise ValueError(f"--{name.replace('_per_class', '')} must be positive")
    if settings["min_steps"] is not None and settings["min_steps"] < 0:
        raise ValueError("--min-steps must not be negative")
    return settings
