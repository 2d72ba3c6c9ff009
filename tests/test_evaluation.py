"""Stream evaluation: accuracy matrices and checkpointed streams that resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from siamcl.evaluation import accuracy_matrix_metrics, evaluate_stream


def test_accuracy_matrix_metrics_final_accuracy_and_forgetting() -> None:
    matrix = np.array([[0.9, 0.0], [0.6, 0.8]])
    metrics = accuracy_matrix_metrics(matrix)
    assert metrics["final_accuracy"] == pytest.approx(0.7)
    assert metrics["forgetting"] == pytest.approx(0.3)
    assert accuracy_matrix_metrics(np.array([[0.5]])) == {"final_accuracy": 0.5, "forgetting": 0.0}


def _small_digits_stream():
    from siamcl.data import class_incremental, load_dataset

    X_train, y_train, X_test, y_test = load_dataset("digits")
    return class_incremental(X_train, y_train, n_tasks=4, seed=0), X_test, y_test


def _small_learner():
    from siamcl import IncrementalClassifier

    return IncrementalClassifier(
        encoder="mlp", epochs=2, memory_per_class=5, flops="off", energy="estimate", seed=1
    )


def test_checkpointed_stream_killed_in_task_3_resumes_with_same_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from siamcl import IncrementalClassifier

    tasks, X_test, y_test = _small_digits_stream()
    reference = evaluate_stream(_small_learner(), tasks, X_test, y_test)

    fit_task = IncrementalClassifier.fit_task
    trained: list[int] = []

    def fit_task_until_killed(self, X, y):
        task = len([r for r in self.reports if r.method == "fit_task"])
        trained.append(task)
        if kill_at == task:
            raise KeyboardInterrupt
        return fit_task(self, X, y)

    monkeypatch.setattr(IncrementalClassifier, "fit_task", fit_task_until_killed)
    kill_at = 2
    with pytest.raises(KeyboardInterrupt):
        evaluate_stream(_small_learner(), tasks, X_test, y_test, checkpoint_dir=tmp_path)
    assert trained == [0, 1, 2]
    kill_at, trained[:] = None, []
    resumed_learner = _small_learner()
    resumed = evaluate_stream(resumed_learner, tasks, X_test, y_test, checkpoint_dir=tmp_path)
    assert trained == [2, 3]  # tasks 0 and 1 came from the checkpoint
    assert resumed["accuracy_matrix"] == reference["accuracy_matrix"]
    assert resumed["accuracy"] == reference["accuracy"]
    assert len(resumed["task_reports"]) == 4

    # A finished stream run again trains nothing and restores the final learner.
    again = evaluate_stream(_small_learner(), tasks, X_test, y_test, checkpoint_dir=tmp_path)
    assert trained == [2, 3]
    assert again["accuracy_matrix"] == reference["accuracy_matrix"]
    assert again["accuracy"] == reference["accuracy"]


def test_checkpoint_of_another_test_set_is_refused(tmp_path: Path) -> None:

    tasks, X_test, y_test = _small_digits_stream()
    evaluate_stream(_small_learner(), tasks[:2], X_test, y_test, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="another stream or test set"):
        evaluate_stream(
            _small_learner(), tasks[:2], X_test[:-1], y_test[:-1], checkpoint_dir=tmp_path
        )
