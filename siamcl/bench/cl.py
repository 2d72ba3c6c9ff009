"""Siamese learner vs Avalanche's continual-learning baselines, with energy, on one stream.

Every method sees the same class-incremental stream (``class_incremental`` with the seed,
turned into an Avalanche benchmark by ``to_avalanche``), the same conv4 backbone, Adam, batch
size and exemplar budget (``--memory`` per class, ``--memory x classes`` in all for the
baselines whose buffer is a total). Rows: siamcl's ``IncrementalClassifier`` (``--siamese-epochs``
a task, and again at the baselines' ``--epochs``), the same learner as ``SiameseStrategy``
inside Avalanche, and Avalanche's Naive, Replay, EWC, LwF, iCaRL, GDumb, StreamingLDA and
JointTraining (see ``siamcl.integrations.avalanche_baselines``).
Accuracy and forgetting come from the accuracy matrix (accuracy on each experience's test
classes after each experience); training cost from ``energy_metrics`` (Avalanche rows) and
the learner's own reports, both siamcl ``ResourceMeter`` measurements. Writes
``cl_<dataset>.json``, ``.md`` and ``.png`` (accuracy against training energy).
"""

from __future__ import annotations

import argparse
import functools
import os
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from siamcl.accounting import sum_reports
from siamcl.data import class_incremental, load_dataset
from siamcl.evaluation import accuracy_matrix_metrics, evaluate_stream
from siamcl.reporting import markdown_table, run_record, write_results

