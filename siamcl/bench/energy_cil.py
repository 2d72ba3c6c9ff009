"""Class-incremental energy to target: every method at a few epoch budgets, on one stream.

A class-incremental model is judged after its last task, so its curve is a sweep: the same
stream learned at each epoch budget (epochs per task), each run's training energy against
its final accuracy. The energy to reach a target is that of the cheapest budget whose mean
final accuracy over seeds reaches it. Methods and settings are those of ``siamcl bench cl``
(:mod:`siamcl.bench.cl_methods`): siamcl's IncrementalClassifier and Avalanche's baselines,
the same conv4 backbone, Adam, batch size and exemplar budget.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Collection, Sequence
from typing import Any

import numpy as np

from siamcl.bench.cl_methods import BASELINE_ROWS, StreamRunner
from siamcl.bench.energy_targets import cheapest_reach
from siamcl.bench.variants import like_for_like, parse_variant
from siamcl.data.streams import Task
from siamcl.preprocess import Preprocessor

__all__ = [
    "CIL_METHODS",
    "LEARNS_RAW_STREAM",
    "SIAMESE_METHODS",
    "budgets_of",
    "check_cil_rows",
    "median_run",
    "replay_references",
    "run_cil",
    "summarise_cil",
]

# The rows a run holds by default, and why each; a row's name is its method and suffixes
# (siamcl.bench.variants), so other combinations run too. "-16px": 16x16 inputs, which the
# Siamese learner resizes itself (its preprocessing is metered); the baselines get the stream
# resized once before they start.
# "-bf16": trained in mixed precision (siamcl.training.precision). "-d128": 128-dimensional
# embeddings instead of 64, chosen on a holdout of the training data (docs/energy.md), never
# on the test split: +0.7 points at the same cost, the last linear layer being a small share.
# "-frozen1": conv4's first block frozen from the second task on (siamcl.training.freezing),
# one block chosen on held-out training data (benchmarks/frozen_layers_holdout.py: one block
# -0.4 / -0.8 points at 28x28 / 16x16, two -1.4 / -2.3); Replay's "-frozen1" rows get the
# same through siamcl.integrations.avalanche_freezing, to compare like for like.
# "-undistorted": no random affine distortions of training batches (the baselines get none
# either), so the previous encoder's distillation targets are computed once per image before
# the loop instead of once a step (teacher_targets="auto"). "-data75" / "-data50": each task
# trained on that share of every class, drawn at random (data_fraction,
# siamcl.training.selection); Replay's "-data75" row learns the same rows. Both were tried on
# a holdout of the training data; what they saved and cost is in docs/energy.md.
# "-b64" / "-half-b32": smaller batches (more updates for the same images: a task is under ten
# batches of 128 an epoch), the second with conv4-half (32 channels), chosen on held-out
# training data (benchmarks/width_holdout.py): conv4 in batches of 64 at 2 epochs and
# conv4-half in batches of 32 at 3 as accurate as conv4 in batches of 128 at 3, for 0.64x /
# 0.61x its CPU time; Replay's (and ER-ACE's) rows of the same names get the same, like for like.
SIAMESE_METHODS = (  # the Siamese rows a run holds by default (any suffixes parse)
    "siamese",
    "siamese-16px",
    "siamese-whitened",
    "siamese-whitened-16px",
    "siamese-bf16",
    "siamese-16px-bf16",
    "siamese-16px-bf16-d128",
    "siamese-frozen1",
    "siamese-16px-frozen1",
    "siamese-undistorted",
    "siamese-16px-undistorted",
    "siamese-16px-frozen1-undistorted",
    "siamese-16px-frozen1-data75",
    "siamese-16px-frozen1-data50",
    "siamese-16px-b64",
    "siamese-16px-half-b32",
)
CIL_METHODS = (
    *SIAMESE_METHODS,
    *BASELINE_ROWS,
    "replay-16px",
    "er_ace-16px",
    "replay-frozen1",
    "replay-16px-frozen1",
    "replay-16px-frozen1-data75",
    "replay-16px-b64",
    "replay-16px-half-b32",
    "er_ace-16px-half-b32",
    "replay-bf16",
    "replay-16px-bf16",
    "er_ace-bf16",
    "standard",
    "standard-whitened",
)
GDUMB_EPOCHS_PER_BUDGET = 10  # GDumb retrains on its small memory: 10x the epochs


def replay_references(name: str, present: Collection[str]) -> list[str]:
    """The Replay rows Siamese row ``name`` is weighed against: float32 Replay at 28x28, and
    the Replay rows ``present`` given the most of ``name``'s options (:func:`like_for_like`)."""
    return like_for_like(name, present, "replay")


