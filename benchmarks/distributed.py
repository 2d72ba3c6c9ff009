"""Speed-up of data-parallel training (torchrun, gloo) over one process on this machine.

One task large enough to matter (every mnist5k training image, conv4, ``--epochs`` epochs,
global batch 128) is learned by ``IncrementalClassifier.fit_task`` in three set-ups that each
use the machine's cores: one process with all of them as torch threads, one process with one
thread, and ``--nproc`` processes with ``cores // nproc`` threads each. Each set-up runs in a
fresh process (torchrun for the parallel one), ``--repeats`` times, alternating; reports the
median task wall time, accuracy, and speed-ups against one process.

Usage: python benchmarks/distributed.py [--nproc 2] [--epochs 3] [--repeats 2] [--seeds 0]
       [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from siamcl.cli.help import HelpFormatter
from siamcl.reporting import (
    DEFAULT_OUT,
    markdown_table,
    parse_seeds,
    record_markdown,
    run_record,
    write_results,
)


def worker(out: Path, epochs: int, threads: int, seed: int = 0) -> None:
    """One fit_task on all of mnist5k; rank 0 writes its accuracy and report to ``out``."""
    import torch

    from siamcl import IncrementalClassifier
    from siamcl.data import load_dataset
    from siamcl.distributed import Ranks

    torch.set_num_threads(threads)
    X_train, y_train, X_test, y_test = load_dataset("mnist5k")
    clf = IncrementalClassifier(encoder="conv4", epochs=epochs, batch_size=128, seed=seed)
    report = clf.fit_task(X_train, y_train)
    if Ranks.current().rank == 0:
        out.write_text(json.dumps({"accuracy": clf.score(X_test, y_test), **report.to_dict()}))


def _threads(n: int) -> str:
    return f"{n} thread" + ("s" if n > 1 else "")


def launch(processes: int, threads: int, epochs: int, seed: int = 0) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        script = [str(Path(__file__).resolve()), "--worker", str(out)]
        script += ["--epochs", str(epochs), "--threads", str(threads), "--seeds", str(seed)]
        if processes == 1:
            command = [sys.executable, *script]
        else:
            command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
            command += ["--nproc_per_node", str(processes), *script]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        subprocess.run(command, check=True, env=env)
        return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> dict:
    args = _arguments(argv)
    (seed,) = args.seeds
    if args.worker is not None:
        worker(args.worker, args.epochs, args.threads, seed)
        return {}
    record = run_record(
        "distributed", args.seeds, nproc=args.nproc, epochs=args.epochs
    )  # taken before the work: the commit and date it started at
    cores = os.cpu_count() or 1
    setups = {
        f"1 process x {_threads(cores)}": (1, cores),
        "1 process x 1 thread": (1, 1),
        f"{args.nproc} processes x {_threads(max(1, cores // args.nproc))}": (
            args.nproc,
            max(1, cores // args.nproc),
        ),
    }
    runs: dict[str, list[dict]] = {name: [] for name in setups}
    for _ in range(args.repeats):
        for name, (processes, threads) in setups.items():
            runs[name].append(launch(processes, threads, args.epochs, seed))
            print(f"{name}: {runs[name][-1]['wall_s']:.1f} s", flush=True)
    results = {
        **record,
        "setups": {name: list(spec) for name, spec in setups.items()},
        "runs": runs,
        "summary": _summary(runs),
    }
    markdown = _markdown(results, args)
    write_results(Path(args.out), "distributed", results, markdown)
    print(markdown)
    return results


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--nproc", type=int, default=2, help="processes of the parallel set-up")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the task")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each set-up")
    parser.add_argument("--seeds", type=parse_seeds, default="0", help="the learner's seed")
    parser.add_argument("--out", default=DEFAULT_OUT, help="result folder")
    parser.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if len(args.seeds) != 1:
        parser.error("--seeds: this benchmark measures one task; give one seed")
    return args


def _summary(runs: dict[str, list[dict]]) -> dict[str, dict]:
    """Medians of each set-up's runs, and speed-ups against the first set-up."""
    baseline = statistics.median(r["wall_s"] for r in next(iter(runs.values())))
    summary = {}
    for name, results in runs.items():
        wall = statistics.median(r["wall_s"] for r in results)
        summary[name] = {
            "wall_s": wall,
            "speedup_vs_1_process": baseline / wall,
            "accuracy": statistics.median(r["accuracy"] for r in results),
            "energy_j": statistics.median(r["energy_j"] for r in results),
            "cpu_s": statistics.median(r["cpu_s"] for r in results),
        }
    return summary


def _markdown(results: dict, args: argparse.Namespace) -> str:
    from siamcl.data import load_dataset

    n_train = len(load_dataset("mnist5k")[0])
    rows = [
        [name, s["wall_s"], s["speedup_vs_1_process"], s["accuracy"], s["cpu_s"]]
        for name, s in results["summary"].items()
    ]
    return "\n".join(
        [
            "# Data-parallel training: processes against threads on one machine",
            "",
            record_markdown(results) + "  ",
            (
                f"Task: all {n_train} mnist5k training images as one task, conv4, {args.epochs} "
                f"epochs, global batch 128; median of {args.repeats} runs each, alternating."
            ),
            "",
            markdown_table(
                ["set-up", "task wall s", "speed-up vs 1 process", "accuracy", "CPU s"], rows
            ),
            "",
            (
                "Speed-ups are against the first row (one process using every core as torch "
                "threads). The parallel row runs under torchrun with the gloo backend on this "
                "machine; its report sums CPU time and energy over the processes."
            ),
        ]
    )


if __name__ == "__main__":
    main()
