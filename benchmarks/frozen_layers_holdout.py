"""How many of conv4's blocks to freeze after the first task, chosen on held-out training data.

``IncrementalClassifier(frozen_layers=k)`` keeps the encoder's first ``k`` layers as the first
task left them; later tasks train the rest and their backward passes stop above them
(:mod:`siamcl.training.freezing`). Fewer layers to train cost less, but layers learned on two
classes may not serve the next eight. As in ``embedding_size_holdout.py``, each seed holds out
a stratified 20% of mnist5k's *training* images, streams the other 80% as 5 class-incremental
tasks and scores the held-out images after the last task; the test split is never loaded.
The learner is the bench's float32 Siamese row (3 epochs a task, 20 exemplars a class) at
28x28 and at 16x16; counts and sizes are interleaved seed by seed.

    python benchmarks/frozen_layers_holdout.py [--counts 0,1,2] [--seeds 10-12] [--out DIR]
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import torch
from embedding_size_holdout import holdout_stream, seed_range, summarise

from siamcl import IncrementalClassifier
from siamcl.allocator import retain_unless_disabled
from siamcl.reporting import markdown_table, run_record, write_results
from siamcl.reporting.records import DEFAULT_OUT, record_markdown

LEARNER = {"encoder": "conv4", "epochs": 3, "batch_size": 128, "memory_per_class": 20}
SIZES = {"28x28": None, "16x16": (16, 16)}


def score(count: int, size: str, seed: int) -> dict[str, float]:
    """Held-out accuracy after the last task and the stream's training CPU seconds."""
    tasks, X_held, y_held = holdout_stream(seed)
    learner = IncrementalClassifier(
        frozen_layers=count, input_size=SIZES[size], seed=seed, **LEARNER
    )
    cpu_s = sum(learner.fit_task(task.X, task.y).cpu_s for task in tasks)
    return {"accuracy": float(np.mean(learner.predict(X_held) == y_held)), "cpu_s": cpu_s}


def render(results: dict[str, Any]) -> str:
    rows = results["rows"]
    cells = []
    for r in rows:
        base = next(b for b in rows if b["size"] == r["size"] and b["frozen_layers"] == 0)
        cells.append(
            [
                r["size"],
                r["frozen_layers"],
                f"{r['accuracy_mean']:.4f}",
                f"{r['accuracy_mean'] - base['accuracy_mean']:+.4f}",
                " ".join(f"{a:.3f}" for a in r["accuracy"]),
                f"{r['cpu_s_median']:.2f}",
                f"{r['cpu_s_median'] / base['cpu_s_median']:.2f}x",
            ]
        )
    headers = [
        "input",
        "frozen layers",
        "held-out accuracy",
        "vs none",
        "seeds",
        "CPU s",
        "vs none",
    ]
    return (
        "# Frozen leading layers of the class-incremental Siamese learner, on held-out data\n\n"
        f"{record_markdown(results)}\n\n"
        "mnist5k's training images only: each seed streams 80% as 5 tasks and scores the "
        "remaining 20% after the last task (the test split is not loaded). IncrementalClassifier "
        "(conv4, float32, 3 epochs a task, 20 exemplars a class, 1 torch thread) with its first "
        "k layers (conv4's blocks) frozen from the second task on. Accuracy: mean over seeds; "
        "CPU s: median over seeds of the stream's training.\n\n"
        f"{markdown_table(headers, cells)}\n"
    )


def main() -> None:
    retain_unless_disabled()  # freed memory kept for reuse, as the siamcl command starts
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="0,1,2", help="frozen layer counts (with 0)")
    parser.add_argument("--seeds", type=seed_range, default=seed_range("10-12"), help="10-12")
    parser.add_argument("--out", default=DEFAULT_OUT, help="result folder")
    args = parser.parse_args()
    counts = sorted({int(c) for c in args.counts.split(",")} | {0})
    torch.set_num_threads(1)
    results = run_record("frozen_layers_holdout", args.seeds, counts=counts, **LEARNER)
    score(0, "16x16", args.seeds[0])  # warm-up: the process's first stream pays imports, kernels
    runs: dict[tuple[str, int], list[dict[str, float]]] = {}
    for seed in args.seeds:  # interleaved: a machine that slows down slows them all
        for size in SIZES:
            for count in counts:
                runs.setdefault((size, count), []).append(score(count, size, seed))
    results["rows"] = [
        {"size": size, "frozen_layers": count, **summarise(done)}
        for (size, count), done in runs.items()
    ]
    print(write_results(args.out, "frozen_layers_holdout", results, render(results)))


if __name__ == "__main__":
    main()
