"""Evaluation: learning a stream of tasks and scoring it (accuracy matrix, forgetting), and
N-way K-shot accuracy on episodes."""

from siamcl.evaluation.episodes import evaluate_episodes
from siamcl.evaluation.streams import accuracy_matrix_metrics, evaluate_stream

__all__ = ["accuracy_matrix_metrics", "evaluate_episodes", "evaluate_stream"]
