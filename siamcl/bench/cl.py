"""Siamese learner vs Avalanche's continual-learning baselines, with energy, on one stream.

Every method sees the same class-incremental stream (``class_incremental`` with the seed,
turned into an Avalanche benchmark by ``to_avalanche``), the same conv4 backbone, Adam, batch
size and exemplar budget (``--memory`` per class, ``--memory x classes`` in all for the
baselines whose buffer is a total). Rows: siamcl's ``IncrementalClassifier`` (``--siamese-epochs``
a task, and again at the baselines' ``--epochs``), the same learner as ``SiameseStrategy``
inside Avalanche, and Avalanche's Naive, Replay, DER++, ER-ACE, EWC, LwF, iCaRL, GDumb,
StreamingLDA and JointTraining (see ``siamcl.integrations.avalanche_baselines``).
Accuracy and forgetting come from the accuracy matrix (accuracy on each experience's test
classes after each experience); training cost from ``energy_metrics`` (Avalanche rows) and
the learner's own reports, both siamcl ``ResourceMeter`` measurements. Writes
``cl_<dataset>.json``, ``.md`` and ``.png`` (accuracy against training energy).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from siamcl._extras import ensure_installed
from siamcl.bench.cl_methods import (
    BASELINE_ROWS,
    LABELS,
    METHODS,
    REFERENCE,
    SIAMESE_ROWS,
    StreamRunner,
)
from siamcl.bench.warm_up import warm_up_on_a_small_stream
from siamcl.data import class_incremental, load_dataset
from siamcl.reporting import run_record, write_results
from siamcl.reporting.cl import plot_results, render_markdown, summary_table
from siamcl.reporting.figures import draw_or_skip
from siamcl.reporting.records import add_threads_option
from siamcl.threads import cpu_threads

__all__ = [
    "BASELINE_ROWS",
    "LABELS",
    "METHODS",
    "SIAMESE_ROWS",
    "bar_check",
    "configure",
    "run",
    "summarise",
    "summary_table",
]

DEFAULT_SEEDS = (0, 1, 2)
DIRECT_ROWS = ("siamese", "siamese-equal-epochs")  # the rows that run without Avalanche


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the continual-learning suite's options to ``parser``."""
    parser.add_argument("--tasks", type=int, default=5, help="experiences (default 5)")
    parser.add_argument("--memory", type=int, default=20, help="exemplars per class (20)")
    parser.add_argument("--epochs", type=int, default=3, help="baseline epochs per task (3)")
    parser.add_argument(
        "--siamese-epochs", type=int, default=1, help="Siamese learner epochs per task (1)"
    )
    parser.add_argument(
        "--gdumb-epochs", type=int, default=30, help="GDumb epochs over its memory (30)"
    )
    parser.add_argument("--batch-size", type=int, default=128, help="batch size (128)")
    add_threads_option(parser, None, "1 is far faster on a busy machine")
    parser.add_argument(
        "--methods",
        default=None,
        help=f"comma-separated subset of {','.join(METHODS)} (default: all; with --nproc: siamese)",
    )
    parser.add_argument(
        "--checkpoint",
        default=None,
        metavar="DIR",
        help="save the IncrementalClassifier streams after every task under DIR and, run "
        "again with the same DIR, resume them after their last finished task",
    )
    parser.add_argument(
        "--nproc",
        "--processes",
        dest="nproc",
        type=int,
        default=1,
        help="train the IncrementalClassifier rows data-parallel on N processes, launched "
        "through torchrun (writes cl_<dataset>_nproc<N>.*; see docs/distributed.md)",
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run every method on every seed's stream; rank 0 writes JSON, markdown and plot."""
    methods = _methods(args.methods or ("siamese" if args.nproc > 1 else ",".join(METHODS)))
    ranks = _distributed_ranks(args, methods)
    seeds = args.seeds or ([0] if args.quick else list(DEFAULT_SEEDS))
    epochs, siamese_epochs, gdumb_epochs = args.epochs, args.siamese_epochs, args.gdumb_epochs
    if args.quick:
        epochs, siamese_epochs, gdumb_epochs = 1, 1, 5
    for name, value in (("--tasks", args.tasks), ("--batch-size", args.batch_size)):
        if value < 2:
            raise ValueError(f"{name} must be at least 2, got {value}")
    for name, value in (("--epochs", epochs), ("--siamese-epochs", siamese_epochs)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    if args.memory < 0:
        raise ValueError(f"--memory must be non-negative, got {args.memory}")
    threads = args.threads
    if threads is None and ranks.active:  # the processes share the machine's cores
        threads = max(1, (os.cpu_count() or 1) // ranks.world)
    with cpu_threads(threads):  # torch's, and BLAS / OpenMP pools' (siamcl.threads)
        return _run(args, methods, ranks, seeds, (epochs, siamese_epochs, gdumb_epochs))


def _run(
    args: argparse.Namespace,
    methods: list[str],
    ranks: Any,
    seeds: list[int],
    budgets: tuple[int, int, int],
) -> dict[str, Any]:
    epochs, siamese_epochs, gdumb_epochs = budgets
    X_train, y_train, X_test, y_test = load_dataset(args.dataset, data_root=args.data_root)
    settings = {
        "dataset": args.dataset,
        "tasks": args.tasks,
        "memory_per_class": args.memory,
        "batch_size": args.batch_size,
        "epochs": {
            "siamese": siamese_epochs,
            "siamese-avalanche": siamese_epochs,
            "siamese-equal-epochs": epochs,
            **{name: epochs for name in BASELINE_ROWS},
            "gdumb": gdumb_epochs,
            "slda": 1,
        },
        "optimizer": "Adam lr 1e-3",
        "backbone": "conv4 (64 channels, 64-d features)",
        "methods": methods,
        "processes": ranks.world,
        "torch_threads": torch.get_num_threads(),
    }
    runs: list[dict[str, Any]] = []  # the record first: the commit the work started at
    results = {**run_record("cl", seeds, **settings), "runs": runs}
    unsaved = argparse.Namespace(**{**vars(args), "checkpoint": None})  # never resumed from
    warm_up_on_a_small_stream(  # the process's one-off costs fall on no measured method
        X_train,
        y_train,
        lambda *run: [StreamRunner(unsaved, *run, 0, settings).run(m) for m in methods],
    )
    for seed in seeds:
        tasks = class_incremental(X_train, y_train, n_tasks=args.tasks, seed=seed)
        context = StreamRunner(args, tasks, X_test, y_test, seed, settings)
        for name in tqdm(methods, desc=f"seed {seed}", disable=args.quiet):
            runs.append({"method": name, "seed": seed, **context.run(name)})
    results["summary"] = summarise(runs, methods)
    results["bar"] = bar_check(results["summary"])
    if ranks.rank != 0:  # every rank holds the same results; rank 0 writes them
        return results
    name = f"cl_{args.dataset}" + (f"_nproc{ranks.world}" if ranks.active else "")
    markdown = render_markdown(results)
    write_results(args.out, name, results, markdown)
    draw_or_skip(plot_results, results, f"{args.out}/{name}.png")
    if not args.quiet:
        print(markdown)
    return results


def _distributed_ranks(args: argparse.Namespace, methods: list[str]) -> Any:
    """The process group of a ``--nproc`` run (launched by ``siamcl``'s torchrun relaunch)."""
    from siamcl.distributed import Ranks

    if args.nproc < 1:
        raise ValueError(f"--nproc must be at least 1, got {args.nproc}")
    if args.nproc == 1:
        return Ranks()
    unsupported = sorted(set(methods) - {"siamese", "siamese-equal-epochs"})
    if unsupported:
        raise ValueError(
            f"--nproc trains only the IncrementalClassifier rows (siamese, "
            f"siamese-equal-epochs); drop {', '.join(unsupported)} from --methods"
        )
    ranks = Ranks.current(args.device)
    if ranks.world != args.nproc:
        raise ValueError(
            f"--nproc {args.nproc} needs {args.nproc} processes under torchrun, found "
            f"{ranks.world}: run it through the siamcl command, which launches them"
        )
    return ranks


def _methods(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = sorted(set(names) - set(METHODS))
    if unknown or not names:
        raise ValueError(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")
    if set(names) - set(DIRECT_ROWS):  # checked before any work, not as failed rows at the end
        ensure_installed("avalanche", f"siamcl bench cl (beyond --methods {','.join(DIRECT_ROWS)})")
    return list(dict.fromkeys(names))


def summarise(runs: list[dict[str, Any]], methods: list[str]) -> list[dict[str, Any]]:
    """Mean and spread over seeds per method, with energy ratios to the Siamese learner."""
    reference = {
        r["seed"]: r["report"]["energy_j"]
        for r in runs
        if r["method"] == REFERENCE and "report" in r
    }
    summary = []
    for name in methods:
        done = [r for r in runs if r["method"] == name and "error" not in r]
        failed = [r for r in runs if r["method"] == name and "error" in r]
        row: dict[str, Any] = {
            "method": name,
            "label": LABELS[name],
            "epochs": next(r["epochs"] for r in runs if r["method"] == name),
            "seeds": [r["seed"] for r in done],
            "errors": [f"seed {r['seed']}: {r['error']}" for r in failed],
        }
        if done:
            reports = [r["report"] for r in done]
            accuracy = np.array([r["accuracy"] for r in done])
            forgetting = [r["forgetting"] for r in done if r.get("forgetting") is not None]
            ratios = [
                r["report"]["energy_j"] / reference[r["seed"]]
                for r in done
                if reference.get(r["seed"])
            ]
            row.update(
                accuracy_mean=float(accuracy.mean()),
                accuracy_std=float(accuracy.std(ddof=1)) if len(accuracy) > 1 else 0.0,
                forgetting_mean=float(np.mean(forgetting)) if forgetting else None,
                energy_j=float(np.mean([rep["energy_j"] for rep in reports])),
                energy_method="/".join(sorted({rep["energy_method"] for rep in reports})),
                energy_ratio=float(np.mean(ratios)) if ratios else None,
                cpu_s=float(np.mean([rep["cpu_s"] for rep in reports])),
                wall_s=float(np.mean([rep["wall_s"] for rep in reports])),
                flops=_mean_or_none([rep["flops"] for rep in reports]),
                peak_rss_mib=float(np.mean([rep["peak_rss_bytes"] for rep in reports])) / 2**20,
                retained_bytes=float(
                    np.mean([sum(rep["retained_bytes"].values()) for rep in reports])
                ),
            )
        summary.append(row)
    return summary


def bar_check(summary: list[dict[str, Any]]) -> dict[str, Any]:
    """The acceptance bar: Siamese accuracy >= Replay's and iCaRL's, energy <= 0.5x Replay."""
    rows = {row["method"]: row for row in summary if "accuracy_mean" in row}
    checks: dict[str, Any] = {}
    replay, icarl = rows.get("replay"), rows.get("icarl")
    for name in SIAMESE_ROWS:
        row = rows.get(name)
        if row is None or replay is None or icarl is None:
            continue
        energy_ratio = row["energy_j"] / replay["energy_j"]
        checks[name] = {
            "accuracy": row["accuracy_mean"],
            "replay_accuracy": replay["accuracy_mean"],
            "icarl_accuracy": icarl["accuracy_mean"],
            "energy_vs_replay": energy_ratio,
            "accuracy_at_least_replay_and_icarl": row["accuracy_mean"]
            >= max(replay["accuracy_mean"], icarl["accuracy_mean"]),
            "energy_at_most_half_of_replay": energy_ratio <= 0.5,
        }
        checks[name]["met"] = (
            checks[name]["accuracy_at_least_replay_and_icarl"]
            and checks[name]["energy_at_most_half_of_replay"]
        )
    return checks


def _mean_or_none(values: list[Any]) -> float | None:
    return None if any(v is None for v in values) else float(np.mean(values))
