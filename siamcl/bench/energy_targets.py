"""Energy to a target accuracy, and the energy of a model's whole life.

MLPerf measures time to train: the time until a model first reaches a target quality. These
functions do the same for energy, from curves of points (cumulative training energy, CPU
seconds, FLOPs, accuracy) recorded as a model trains, averaged over seeds first. A target a
curve never reaches is "not reached" (``None``), never an extrapolation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "break_even_predictions",
    "cheapest_reach",
    "first_reach",
    "lifecycle_energy_j",
    "mean_curve",
    "within_error",
]

CURVE_FIELDS = ("epoch", "energy_j", "cpu_s", "flops", "accuracy")


def mean_curve(curves: Sequence[Sequence[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The point-by-point mean of several seeds' curves (checkpoint ``i`` of each), cut to
    the shortest; fields missing from a point (FLOPs not counted) stay missing. With more
    than one seed, ``accuracy_std`` is the accuracy's sample standard deviation."""
    if not curves:
        return []
    length = min(len(curve) for curve in curves)
    mean = []
    for i in range(length):
        points = [curve[i] for curve in curves]
        point = {"checkpoint": i + 1, "seeds": len(points)}
        for name in CURVE_FIELDS:
            values = [p.get(name) for p in points]
            if all(v is not None for v in values):
                point[name] = float(np.mean(values))
        if len(points) > 1:
            point["accuracy_std"] = float(np.std([p["accuracy"] for p in points], ddof=1))
        mean.append(point)
    return mean


def first_reach(curve: Sequence[dict[str, Any]], target: float) -> dict[str, Any] | None:
    """The first point of ``curve`` whose accuracy is at least ``target``, or None."""
    for point in curve:
        if point["accuracy"] >= target:
            return dict(point)
    return None


def cheapest_reach(points: Sequence[dict[str, Any]], target: float) -> dict[str, Any] | None:
    """The point of least energy whose accuracy is at least ``target``, or None: the energy
    to a target of a sweep of budgets (on a training curve, where energy only grows, the
    same point as :func:`first_reach`)."""
    reached = [p for p in points if p["accuracy"] >= target]
    return dict(min(reached, key=lambda p: p["energy_j"])) if reached else None


def within_error(
    points: Sequence[dict[str, Any]], best: dict[str, Any], reached: dict[str, Any] | None
) -> dict[str, Any] | None:
    """The cheapest of ``points`` whose accuracy falls short of the ``best`` point's by less
    than one standard error of that mean (its seeds' standard deviation over the square root
    of their count), where it is cheaper than the point ``reached`` (None: none reaches it):
    a bar whose reading turns on a difference its seeds cannot tell apart says so. The bar
    itself is still decided on the means."""
    if best.get("seeds", 1) < 2 or "accuracy_std" not in best:
        return None
    error = best["accuracy_std"] / math.sqrt(best["seeds"])
    close = [p for p in points if best["accuracy"] - error <= p["accuracy"] < best["accuracy"]]
    if reached is not None:
        close = [p for p in close if p["energy_j"] < reached["energy_j"]]
    if not close:
        return None
    point = min(close, key=lambda p: p["energy_j"])
    return {
        **point,
        "short_by": best["accuracy"] - point["accuracy"],
        "standard_error": error,
        "ratio": point["energy_j"] / best["energy_j"],
    }


def lifecycle_energy_j(training_j: float, joules_per_prediction: float, predictions: int) -> float:
    """Training energy plus ``predictions`` predictions' worth of inference energy."""
    return training_j + joules_per_prediction * predictions


def break_even_predictions(
    training_j: float,
    joules_per_prediction: float,
    reference_training_j: float,
    reference_joules_per_prediction: float,
) -> dict[str, Any]:
    """After how many predictions a model's lifecycle energy drops below the reference's.

    ``predictions`` is 0 when the model is cheaper to train and no dearer to run, ``None``
    when it never pays off (dearer to run, or dearer to train and no cheaper to run);
    ``why`` says which.
    """
    extra_training = training_j - reference_training_j
    saving = reference_joules_per_prediction - joules_per_prediction
    if extra_training <= 0 and saving >= 0:
        return {"predictions": 0, "why": "cheaper to train and no dearer to run"}
    if saving > 0:
        return {
            "predictions": int(np.ceil(extra_training / saving)),
            "why": "its extra training energy is repaid by cheaper predictions",
        }
    if extra_training < 0:
        ahead = int(extra_training / saving)
        return {
            "predictions": None,
            "why": f"cheaper to train but dearer to run: ahead for the first {ahead} only",
        }
    return {"predictions": None, "why": "dearer to train and no cheaper to run"}
