"""How closely a Siamese learner's validation score follows its accuracy, at what cost.

A stopping target (``TargetScore``) is only as good as the score it reads, and a check is
paid for in every epoch it runs. After every epoch of multi-class mnist5k (trained as
``siamcl bench energy`` trains it, a fifth of each class held out as
``validation_fraction=0.2`` holds it out), this records the learner's own validation score
(its prototype rule cross-validated within the held-out rows, which it embeds once), the
score of the rule before it (prototypes of a sample of as many training rows, a second
pass), the CPU seconds of each, and the accuracy the model would have on the test split
were the task to end there (its prototypes from every training row, whitened when the
learner whitens). The lag is that accuracy less the score: a score that lags stops training
later than it needs to, one that leads stops it too soon.

    python benchmarks/validation_tracking.py [--methods siamese,siamese-whitened-bf16]
        [--seeds 0,1,2] [--epochs 6] [--out DIR]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np

from siamcl.allocator import retain_unless_disabled
from siamcl.bench.energy_multiclass import MulticlassRunner
from siamcl.bench.energy_scoring import prototype_scorer
from siamcl.data import load_dataset
from siamcl.learners.task_data import validation_split
from siamcl.learners.validation import (
    learner_embed,
    prototype_score,
    rule_store,
    task_validation,
)
from siamcl.reporting import markdown_table, run_record, write_results
from siamcl.reporting.records import DEFAULT_OUT, choice_list, parse_seeds, record_markdown
from siamcl.threads import cpu_threads
from siamcl.training import forward_dtype

METHODS = ("siamese", "siamese-whitened", "siamese-whitened-bf16")
VALIDATION = 0.2


class Trace:
    """A training-loop callback recording, after each epoch, the learner's validation score,
    the training-sample score on the same held-out rows, each one's CPU seconds, and the
    test accuracy of the model."""

    def __init__(self, own: Any, sample: Any, test: Any):
        self.scores, self.test, self.rows = {"validation": own, "sample": sample}, test, []

    def on_epoch_end(self, model: Any, progress: Any) -> None:
        row = {"epoch": progress.epochs, "accuracy": self.test(model)[0]}
        for name, score in self.scores.items():
            start = time.process_time()
            row[name] = score(model)
            row[f"{name}_cpu_s"] = time.process_time() - start
        self.rows.append(row)


def trace(runner: MulticlassRunner, method: str) -> list[dict[str, float]]:
    """Train ``method`` with a fifth held out; its epochs' scores and accuracies."""
    learner = runner.learner(method)
    learner.validation_fraction = VALIDATION
    preprocessor = runner.preprocessor(None)
    canonical, y = preprocessor.canonical(runner.X), np.asarray(runner.y)
    train, own = task_validation(learner, preprocessor, canonical, y, task=0)
    held = np.setdiff1d(np.arange(len(y)), train)
    _, sample = validation_split(y[train], VALIDATION / (1 - VALIDATION), learner.seed * 1000 + 1)
    reference = train[sample]  # as many training rows of each class as are held out
    sampled = prototype_score(
        learner_embed(learner, preprocessor),
        (canonical[reference], y[reference]),
        (canonical[held], y[held]),
        rule_store(learner),
        learner.whitening,
    )
    dtype = forward_dtype(learner.precision, learner.qat, "cpu")
    test = prototype_scorer(
        preprocessor,
        (runner.X[train], y[train]),
        (runner.X_test, runner.y_test),
        "cpu",
        rule_store(learner),
        learner.whitening,
        dtype,
    )
    callback = Trace(own, sampled, test)
    learner.callbacks = [callback]
    learner.fit_task(runner.X, runner.y)
    return callback.rows


