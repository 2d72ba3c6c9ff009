"""Garbage-collection pauses inside measured runs of a suite's process, with earlier runs'
survivors frozen (``siamcl.bench.warm_up.freeze_survivors``, as siamcl's suites run) and
without.

The multi-class digits rows of ``siamcl bench energy`` that quantize or distil (the Siamese
teacher, int8 QAT, post-training int8, the KD and quantized-KD students) run for seeds 0 and
1 in one process, first without freezing, then with it; a ``gc.callbacks`` hook times
every collection of the oldest generation (CPU time) during each run.

    python benchmarks/gc_pauses.py [--rounds 1] [--out DIR]
"""

from __future__ import annotations

import gc
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from siamcl.bench import energy_multiclass
from siamcl.data import load_dataset
from siamcl.reporting import markdown_table
from siamcl.reporting.records import record_markdown, timing_script

SEEDS = (0, 1)
ROWS = ("siamese", "qat-int8", "siamese-ptq", "kd-student", "qkd-student")
SETTINGS = {
    "device": "cpu",
    "batch_size": 128,
    "epochs": 6,
    "checks_per_epoch": 4,
    "student_epochs": 10,
    "student_lr": 3e-3,
}


class OldestGenerationPauses:
    """CPU seconds of each collection of the oldest generation while installed."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._start = time.process_time()
        else:
            self.pauses.append(time.process_time() - self._start)


def measure(rounds: int) -> list[dict[str, Any]]:
    data = load_dataset("digits")
    pauses = OldestGenerationPauses()
    gc.callbacks.append(pauses)
    freeze = energy_multiclass.freeze_survivors
    rows = []
    try:
        for frozen in (False, True):
            energy_multiclass.freeze_survivors = freeze if frozen else lambda: None
            for _ in range(rounds):
                for seed in SEEDS:
                    runner = energy_multiclass.MulticlassRunner(data, SETTINGS, seed)
                    for method in ROWS:
                        pauses.pauses.clear()
                        start = time.process_time()
                        run = runner.run(method)
                        rows.append(
                            {
                                "frozen": frozen,
                                "seed": seed,
                                "method": method,
                                "cpu_s": time.process_time() - start,
                                "energy_j": run["report"]["energy_j"],
                                "pauses": len(pauses.pauses),
                                "pause_cpu_s": float(np.sum(pauses.pauses)),
                                "longest_pause_s": max(pauses.pauses, default=0.0),
                                "tracked_objects": len(gc.get_objects()),
                                "frozen_objects": gc.get_freeze_count(),
                            }
                        )
    finally:
        energy_multiclass.freeze_survivors = freeze
        gc.callbacks.remove(pauses)
    return rows


def render(results: dict[str, Any]) -> str:
    cells = [
        [
            "frozen" if r["frozen"] else "not frozen",
            str(r["seed"]),
            r["method"],
            f"{r['cpu_s']:.2f}",
            str(r["pauses"]),
            f"{r['pause_cpu_s']:.3f}",
            f"{r['longest_pause_s']:.3f}",
            f"{r['tracked_objects']:,}",
            f"{r['frozen_objects']:,}",
        ]
        for r in results["rows"]
    ]
    header = [
        "earlier survivors",
        "seed",
        "row",
        "run CPU s",
        "oldest-generation collections",
        "their CPU s",
        "longest",
        "tracked objects after",
        "frozen",
    ]
    return (
        "# Garbage-collection pauses inside a suite's measured runs\n\n"
        f"{record_markdown(results)}\n\n"
        "Multi-class digits rows of `siamcl bench energy` (6 epochs, students 10, checks at "
        "quarter epochs) run one after another in one process, first without freezing the "
        "survivors of earlier runs, then with `gc.freeze` before each run; each collection of "
        "the oldest generation during a run timed in CPU seconds. Run CPU s includes the "
        "benchmark's checks. Absolute times hold for this machine only.\n\n"
        f"{markdown_table(header, cells)}\n"
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    description = __doc__.splitlines()[0]
    return timing_script("gc_pauses", description, argv, {}, measure, render, seeds=SEEDS)


if __name__ == "__main__":
    main()
