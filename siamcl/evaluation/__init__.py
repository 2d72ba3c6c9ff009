"""Evaluation: learning a stream of tasks and scoring it (accuracy matrix, forgetting)."""

from siamcl.evaluation.streams import accuracy_matrix_metrics, evaluate_stream

__all__ = ["accuracy_matrix_metrics", "evaluate_stream"]
