"""The default IncrementalClassifier on a class-incremental stream, and trained jointly.

Reports, per seed, the accuracy matrix (rows: after task t; columns: task j's test classes),
final average accuracy, forgetting and the stream's cost; then the same learner trained on
all classes at once (one task) as the joint reference.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from siamcl.bench.warm_up import freeze_survivors, warm_up_on_a_small_stream
from siamcl.data import Task, class_incremental, load_dataset
from siamcl.evaluation import evaluate_stream
from siamcl.learners.incremental import IncrementalClassifier
from siamcl.reporting import markdown_table, record_markdown, run_record, write_results


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", type=int, default=5, help="number of tasks (default 5)")
    parser.add_argument("--memory", type=int, default=20, help="exemplars per class (default 20)")
    parser.add_argument("--no-joint", action="store_true", help="skip the joint reference")
    parser.add_argument(
        "--checkpoint",
        default=None,
        metavar="DIR",
        help="save each stream after every task under DIR and, run again with the same DIR, "
        "resume after the last finished task",
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    seeds = args.seeds or [0, 1, 2]
    X_train, y_train, X_test, y_test = load_dataset(args.dataset, data_root=args.data_root)
    params = {"memory_per_class": args.memory, "device": args.device, "progress": not args.quiet}
    if args.quick:
        params["epochs"] = 2
    record = run_record(  # before the work: the commit it started at
        "core",
        seeds,
        dataset=args.dataset,
        tasks=args.tasks,
        **params,
        learner=repr(IncrementalClassifier(**params)),
    )
    quiet = {**params, "progress": False}  # the process's one-off costs fall on no seed's run
    warm_up_on_a_small_stream(
        X_train, y_train, lambda *run: evaluate_stream(IncrementalClassifier(**quiet), *run)
    )
    runs = []
    for seed in seeds:
        tasks = class_incremental(X_train, y_train, n_tasks=args.tasks, seed=seed)
        checkpoint = Path(args.checkpoint) / f"seed-{seed}" if args.checkpoint else None
        freeze_survivors()  # earlier runs' objects out of this run's garbage collections
        stream = evaluate_stream(
            IncrementalClassifier(seed=seed, **params),
            tasks,
            X_test,
            y_test,
            checkpoint_dir=checkpoint and checkpoint / "stream",
        )
        row = {"seed": seed, "class_order": [list(t.classes) for t in tasks], **stream}
        if not args.no_joint:
            joint = IncrementalClassifier(seed=seed, **params)
            if checkpoint is None:
                report = joint.fit_task(X_train, y_train)
            else:  # a stream of one task, so a finished joint model is not trained again
                everything = Task(X_train, y_train, tuple(np.unique(y_train).tolist()), 0)
                (report,) = joint.fit_stream([everything], checkpoint / "joint")
            row["joint_accuracy"] = joint.score(X_test, y_test)
            row["joint_report"] = report.to_dict()
        runs.append(row)
        if not args.quiet:
            print(f"seed {seed}: final accuracy {stream['accuracy']:.3f}", flush=True)
    results = {
        **record,
        "runs": runs,
        "summary": _summary(runs),
    }
    markdown = _markdown(results)
    write_results(args.out, f"core_{args.dataset}", results, markdown)
    print(markdown)
    return results


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def stats(values: list[float]) -> dict[str, float]:
        return {"mean": float(np.mean(values)), "std": float(np.std(values))}

    summary = {
        "final_accuracy": stats([r["accuracy"] for r in runs]),
        "forgetting": stats([r["forgetting"] for r in runs]),
        "stream_wall_s": stats([r["report"]["wall_s"] for r in runs]),
        "stream_energy_j": stats([r["report"]["energy_j"] for r in runs]),
        "energy_method": runs[0]["report"]["energy_method"],
    }
    if "joint_accuracy" in runs[0]:
        summary["joint_accuracy"] = stats([r["joint_accuracy"] for r in runs])
    return summary


def _markdown(results: dict[str, Any]) -> str:
    s = results["summary"]
    lines = [
        f"# Core benchmark: IncrementalClassifier on {results['settings']['dataset']}",
        "",
        f"Learner: `{results['settings']['learner']}`  ",
        record_markdown(results),
        "",
        markdown_table(
            ["metric", "mean", "std"],
            [[name, v["mean"], v["std"]] for name, v in s.items() if isinstance(v, dict)],
        ),
        "",
        f"Energy method: {s['energy_method']} (see docs/energy.md).",
    ]
    for run in results["runs"]:
        matrix = np.asarray(run["accuracy_matrix"])
        headers = ["after task"] + [
            f"task {j} {tuple(c)}" for j, c in enumerate(run["class_order"])
        ]
        rows = [
            [t] + [matrix[t, j] if j <= t else "" for j in range(len(matrix))]
            for t in range(len(matrix))
        ]
        lines += [
            "",
            f"## Seed {run['seed']}: accuracy matrix",
            "",
            markdown_table(headers, rows),
            "",
            (
                f"Final accuracy on all classes {run['accuracy']:.3f}, forgetting "
                f"{run['forgetting']:.3f}, stream wall time {run['report']['wall_s']:.0f} s, "
                f"energy {run['report']['energy_j']:.0f} J ({run['report']['energy_method']})."
            ),
        ]
        if "joint_accuracy" in run:
            lines[-1] += f" Joint training (one task): accuracy {run['joint_accuracy']:.3f}."
    return "\n".join(lines)
