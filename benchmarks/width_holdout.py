"""A narrower encoder for the class-incremental Siamese learner, chosen on held-out training data.

``encoder="conv4-half"`` keeps conv4's shape with 32 channels instead of 64, about a quarter
of the multiply-adds; ``"conv4-small"`` has 16. A narrower
network may need more epochs, or more (smaller) batches, to learn as much, so each setting
is an encoder, a batch size and a number of epochs a task. As in ``frozen_layers_holdout.py``,
each seed holds out a stratified 20% of mnist5k's *training* images, streams the other 80%
as 5 class-incremental tasks and scores the held-out images after the last task; the test
split is never loaded. The learner is the bench's ``siamese-16px`` row (16x16 inputs,
float32, 20 exemplars a class), whose setting (conv4, batches of 128, 3 epochs) comes first
and is the reference; settings are interleaved seed by seed.

    python benchmarks/width_holdout.py [--settings conv4:128:3,conv4-half:64:4] [--seeds 10-17]
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

LEARNER = {"input_size": (16, 16), "memory_per_class": 20}
REFERENCE = "conv4:128:3"  # the bench's siamese-16px row
SETTINGS = (
    REFERENCE,
    "conv4:64:2",
    "conv4-half:128:3",
    "conv4-half:128:5",
    "conv4-half:64:3",
    "conv4-half:64:4",
    "conv4-small:128:3",
)


def parse_setting(text: str) -> dict[str, Any]:
    """``"encoder:batch:epochs"`` as the learner's parameters."""
    encoder, batch_size, epochs = text.split(":")
    return {"encoder": encoder, "batch_size": int(batch_size), "epochs": int(epochs)}


def score(setting: str, seed: int) -> dict[str, float]:
    """Held-out accuracy after the last task and the stream's training CPU seconds."""
    tasks, X_held, y_held = holdout_stream(seed)
    learner = IncrementalClassifier(seed=seed, **parse_setting(setting), **LEARNER)
    cpu_s = sum(learner.fit_task(task.X, task.y).cpu_s for task in tasks)
    return {"accuracy": float(np.mean(learner.predict(X_held) == y_held)), "cpu_s": cpu_s}


def render(results: dict[str, Any]) -> str:
    rows = results["rows"]
    base = rows[0]
    cells = [
        [
            r["encoder"],
            r["batch_size"],
            r["epochs"],
            f"{r['accuracy_mean']:.4f}",
            f"{r['accuracy_mean'] - base['accuracy_mean']:+.4f}",
            " ".join(f"{a:.3f}" for a in r["accuracy"]),
            f"{r['cpu_s_median']:.2f}",
            f"{r['cpu_s_median'] / base['cpu_s_median']:.2f}x",
        ]
        for r in rows
    ]
    headers = [
        "encoder",
        "batch",
        "epochs a task",
        "held-out accuracy",
        "vs first",
        "seeds",
        "CPU s",
        "vs first",
    ]
    return (
        "# Narrower encoders for the class-incremental Siamese learner, on held-out data\n\n"
        f"{record_markdown(results)}\n\n"
        "mnist5k's training images only: each seed streams 80% as 5 tasks and scores the "
        "remaining 20% after the last task (the test split is not loaded). IncrementalClassifier "
        "(16x16 inputs, float32, 20 exemplars a class, 1 torch thread); conv4 has 64 channels, "
        "conv4-half 32, conv4-small 16. Accuracy: mean over seeds; CPU s: median over seeds of "
        "the stream's training.\n\n"
        f"{markdown_table(headers, cells)}\n"
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    retain_unless_disabled()  # freed memory kept for reuse, as the siamcl command starts
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--settings",
        default=",".join(SETTINGS),
        help=f"encoder:batch:epochs settings; {REFERENCE} is added first (the reference)",
    )
    parser.add_argument("--seeds", type=seed_range, default=seed_range("10-17"), help="10-17")
    parser.add_argument("--out", default=DEFAULT_OUT, help="result folder")
    args = parser.parse_args(argv)
    chosen = [s for s in args.settings.split(",") if s and s != REFERENCE]
    for setting in chosen:
        try:
            parse_setting(setting)
        except ValueError:
            parser.error(f"a setting is encoder:batch:epochs, got {setting!r}")
    settings = [REFERENCE, *chosen]
    torch.set_num_threads(1)
    results = run_record("width_holdout", args.seeds, settings=settings, **LEARNER)
    score("conv4-small:128:1", args.seeds[0])  # warm-up: the first stream pays allocations
    runs: dict[str, list[dict[str, float]]] = {setting: [] for setting in settings}
    for seed in args.seeds:  # interleaved: a machine that slows down slows them all
        for setting in settings:
            runs[setting].append(score(setting, seed))
    results["rows"] = [
        {**parse_setting(setting), **summarise(done)} for setting, done in runs.items()
    ]
    print(write_results(args.out, "width_holdout", results, render(results)))
    return results


if __name__ == "__main__":
    main()
