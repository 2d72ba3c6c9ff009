"""Where a class-incremental stream's training CPU time goes: the Siamese learner against
siamcl's standard network with replay, like for like (16x16 inputs, conv4-half, batches of
32, 20 exemplars a class, mnist5k in 5 tasks), as ``siamcl bench energy``'s
``siamese-16px-half-b32`` and ``standard-16px-half-b32`` rows train.

Each part of the work is timed where it is called (CPU time of the process, one torch
thread) by wrapping, for the length of a run, the function that does it: distorting a batch,
the previous encoder's forward pass (distillation targets), the loss's forward pass (the
metric loss with its miner, or cross-entropy), ``backward``, the optimizer step and, after
each task, the Siamese learner's consolidation (one embedding pass of the task: exemplars and
prototypes). The rest (the student's forward pass, batch sampling, the loop) is the metered
training CPU time (the task reports') less those parts. Interleaved rounds; the round of
median total stands for each run; seeds 0-2.

    python benchmarks/stream_cost.py [--rounds 3] [--epochs 3] [--out DIR]
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from siamcl.augment import RandomAffine
from siamcl.compress.teachers import FrozenTeacher
from siamcl.data import class_incremental, load_dataset
from siamcl.learners import incremental
from siamcl.learners.incremental import IncrementalClassifier
from siamcl.learners.softmax import SoftmaxClassifier
from siamcl.losses.terms import CrossEntropyTerm, MetricTerm
from siamcl.reporting import markdown_table
from siamcl.reporting.records import record_markdown, timing_script

SEEDS = (0, 1, 2)
LIKE_FOR_LIKE = {"input_size": (16, 16), "encoder": "conv4-half", "batch_size": 32}
LEARNERS = {"siamese": IncrementalClassifier, "standard": SoftmaxClassifier}
# part: (owner, attribute) of the function that does it
PARTS = {
    "distorting batches": (RandomAffine, "__call__"),
    "previous encoder's forward": (FrozenTeacher, "forward"),
    "metric loss and miner (forward)": (MetricTerm, "forward"),
    "cross-entropy (forward)": (CrossEntropyTerm, "forward"),
    "backward": (torch.Tensor, "backward"),
    "optimizer step": (torch.optim.Adam, "step"),
    "consolidation (exemplars, prototypes)": (incremental, "consolidate"),
}
REST = "the rest (student forward, sampling, loop)"


@contextlib.contextmanager
def timed_parts(seconds: dict[str, float]) -> Iterator[None]:
    """Add each part's CPU seconds to ``seconds`` while inside; the functions are restored
    on leaving."""
    originals = {part: getattr(*where) for part, where in PARTS.items()}

    def timed(part: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                seconds[part] += time.process_time() - start

        return wrapper

    try:
        for part, (owner, name) in PARTS.items():
            setattr(owner, name, timed(part, originals[part]))
        yield
    finally:
        for part, (owner, name) in PARTS.items():
            setattr(owner, name, originals[part])


def one_stream(method: str, epochs: int, seed: int, data: tuple[Any, ...]) -> dict[str, Any]:
    """One stream of ``method``: its parts' CPU seconds, its metered total and accuracy."""
    X, y, X_test, y_test = data
    learner = LEARNERS[method](epochs=epochs, memory_per_class=20, seed=seed, **LIKE_FOR_LIKE)
    seconds = dict.fromkeys(PARTS, 0.0)
    with timed_parts(seconds):
        reports = [learner.fit_task(t.X, t.y) for t in class_incremental(X, y, 5, seed=seed)]
    total = sum(report.cpu_s for report in reports)
    parts = {part: s for part, s in seconds.items() if s > 0}
    parts[REST] = total - sum(parts.values())
    accuracy = float(np.mean(learner.predict(X_test) == y_test))
    return {
        "method": method,
        "seed": seed,
        "total_cpu_s": total,
        "parts": parts,
        "accuracy": accuracy,
    }


def measure(rounds: int, epochs: int) -> list[dict[str, Any]]:
    data = load_dataset("mnist5k")
    for method in LEARNERS:  # one-off costs (imports, first kernels) on no measured run
        one_stream(method, 1, 0, (data[0][::20], data[1][::20], *data[2:]))
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for _ in range(rounds):
        for seed in SEEDS:
            for method in LEARNERS:
                runs.setdefault((method, seed), []).append(one_stream(method, epochs, seed, data))
    rows = []
    for repeats in runs.values():
        middle = sorted(repeats, key=lambda run: run["total_cpu_s"])[(len(repeats) - 1) // 2]
        rows.append({**middle, "repeat_totals": [run["total_cpu_s"] for run in repeats]})
    return rows


def _mean_parts(rows: list[dict[str, Any]], method: str) -> dict[str, float]:
    mine = [row for row in rows if row["method"] == method]
    parts = {part for row in mine for part in row["parts"]}
    return {part: statistics.mean(row["parts"].get(part, 0.0) for row in mine) for part in parts}


def render(results: dict[str, Any]) -> str:
    rows = results["rows"]
    means = {method: _mean_parts(rows, method) for method in LEARNERS}
    totals = {method: sum(means[method].values()) for method in LEARNERS}
    order = [*[p for p in PARTS if any(p in m for m in means.values())], REST]
    cells = [
        [
            part,
            *(
                f"{means[m][part]:.2f} ({means[m][part] / totals[m]:.0%})"
                if part in means[m]
                else ""
                for m in LEARNERS
            ),
        ]
        for part in order
    ]
    cells.append(["**total**", *(f"**{totals[m]:.2f}**" for m in LEARNERS)])
    accuracy = {
        m: statistics.mean(r["accuracy"] for r in rows if r["method"] == m) for m in LEARNERS
    }
    siamese_only = ("previous encoder's forward", "consolidation (exemplars, prototypes)")
    without = totals["siamese"] - sum(means["siamese"].get(p, 0.0) for p in siamese_only)
    spread = max(max(r["repeat_totals"]) / min(r["repeat_totals"]) for r in rows)
    settings = results["settings"]
    return (
        "# Where a class-incremental stream's training CPU time goes\n\n"
        f"{record_markdown(results)}\n\n"
        f"mnist5k in 5 tasks, {settings['epochs']} epochs a task, 16x16 inputs, conv4-half, "
        "batches of 32, 20 exemplars a class; CPU seconds of a whole stream (one torch "
        f"thread), means over seeds {list(SEEDS)} of the round of median total "
        f"({settings['rounds']} interleaved rounds; a run's rounds spread up to "
        f"{spread:.2f}x). Each part is timed where it is called; the rest is the metered "
        "training CPU time less the parts. Absolute times hold for this machine only.\n\n"
        f"{markdown_table(['part', 'Siamese CPU s (share)', 'standard CPU s (share)'], cells)}"
        "\n\n"
        f"Final accuracy: Siamese {accuracy['siamese']:.3f}, standard network "
        f"{accuracy['standard']:.3f}. A Siamese stream costs "
        f"{totals['siamese'] / totals['standard']:.2f}x the standard network's; without the "
        f"previous encoder's forward pass and the consolidation it would cost "
        f"{without / totals['standard']:.2f}x (arithmetic on the parts, not a run).\n"
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    options = {"epochs": (3, "epochs a task")}
    return timing_script(
        "stream_cost", __doc__.splitlines()[0], argv, options, measure, render, seeds=SEEDS
    )


if __name__ == "__main__":
    main()
