"""Which of a task's rows a learner trains on and validates on, and whether its batches are
distorted.

Both :class:`~siamcl.IncrementalClassifier` and :class:`~siamcl.SoftmaxClassifier` take
``data_fraction`` / ``data_selection`` (train on a chosen part of each task, see
:mod:`siamcl.training.selection`), ``teacher_targets`` (a teacher's outputs computed once
per row, or on every step, see :class:`siamcl.losses.DistillationTerm`) and
``validation_fraction`` / ``stopping`` (a share of each class held out and scored after every
epoch; policies that end training early, :mod:`siamcl.training.stopping`); their constraints,
the row choices and the figures a report keeps of them are made here, once for both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from siamcl._checks import Integer, Options, Real
from siamcl.losses import TEACHER_TARGETS
from siamcl.preprocess import Preprocessor
from siamcl.training import LoopResult
from siamcl.training.selection import DATA_SELECTIONS, input_features, select_rows

__all__ = [
    "DATA_CONSTRAINTS",
    "distorts",
    "row_figures",
    "task_rows",
    "training_figures",
    "validation_split",
]

DATA_CONSTRAINTS: dict[str, list[Any]] = {
    "data_fraction": [Real(0, 1, closed="right")],
    "data_selection": [Options(DATA_SELECTIONS)],
    "teacher_targets": [Options(TEACHER_TARGETS)],
    "validation_fraction": [Real(0, 0.5, closed="left")],
    "checks_per_epoch": [Integer(1)],
}


def task_rows(
    clf: Any,
    canonical: torch.Tensor,
    y: np.ndarray,
    task_index: int,
    embed: Callable[[torch.Tensor], np.ndarray] | None = None,
) -> np.ndarray:
    """The rows of a task ``clf`` trains on: ``data_fraction`` of each class, chosen as
    ``data_selection`` says from ``seed * 1000 + task_index``. Coreset selection spreads
    them in the space of ``embed`` (the learner's current encoder) or, before the learner
    has one, of :func:`~siamcl.training.selection.input_features`."""
    if clf.data_fraction == 1:
        return np.arange(len(y))
    features = None
    if clf.data_selection == "coreset":
        features = embed(canonical) if embed is not None else input_features(canonical)
    seed = clf.seed * 1000 + task_index
    return select_rows(y, clf.data_fraction, clf.data_selection, seed, features)


def distorts(clf: Any, preprocessor: Preprocessor) -> bool:
    """Whether ``clf`` trains on randomly distorted batches (``augment``, images only): the
    one place both the batch preparation and the choice of teacher targets read it."""
    return bool(clf.augment) and preprocessor.kind == "image"


def row_figures(trained: int, offered: int) -> dict[str, float]:
    """What a task's report keeps of the selection: rows trained on and rows offered."""
    return {"rows_trained": float(trained), "rows_offered": float(offered)}


def validation_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows to train on and rows to validate on: ``fraction`` of each class held out (at
    least one row of each class with two or more, never a class's last row)."""
    rng = np.random.default_rng(seed)
    train, held = [], []
    for label in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == label))
        n_held = min(len(rows) - 1, max(1, round(fraction * len(rows))))
        held.append(rows[:n_held])
        train.append(rows[n_held:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(held))


def training_figures(result: LoopResult) -> dict[str, float]:
    """What a task's report keeps of the loop: epochs (fractional after a stop inside one)
    and steps run and, with validation, the last score and the CPU seconds validating took
    (within the report's CPU time, outside the training energy that stopping policies see)."""
    progress = result.progress
    epochs = progress.steps / progress.steps_per_epoch if progress.steps_per_epoch else 0.0
    figures = {"epochs_run": epochs, "steps": float(progress.steps)}
    if progress.scores:
        figures["validation_score"] = progress.scores[-1]
        figures["validation_cpu_s"] = result.validation_cpu_s
    return figures
