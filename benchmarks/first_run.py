"""What a process's first class-incremental run pays that later runs do not, and whether
``siamcl bench energy``'s warm-up takes it off the measured runs.

The first training in a fresh process pays one-off costs (lazy imports such as the
optimiser's, first-call kernel set-up), and the learner's meter counts them. This runs the
same stream (mnist5k, 5 tasks, one epoch a task, 16x16 inputs, seed 0) several times in a
fresh process, "cold", and in another fresh process after the bench's class-incremental
warm-up (:func:`siamcl.bench.energy.warm_up_cil`), "warmed", and records each run's metered
training CPU seconds. One torch thread; freed memory kept for reuse, as the ``siamcl``
command keeps it (:mod:`siamcl.allocator`).

    python benchmarks/first_run.py [--runs 3] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import torch

from siamcl import IncrementalClassifier
from siamcl.allocator import allocator_setting, retain_unless_disabled
from siamcl.data import class_incremental, load_dataset
from siamcl.reporting import markdown_table, run_record, write_results
from siamcl.reporting.records import DEFAULT_OUT, record_markdown

LEARNER = {"encoder": "conv4", "epochs": 1, "input_size": (16, 16), "seed": 0}
BENCH = ["bench", "energy", "--parts", "cil", "--cil-methods", "siamese-16px", "--quiet"]


def child(way: str, runs: int) -> dict[str, object]:
    """The metered CPU seconds of ``runs`` streams in this process, after the bench's
    warm-up if ``way`` is "warmed"."""
    torch.set_num_threads(1)
    retain_unless_disabled()  # as the siamcl command starts
    X, y, _, _ = load_dataset("mnist5k")
    if way == "warmed":
        from siamcl.bench.energy import warm_up_cil
        from siamcl.cli import build_parser

        args = build_parser(BENCH).parse_args(BENCH)
        args.checkpoint = None
        warm_up_cil(args, (X, y))
    seconds = []
    for _ in range(runs):
        learner = IncrementalClassifier(**LEARNER)
        reports = [learner.fit_task(t.X, t.y) for t in class_incremental(X, y, 5, seed=0)]
        seconds.append(sum(r.cpu_s for r in reports))
    return {"cpu_s": seconds, "allocator": allocator_setting()}


def render(results: dict) -> str:
    headers = ["process", *(f"run {i + 1} CPU s" for i in range(results["settings"]["runs"]))]
    cells = [[way, *seconds] for way, seconds in results["cpu_s"].items()]
    return (
        "# A process's first run\n\n"
        f"{record_markdown(results)}\n\n"
        "Metered training CPU seconds of the same stream (mnist5k, 5 tasks, one epoch a task, "
        "16x16 inputs, seed 0), run again and again in one fresh process: cold, and after "
        "`siamcl bench energy`'s class-incremental warm-up. Malloc: "
        f"{results['settings']['allocator']}.\n\n"
        f"{markdown_table(headers, cells)}\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="streams per process (3)")
    parser.add_argument("--out", default=DEFAULT_OUT, help="result folder")
    parser.add_argument("--child", choices=("cold", "warmed"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.runs)))
        return
    results = run_record("first_run", [0], runs=args.runs, **LEARNER)
    results["cpu_s"] = {}
    for way in ("cold", "warmed"):
        command = [sys.executable, __file__, "--child", way, "--runs", str(args.runs)]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        measured = json.loads(done.stdout.strip().splitlines()[-1])
        results["cpu_s"][way] = measured["cpu_s"]
        results["settings"]["allocator"] = measured["allocator"]
    print(write_results(args.out, "first_run", results, render(results)))


if __name__ == "__main__":
    main()
