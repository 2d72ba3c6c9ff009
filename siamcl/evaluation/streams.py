"""Learning a stream of tasks and scoring it: accuracy matrices, forgetting, resumable runs.

A stream is learned task by task; after each task the learner is tested on every task seen so
far, which fills one row of the accuracy matrix. Benchmarks and users share this code so that
their numbers mean the same thing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["accuracy_matrix_metrics", "evaluate_stream"]


def accuracy_matrix_metrics(matrix: np.ndarray) -> dict[str, float]:
    """Final average accuracy and average forgetting from an accuracy matrix.

    ``matrix[t, j]`` is the accuracy on task ``j``'s test classes after learning task ``t``
    (entries with ``j > t`` are ignored). Forgetting of task ``j`` is its best accuracy before
    the last task minus its final accuracy, averaged over all but the last task.
    """
    matrix = np.asarray(matrix, dtype=float)
    last = matrix.shape[0] - 1
    final = float(matrix[last].mean())
    if last == 0:
        return {"final_accuracy": final, "forgetting": 0.0}
    drops = [matrix[j:last, j].max() - matrix[last, j] for j in range(last)]
    return {"final_accuracy": final, "forgetting": float(np.mean(drops))}


def evaluate_stream(
    learner: Any,
    tasks: Sequence[Any],
    X_test: np.ndarray,
    y_test: np.ndarray,
    progress: bool = False,
    checkpoint_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Learn ``tasks`` in order with ``learner.fit_task``, testing on every task after each.

    Returns the accuracy matrix (rows: after task t; columns: task j's test classes), final
    accuracy on all seen test data, forgetting, and the summed :class:`TaskReport`.

    With ``checkpoint_dir`` (an :class:`IncrementalClassifier` learner only) the learner is
    checkpointed after every task (``checkpoint_dir/learner``, see :mod:`siamcl.checkpoint`)
    and each row of the matrix is kept beside it, so a run that was killed resumes after its
    last finished task and returns what an uninterrupted run would have.
    """
    from tqdm.auto import tqdm

    from siamcl.accounting import sum_reports

    n = len(tasks)
    matrix = np.zeros((n, n))
    rows = _EvaluationRows(checkpoint_dir, tasks, X_test, y_test) if checkpoint_dir else None
    bar = tqdm(total=n, desc=type(learner).__name__, disable=not progress)

    def evaluate(t: int, learner: Any) -> None:
        """Fill row ``t`` of the matrix, unless a checkpointed earlier run already did."""
        if rows is None or t >= len(rows.rows):
            for j, seen in enumerate(tasks[: t + 1]):
                X_j, y_j = seen.select(X_test, y_test)
                matrix[t, j] = float((learner.predict(X_j) == y_j).mean())
            if rows is not None:
                rows.append(matrix[t, : t + 1].tolist())
        bar.update(1)

    if rows is None:  # any learner with fit_task, such as the softmax baseline
        reports = []
        for t, task in enumerate(tasks):
            reports.append(learner.fit_task(task.X, task.y))
            evaluate(t, learner)
    else:  # only the tasks after the last checkpoint are trained
        for t, row in enumerate(rows.read()):
            matrix[t, : t + 1] = row
        reports = learner.fit_stream(tasks, rows.learner_dir, after_task=evaluate)
    bar.close()
    seen_all = np.isin(y_test, np.concatenate([np.asarray(task.classes) for task in tasks]))
    metrics = accuracy_matrix_metrics(matrix)
    metrics["accuracy"] = float((learner.predict(X_test[seen_all]) == y_test[seen_all]).mean())
    total = sum_reports(reports)
    return {
        **metrics,
        "accuracy_matrix": matrix.tolist(),
        "report": total.to_dict(),
        "task_reports": [r.to_dict() for r in reports],
    }


class _EvaluationRows:
    """The accuracy rows of a checkpointed stream, saved atomically beside its learner.

    ``rows.json`` carries a fingerprint of the tasks and the test set, so rows from another
    experiment are refused rather than mixed in.
    """

    def __init__(
        self, directory: str | os.PathLike, tasks: Sequence[Any], X: np.ndarray, y: np.ndarray
    ):
        from siamcl.data.fingerprint import task_fingerprint

        self.directory = Path(directory)
        self.learner_dir = self.directory / "learner"
        self.path = self.directory / "rows.json"
        self.fingerprint = [task_fingerprint(t.X, t.y) for t in tasks] + [task_fingerprint(X, y)]
        self.rows: list[list[float]] = []

    def read(self) -> list[list[float]]:
        if not self.path.exists():
            return []
        try:
            saved = json.loads(self.path.read_text())
            fingerprint, rows = saved["fingerprint"], saved["rows"]
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{self.path} is corrupt: {error}") from error
        if fingerprint != self.fingerprint:
            raise ValueError(
                f"{self.path} belongs to another stream or test set: resume with the same "
                f"data and seed, or use a new checkpoint directory"
            )
        self.rows = rows
        return rows

    def append(self, row: list[float]) -> None:
        self.rows.append(row)
        self.directory.mkdir(parents=True, exist_ok=True)
        staging = self.path.with_name(f".{self.path.name}.tmp")
        staging.write_text(json.dumps({"fingerprint": self.fingerprint, "rows": self.rows}))
        os.replace(staging, self.path)
