"""Compression: int8 QAT, distillation and quantized distillation, Siamese and softmax.

Plain multi-class classification (one task holding every class). For the Siamese learner and
for the standard CNN (the same backbone with a softmax head) it trains five variants in one
run: the fp32 ``conv4`` teacher, the same network with int8 quantization-aware training (PyTorch's
FX flow, and torchao's PT2E flow lowered to eager oneDNN int8 ops, side by side), a
``conv4-small`` student distilled from the teacher (KD), and that student trained with int8 QAT
(quantized KD). Students learn as ``siamcl bench energy``'s do: from the teacher's outputs
computed once per training image before their first step (``teacher_targets="cached"``), on
undistorted batches, so a cached output is exactly what the teacher would give on each step
and no teacher forward pass runs inside the loop. Each row gives test accuracy, the network's
bytes, CPU inference latency at batch 1 and 256, and training energy and time, with ratios to
the family's fp32 teacher.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from siamcl.bench.warm_up import few_rows, freeze_survivors
from siamcl.compress import model_bytes, serialized_bytes
from siamcl.data import load_dataset, subsample
from siamcl.learners.incremental import IncrementalClassifier
from siamcl.learners.softmax import SoftmaxClassifier
from siamcl.reporting import run_record, write_results
from siamcl.reporting.compress import render_markdown
from siamcl.reporting.records import add_threads_option
from siamcl.threads import cpu_threads

VARIANTS = {  # name: (encoder, qat scheme, distilled from the teacher)
    "fp32 teacher": ("conv4", None, False),
    "QAT int8": ("conv4", "int8", False),
    "QAT int8 (PT2E)": ("conv4", "int8-pt2e", False),
    "PTQ int8": ("conv4", "int8-ptq", False),
    "KD student": ("conv4-small", None, True),
    "quantized-KD student": ("conv4-small", "int8", True),
    "KD student, PTQ int8": ("conv4-small", "int8-ptq", True),
}
FAMILIES = {"siamese": IncrementalClassifier, "softmax": SoftmaxClassifier}
_INT8 = {"bytes_ratio": 0.27, "latency_256_ratio": 0.7, "accuracy_drop_points": 1.0}
_INT8_STUDENT = {"bytes_ratio": 0.1, "accuracy_drop_points": 2.0}
BARS = {
    "QAT int8": _INT8,
    "PTQ int8": _INT8,
    "quantized-KD student": _INT8_STUDENT,
    "KD student, PTQ int8": _INT8_STUDENT,
}


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the compression suite's options to ``parser``."""
    parser.add_argument("--epochs", type=int, default=3, help="teacher and QAT epochs (3)")
    parser.add_argument(
        "--student-epochs", type=int, default=6, help="epochs of the conv4-small students (6)"
    )
    parser.add_argument(
        "--student-lr", type=float, default=3e-3, help="learning rate of the students (3e-3)"
    )
    parser.add_argument(
        "--rounds", type=int, default=7, help="latency rounds, interleaved across models (7)"
    )
    add_threads_option(  # training and latency alike
        parser,
        1,
        "a small network's second thread mostly spins, and an estimate from CPU time "
        "would charge it",
    )