REFERENCE = "siamese"
SIAMESE_ROWS = ("siamese", "siamese-avalanche", "siamese-equal-epochs")
BASELINE_ROWS = ("naive", "replay", "ewc", "lwf", "icarl", "gdumb", "slda", "joint")
METHODS = (*SIAMESE_ROWS, *BASELINE_ROWS)
LABELS = {
    "siamese": "Siamese (siamcl IncrementalClassifier)",
    "siamese-avalanche": "Siamese (SiameseStrategy in Avalanche)",
    "siamese-equal-epochs": "Siamese at the baselines' epochs (IncrementalClassifier)",
    "naive": "Naive (fine-tuning)",
    "replay": "Replay",
    "ewc": "EWC",
    "lwf": "LwF",
    "icarl": "iCaRL",
    "gdumb": "GDumb",
    "slda": "StreamingLDA",
    "joint": "Joint training (upper bound)",
}
DEFAULT_SEEDS = (0, 1, 2)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", type=int, default=5, help="experiences (default 5)")
    parser.add_argument("--memory", type=int, default=20, help="exemplars per class (20)")
    parser.add_argument("--epochs", type=int, default=3, help="baseline epochs per task (3)")
    parser.add_argument(
        "--siamese-epochs", type=int, default=1, help="Siamese learner epochs per task (1)"
    )
    parser.add_argument(
        "--gdumb-epochs", type=int, default=30, help="GDumb epochs over its memory (30)"
    )
    parser.add_argument("--batch-size", type=int, default=128, help="batch size (128)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's choice); 1 is far faster on a busy machine",
    )
    parser.add_argument(
        "--methods",
        default=None,
        help=f"comma-separated subset of {','.join(METHODS)} (default: all; with --nproc: siamese)",
    )
    parser.add_argument(
        "--checkpoint",
        default=None,
        metavar="DIR",
        help="save the IncrementalClassifier streams after every task under DIR and, run "
        "again with the same DIR, resume them after their last finished task",
    )
    parser.add_argument(
        "--nproc",
        "--processes",
        dest="nproc",
        type=int,
        default=1,
        help="train the IncrementalClassifier rows data-parallel on N processes, launched "
        "through torchrun (writes cl_<dataset>_nproc<N>.*; see docs/distributed.md)",
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    methods = _methods(args.methods or ("siamese" if args.nproc > 1 else ",".join(METHODS)))
    ranks = _distributed_ranks(args, methods)
    seeds = args.seeds or ([0] if args.quick else list(DEFAULT_SEEDS))
    epochs, siamese_epochs, gdumb_epochs = args.epochs, args.siamese_epochs, args.gdumb_epochs
    if args.quick:
        epochs, siamese_epochs, gdumb_epochs = 1, 1, 5
    for name, value in (("--tasks", args.tasks), ("--batch-size", args.batch_size)):
        if value < 2:
            raise ValueError(f"{name} must be at least 2, got {value}")
    for name, value in (("--epochs", epochs), ("--siamese-epochs", siamese_epochs)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    if args.memory < 0:
        raise ValueError(f"--memory must be non-negative, got {args.memory}")
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    elif ranks.active:  # the processes share the machine's cores
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // ranks.world))
    X_train, y_train, X_test, y_test = load_dataset(args.dataset, data_root=args.data_root)
    settings = {
        "dataset": args.dataset,
        "tasks": args.tasks,
        "memory_per_class": args.memory,
        "batch_size": args.batch_size,
        "epochs": {
            "siamese": siamese_epochs,
            "siamese-avalanche": siamese_epochs,
            "siamese-equal-epochs": epochs,
            **{name: epochs for name in BASELINE_ROWS},
            "gdumb": gdumb_epochs,
            "slda": 1,
        },
        "optimizer": "Adam lr 1e-3",
        "backbone": "conv4 (64 channels, 64-d features)",
        "methods": methods,
        "processes": ranks.world,
        "torch_threads": torch.get_num_threads(),
    }
    runs = []
    for seed in seeds:
        tasks = class_incremental(X_train, y_train, n_tasks=args.tasks, seed=seed)
        context = _Context(args, tasks, X_test, y_test, seed, settings)
        for name in tqdm(methods, desc=f"seed {seed}", disable=args.quiet):
            runs.append({"method": name, "seed": seed, **context.run(name)})
    results = {**run_record("cl", seeds, **settings), "runs": runs}
    results["summary"] = summarise(runs, methods)
    results["bar"] = bar_check(results["summary"])
    if ranks.rank != 0:  # every rank holds the same results; rank 0 writes them
        return results
    name = f"cl_{args.dataset}" + (f"_nproc{ranks.world}" if ranks.active else "")
    markdown = _markdown(results)
    write_results(args.out, name, results, markdown)
    _plot(results, f"{args.out}/{name}.png")
    if not args.quiet:
        print(markdown)
    return results


class _Context:
    """One seed's stream and what every method run on it needs."""

    def __init__(self, args, tasks, X_test, y_test, seed, settings):
        self.args, self.tasks, self.seed, self.settings = args, tasks, seed, settings
        self.X_test, self.y_test = X_test, y_test
        self.n_classes = sum(len(task.classes) for task in tasks)

    @functools.cached_property
    def benchmark(self) -> Any:
        """The stream as an Avalanche benchmark, built only when an Avalanche row runs
        (Avalanche cannot be imported in the non-zero ranks of a ``--nproc`` run)."""
        from siamcl.integrations.avalanche_streams import to_avalanche

        return to_avalanche(self.tasks, self.X_test, self.y_test)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.benchmark.train_stream[0].dataset[0][0].shape)

    def run(self, name: str) -> dict[str, Any]:
        start = time.perf_counter()
        try:
            if name in ("siamese", "siamese-equal-epochs"):
                result = self._incremental_classifier(name, self.settings["epochs"][name])
            else:
                result = self._avalanche(name)
        except Exception as error:  # noqa: BLE001 - a failing baseline is a row with its error
            result = {"error": f"{type(error).__name__}: {error}"}
            result["traceback"] = traceback.format_exc(limit=6)
        result["epochs"] = self.settings["epochs"][name]
        result["run_wall_s"] = time.perf_counter() - start
        return result

    def _incremental_classifier(self, name: str, epochs: int) -> dict[str, Any]:
        from siamcl.learners.incremental import IncrementalClassifier

        learner = IncrementalClassifier(
            encoder="conv4",
            epochs=epochs,
            batch_size=self.args.batch_size,
            memory_per_class=self.args.memory,
            device=self.args.device,
            seed=self.seed,
        )
        checkpoint = (
            self.args.checkpoint and Path(self.args.checkpoint) / f"{name}-seed-{self.seed}"
        )
        result = evaluate_stream(
            learner, self.tasks, self.X_test, self.y_test, checkpoint_dir=checkpoint
        )
        result.pop("task_reports")
        return result

    def _avalanche(self, name: str) -> dict[str, Any]:
        from avalanche.evaluation.metrics import accuracy_metrics
        from avalanche.training.plugins import EvaluationPlugin

        from siamcl.integrations.avalanche_metrics import TrainingCost

        torch.manual_seed(self.seed)
        cost = TrainingCost(device=self.args.device)
        evaluator = EvaluationPlugin(
            accuracy_metrics(experience=True, stream=True), cost, loggers=[]
        )
        strategy = self._strategy(name, evaluator)
        stream, test = self.benchmark.train_stream, self.benchmark.test_stream
        n = len(stream)
        rows = []
        if name == "joint":
            strategy.train(stream)
            metrics = strategy.eval(test)
        else:
            for experience in stream:
                strategy.train(experience)
                metrics = strategy.eval(test)
                rows.append([metrics[_accuracy_key(j)] for j in range(n)])
        accuracy = float(metrics["Top1_Acc_Stream/eval_phase/test_stream/Task000"])
        result: dict[str, Any] = {"accuracy": accuracy}
        if rows:
            result.update(accuracy_matrix_metrics(np.asarray(rows)))
            result["accuracy_matrix"] = rows
        else:
            result["final_accuracy"] = float(np.mean([metrics[_accuracy_key(j)] for j in range(n)]))
            result["forgetting"] = None
        result["report"] = sum_reports(cost.reports).to_dict()
        result["report"]["retained_bytes"] = dict(cost.reports[-1].retained_bytes)
        return result

    def _strategy(self, name: str, evaluator: Any) -> Any:
        from siamcl.integrations.avalanche_baselines import BaselineSettings, build_baseline
        from siamcl.integrations.avalanche_strategy import SiameseStrategy

        if name == "siamese-avalanche":
            return SiameseStrategy(
                encoder="conv4",
                input_shape=self.input_shape,
                memory_per_class=self.args.memory,
                train_epochs=self.settings["epochs"][name],
                train_mb_size=self.args.batch_size,
                device=self.args.device,
                seed=self.seed,
                evaluator=evaluator,
            )
        settings = BaselineSettings(
            input_shape=self.input_shape,
            n_classes=self.n_classes,
            n_experiences=len(self.tasks),
            epochs=self.settings["epochs"]["naive"],
            gdumb_epochs=self.settings["epochs"]["gdumb"],
            batch_size=self.args.batch_size,
            memory_total=self.args.memory * self.n_classes,
            device=self.args.device,
            seed=self.seed,
        )
        return build_baseline(name, settings, evaluator)


def _distributed_ranks(args: argparse.Namespace, methods: list[str]) -> Any:
    """The process group of a ``--nproc`` run (launched by ``siamcl``'s torchrun relaunch)."""
    from siamcl.distributed import Ranks

    if args.nproc < 1:
        raise ValueError(f"--nproc must be at least 1, got {args.nproc}")
    if args.nproc == 1:
        return Ranks()
    unsupported = sorted(set(methods) - {"siamese", "siamese-equal-epochs"})
    if unsupported:
        raise ValueError(
            f"--nproc trains only the IncrementalClassifier rows (siamese, "
            f"siamese-equal-epochs); drop {', '.join(unsupported)} from --methods"
        )
    ranks = Ranks.current(args.device)
    if ranks.world != args.nproc:
        raise ValueError(
            f"--nproc {args.nproc} needs {args.nproc} processes under torchrun, found "
            f"{ranks.world}: run it through the siamcl command, which launches them"
        )
    return ranks


def _accuracy_key(experience: int) -> str:
    return f"Top1_Acc_Exp/eval_phase/test_stream/Task000/Exp{experience:03d}"


def _methods(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = sorted(set(names) - set(METHODS))
    if unknown or not names:
        raise ValueError(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")
    return list(dict.fromkeys(names))


def summarise(runs: list[dict[str, Any]], methods: list[str]) -> list[dict[str, Any]]:
    """Mean and spread over seeds per method, with energy ratios to the Siamese learner."""
    reference = {
        r["seed"]: r["report"]["energy_j"]
        for r in runs
        if r["method"] == REFERENCE and "report" in r
    }
    summary = []
    for name in methods:
        done = [r for r in runs if r["method"] == name and "error" not in r]
        failed = [r for r in runs if r["method"] == name and "error" in r]
        row: dict[str, Any] = {
            "method": name,
            "label": LABELS[name],
            "epochs": next(r["epochs"] for r in runs if r["method"] == name),
            "seeds": [r["seed"] for r in done],
            "errors": [f"seed {r['seed']}: {r['error']}" for r in failed],
        }
        if done:
            reports = [r["report"] for r in done]
            accuracy = np.array([r["accuracy"] for r in done])
            forgetting = [r["forgetting"] for r in done if r.get("forgetting") is not None]
            ratios = [
                r["report"]["energy_j"] / reference[r["seed"]]
                for r in done
                if reference.get(r["seed"])
            ]
            row.update(
                accuracy_mean=float(accuracy.mean()),
                accuracy_std=float(accuracy.std(ddof=1)) if len(accuracy) > 1 else 0.0,
                forgetting_mean=float(np.mean(forgetting)) if forgetting else None,
                energy_j=float(np.mean([rep["energy_j"] for rep in reports])),
                energy_method="/".join(sorted({rep["energy_method"] for rep in reports})),
                energy_ratio=float(np.mean(ratios)) if ratios else None,
                cpu_s=float(np.mean([rep["cpu_s"] for rep in reports])),
                wall_s=float(np.mean([rep["wall_s"] for rep in reports])),
                flops=_mean_or_none([rep["flops"] for rep in reports]),
                peak_rss_mib=float(np.mean([rep["peak_rss_bytes"] for rep in reports])) / 2**20,
                retained_bytes=float(
                    np.mean([sum(rep["retained_bytes"].values()) for rep in reports])
                ),
            )
        summary.append(row)
    return summary


def bar_check(summary: list[dict[str, Any]]) -> dict[str, Any]:
    """The acceptance bar: Siamese accuracy >= Replay's and iCaRL's, energy <= 0.5x Replay."""
    rows = {row["method"]: row for row in summary if "accuracy_mean" in row}
    checks: dict[str, Any] = {}
    replay, icarl = rows.get("replay"), rows.get("icarl")
    for name in SIAMESE_ROWS:
        row = rows.get(name)
        if row is None or replay is None or icarl is None:
            continue
        energy_ratio = row["energy_j"] / replay["energy_j"]
        checks[name] = {
            "accuracy": row["accuracy_mean"],
            "replay_accuracy": replay["accuracy_mean"],
            "icarl_accuracy": icarl["accuracy_mean"],
            "energy_vs_replay": energy_ratio,
            "accuracy_at_least_replay_and_icarl": row["accuracy_mean"]
            >= max(replay["accuracy_mean"], icarl["accuracy_mean"]),
            "energy_at_most_half_of_replay": energy_ratio <= 0.5,
        }
        checks[name]["met"] = (
            checks[name]["accuracy_at_least_replay_and_icarl"]
            and checks[name]["energy_at_most_half_of_replay"]
        )
    return checks


def summary_table(summary: list[dict[str, Any]]) -> str:
    headers = [
        "method",
        "epochs/task",
        "final accuracy",
        "forgetting",
        "train energy J (method)",
        "energy vs Siamese",
        "CPU s",
        "wall s",
        "GFLOPs",
        "peak RSS MiB",
        "retained KiB",
    ]
    lines = []
    for row in summary:
        if "accuracy_mean" not in row:
            lines.append([row["label"], row["epochs"], "failed: " + "; ".join(row["errors"])])
            lines[-1] += [""] * (len(headers) - 3)
            continue
        lines.append(
            [
                row["label"] + (f" ({len(row['errors'])} failed)" if row["errors"] else ""),
                row["epochs"],
                f"{row['accuracy_mean']:.3f} ± {row['accuracy_std']:.3f}",
                "n/a" if row["forgetting_mean"] is None else f"{row['forgetting_mean']:.3f}",
                f"{row['energy_j']:.0f} ({row['energy_method']})",
                "" if row["energy_ratio"] is None else f"{row['energy_ratio']:.2f}x",
                f"{row['cpu_s']:.1f}",
                f"{row['wall_s']:.1f}",
                "" if row["flops"] is None else f"{row['flops'] / 1e9:.0f}",
                f"{row['peak_rss_mib']:.0f}",
                f"{row['retained_bytes'] / 1024:.0f}",
            ]
        )
    return markdown_table(headers, lines)


def _markdown(results: dict[str, Any]) -> str:
    settings = results["settings"]
    machine = results["machine"]
    bar_lines = []
    for name, check in results["bar"].items():
        bar_lines.append(
            f"- {LABELS[name]}: accuracy {check['accuracy']:.3f} vs Replay "
            f"{check['replay_accuracy']:.3f} and iCaRL {check['icarl_accuracy']:.3f} "
            f"({'met' if check['accuracy_at_least_replay_and_icarl'] else 'NOT met'}); "
            f"training energy {check['energy_vs_replay']:.2f}x Replay's "
            f"({'met' if check['energy_at_most_half_of_replay'] else 'NOT met'}, bar 0.5x, aim 0.3x)"
        )
    return (
        f"# Class-incremental {settings['dataset']}: Siamese learner vs Avalanche baselines\n\n"
        f"Command: `{results['command']}`  \nSeeds: {results['seeds']}  \n"
        f"Machine: {machine['processor']}, {machine['cpu_count']} CPUs, "
        f"{machine['torch_threads']} torch threads, torch {machine['torch']}  \n"
        f"Date: {results['date']}  \n"
        f"Run time: {sum(r['run_wall_s'] for r in results['runs']) / 60:.0f} min wall for all "
        f"methods and seeds, evaluation included\n\n"
        f"{settings['tasks']} experiences, {settings['backbone']} for every method, "
        f"{settings['optimizer']}, batch {settings['batch_size']}, exemplar budget "
        f"{settings['memory_per_class']} per class (Replay, iCaRL and GDumb: the same total, "
        f"filled from the first experience). Accuracy: on all test classes after the last "
        f"experience, mean ± std over seeds; forgetting: mean over experiences of best minus "
        f"final accuracy. The Siamese learner trains {settings['epochs']['siamese']} epoch(s) "
        f"a task, the baselines {settings['epochs']['naive']} (GDumb "
        f"{settings['epochs']['gdumb']} over its small memory, StreamingLDA one pass after "
        f"training its backbone on the first experience); the row at the baselines' epochs "
        f"shows the Siamese learner's cost at equal epochs. Training cost covers each experience's training, memory update and "
        f"prototype or class-mean computation (not evaluation); energy is a CPU-time estimate "
        f"where no counter is readable, comparable only within this run. Retained: exemplars, "
        f"prototypes and state kept between experiences besides the model (copies of models "
        f"included).\n\n"
        f"{summary_table(results['summary'])}\n\n"
        f"## Bar (Siamese accuracy >= Replay and iCaRL; energy <= 0.5x Replay)\n\n"
        + ("\n".join(bar_lines) if bar_lines else "- not evaluated (Replay or iCaRL missing)")
        + "\n"
    )


def _plot(results: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(9, 4.8))
    colours = [*plt.get_cmap("tab10").colors, "black", "darkkhaki"]
    for position, row in enumerate(results["summary"]):
        if "accuracy_mean" not in row:
            continue
        siamese = row["method"] in SIAMESE_ROWS
        energies = [
            r["report"]["energy_j"]
            for r in results["runs"]
            if r["method"] == row["method"] and "report" in r
        ]
        axes.errorbar(
            row["energy_j"],
            row["accuracy_mean"],
            xerr=np.std(energies, ddof=1) if len(energies) > 1 else None,
            yerr=row["accuracy_std"],
            fmt="*" if siamese else "o",
            markersize=12 if siamese else 7,
            capsize=3,
            color=colours[position % len(colours)],
            label=row["label"],
        )
    axes.set_xscale("log")
    axes.set_xlabel("training energy, J (" + _energy_methods(results) + ")")
    axes.set_ylabel("final accuracy")
    axes.set_title(f"Class-incremental {results['settings']['dataset']}: accuracy vs energy")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _energy_methods(results: dict[str, Any]) -> str:
    methods = {row["energy_method"] for row in results["summary"] if "energy_method" in row}
    return "/".join(sorted(methods)) or "n/a"


def _mean_or_none(values: list[Any]) -> float | None:
    return None if any(v is None for v in values) else float(np.mean(values))
