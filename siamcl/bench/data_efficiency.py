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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from siamcl.learners.softmax import SoftmaxClassifier
from siamcl.data import class_incremental, load_dataset, subsample
from siamcl.evaluation import evaluate_stream
from siamcl.learners.incremental import IncrementalClassifier
from siamcl.reporting import markdown_table, run_record, write_results

DEFAULT_FRACTIONS: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)
QUICK_FRACTIONS: tuple[float, ...] = (0.05, 1.0)
SETTINGS: tuple[str, ...] = ("multiclass", "class-incremental")
METHODS: tuple[str, ...] = ("siamese", "softmax")
METHOD_LABELS = {"siamese": "Siamese (prototypes)", "softmax": "standard (softmax)"}
TARGET_SHARE = 0.9
DEFAULT_ENCODER = "conv4-small"
MIN_PER_CLASS = 2  # a metric loss needs a positive pair within each class


def configure(parser: argparse.ArgumentParser) -> None:
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
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads, both methods (default 1: least CPU wasted on a busy machine)",
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = _settings(args)
    X_train, y_train, X_test, y_test = load_dataset(args.dataset, data_root=args.data_root)
    saved_threads = torch.get_num_threads()
    torch.set_num_threads(settings["threads"])
    try:
        record = run_record(
            "data-efficiency",
            settings["seeds"],
            dataset=args.dataset,
            **{k: v for k, v in settings.items() if k != "seeds"},
        )
        started = time.perf_counter()
        rows = run_grid(settings, (X_train, y_train, X_test, y_test), args.device, args.quiet)
        record["run_wall_s"] = time.perf_counter() - started
    finally:
        torch.set_num_threads(saved_threads)
    results = analyse(record, rows)
    write_outputs(results, args.out)
    if not args.quiet:
        print(summary_table(results["summary"]))
        print(f"wrote {Path(args.out) / results_name(results)}.{{json,md,png}}")
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
        "plot": f"{results_name(record)}.png",
    }


def headline(ahead: Sequence[dict[str, Any]], up_to: float = 0.1) -> str:
    """One sentence: is the Siamese learner ahead at every fraction up to ``up_to``?"""
    lines = []
    for setting in _present(ahead, "setting"):
        points = [a for a in ahead if a["setting"] == setting and a["fraction"] <= up_to]
        if not points:
            continue
        behind = [_percent(a["fraction"]) for a in points if not a["siamese_ahead"]]
        wins = sum(a.get("seeds_ahead", 0) for a in points)
        compared = sum(a.get("seeds_compared", 0) for a in points)
        verdict = "yes" if not behind else f"no (behind at {', '.join(behind)})"
        lines.append(
            f"**{setting}: Siamese ahead on the mean at every fraction up to "
            f"{_percent(up_to)}: {verdict}**; ahead in {wins} of {compared} seed-paired runs."
        )
    return "  \n".join(lines)


def results_name(results: dict[str, Any]) -> str:
    return f"data_efficiency_{results['settings']['dataset']}"


def write_outputs(results: dict[str, Any], out: str | Path) -> Path:
    """Write the JSON, markdown and plot of :func:`analyse`'s results under ``out``."""
    name = results_name(results)
    plot_results(results["summary"], Path(out) / results["plot"], results["settings"]["dataset"])
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
    rows = []
    bar = tqdm(grid, desc="data-efficiency", disable=quiet)
    for seed, setting, fraction, method in bar:
        bar.set_postfix_str(f"{setting} {_percent(fraction)} {method} seed {seed}")
        X_part, y_part = subsample(X_train, y_train, fraction, seed, MIN_PER_CLASS)
        tasks = class_incremental(X_part, y_part, n_tasks=n_tasks[setting], seed=seed)
        epochs = epochs_for(
            max(len(task) for task in tasks),
            settings["epochs"],
            min_steps[setting],
            settings["batch_size"],
        )
        learner = make_learner(method, seed, epochs, settings, device)
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


# ---------------------------------------------------------------------- analysis


