"""Keeping what a suite's process carries off its measured runs: a throwaway run of every
method on a few rows before them, and earlier runs' objects out of later runs' garbage
collections.

A process's first training pays one-off costs no later one does: the first optimiser
imports ``torch._dynamo``, first calls set kernels up, Zeus and scikit-learn load lazily
(``python benchmarks/first_run.py``: a 5-task stream metered 4.8 CPU s in a fresh process,
3.3-4.0 s after). Unwarmed, a suite charges it to
whichever method runs first, and a comparison within one run is off by that much.

A suite's process also accumulates objects run after run (learners kept as teachers,
results, torch's and torch.fx's caches), and Python's oldest-generation garbage collection
scans every one of them whenever it runs, in whatever a later run is doing: a pause that grows
with the rows run before (``python benchmarks/gc_pauses.py``). :func:`freeze_survivors`
before each run collects what earlier runs left and moves the survivors out of the
collector's sight (``gc.freeze``), so a run's collections scan what it creates, as in a
process of its own.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any

import numpy as np

from siamcl.data import class_incremental

__all__ = ["few_rows", "freeze_survivors", "warm_up_on_a_small_stream"]

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


def freeze_survivors() -> None:
    """Collect the garbage of earlier work and freeze what survives (``gc.freeze``): later
    collections skip it. Called before each measured run of a suite."""
    gc.collect()
    gc.freeze()
