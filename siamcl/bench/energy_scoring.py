"""How a multi-class benchmark check scores a model, and which of its work counts.

A check scores what stopping there would deploy: a softmax network by its highest logit
(:func:`logit_scorer`, nothing to finish), a prototype learner by its nearest prototype
(:func:`prototype_scorer`), after embedding its prototypes' rows (the finishing work, timed),
a quantized network after its int8 conversion (:func:`deployed_score`), and a whitened
network quantized after training as the learner finishes it, whitening folded in before a
second calibration and conversion (:func:`whitened_int8_scorer`). Embedding the test rows is
evaluation, not timed.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from siamcl.accounting import ResourceMeter
from siamcl.compress import calibration_rows, float_phase
from siamcl.learners.siamese_task import whitened
from siamcl.learners.validation import reference_store, store_accuracy
from siamcl.preprocess import Preprocessor
from siamcl.store import PrototypeStore
from siamcl.training import embed_in_batches

__all__ = [
    "Cost",
    "deployed_score",
    "logit_scorer",
    "metered",
    "prototype_scorer",
    "whitened_int8_scorer",
]

Cost = tuple[float, float]  # (joules, CPU seconds)


def metered(work: Callable[[], Any], device: str) -> tuple[Any, Cost]:
    with ResourceMeter(flops="off", device=device) as meter:
        result = work()
    report = meter.report(task=None, method="finish")
    return result, (report.energy_j, report.cpu_s)


def prototype_scorer(
    preprocessor: Preprocessor,
    reference: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    device: str = "cpu",
    new_store: Callable[[int], PrototypeStore] = PrototypeStore,
    whitening: float | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> Callable[[nn.Module], tuple[float, Cost]]:
    """Accuracy of the nearest prototype in a store ``new_store(dim)`` filled with the
    ``reference`` rows: class means by default, the learner's own rule with
    :func:`~siamcl.learners.validation.rule_store` (every row for a 1-NN learner); with
    ``whitening`` (a shrinkage), after the within-class whitening of the reference rows, as
    ``IncrementalClassifier(whitening=...)`` finishes a task. Embedding the reference rows,
    the whitening estimate and filling the store are the finishing work, timed; embedding the
    test rows is evaluation, not timed. Both embed in ``autocast_dtype``, as the learner does
    (:func:`~siamcl.training.forward_dtype`)."""
    ref_inputs, ref_labels = preprocessor.canonical(reference[0]), np.asarray(reference[1])
    test_inputs, test_labels = preprocessor.canonical(test[0]), np.asarray(test[1])
    standardise = preprocessor.standardise

    def embed(encoder: nn.Module, inputs: torch.Tensor) -> np.ndarray:
        return embed_in_batches(encoder, inputs, standardise, device, autocast_dtype=autocast_dtype)

    def score(encoder: nn.Module) -> tuple[float, Cost]:
        (store, matrix), cost = metered(
            lambda: reference_store(encoder, embed, (ref_inputs, ref_labels), new_store, whitening),
            device,
        )
        return store_accuracy(store, matrix, embed(encoder, test_inputs), test_labels), cost

    return score


def logit_scorer(
    preprocessor: Preprocessor,
    classes: np.ndarray,
    test: tuple[np.ndarray, np.ndarray],
    device: str = "cpu",
    autocast_dtype: torch.dtype | None = None,
) -> Callable[[nn.Module], tuple[float, Cost]]:
    """Accuracy of the highest logit (logits in ``autocast_dtype``, as the learner predicts);
    a softmax network needs no finishing work."""
    inputs, labels = preprocessor.canonical(test[0]), np.asarray(test[1])

    def score(model: nn.Module) -> tuple[float, Cost]:
        standardise = preprocessor.standardise
        logits = embed_in_batches(model, inputs, standardise, device, autocast_dtype=autocast_dtype)
        return float(np.mean(classes[logits.argmax(axis=1)] == labels)), (0.0, 0.0)

    return score


def deployed_score(
    learner: Any,
    score: Callable[[nn.Module], tuple[float, Cost]],
    training: tuple[Preprocessor, np.ndarray],
    device: str,
) -> Callable[[nn.Module], tuple[float, Cost]]:
    """``score`` of what stopping here would deploy (a quantization-aware network's int8
    conversion, calibrated on rows of the ``training`` data after float epochs), the
    conversion counted as finishing work. A float network is deployed as it is: nothing to
    count."""
    if learner.qat is None:
        return score
    preprocessor, X = training
    calibration = calibration_rows(preprocessor.canonical(X), preprocessor.standardise)

    def scored(model: nn.Module) -> tuple[float, Cost]:
        deployed, (convert_j, convert_cpu_s) = metered(
            lambda: learner.deployed(model, calibration), device
        )
        accuracy, (finish_j, finish_cpu_s) = score(deployed)
        return accuracy, (convert_j + finish_j, convert_cpu_s + finish_cpu_s)

    return scored


def whitened_int8_scorer(
    learner: Any,
    preprocessor: Preprocessor,
    reference: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    calibration_inputs: np.ndarray,
    device: str = "cpu",
    new_store: Callable[[int], PrototypeStore] = PrototypeStore,
) -> Callable[[nn.Module], tuple[float, Cost]]:
    """The accuracy of a whitened ``learner`` quantized after training
    (``qat="int8-ptq"``) stopped at a check, finished as the learner finishes a task
    (:func:`~siamcl.learners.siamese_task.consolidate`): calibrated on rows of
    ``calibration_inputs`` and converted, the ``reference`` rows embedded in int8, their
    within-class whitening folded into the float network, calibrated and converted again,
    the rows embedded again for the prototypes. All of that is the finishing work, timed,
    on a copy of the network (not timed: the learner whitens its own once training ends)."""
    ref_inputs, ref_labels = preprocessor.canonical(reference[0]), np.asarray(reference[1])
    test_inputs, test_labels = preprocessor.canonical(test[0]), np.asarray(test[1])
    rows = calibration_rows(preprocessor.canonical(calibration_inputs), preprocessor.standardise)

    def embed(encoder: nn.Module, inputs: torch.Tensor) -> np.ndarray:
        return embed_in_batches(encoder, inputs, preprocessor.standardise, device)

    def score(model: nn.Module) -> tuple[float, Cost]:
        trainable = copy.deepcopy(model)

        def finish() -> tuple[nn.Module, PrototypeStore]:
            float_phase.calibrate(trainable, rows)
            embedded = embed(learner.deployed(trainable), ref_inputs)
            encoder, _ = whitened(learner, trainable, (embedded, ref_labels), rows)
            return encoder, reference_store(encoder, embed, (ref_inputs, ref_labels), new_store)[0]

        (encoder, store), cost = metered(finish, device)
        return store_accuracy(store, None, embed(encoder, test_inputs), test_labels), cost

    return score