def summarise(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and standard deviation over seeds per (setting, fraction, method)."""
    groups: dict[tuple[str, float, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["setting"], row["fraction"], row["method"]), []).append(row)
    summary = []
    for (setting, fraction, method), members in groups.items():
        accuracy = np.array([m["accuracy"] for m in members])
        energy = np.array([m["energy_j"] for m in members])
        summary.append(
            {
                "setting": setting,
                "fraction": fraction,
                "method": method,
                "seeds": len(members),
                "samples_per_class": members[0]["samples_per_class"],
                "epochs": members[0]["epochs"],
                "accuracy": float(accuracy.mean()),
                "accuracy_std": float(accuracy.std()),
                "forgetting": float(np.mean([m["forgetting"] for m in members])),
                "energy_j": float(energy.mean()),
                "energy_method": _energy_method(members),
                "cpu_s": float(np.mean([m["cpu_s"] for m in members])),
            }
        )
    order = {name: i for i, name in enumerate(SETTINGS)}
    summary.sort(key=lambda s: (order.get(s["setting"], 99), s["fraction"], s["method"]))
    return summary


def _energy_method(members: Sequence[dict[str, Any]]) -> str:
    methods = {m["energy_method"] for m in members}
    return methods.pop() if len(methods) == 1 else "mixed"


def smallest_fractions(summary: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per setting and method: the smallest fraction reaching 90% of its full-data accuracy.

    The reference is the accuracy at the largest fraction run (100% in a full run); the
    fraction with the best accuracy is recorded too, since more data need not help.
    """
    found = []
    for setting in _present(summary, "setting"):
        for method in _present(summary, "method"):
            points = sorted(
                (s["fraction"], s["accuracy"])
                for s in summary
                if s["setting"] == setting and s["method"] == method
            )
            if not points:
                continue
            reference_fraction, reference = points[-1]
            target = TARGET_SHARE * reference
            reached = next(f for f, accuracy in points if accuracy >= target)
            best_fraction, best = max(points, key=lambda point: (point[1], -point[0]))
            found.append(
                {
                    "setting": setting,
                    "method": method,
                    "reference_fraction": reference_fraction,
                    "reference_accuracy": reference,
                    "target_accuracy": target,
                    "fraction": reached,
                    "best_fraction": best_fraction,
                    "best_accuracy": best,
                }
            )
    return found


def siamese_ahead(
    summary: Sequence[dict[str, Any]], runs: Sequence[dict[str, Any]] = ()
) -> list[dict[str, Any]]:
    """Per setting and fraction: Siamese minus standard mean accuracy, and who is ahead.

    With the per-seed ``runs``, also how many seeds the Siamese learner wins (paired by seed).
    """
    table = {(s["setting"], s["fraction"], s["method"]): s for s in summary}
    by_seed = {(r["setting"], r["fraction"], r["method"], r["seed"]): r["accuracy"] for r in runs}
    rows = []
    for setting in _present(summary, "setting"):
        for fraction in sorted({s["fraction"] for s in summary if s["setting"] == setting}):
            siamese = table.get((setting, fraction, "siamese"))
            softmax = table.get((setting, fraction, "softmax"))
            if siamese is None or softmax is None:
                continue
            gap = siamese["accuracy"] - softmax["accuracy"]
            seeds = sorted(
                seed
                for (s, f, m, seed) in by_seed
                if (s, f, m) == (setting, fraction, "siamese")
                and (setting, fraction, "softmax", seed) in by_seed
            )
            wins = sum(
                by_seed[(setting, fraction, "siamese", seed)]
                > by_seed[(setting, fraction, "softmax", seed)]
                for seed in seeds
            )
            rows.append(
                {
                    "setting": setting,
                    "fraction": fraction,
                    "gap": gap,
                    "siamese_ahead": bool(gap > 0),
                    "seeds_ahead": wins,
                    "seeds_compared": len(seeds),
                    "energy_ratio": siamese["energy_j"] / softmax["energy_j"]
                    if softmax["energy_j"]
                    else None,
                }
            )
    return rows


def _present(summary: Sequence[dict[str, Any]], key: str) -> list[Any]:
    seen: list[Any] = []
    for s in summary:
        if s[key] not in seen:
            seen.append(s[key])
    return seen


# ---------------------------------------------------------------------- output


def summary_table(summary: Sequence[dict[str, Any]]) -> str:
    headers = [
        "setting",
        "fraction",
        "per class",
        "epochs",
        "method",
        "accuracy (mean ± sd)",
        "forgetting",
        "energy J (method)",
        "cpu s",
    ]
    rows = [
        [
            s["setting"],
            _percent(s["fraction"]),
            s["samples_per_class"],
            s["epochs"],
            s["method"],
            f"{s['accuracy']:.3f} ± {s['accuracy_std']:.3f}",
            s["forgetting"],
            f"{s['energy_j']:.0f} ({s['energy_method']})",
            s["cpu_s"],
        ]
        for s in summary
    ]
    return markdown_table(headers, rows)


def render_markdown(results: dict[str, Any]) -> str:
    """The result file's markdown: setup, headline comparison, 90% fractions, full table."""
    settings = results["settings"]
    machine = results["machine"]
    fractions = ", ".join(_percent(f) for f in settings["fractions"])
    steps = " / ".join(f"{n} ({setting})" for setting, n in results["min_steps"].items())
    auto = (
        ", min_steps being the steps a task of the full training set gets"
        if settings["min_steps"] is None
        else ""
    )
    ahead_rows = [
        [
            a["setting"],
            _percent(a["fraction"]),
            a["gap"],
            "yes" if a["siamese_ahead"] else "no",
            f"{a.get('seeds_ahead', '?')}/{a.get('seeds_compared', '?')}",
            a["energy_ratio"] if a["energy_ratio"] is not None else "",
        ]
        for a in results["siamese_ahead"]
    ]
    reach_rows = [
        [
            r["setting"],
            r["method"],
            r["reference_accuracy"],
            r["target_accuracy"],
            _percent(r["fraction"]),
            f"{r['best_accuracy']:.3f} at {_percent(r['best_fraction'])}",
        ]
        for r in results["reach_90"]
    ]
    notes = [
        f"- {METHOD_LABELS.get(r['method'], r['method'])}, {r['setting']}: most accurate at "
        f"{_percent(r['best_fraction'])} of the data ({r['best_accuracy']:.3f}), not with all "
        f"of it ({r['reference_accuracy']:.3f}), so its 90% fraction is measured against a "
        "lower reference."
        for r in results["reach_90"]
        if r["best_accuracy"] - r["reference_accuracy"] > 0.01
    ]
    return (
        f"# Data efficiency: Siamese vs standard network on {settings['dataset']}\n\n"
        f"Command: `{results['command']}`  \nSeeds: {results['seeds']}  \n"
        f"Machine: {machine['processor']}, {machine['cpu_count']} CPUs, "
        f"torch {machine['torch']}  \nDate: {results['date']}  \n"
        f"Run time: {results.get('run_wall_s', float('nan')) / 60:.1f} min wall for all runs "
        "(training and testing; the machine may have been shared)\n\n"
        f"Fractions of the training set: {fractions} (each class keeps that share of its "
        f"samples, at least {MIN_PER_CLASS}). Settings: multi-class (one task) and "
        f"class-incremental ({settings['tasks']} tasks). Both methods: encoder "
        f"`{settings['encoder']}`, batch {settings['batch_size']}, "
        f"{settings['memory_per_class']} exemplars per class, {settings['threads']} torch "
        f"thread(s), at least {settings['epochs']} epochs and at least {steps} optimiser "
        "steps per task: epochs = max(epochs, ceil(min_steps / batches per epoch)), the "
        f"same for both methods{auto}. Energy is per run (all tasks); `estimate` means "
        "CPU-seconds times a per-core power (docs/energy.md).\n\n"
        f"{headline(results['siamese_ahead'])}\n\n"
        f"![accuracy against fraction and energy]({results['plot']})\n\n"
        "## Siamese minus standard accuracy\n\n"
        "Gap: mean Siamese accuracy minus mean standard accuracy; seeds ahead: seeds whose "
        "Siamese run beats the standard run of the same seed; energy ratio: Siamese / "
        "standard energy.\n\n"
        + markdown_table(
            ["setting", "fraction", "accuracy gap", "Siamese ahead", "seeds ahead", "energy ratio"],
            ahead_rows,
        )
        + f"\n\n## Smallest fraction reaching {TARGET_SHARE:.0%} of its own full-data "
        "accuracy\n\n"
        + markdown_table(
            [
                "setting",
                "method",
                "full-data accuracy",
                "target",
                "smallest fraction",
                "best accuracy",
            ],
            reach_rows,
        )
        + ("\n\n" + "\n".join(notes) if notes else "")
        + (
            "\n\nIn class-incremental learning the exemplar budget is fixed "
            f"({settings['memory_per_class']} per class), so the more data a task brings, the "
            "smaller the share of replayed old classes in its batches; the forgetting column "
            "shows what that does to each method."
            if "class-incremental" in results["min_steps"]
            else ""
        )
        + "\n\n## All points (mean over seeds)\n\n"
        + summary_table(results["summary"])
        + "\n"
    )


def plot_results(summary: Sequence[dict[str, Any]], path: str | Path, dataset: str) -> Path:
    """Accuracy against fraction (left) and against energy (right), one row per setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    settings = _present(summary, "setting")
    figure, axes = plt.subplots(len(settings), 2, figsize=(10, 3.6 * len(settings)), squeeze=False)
    for row, setting in enumerate(settings):
        for method in _present(summary, "method"):
            points = sorted(
                (s for s in summary if s["setting"] == setting and s["method"] == method),
                key=lambda s: s["fraction"],
            )
            fractions = [100 * s["fraction"] for s in points]
            accuracy = [s["accuracy"] for s in points]
            spread = [s["accuracy_std"] for s in points]
            energy = [s["energy_j"] for s in points]
            label = METHOD_LABELS.get(method, method)
            axes[row, 0].errorbar(
                fractions, accuracy, yerr=spread, marker="o", capsize=3, label=label
            )
            line = axes[row, 1].plot(energy, accuracy, marker="o", alpha=0.8, label=label)[0]
            for point in points:
                axes[row, 1].annotate(
                    _percent(point["fraction"]),
                    (point["energy_j"], point["accuracy"]),
                    xytext=(3, 3),
                    textcoords="offset points",
                    fontsize=7,
                    color=line.get_color(),
                )
        axes[row, 0].set(
            xscale="log",
            xlabel="training data used (%)",
            ylabel="accuracy",
            title=f"{setting}: accuracy vs data",
        )
        axes[row, 0].set_xticks([100 * f for f in _present(summary, "fraction")])
        axes[row, 0].xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axes[row, 0].xaxis.set_minor_formatter(NullFormatter())
        axes[row, 1].set(
            xscale="log",
            xlabel=f"training energy, J per run ({_energy_method(summary)}; labels: data %)",
            ylabel="accuracy",
            title=f"{setting}: accuracy vs energy",
        )
        plain = FuncFormatter(lambda v, _: f"{v:g}")
        axes[row, 1].xaxis.set_major_formatter(plain)
        axes[row, 1].xaxis.set_minor_formatter(plain)
        for axis in axes[row]:
            axis.grid(True, alpha=0.3)
            axis.legend()
    figure.suptitle(f"Data efficiency on {dataset}")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


# ---------------------------------------------------------------------- options


def _percent(fraction: float) -> str:
    return f"{100 * fraction:g}%"


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
    if settings["threads"] < 1:
        raise ValueError("--threads must be positive")
    if settings["min_steps"] is not None and settings["min_steps"] < 0:
        raise ValueError("--min-steps must not be negative")
    return settings
