"""What ``siamcl bench energy`` concludes from its runs: per-method summaries and the bars.

Every comparison is between methods of the same run, on curves averaged over seeds first.
Each bar also gives its ratio seed by seed at the same points (``seed_ratios``), the spread
within the run beside the mean that decides it: a bar decided by less than that spread may
fall the other way in another run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from siamcl.bench.energy_cil import replay_references
from siamcl.bench.energy_multiclass import (
    BASES,
    PREDICTIONS,
    PROTOTYPE_LEARNERS,
    is_student,
    multiclass_row,
)
from siamcl.bench.energy_targets import (
    break_even_predictions,
    cheapest_reach,
    first_reach,
    lifecycle_energy_j,
    mean_curve,
    within_error,
)
from siamcl.bench.variants import like_for_like, parse_variant

__all__ = ["LIFECYCLE_PREDICTIONS", "bars", "seed_ratios", "summarise_multiclass"]

LIFECYCLE_PREDICTIONS = (10**4, 10**6, 10**8)
STUDENT_LIMITS = {"kd-student": 0.5, "qkd-student": 0.6}  # of the teacher's energy
REFERENCE = "siamese"  # compressed models are weighed against the fp32 Siamese learner


def summarise_multiclass(
    runs: list[dict[str, Any]], methods: Sequence[str], targets: Sequence[float]
) -> list[dict[str, Any]]:
    """Per method: mean curve, final accuracy, energy to each target, inference and
    lifecycle energy (against the fp32 Siamese learner)."""
    summary = []
    for name in methods:
        done = [r for r in runs if r["method"] == name]
        if not done:
            continue
        curve = mean_curve([r["curve"] for r in done])
        accuracy = np.array([r["accuracy"] for r in done])
        summary.append(
            {
                "method": name,
                "label": multiclass_row(name).label,
                "seeds": [r["seed"] for r in done],
                "curve": curve,
                "accuracy_mean": float(accuracy.mean()),
                "accuracy_std": float(accuracy.std(ddof=1)) if len(accuracy) > 1 else 0.0,
                "training_energy_j": curve[-1]["energy_j"],
                "training_cpu_s": curve[-1]["cpu_s"],
                "metered_energy_j": float(np.mean([r["report"]["energy_j"] for r in done])),
                "energy_method": done[0]["report"]["energy_method"],
                "rows_trained": float(np.mean([r["rows_trained"] for r in done])),
                "to_target": {f"{t:g}": first_reach(curve, t) for t in targets},
                "inference_j": float(np.mean([r["inference"]["energy_j"] for r in done])),
            }
        )
    _add_lifecycle(summary)
    return summary


def _add_lifecycle(summary: list[dict[str, Any]]) -> None:
    """Training plus N predictions for each model; break-even against the reference (a
    student's training adds to its teacher's, which is trained anyway)."""
    rows = {row["method"]: row for row in summary}
    reference = rows.get(REFERENCE)
    for row in summary:
        training = row["training_energy_j"]
        if is_student(row["method"]) and reference is not None:
            training += reference["training_energy_j"]
        per_prediction = row["inference_j"] / PREDICTIONS
        row["lifecycle_training_j"] = training
        row["lifecycle_j"] = {
            f"{n:.0e}": lifecycle_energy_j(training, per_prediction, n)
            for n in LIFECYCLE_PREDICTIONS
        }
        if reference is not None and row is not reference:
            row["break_even"] = break_even_predictions(
                training,
                per_prediction,
                reference["training_energy_j"],
                reference["inference_j"] / PREDICTIONS,
            )


def bars(results: dict[str, Any]) -> dict[str, Any]:
    """The issue's bars, each with the figures it was decided on."""
    checks: dict[str, Any] = {}
    if "multiclass" in results:
        part = results["multiclass"]
        rows = {r["method"]: r for r in part["summary"]}
        checks.update(_multiclass_bars(rows, part.get("runs", [])))
    if "cil" in results:
        part = results["cil"]
        checks.update(_cil_bars({r["method"]: r for r in part["summary"]}, part.get("runs", [])))
    return checks


def _check(
    target: float,
    point: dict[str, Any] | None,
    reference: dict[str, Any],
    limit: float,
    seeds: list[float] | None = None,
) -> dict[str, Any]:
    """A bar: ``point`` (the first reaching ``target``, or None) against the ``reference``
    point's energy; ``seeds``, the same ratio seed by seed."""
    ratio = point["energy_j"] / reference["energy_j"] if point else None
    return {
        "target": target,
        "energy_j": point and point["energy_j"],
        "reference_energy_j": reference["energy_j"],
        "ratio": ratio,
        "seed_ratios": seeds or [],
        "limit": limit,
        "met": ratio is not None and ratio <= limit,
    }


def _seed_energies(
    runs: list[dict[str, Any]], method: str, point: dict[str, Any]
) -> dict[int, float]:
    """Each seed's energy at a point of ``method``'s mean: a multi-class curve's checkpoint
    or a class-incremental budget."""
    energies = {}
    for run in runs:
        if run["method"] != method or "error" in run:
            continue
        if "checkpoint" in point and len(run.get("curve", ())) >= point["checkpoint"]:
            energies[run["seed"]] = run["curve"][point["checkpoint"] - 1]["energy_j"]
        elif "budget" in point and run.get("budget") == point["budget"]:
            energies[run["seed"]] = run["report"]["energy_j"]
    return energies


