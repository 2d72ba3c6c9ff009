"""How closely a Siamese learner's validation score follows the accuracy it will have.

A stopping target (``TargetScore``) is only as good as the score it reads. After every epoch of
multi-class mnist5k (trained as ``siamcl bench energy`` trains it, a fifth of each class held
out as ``validation_fraction=0.2`` holds it out), this records the learner's own validation
score, the score plain class means would give on the same rows, and the accuracy the model
would have on the test split were the task to end there (its prototypes from every training
row, whitened when the learner whitens). The lag is that accuracy less the score: a score
that lags stops training later than it needs to.

    python benchmarks/validation_tracking.py [--methods siamese,siamese-whitened-bf16]
        [--seeds 0,1,2] [--epochs 6] [--out DIR]
"""

from __future__ import annotations

import argparse
import copy
import statistics
from typing import Any

import numpy as np

from siamcl.allocator import retain_unless_disabled
from siamcl.bench.energy_multiclass import MulticlassRunner, prototype_scorer
from siamcl.data import load_dataset
from siamcl.learners.siamese_task import rule_store, task_validation
from siamcl.reporting import markdown_table, run_record, write_results
from siamcl.reporting.records import DEFAULT_OUT, choice_list, parse_seeds, record_markdown
from siamcl.threads import cpu_threads
from siamcl.training import forward_dtype

METHODS = ("siamese", "siamese-whitened", "siamese-whitened-bf16")
VALIDATION = 0.2


class Trace:
    """A training-loop callback recording, after each epoch, the learner's own validation
    score, the plain class-mean score on the same rows and the test accuracy of the model."""

    def __init__(self, plain: Any, test: Any):
        self.plain, self.test, self.rows = plain, test, []

    def on_epoch_end(self, model: Any, progress: Any) -> None:
        self.rows.append(
            {
                "epoch": progress.epochs,
                "validation": progress.scores[-1],
                "plain_validation": self.plain(model),
                "accuracy": self.test(model)[0],
            }
        )


def trace(runner: MulticlassRunner, method: str) -> list[dict[str, float]]:
    """Train ``method`` with a fifth held out; its epochs' scores and accuracies."""
    learner = runner.learner(method)
    learner.validation_fraction = VALIDATION
    preprocessor = runner.preprocessor(None)
    canonical, y = preprocessor.canonical(runner.X), np.asarray(runner.y)
    plain_learner = copy.copy(learner)
    plain_learner.whitening = None
    train, plain = task_validation(plain_learner, preprocessor, canonical, y, task=0)
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
    callback = Trace(plain, test)
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
                    f"{mean['plain_validation']:.4f}",
                    f"{mean['accuracy'] - mean['plain_validation']:+.4f}",
                ]
            )
    lags = "\n".join(
        f"- {s['method']}: the learner's score lags by {s['lag']:+.4f} on average over "
        f"epochs and seeds, plain class means by {s['plain_lag']:+.4f}"
        for s in results["summary"]
    )
    headers = [
        "method",
        "epoch",
        "test accuracy",
        "learner's validation score",
        "lag",
        "plain class means",
        "lag",
    ]
    setting = (
        f"Multi-class mnist5k, {VALIDATION:.0%} of each class held out, means over seeds "
        f"{results['seeds']}. Test accuracy: the model of that epoch with its prototypes "
        "from every training row (whitened when the learner whitens), on the test split."
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
        summary.append(
            {
                "method": method,
                "lag": statistics.mean(p["accuracy"] - p["validation"] for p in points),
                "plain_lag": statistics.mean(p["accuracy"] - p["plain_validation"] for p in points),
            }
        )
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