def render(results: dict[str, Any]) -> str:
    rows = []
    for method in results["settings"]["methods"]:
        runs = [r for r in results["runs"] if r["method"] == method]
        for epoch in range(results["settings"]["epochs"]):
            points = [r["per_epoch"][epoch] for r in runs if len(r["per_epoch"]) > epoch]
            mean = {k: statistics.mean(p[k] for p in points) for k in points[0] if k != "epoch"}
            rows.append(
                [
                    method,
                    epoch + 1,
                    f"{mean['accuracy']:.4f}",
                    f"{mean['validation']:.4f}",
                    f"{mean['accuracy'] - mean['validation']:+.4f}",
                    f"{mean['sample']:.4f}",
                    f"{mean['accuracy'] - mean['sample']:+.4f}",
                ]
            )
    lags = "\n".join(
        f"- {s['method']}: cross-validated in the held-out rows, the score lags by "
        f"{s['lag']:+.4f} on average over epochs and seeds (spread {s['lag_sd']:.4f}) and "
        f"takes {s['cpu_s']:.2f} CPU s; from prototypes of training rows {s['sample_lag']:+.4f} "
        f"(spread {s['sample_lag_sd']:.4f}), {s['sample_cpu_s']:.2f} CPU s "
        f"({s['sample_cpu_s'] / s['cpu_s']:.1f}x)"
        for s in results["summary"]
    )
    headers = [
        "method",
        "epoch",
        "test accuracy",
        "cross-validated score (the learner's)",
        "lag",
        "training-row prototypes (before)",
        "lag",
    ]
    setting = (
        f"Multi-class mnist5k, {VALIDATION:.0%} of each class held out, means over seeds "
        f"{results['seeds']}. Test accuracy: the model of that epoch with its prototypes "
        "from every training row (whitened when the learner whitens), on the test split. "
        "Spread: the standard deviation of the lag over epochs and seeds; CPU s: the mean "
        "of one score, one thread."
    )
    return "\n\n".join(
        [
            "# Validation scores against the accuracy the learner will have",
            record_markdown(results),
            setting,
            lags,
            markdown_table(headers, rows),
        ]
    )


def summarise(runs: list[dict[str, Any]], methods: list[str]) -> list[dict[str, Any]]:
    summary = []
    for method in methods:
        points = [p for r in runs if r["method"] == method for p in r["per_epoch"]]
        figures: dict[str, Any] = {"method": method}
        for name, prefix in (("validation", ""), ("sample", "sample_")):
            lags = [p["accuracy"] - p[name] for p in points]
            figures[f"{prefix}lag"] = statistics.mean(lags)
            figures[f"{prefix}lag_sd"] = statistics.pstdev(lags)
            figures[f"{prefix}cpu_s"] = statistics.mean(p[f"{name}_cpu_s"] for p in points)
        summary.append(figures)
    return summary


def main() -> None:
    retain_unless_disabled()  # freed memory kept for reuse, as the siamcl command starts
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--methods",
        type=choice_list(METHODS),
        default=["siamese", "siamese-whitened-bf16"],
        help=",".join(METHODS),
    )
    parser.add_argument("--seeds", type=parse_seeds, default=[0, 1, 2], help="seeds (0,1,2)")
    parser.add_argument("--epochs", type=int, default=6, help="epochs, as bench energy (6)")
    parser.add_argument("--out", default=DEFAULT_OUT, help="result folder")
    args = parser.parse_args()
    settings = {"methods": args.methods, "epochs": args.epochs, "validation": VALIDATION}
    results = run_record("validation-tracking", args.seeds, **settings)
    data = load_dataset("mnist5k")
    runs = []
    with cpu_threads(1):
        for seed in args.seeds:
            runner = MulticlassRunner(data, {**settings, "device": "cpu", "batch_size": 128}, seed)
            for method in args.methods:
                runs.append({"method": method, "seed": seed, "per_epoch": trace(runner, method)})
                last = runs[-1]["per_epoch"][-1]
                print(f"seed {seed} {method}: {last}", flush=True)
    results["runs"] = runs
    results["summary"] = summarise(runs, args.methods)
    print(write_results(args.out, "validation_tracking_mnist5k", results, render(results)))


if __name__ == "__main__":
    main()