@dataclass
class _Trained:
    family: str
    variant: str
    classifier: Any
    network: nn.Module


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train every variant of both families per seed, time them; write JSON and markdown."""
    with cpu_threads(args.threads):  # torch's, and BLAS / OpenMP pools' (siamcl.threads)
        return _run(args)


def _run(args: argparse.Namespace) -> dict[str, Any]:
    seeds = args.seeds or [0]
    X_train, y_train, X_test, y_test = load_dataset(args.dataset, data_root=args.data_root)
    epochs, student_epochs, rounds = args.epochs, args.student_epochs, args.rounds
    if args.quick:  # a smoke test of the whole suite, not a measurement
        X_train, y_train = subsample(X_train, y_train, 0.05, seed=0)
        X_test, y_test = subsample(X_test, y_test, 0.2, seed=0)
        epochs, student_epochs, rounds = 1, 1, 1
    student = {"augment": False, "teacher_targets": "cached"}  # see the module docstring
    budgets = {
        "epochs": epochs,
        "student": {"epochs": student_epochs, "lr": args.student_lr, **student},
    }
    common = {
        "memory_per_class": 0,
        "device": args.device,
        "progress": not args.quiet,
    }
    record = run_record(  # before the work: the commit it started at
        "compress",
        seeds,
        dataset=args.dataset,
        quick=args.quick,
        latency_rounds=rounds,
        torch_threads=torch.get_num_threads(),
        epochs=epochs,
        student_epochs=student_epochs,
        student_lr=args.student_lr,
        **{k: v for k, v in common.items() if k != "progress"},
    )
    _warm_up(args, (X_train, y_train), budgets, common)
    rows, trained = [], []
    for seed in seeds:
        for family in FAMILIES:
            data = (X_train, y_train, X_test, y_test)
            _train_family(args, family, seed, data, budgets, common, rows, trained)
    latencies = _latencies(trained, X_test, rounds)
    for row, model in zip(rows, trained):
        row.update(latencies[id(model)])
    _add_ratios(rows)
    results = {
        **record,
        "train_size": len(X_train),
        "test_size": len(X_test),
        "rows": rows,
        "summary": _summary(rows),
    }
    results["bars"] = _bars(results["summary"])
    _write(args, results)
    return results


def _warm_up(
    args: argparse.Namespace,
    data: tuple[np.ndarray, np.ndarray],
    budgets: dict[str, Any],
    common: dict[str, Any],
) -> None:
    """Every variant of both families once, one epoch on a few rows of each class, thrown
    away: the process's one-off costs (the first optimiser's imports, QAT's first trace)
    would otherwise be charged to the first teacher and the first QAT variant measured."""
    rows = few_rows(data[1])
    few = (data[0][rows], data[1][rows]) * 2
    once = {"epochs": 1, "student": {**budgets["student"], "epochs": 1}}
    quiet = argparse.Namespace(**{**vars(args), "quiet": True})
    for family in FAMILIES:
        _train_family(quiet, family, 0, few, once, {**common, "progress": False}, [], [])


def _train_family(
    args: argparse.Namespace,
    family: str,
    seed: int,
    data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    budgets: dict[str, Any],
    common: dict[str, Any],
    rows: list[dict[str, Any]],
    trained: list[_Trained],
) -> None:
    """Train one family's variants in order (the teacher first, its students after it),
    appending a result row and the trained network of each to ``rows`` and ``trained``."""
    X_train, y_train, X_test, y_test = data
    make = FAMILIES[family]
    teacher = None
    for variant, (encoder, scheme, distilled) in VARIANTS.items():
        clf = make(
            encoder=encoder,
            qat=scheme,
            teacher=teacher if distilled else None,
            seed=seed,
            **(budgets["student"] if distilled else {"epochs": budgets["epochs"]}),
            **common,
        )
        freeze_survivors()  # earlier runs' objects out of this run's garbage collections
        report = clf.fit_task(X_train, y_train)
        if variant == "fp32 teacher":
            teacher = clf
        network = clf.encoder_ if family == "siamese" else clf.model_
        trained.append(_Trained(family, variant, clf, network))
        rows.append(_row(family, variant, seed, encoder, scheme, distilled, clf, report))
        rows[-1]["accuracy"] = clf.score(X_test, y_test)
        _log(args, rows[-1])


def _write(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """Write the JSON and markdown (``_quick`` in the name for ``--quick``)."""
    name = f"compress_{args.dataset}" + ("_quick" if args.quick else "")
    markdown = render_markdown(results)
    write_results(args.out, name, results, markdown)
    if not args.quiet:
        print(markdown)


# ------------------------------------------------------------------------------- measuring


def _row(family, variant, seed, encoder, scheme, distilled, clf, report) -> dict[str, Any]:
    network = clf.encoder_ if family == "siamese" else clf.model_
    return {
        "family": family,
        "variant": variant,
        "seed": seed,
        "encoder": encoder,
        "qat": scheme,
        "distilled": distilled,
        "teacher_targets": clf.teacher_targets if distilled else None,  # the students' recipe
        "model_bytes": model_bytes(network),
        "serialized_bytes": serialized_bytes(network),
        "energy_j": report.energy_j,
        "energy_method": report.energy_method,
        "train_wall_s": report.wall_s,
        "train_cpu_s": report.cpu_s,
    }


def _latencies(trained: list[_Trained], X_test: np.ndarray, rounds: int) -> dict[int, dict]:
    """Median seconds per forward pass at batch 1 and 256, measured round-robin.

    Every round times every model once, so load from other processes on a shared machine
    falls on all models alike instead of on whichever happened to run during a busy spell.
    """
    batches = {}
    for item in trained:
        inputs = item.classifier.preprocessor_(X_test[:256])
        if len(inputs) < 256:  # small test sets (--quick): repeat rows up to a full batch
            inputs = inputs.repeat((256 // len(inputs)) + 1, *[1] * (inputs.ndim - 1))[:256]
        batches[id(item)] = inputs
    samples: dict[int, dict[str, list[float]]] = {
        id(item): {"latency_1_s": [], "latency_256_s": []} for item in trained
    }
    for item in trained:  # warm-up: first calls allocate and pack weights
        _time_calls(item.network, batches[id(item)], 2)
    for _ in range(rounds):
        for item in trained:
            inputs = batches[id(item)]
            samples[id(item)]["latency_256_s"].append(_time_calls(item.network, inputs, 3))
            samples[id(item)]["latency_1_s"].append(_time_calls(item.network, inputs[:1], 30))
    return {
        key: {k: float(np.median(v)) for k, v in value.items()} for key, value in samples.items()
    }


def _time_calls(network: nn.Module, inputs: torch.Tensor, calls: int) -> float:
    network.eval()
    with torch.no_grad():
        start = time.perf_counter()
        for _ in range(calls):
            network(inputs)
        return (time.perf_counter() - start) / calls


def _add_ratios(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        base = next(
            r
            for r in rows
            if r["family"] == row["family"]
            and r["seed"] == row["seed"]
            and r["variant"] == "fp32 teacher"
        )
        row["bytes_ratio"] = row["model_bytes"] / base["model_bytes"]
        row["latency_1_ratio"] = row["latency_1_s"] / base["latency_1_s"]
        row["latency_256_ratio"] = row["latency_256_s"] / base["latency_256_s"]
        row["energy_ratio"] = row["energy_j"] / base["energy_j"] if base["energy_j"] else None
        row["accuracy_drop_points"] = round(100 * (base["accuracy"] - row["accuracy"]), 6)


_SUMMARISED = (
    "accuracy",
    "accuracy_drop_points",
    "model_bytes",
    "bytes_ratio",
    "latency_1_s",
    "latency_1_ratio",
    "latency_256_s",
    "latency_256_ratio",
    "energy_j",
    "energy_ratio",
    "train_wall_s",
)


def _summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per family and variant: the mean over seeds of every measure (and the
    accuracy's standard deviation), in the order the rows were run."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["family"], row["variant"]), []).append(row)
    summary = []
    for (family, variant), members in groups.items():
        mean = {
            key: float(np.mean([m[key] for m in members]))
            if all(m[key] is not None for m in members)
            else None
            for key in _SUMMARISED
        }
        summary.append(
            {
                "family": family,
                "variant": variant,
                "seeds": [m["seed"] for m in members],
                **mean,
                "accuracy_std": float(np.std([m["accuracy"] for m in members])),
                "energy_method": "/".join(sorted({m["energy_method"] for m in members})),
            }
        )
    return summary


def _bars(summary: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each bar of the compression study, met or not, on the mean over seeds."""
    checks = []
    for row in summary:
        for measure, limit in BARS.get(row["variant"], {}).items():
            checks.append(
                {
                    "family": row["family"],
                    "seeds": row["seeds"],
                    "variant": row["variant"],
                    "measure": measure,
                    "value": row[measure],
                    "limit": limit,
                    "met": bool(row[measure] <= limit),
                }
            )
    return checks


# ------------------------------------------------------------------------------- progress


def _log(args: argparse.Namespace, row: dict[str, Any]) -> None:
    if not args.quiet:
        print(
            f"{row['family']:8s} {row['variant']:22s} accuracy {row.get('accuracy', 0):.3f} "
            f"bytes {row['model_bytes']} train {row['train_wall_s']:.0f} s",
            flush=True,
        )