def seed_ratios(
    runs: list[dict[str, Any]],
    compared: tuple[str, dict[str, Any] | None],
    reference: tuple[str, dict[str, Any]],
) -> list[float]:
    """A bar's ratio seed by seed, at the points the means chose: how much of it is the
    spread of the measurements. ``compared`` and ``reference`` are (method, point)."""
    if compared[1] is None:
        return []
    own, other = _seed_energies(runs, *compared), _seed_energies(runs, *reference)
    return [own[seed] / other[seed] for seed in sorted(own.keys() & other.keys())]


def _to_best(
    runs: list[dict[str, Any]], name: str, reference: str, points: dict[str, list], limit: float
) -> dict[str, Any]:
    """``name``'s energy to ``reference``'s best accuracy, over the reference's own
    (``points``: each method's mean curve or budgets), with the cheaper point that falls
    short of it by less than its standard error, if any (:func:`within_error`)."""
    best = max(p["accuracy"] for p in points[reference])
    own = cheapest_reach(points[reference], best)
    point = cheapest_reach(points[name], best)
    seeds = seed_ratios(runs, (name, point), (reference, own))
    check = _check(best, point, own, limit, seeds)
    near = within_error(points[name], own, point)
    if near is not None:
        check["within_error"] = near
    return check


def _multiclass_bars(rows: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, Any]:
    checks: dict[str, Any] = {}
    curves = {name: row["curve"] for name, row in rows.items()}
    # the prototype learners against the standard network (the bar), and against the standard
    # rows of the run given the most of the same suffixes (like for like)
    pairs = [
        (name, reference)
        for name in rows
        if multiclass_row(name).method in PROTOTYPE_LEARNERS
        for reference in like_for_like(name, rows, "standard", BASES)
        if reference in rows
    ]
    for name, reference in pairs:
        label, against = multiclass_row(name).bar_name, multiclass_row(reference).bar_name
        checks[f"multiclass: {label} to the best of {against}, <= 0.5x its energy"] = _to_best(
            runs, name, reference, curves, 0.5
        )
    teacher = rows.get(REFERENCE)
    students = [name for name in rows if is_student(name)] if teacher is not None else []
    for name in students:
        row = multiclass_row(name)  # a quantized student is held to the quantized limit
        limit = STUDENT_LIMITS["qkd-student" if row.options.get("qat") else row.method]
        target = teacher["accuracy_mean"] - 0.01
        point = cheapest_reach(rows[name]["curve"], target)
        trained = teacher["curve"][-1]  # the teacher's whole training
        seeds = seed_ratios(runs, (name, point), (REFERENCE, trained))
        checks[f"multiclass: {name} within 1 point of its teacher, <= {limit}x its energy"] = (
            _check(target, point, trained, limit, seeds)
        )
    return checks


def _cil_bars(rows: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each Siamese row against Replay: to Replay's best at <= 0.5x its energy, and >= 0.95 at
    <= 0.25x the energy of Replay's largest budget with no baseline cheaper and better; and
    against the Replay rows of the run given the most of the same (like for like,
    :func:`~siamcl.bench.energy_cil.replay_references`). Where the run holds siamcl's own
    standard network with replay (``standard`` rows: the same training engine), each Siamese
    row also against its best, as the multi-class bar weighs it."""
    checks: dict[str, Any] = {}
    points = {name: row["points"] for name, row in rows.items()}
    siamese_rows = [name for name in rows if parse_variant(name).method == "siamese"]
    for name in siamese_rows:
        label = parse_variant(name).bar_name
        # (reference, its words, whether the >= 0.95 bar weighs it too)
        references = [(r, parse_variant(r).bar_name, True) for r in replay_references(name, rows)]
        for reference in like_for_like(name, rows, "standard"):
            named = parse_variant(reference).bar_name  # "Standard network with replay..."
            references.append((reference, f"siamcl's {named[0].lower()}{named[1:]}", False))
        for reference, against, undominated in references:
            if not (points.get(name) and points.get(reference)):
                continue
            checks[f"class-incremental: {label} to the best of {against}, <= 0.5x its energy"] = (
                _to_best(runs, name, reference, points, 0.5)
            )
            if undominated:
                checks[
                    f"class-incremental: {label} >= 0.95 at <= 0.25x the energy of {against}, "
                    "undominated"
                ] = _undominated((name, rows[name]), (reference, rows[reference]), rows, runs)
    return checks


def _undominated(
    compared: tuple[str, dict[str, Any]],
    reference: tuple[str, dict[str, Any]],
    rows: dict[str, Any],
    runs: list[dict[str, Any]],
) -> dict[str, Any]:
    (name, siamese), (replay_name, replay) = compared, reference
    replay_default = max(replay["points"], key=lambda p: p["budget"])
    best = siamese["to_target"].get("0.95") or max(siamese["points"], key=lambda p: p["accuracy"])
    ratio = best["energy_j"] / replay_default["energy_j"]
    dominating = [
        f"{row['label']} ({p['epochs']} epochs): {p['accuracy']:.3f} at {p['energy_j']:.0f} J"
        for other, row in rows.items()
        if parse_variant(other).method not in ("siamese", "joint")  # joint is not continual
        for p in row["points"]
        if p["accuracy"] > best["accuracy"] and p["energy_j"] < best["energy_j"]
    ]
    return {
        "target": 0.95,
        "accuracy": best["accuracy"],
        "energy_j": best["energy_j"],
        "reference_energy_j": replay_default["energy_j"],
        "ratio": ratio,
        "seed_ratios": seed_ratios(runs, (name, best), (replay_name, replay_default)),
        "limit": 0.25,
        "dominated_by": dominating,
        "met": best["accuracy"] >= 0.95 and ratio <= 0.25 and not dominating,
    }