def budgets_of(name: str, budgets: Sequence[int]) -> list[int]:
    """The epoch budgets ``name`` runs at: StreamingLDA learns in one pass, so one run."""
    return [1] if parse_variant(name).method == "slda" else list(budgets)


STREAM_OPTIONS = frozenset({"input_size", "data_fraction"})  # a baseline's, on its stream
# siamcl's learners resize and select rows themselves (metered), so they take the stream as is
LEARNS_RAW_STREAM = ("siamese", "standard")


def _settings(base: dict[str, Any], name: str, budget: int) -> dict[str, Any]:
    """The settings StreamRunner reads for method ``name`` (a variant runs as its method,
    with its own options) at ``budget`` epochs a task: the Siamese learner takes the options
    as its parameters, a baseline as fields of its ``BaselineSettings``."""
    variant = parse_variant(name)
    method, options = variant.method, variant.options
    epochs = {method: budget, "naive": budget, "gdumb": GDUMB_EPOCHS_PER_BUDGET * budget}
    if method in LEARNS_RAW_STREAM:
        return {**base, "epochs": epochs, f"{method}_options": options}
    return {**base, "epochs": epochs, "baseline_options": _baseline_options(name, options)}


def check_cil_rows(names: Sequence[str]) -> None:
    """Refuse, before anything runs, a row setting its own epochs (a stream's budgets are
    the run's ``--cil-epochs``, the same for every method) and a baseline row with an option
    no baseline takes."""
    for name in names:
        variant = parse_variant(name)
        if "epochs" in variant.options:
            raise ValueError(
                f"{name}: a class-incremental row takes no epoch suffix; "
                "--cil-epochs sets every row's epochs a task"
            )
        if variant.method == "standard":
            _standard_options(name)
        elif variant.method != "siamese":
            _baseline_options(name, variant.options)
            _check_readout(name, variant.method, variant.options)


def _baseline_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """A baseline variant's options that are ``BaselineSettings`` fields; its input size and
    data share are its stream's (:func:`baseline_stream`). An option no baseline takes is
    refused, not run as if it had none."""
    from siamcl.integrations.avalanche_baselines import BaselineSettings

    taken = {field.name for field in dataclasses.fields(BaselineSettings)} | STREAM_OPTIONS
    unknown = sorted(set(options) - taken)
    if unknown:
        raise ValueError(f"{name}: a baseline takes no option {unknown}; it takes {sorted(taken)}")
    return {key: value for key, value in options.items() if key not in STREAM_OPTIONS}


def _check_readout(name: str, method: str, options: dict[str, Any]) -> None:
    """Refuse, before anything runs, a prototype readout (``-whitened``, ``-k1``) a baseline
    cannot take (:func:`~siamcl.integrations.avalanche_baselines.check_readout`)."""
    from siamcl.integrations.avalanche_baselines import check_readout

    try:
        check_readout(method, options.get("whitening"), options.get("prototypes_per_class"))
    except ValueError as error:
        raise ValueError(f"{name}: {error}") from None


def _standard_options(name: str) -> None:
    """Refuse an option siamcl's standard network neither trains with nor reads out by, as
    the multi-class rows of the same name are refused
    (:func:`~siamcl.bench.energy_multiclass.check_rows`)."""
    from siamcl.bench.energy_multiclass import check_rows

    check_rows([name])


def run_cil(
    args: argparse.Namespace,
    tasks: list[Any],
    test: tuple[np.ndarray, np.ndarray],
    seed: int,
    methods: Sequence[str],
    budgets: Sequence[int],
    progress: Any = None,
) -> list[dict[str, Any]]:
    """Every method at every budget on one seed's stream: final accuracy and training cost.

    With ``args.cil_repeats`` > 1 every run is repeated in interleaved rounds (each round
    runs every method once, so a machine that slows down slows all of them) and the run of
    median energy stands for the rest (:func:`median_run`)."""
    base = {"tasks": len(tasks), "memory_per_class": args.memory, "batch_size": args.batch_size}
    streams = {(None, 1.0): (tasks, test)}  # by input size and data share: each made once
    measured: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for _ in range(args.cil_repeats):
        for name in methods:
            variant = parse_variant(name)
            method, options = variant.method, variant.options
            key = (None, 1.0)
            if method not in LEARNS_RAW_STREAM:
                key = (options.get("input_size"), options.get("data_fraction", 1.0))
            if key not in streams:
                streams[key] = baseline_stream(tasks, test, *key, seed=seed)
            stream, held_out = streams[key]
            for budget in budgets_of(name, budgets):
                runner = StreamRunner(args, stream, *held_out, seed, _settings(base, name, budget))
                result = runner.run(method)
                result.pop("traceback", None)
                result.pop("accuracy_matrix", None)  # result["epochs"]: the run's epochs a task
                measured.setdefault((name, budget), []).append(result)
                if progress is not None:
                    progress.update(1)
    return [
        {"method": name, "seed": seed, "budget": budget, **median_run(results)}
        for (name, budget), results in measured.items()
    ]


