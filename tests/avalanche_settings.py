"""What tests of Avalanche baselines share: small baseline settings on a 4-class, 2-experience
stream of 28x28 images, and an evaluator of stream accuracy (read under ``STREAM_ACC``)."""

from __future__ import annotations

from avalanche.evaluation.metrics import accuracy_metrics
from avalanche.training.plugins import EvaluationPlugin

from siamcl.integrations.avalanche_baselines import BaselineSettings

STREAM_ACC = "Top1_Acc_Stream/eval_phase/test_stream/Task000"
SMALL = {"input_shape": (1, 28, 28), "n_classes": 4, "n_experiences": 2, "epochs": 1}


def small_settings(**overrides) -> BaselineSettings:
    """Baseline settings for a small stream: batches of 16, 20 exemplars, one epoch."""
    return BaselineSettings(**{**SMALL, "batch_size": 16, "memory_total": 20, **overrides})


def evaluator() -> EvaluationPlugin:
    """Stream accuracy, no loggers."""
    return EvaluationPlugin(accuracy_metrics(stream=True), loggers=[])
