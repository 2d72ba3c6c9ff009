"""Data selection: train on a chosen fraction of a task, on purpose.

:func:`select_rows` picks the rows of a task a learner trains on (``data_fraction`` and
``data_selection`` of :class:`~siamcl.IncrementalClassifier` and
:class:`~siamcl.SoftmaxClassifier`): the same fraction of every class, drawn at random
(``"stratified"``) or spread over the class in a feature space (``"coreset"``, k-center
greedy). :func:`input_features` is the cheap fixed feature coreset uses before a learner has
an encoder of its own.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["DATA_SELECTIONS", "input_features", "k_center_greedy", "rows_per_class", "select_rows"]

DATA_SELECTIONS = ("stratified", "coreset")
FEATURE_SIDE = 8  # images are averaged down to 8 x 8 per channel for coreset features


def rows_per_class(n: int, fraction: float, minimum: int = 2) -> int:
    """How many of a class's ``n`` rows a ``fraction`` keeps: ``ceil(fraction * n)``, at
    least ``minimum`` (a metric loss needs pairs of a class), at most ``n``."""
    return min(n, max(minimum, math.ceil(fraction * n - 1e-9)))


def select_rows(
    labels: np.ndarray,
    fraction: float,
    method: str = "stratified",
    seed: int = 0,
    features: np.ndarray | None = None,
    minimum: int = 2,
) -> np.ndarray:
    """Sorted row indices keeping ``fraction`` of every class (:func:`rows_per_class`).

    ``"stratified"`` draws each class's rows at random from ``seed``; ``"coreset"`` picks
    them by :func:`k_center_greedy` in ``features`` (one row per label; required), so the
    kept rows cover the class rather than crowd where it is dense. ``fraction=1`` keeps
    every row.
    """
    labels = np.asarray(labels)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.number)):
        raise TypeError(f"data_fraction must be a number in (0, 1], got {fraction!r}")
    if not 0 < fraction <= 1:
        raise ValueError(f"data_fraction must be in (0, 1], got {fraction!r}")
    if method not in DATA_SELECTIONS:
        raise ValueError(f"data_selection must be one of {list(DATA_SELECTIONS)}, got {method!r}")
    if method == "coreset" and (features is None or len(features) != len(labels)):
        raise ValueError("coreset selection needs features, one row per label")
    if fraction == 1:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        k = rows_per_class(len(rows), fraction, minimum)
        if method == "stratified":
            chosen.append(rng.choice(rows, k, replace=False))
        else:
            chosen.append(rows[k_center_greedy(features[rows], k)])
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def k_center_greedy(features: np.ndarray, k: int) -> np.ndarray:
    """Indices of ``k`` rows chosen by k-center greedy (Sener and Savarese, 2018): start at
    the row nearest the mean, then repeatedly add the row farthest from those chosen, so
    every row lies near a chosen one. Deterministic (ties go to the lowest index).

    Written here rather than imported: it is a dozen lines of numpy, and the libraries that
    offer it are unmaintained (apricot-select, last released 2021, has submodular selectors
    but no k-center) or pull in another framework (coreax needs JAX).
    """
    points = np.asarray(features, dtype=np.float32).reshape(len(features), -1)
    k = min(int(k), len(points))
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    first = int(np.argmin(_squared_distances(points, points.mean(axis=0))))
    chosen = [first]
    nearest = _squared_distances(points, points[first])
    for _ in range(k - 1):
        nearest[chosen[-1]] = -1.0  # chosen rows are never picked again
        best = int(np.argmax(nearest))
        chosen.append(best)
        nearest = np.minimum(nearest, _squared_distances(points, points[best]))
    return np.asarray(chosen, dtype=np.int64)


def input_features(canonical: torch.Tensor) -> np.ndarray:
    """A cheap fixed feature of canonical inputs: images averaged down to at most
    ``FEATURE_SIDE`` x ``FEATURE_SIDE`` per channel, vectors as they are."""
    if canonical.ndim == 4:
        side = (min(FEATURE_SIDE, canonical.shape[2]), min(FEATURE_SIDE, canonical.shape[3]))
        canonical = F.adaptive_avg_pool2d(canonical.float(), side)
    return canonical.reshape(len(canonical), -1).float().numpy()


def _squared_distances(points: np.ndarray, center: np.ndarray) -> np.ndarray:
    difference = points - center
    return np.einsum("ij,ij->i", difference, difference)