def median_run(
    results: list[dict[str, Any]],
    energy: Callable[[dict[str, Any]], float] = lambda run: run["report"]["energy_j"],
) -> dict[str, Any]:
    """Of repeated runs, the one of median training ``energy`` (the lower middle of an even
    count), with every repeat's energy and accuracy beside it; the first failure if any run
    failed. Repeats with one seed train the same model, so their accuracies should agree:
    ``repeat_accuracies`` shows whether they did."""
    failed = [r for r in results if "error" in r]
    if failed or len(results) == 1:
        return failed[0] if failed else results[0]
    energies = [energy(r) for r in results]
    middle = sorted(range(len(results)), key=energies.__getitem__)[(len(results) - 1) // 2]
    chosen = dict(results[middle])
    chosen["repeat_energies_j"] = energies
    chosen["repeat_accuracies"] = [r["accuracy"] for r in results]
    return chosen


def baseline_stream(
    tasks: list[Task],
    test: tuple[np.ndarray, np.ndarray],
    size: tuple[int, int] | None,
    fraction: float,
    seed: int,
) -> tuple[list[Task], tuple[np.ndarray, np.ndarray]]:
    """The stream a baseline learns: resized to ``size`` (:func:`resized`) and each task cut
    to ``fraction`` of every class, the rows a Siamese learner of ``seed`` with that
    ``data_fraction`` trains on (stratified), chosen by the learner's own rule
    (:func:`siamcl.learners.task_data.task_rows`)."""
    from siamcl.learners.incremental import IncrementalClassifier
    from siamcl.learners.task_data import task_rows

    if size is not None:
        tasks, test = resized(tasks, test, size)
    if fraction < 1:
        learner = IncrementalClassifier(data_fraction=fraction, seed=seed)  # its parameters only
        chosen = [task_rows(learner, None, t.y, t.index) for t in tasks]
        tasks = [dataclasses.replace(t, X=t.X[r], y=t.y[r]) for t, r in zip(tasks, chosen)]
    return tasks, test


def resized(
    tasks: list[Task], test: tuple[np.ndarray, np.ndarray], size: tuple[int, int]
) -> tuple[list[Task], tuple[np.ndarray, np.ndarray]]:
    """The stream and test split as images of ``size``, resized as the Siamese learner's
    :class:`~siamcl.preprocess.Preprocessor` resizes its inputs (bilinear, antialiased)."""
    preprocessor = Preprocessor(size).fit(tasks[0].X)
    small = [dataclasses.replace(t, X=preprocessor.canonical(t.X).numpy()) for t in tasks]
    return small, (preprocessor.canonical(test[0]).numpy(), test[1])


def summarise_cil(
    runs: list[dict[str, Any]], methods: Sequence[str], targets: Sequence[float]
) -> list[dict[str, Any]]:
    """Per method: each budget's means over seeds, and the energy to each target (the
    cheapest budget whose mean final accuracy reaches it), or None."""
    summary = []
    for name in methods:
        points = []
        budgets = sorted({r["budget"] for r in runs if r["method"] == name})
        for budget in budgets:
            done = [
                r
                for r in runs
                if r["method"] == name and r["budget"] == budget and "error" not in r
            ]
            if not done:
                continue
            reports = [r["report"] for r in done]
            points.append(
                {
                    "budget": budget,
                    "epochs": done[0]["epochs"],
                    "seeds": len(done),
                    "accuracy": float(np.mean([r["accuracy"] for r in done])),
                    "accuracy_std": float(np.std([r["accuracy"] for r in done], ddof=1))
                    if len(done) > 1
                    else 0.0,
                    "energy_j": float(np.mean([rep["energy_j"] for rep in reports])),
                    "cpu_s": float(np.mean([rep["cpu_s"] for rep in reports])),
                    "flops": _mean_or_none([rep.get("flops") for rep in reports]),
                    "energy_method": "/".join(sorted({rep["energy_method"] for rep in reports})),
                }
            )
        errors = [
            f"seed {r['seed']}: {r['error']}" for r in runs if r["method"] == name and "error" in r
        ]
        to_target = {f"{t:g}": cheapest_reach(points, t) for t in targets}
        summary.append(
            {
                "method": name,
                "label": parse_variant(name).label,
                "points": points,
                "to_target": to_target,
                "errors": errors,
            }
        )
    return summary


def _mean_or_none(values: list[Any]) -> float | None:
    return None if any(v is None for v in values) else float(np.mean(values))
