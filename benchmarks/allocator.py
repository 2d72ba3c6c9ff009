"""malloc as the system sets it against :func:`siamcl.allocator.retain_freed_memory`: user and
kernel CPU time, minor page faults and peak memory of the work siamcl repeats, each piece of
work under each setting in a fresh process (a malloc setting cannot be undone, and the heap one
piece leaves would change the next), interleaved rounds, one torch thread.

Work: embedding mnist5k's 4,000 training images with an untrained
conv4 (the prototype pass, ``embed_in_batches``'s batches), embedding 500 random 105x105
images (Omniglot's size), the Siamese learner's and the standard network's 2-epoch training on
mnist5k (each including its own finishing work), and 10,000 predictions of the Siamese learner
just trained.

    python benchmarks/allocator.py [--rounds 3] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from siamcl.reporting import markdown_table, run_record, write_results
from siamcl.reporting.records import DEFAULT_OUT

SETTINGS = ("system", "retained")
PHASES = (
    "embed mnist5k (4,000 x 28x28)",
    "embed 500 x 105x105",
    "Siamese learner, 2 epochs",
    "standard network, 2 epochs",
    "10,000 predictions",
)


def _usage() -> tuple[float, float, int]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime, usage.ru_minflt


def _measured(work: Callable[[], Any]) -> dict[str, float]:
    before = _usage()
    work()
    after = _usage()
    return {
        "user_s": after[0] - before[0],
        "kernel_s": after[1] - before[1],
        "minor_faults": after[2] - before[2],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def child(setting: str, phase: int) -> dict[str, float]:
    """The measurement of work ``PHASES[phase]`` under ``setting``, after a warm-up."""
    if setting == "retained":
        from siamcl.allocator import retain_freed_memory

        if not retain_freed_memory():
            raise SystemExit("this C library has no mallopt: nothing to compare")
    import numpy as np
    import torch

    from siamcl.data import load_dataset
    from siamcl.encoders import build_encoder
    from siamcl.learners.incremental import IncrementalClassifier
    from siamcl.learners.softmax import SoftmaxClassifier
    from siamcl.training import embed_in_batches, prefer_channels_last

    torch.set_num_threads(1)
    torch.manual_seed(0)
    X, y, X_test, _ = load_dataset("mnist5k")
    small = torch.from_numpy(X[:, None].astype(np.float32) / 255)
    large = torch.rand(500, 1, 105, 105, generator=torch.Generator().manual_seed(0))
    encoders = {
        size: prefer_channels_last(build_encoder("conv4", (1, size, size))) for size in (28, 105)
    }
    embed_in_batches(encoders[28], small[:64])  # warm-up: library loading, first primitives
    siamese = IncrementalClassifier(encoder="conv4", epochs=2, memory_per_class=0, seed=0)
    standard = SoftmaxClassifier(encoder="conv4", epochs=2, memory_per_class=0, seed=0)
    queries = np.concatenate([X_test] * 10)
    work = [
        lambda: embed_in_batches(encoders[28], small),
        lambda: embed_in_batches(encoders[105], large),
        lambda: siamese.fit_task(X, y),
        lambda: standard.fit_task(X, y),
        lambda: siamese.predict(queries),
    ]
    if PHASES[phase] == "10,000 predictions":
        siamese.fit_task(X, y)  # not measured: predictions follow a training
    return _measured(work[phase])


def measure(rounds: int) -> list[dict[str, Any]]:
    samples: dict[tuple[str, int], list[dict[str, float]]] = {}
    for _ in range(rounds):
        for phase in range(len(PHASES)):
            for setting in SETTINGS:
                out = subprocess.run(
                    [sys.executable, __file__, "--child", setting, "--phase", str(phase)],
                    check=True,
                    capture_output=True,
                    text=True,
                    env={**os.environ, "OMP_NUM_THREADS": "1"},
                ).stdout
                sample = json.loads(out.strip().splitlines()[-1])
                samples.setdefault((setting, phase), []).append(sample)
    rows = []
    for phase, name in enumerate(PHASES):
        medians = {
            setting: {
                key: statistics.median(run[key] for run in samples[setting, phase])
                for key in ("user_s", "kernel_s", "minor_faults", "peak_rss_mb")
            }
            for setting in SETTINGS
        }
        cpu = {s: medians[s]["user_s"] + medians[s]["kernel_s"] for s in SETTINGS}
        rows.append({"phase": name, **medians, "cpu_ratio": cpu["retained"] / cpu["system"]})
    return rows


def render(results: dict[str, Any]) -> str:
    table = markdown_table(
        [
            "work",
            "system: user s",
            "kernel s",
            "page faults",
            "retained: user s",
            "kernel s",
            "page faults",
            "CPU time ratio",
            "peak RSS MB system / retained",
        ],
        [
            [
                r["phase"],
                f"{r['system']['user_s']:.2f}",
                f"{r['system']['kernel_s']:.2f}",
                f"{r['system']['minor_faults']:,.0f}",
                f"{r['retained']['user_s']:.2f}",
                f"{r['retained']['kernel_s']:.2f}",
                f"{r['retained']['minor_faults']:,.0f}",
                f"{r['cpu_ratio']:.2f}x",
                f"{r['system']['peak_rss_mb']:,.0f} / {r['retained']['peak_rss_mb']:,.0f}",
            ]
            for r in results["rows"]
        ],
    )
    machine = results["machine"]
    return (
        "# malloc: system setting against freed memory retained\n\n"
        f"Command: `{results['command']}`  \nMachine: {machine.get('processor')}, "
        f"{machine.get('cpu_count')} CPUs, torch {machine.get('torch')}, 1 torch thread; "
        f"median of {results['settings']['rounds']} interleaved rounds, each setting in a "
        "fresh process per piece of work; peak RSS is that process's peak. "
        "Absolute times hold for this machine only.\n\n"
        f"{table}\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (3)")
    parser.add_argument("--out", default=DEFAULT_OUT, help="result folder")
    parser.add_argument("--child", choices=SETTINGS, help=argparse.SUPPRESS)
    parser.add_argument("--phase", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.phase)))
        return
    results = {**run_record("allocator", [0], rounds=args.rounds, torch_threads=1)}
    results["rows"] = measure(args.rounds)
    print(write_results(args.out, "allocator", results, render(results)))


if __name__ == "__main__":
    main()
