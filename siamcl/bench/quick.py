"""Siamese learner vs a standard CNN classifier, class-incremental, in about a minute.

Both use the same conv4 backbone, optimiser, augmentation, epochs and exemplar budget; the
standard network learns with a softmax head and cross-entropy, the Siamese one with a metric
loss and a prototype store. A third row reads the standard network out by the Siamese
learner's own rule (class means of its backbone's features after every task,
:class:`~siamcl.learners.readout.PrototypeReadout`), so the table shows what the metric loss
adds beyond the prototype store. Prints one table row per run.
"""

from __future__ import annotations

import argparse
from typing import Any

from siamcl.bench.warm_up import warm_up_on_a_small_stream
from siamcl.data import class_incremental, load_dataset, subsample
from siamcl.evaluation import evaluate_stream
from siamcl.learners.incremental import IncrementalClassifier
from siamcl.learners.readout import PrototypeReadout
from siamcl.learners.softmax import SoftmaxClassifier
from siamcl.reporting import markdown_table, record_markdown, run_record, write_results

QUICK_FRACTION = 0.1


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", type=int, default=5, help="number of tasks (default 5)")
    parser.add_argument(
        "--epochs", type=int, default=None, help="epochs per task (default 4; 1 with --quick)"
    )
    parser.add_argument("--memory", type=int, default=20, help="exemplars per class (default 20)")


def run(args: argparse.Namespace) -> dict[str, Any]:
    seeds = args.seeds or [0]
    X_train, y_train, X_test, y_test = load_dataset(args.dataset, data_root=args.data_root)
    if args.quick:  # a smoke run: a tenth of each class, one epoch per task
        X_train, y_train = subsample(X_train, y_train, QUICK_FRACTION, seed=0, min_per_class=2)
        X_test, y_test = subsample(X_test, y_test, QUICK_FRACTION, seed=0)
    common = {
        "epochs": args.epochs if args.epochs is not None else (1 if args.quick else 4),
        "memory_per_class": args.memory,
        "device": args.device,
        "progress": not args.quiet,
    }
    methods = {
        "siamese": lambda seed: IncrementalClassifier(seed=seed, **common),
        "softmax": lambda seed: SoftmaxClassifier(seed=seed, **common),
        # the default Siamese learner's rule: unwhitened class means
        "softmax-class-means": lambda seed: PrototypeReadout(
            SoftmaxClassifier(seed=seed, **common), {"whitening": None}
        ),
    }
    record = run_record(  # before the work: the commit it started at
        "quick", seeds, dataset=args.dataset, tasks=args.tasks, quick=args.quick, **common
    )
    warm_up_on_a_small_stream(  # the process's one-off costs fall on no measured method
        X_train, y_train, lambda *run: [evaluate_stream(m(0), *run) for m in methods.values()]
    )
    rows = []
    for seed in seeds:
        tasks = class_incremental(X_train, y_train, n_tasks=args.tasks, seed=seed)
        for name, make in methods.items():
            result = evaluate_stream(make(seed), tasks, X_test, y_test, progress=not args.quiet)
            rows.append({"method": name, "seed": seed, **result})
    results = {**record, "runs": rows}
    table = summary_table(rows)
    write_results(args.out, f"quick_{args.dataset}", results, _markdown(results, table))
    print(table)
    return results


def summary_table(rows: list[dict[str, Any]]) -> str:
    """One row per run: accuracy, forgetting, energy with its method, time, memory, bytes."""
    base = {r["seed"]: r["report"]["energy_j"] for r in rows if r["method"] == "softmax"}
    lines = []
    for r in rows:
        report = r["report"]
        lines.append(
            [
                r["method"],
                r["seed"],
                r["accuracy"],
                r["forgetting"],
                f"{report['energy_j']:.0f} ({report['energy_method']})",
                report["energy_j"] / base[r["seed"]] if base.get(r["seed"]) else "",
                report["wall_s"],
                report["cpu_s"],
                f"{report['peak_rss_bytes'] / 2**20:.0f}",
                f"{sum(report['retained_bytes'].values()) / 1024:.1f}",
            ]
        )
    headers = [
        "method",
        "seed",
        "accuracy",
        "forgetting",
        "energy J (method)",
        "energy vs softmax",
        "wall s",
        "cpu s",
        "peak RSS MiB",
        "retained KiB",
    ]
    return markdown_table(headers, lines)


def _markdown(results: dict[str, Any], table: str) -> str:
    return (
        f"# Quick benchmark: Siamese vs softmax on {results['settings']['dataset']}\n\n"
        "softmax-class-means is the softmax network read out by class means of its backbone's "
        "features after every task, the Siamese learner's rule.\n\n"
        f"{record_markdown(results)}\n\n{table}\n"
    )
