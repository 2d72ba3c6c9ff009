"""What running the frozen layers once a batch saves, measured within one run.

With ``frozen_layers``, later tasks pass each batch through the frozen first layers once, in
batch preparation, and both the student and the previous encoder it is distilled toward
start from that output (:func:`siamcl.training.freezing.split_frozen`). Before, each of the
two networks ran the frozen layers itself. The results are the same (a test holds the
embeddings equal); only the work differs. This runs the bench's float32 class-incremental
stream (mnist5k, 5 tasks, 3 epochs a task, 20 exemplars a class, one block frozen) both
ways, at 28x28 and 16x16, on one torch thread: the "separate" runs replace
``siamese_task.shared_frozen_layers`` with one that shares nothing, as the test does. The
two ways alternate in order seed by seed and every pair is repeated, the median counting.

    python benchmarks/frozen_layers_shared.py [--seeds 0-2] [--repeats 3] [--out DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
from collections.abc import Iterator
from typing import Any
from unittest import mock

import numpy as np
import torch
from embedding_size_holdout import seed_range

from siamcl import IncrementalClassifier
from siamcl.allocator import retain_unless_disabled
from siamcl.data import class_incremental, load_dataset
from siamcl.learners import siamese_task
from siamcl.reporting import markdown_table, run_record, write_results
from siamcl.reporting.records import DEFAULT_OUT, record_markdown

LEARNER = {"encoder": "conv4", "epochs": 3, "batch_size": 128, "memory_per_class": 20}
SIZES = {"28x28": None, "16x16": (16, 16)}
WAYS = ("shared", "separate")


@contextlib.contextmanager
def passes(way: str) -> Iterator[None]:
    """``shared``: the library as it is; ``separate``: each network runs the frozen layers."""
    if way == "shared":
        yield
        return
    with mock.patch.object(siamese_task, "shared_frozen_layers", return_value=0):
        yield


def stream(data: tuple, size: str, way: str, seed: int) -> dict[str, float]:
    """Test accuracy after the last task, the stream's training CPU seconds and FLOPs."""
    X, y, X_test, y_test = data
    learner = IncrementalClassifier(frozen_layers=1, input_size=SIZES[size], seed=seed, **LEARNER)
    with passes(way):
        reports = [learner.fit_task(t.X, t.y) for t in class_incremental(X, y, 5, seed=seed)]
    return {
        "accuracy": float(np.mean(learner.predict(X_test) == y_test)),
        "cpu_s": sum(r.cpu_s for r in reports),
        "flops": sum(r.flops or 0 for r in reports),
    }


def render(results: dict[str, Any]) -> str:
    cells = []
    for size in SIZES:
        rows = {r["way"]: r for r in results["rows"] if r["size"] == size}
        shared, separate = rows["shared"], rows["separate"]
        cells.append(
            [
                size,
                f"{separate['cpu_s']:.2f}",
                f"{shared['cpu_s']:.2f}",
                f"{shared['cpu_s'] / separate['cpu_s']:.3f}x",
                " ".join(f"{r:.3f}" for r in shared["seed_ratios"]),
                f"{separate['flops'] / 1e9:.0f} / {shared['flops'] / 1e9:.0f}",
                f"{separate['accuracy']:.4f} / {shared['accuracy']:.4f}",
            ]
        )
    headers = [
        "input",
        "CPU s, separate",
        "CPU s, shared",
        "shared / separate",
        "seeds",
        "GFLOPs separate / shared",
        "accuracy separate / shared",
    ]
    return (
        "# Frozen layers run once a batch, for the student and the previous encoder\n\n"
        f"{record_markdown(results)}\n\n"
        "mnist5k's 5-task class-incremental stream, IncrementalClassifier (conv4, float32, 3 "
        "epochs a task, 20 exemplars a class, frozen_layers=1, 1 torch thread). CPU s: the "
        "stream's training, median over repeats, then mean over seeds; seeds: each seed's "
        "ratio. Both ways train the same model (the accuracies must agree).\n\n"
        f"{markdown_table(headers, cells)}\n"
    )


def main() -> None:
    retain_unless_disabled()  # freed memory kept for reuse, as the siamcl command starts
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=seed_range, default=seed_range("0-2"), help="0-2")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each pair (median)")
    parser.add_argument("--out", default=DEFAULT_OUT, help="result folder")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_dataset("mnist5k")
    results = run_record("frozen_layers_shared", args.seeds, repeats=args.repeats, **LEARNER)
    stream(data, "16x16", "shared", args.seeds[0])  # warm-up: imports, kernels
    runs: dict[tuple[str, str, int], list[dict[str, float]]] = {}
    for seed in args.seeds:
        for _ in range(args.repeats):
            for size in SIZES:
                for way in WAYS if seed % 2 == 0 else WAYS[::-1]:  # neither always first
                    runs.setdefault((size, way, seed), []).append(stream(data, size, way, seed))
    medians = {
        key: {
            "cpu_s": statistics.median(r["cpu_s"] for r in done),
            "accuracy": done[0]["accuracy"],
            "flops": done[0]["flops"],
        }
        for key, done in runs.items()
    }
    results["rows"] = [
        {
            "size": size,
            "way": way,
            "cpu_s": statistics.fmean(medians[size, way, s]["cpu_s"] for s in args.seeds),
            "accuracy": statistics.fmean(medians[size, way, s]["accuracy"] for s in args.seeds),
            "flops": statistics.fmean(medians[size, way, s]["flops"] for s in args.seeds),
            "seed_ratios": [
                medians[size, way, s]["cpu_s"] / medians[size, "separate", s]["cpu_s"]
                for s in args.seeds
            ],
            "runs": {str(s): runs[size, way, s] for s in args.seeds},
        }
        for size in SIZES
        for way in WAYS
    ]
    print(write_results(args.out, "frozen_layers_shared", results, render(results)))


if __name__ == "__main__":
    main()
