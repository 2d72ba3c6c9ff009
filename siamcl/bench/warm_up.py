"""A throwaway run of every method on a few rows, before any measured run.

A process's first training pays one-off costs no later one does: the first optimiser
imports ``torch._dynamo``, first calls set kernels up, Zeus and scikit-learn load lazily
(``python benchmarks/first_run.py``: a 5-task stream metered 4.8 CPU s in a fresh process,
3.3-4.0 s after). Unwarmed, a suite charges it to
whichever method runs first, and a comparison within one run is off by that much.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from siamcl.data import class_incremental

__all__ = ["few_rows", "warm_up_on_a_small_stream"]

ROWS_A_CLASS = 8


def few_rows(y: np.ndarray, per_class: int = ROWS_A_CLASS) -> np.ndarray:
    """The indices of the first ``per_class`` rows of every class in ``y``."""
    return np.concatenate([np.flatnonzero(y == c)[:per_class] for c in np.unique(y)])


def warm_up_on_a_small_stream(
    X: np.ndarray, y: np.ndarray, run: Callable[[list[Any], np.ndarray, np.ndarray], Any]
) -> None:
    """``run(tasks, X_test, y_test)`` once on a two-task stream of a few rows of each class
    (tested on the same rows), its result thrown away."""
    rows = few_rows(y)
    run(class_incremental(X[rows], y[rows], n_tasks=2, seed=0), X[rows], y[rows])
