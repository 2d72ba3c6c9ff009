"""Embedding size of the class-incremental Siamese learner, chosen on held-out training data.

``siamcl bench energy`` judges its class-incremental rows on mnist5k's test split, so a
setting tuned there would be tuned on the answer. Here each seed holds out a stratified 20%
of mnist5k's *training* images, streams the other 80% as 5 class-incremental tasks, and
scores the IncrementalClassifier (16x16 inputs, bf16, 3 epochs a task, 20 exemplars a
class: the bench's cheapest row) on the held-out images after the last task, for a few
embedding sizes, interleaved seed by seed. Seeds 10-17 are not the bench's (0-2). The test
split is never loaded.

    python benchmarks/embedding_size_holdout.py [--sizes 32,64,128,256] [--seeds 10-17]
        [--out DIR]
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from siamcl import IncrementalClassifier
from siamcl.allocator import retain_unless_disabled
from siamcl.data import class_incremental, load_dataset
from siamcl.reporting import markdown_table, run_record, write_results
from siamcl.reporting.records import DEFAULT_OUT, record_markdown

LEARNER = {  # the bench's "siamese-16px-bf16" row at its 3-epoch budget
    "encoder": "conv4",
    "epochs": 3,
    "batch_size": 128,
    "memory_per_class": 20,
    "input_size": (16, 16),
    "precision": "bf16",
}


def holdout_stream(seed: int) -> tuple[list[Any], np.ndarray, np.ndarray]:
    """mnist5k's training images split 80/20 (stratified by ``seed``): the 80% as a 5-task
    class-incremental stream, the 20% to score on."""
    X, y, _, _ = load_dataset("mnist5k")
    X_fit, X_held, y_fit, y_held = train_test_split(
        X, y, test_size=0.2, stratify=y, random_state=seed
    )
    return class_incremental(X_fit, y_fit, n_tasks=5, seed=seed), X_held, y_held


def score(size: int, seed: int) -> dict[str, float]:
    """Held-out accuracy after the last task and the stream's training CPU seconds."""
    tasks, X_held, y_held = holdout_stream(seed)
    learner = IncrementalClassifier(embedding_dim=size, seed=seed, **LEARNER)
    cpu_s = sum(learner.fit_task(task.X, task.y).cpu_s for task in tasks)
    return {"accuracy": float(np.mean(learner.predict(X_held) == y_held)), "cpu_s": cpu_s}


def render(results: dict[str, Any]) -> str:
    rows = results["rows"]
    reference = next(r for r in rows if r["size"] == 64)
    cells = [
        [
            r["size"],
            f"{r['accuracy_mean']:.4f}",
            f"{r['accuracy_mean'] - reference['accuracy_mean']:+.4f}",
            f"{r['wins']}/{len(r['accuracy'])}",
            f"{r['cpu_s_median']:.2f}",
            f"{r['cpu_s_median'] / reference['cpu_s_median']:.2f}x",
        ]
        for r in rows
    ]
    headers = ["embedding size", "held-out accuracy", "vs 64", "seeds above 64", "CPU s", "vs 64"]
    return (
        "# Embedding size of the class-incremental Siamese learner, on held-out training data\n\n"
        f"{record_markdown(results)}\n\n"
        "mnist5k's training images only: each seed streams 80% as 5 tasks and scores the "
        "remaining 20% after the last task (the test split is not loaded). IncrementalClassifier "
        "with 16x16 inputs, bf16, 3 epochs a task, 20 exemplars a class, 1 torch thread. "
        "Accuracy: mean over seeds; CPU s: median over seeds of the stream's training.\n\n"
        f"{markdown_table(headers, cells)}\n"
    )


def summarise(runs: list[dict[str, float]]) -> dict[str, Any]:
    """One setting's runs, a seed each: their accuracies and CPU seconds, the mean accuracy
    and the median CPU seconds."""
    return {
        "accuracy": [r["accuracy"] for r in runs],
        "cpu_s": [r["cpu_s"] for r in runs],
        "accuracy_mean": statistics.fmean(r["accuracy"] for r in runs),
        "cpu_s_median": statistics.median(r["cpu_s"] for r in runs),
    }


def seed_range(text: str) -> list[int]:
    low, _, high = text.partition("-")
    return list(range(int(low), int(high or low) + 1))


def main() -> None:
    retain_unless_disabled()  # freed memory kept for reuse, as the siamcl command starts
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="32,64,128,256", help="embedding sizes (with 64)")
    parser.add_argument("--seeds", type=seed_range, default=seed_range("10-17"), help="10-17")
    parser.add_argument("--out", default=DEFAULT_OUT, help="result folder")
    args = parser.parse_args()
    sizes = sorted({int(s) for s in args.sizes.split(",")} | {64})
    torch.set_num_threads(1)
    results = run_record("embedding_size_holdout", args.seeds, sizes=sizes, **LEARNER)
    score(64, args.seeds[0])  # warm-up: the process's first stream pays allocations, kernels
    by_size: dict[int, list[dict[str, float]]] = {size: [] for size in sizes}
    for seed in args.seeds:  # sizes interleaved: a machine that slows down slows them all
        for size in sizes:
            by_size[size].append(score(size, seed))
    results["rows"] = [
        {
            "size": size,
            **summarise(runs),
            "wins": sum(r["accuracy"] > base["accuracy"] for r, base in zip(runs, by_size[64])),
        }
        for size, runs in by_size.items()
    ]
    print(write_results(args.out, "embedding_size_holdout", results, render(results)))


if __name__ == "__main__":
    main()
