"""Multi-class energy to target: each method trains once, scored on the test split after
every epoch (or at ``checks_per_epoch`` points of each) by a monitor whose own cost is not
counted as training.

Methods (one task holding every class): the standard network (conv4 + softmax head), the
Siamese learner, both on images downsampled to 16x16 (the like-for-like comparison for the
cheaper input), the Siamese learner keeping every training image as a prototype (1-NN in
FAISS), the standard network and the Siamese learners in mixed precision (``-bf16``,
:mod:`siamcl.training.precision`; slower where bfloat16 is emulated), the Siamese learner on
a selected fraction of the data, with int8 QAT, or quantized to int8 after float training
(``-ptq``), ``conv4-small`` students distilled from the Siamese learner of the same seed
(KD, with int8 QAT, or ``-ptq``), and the same small network alone; and, like for like with
the Siamese learner's rule, the standard network read out by (whitened) class means of its
backbone's features (``standard-whitened``: scored and timed as a prototype learner; its
inference figure is its head's). A point of a curve is the energy to a *usable* model at
that epoch: training so far plus, for a prototype learner, one pass embedding the rows its
prototypes are the means of (the work that turns an encoder into a classifier), and for a
quantized network its int8 conversion (calibrated on training rows after float epochs).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import nn

from siamcl.accounting import ResourceMeter
from siamcl.bench.energy_scoring import (
    Cost,
    deployed_score,
    logit_scorer,
    metered,
    prototype_scorer,
    whitened_int8_scorer,
)
from siamcl.bench.variants import Variant, parse_variant
from siamcl.bench.warm_up import freeze_survivors
from siamcl.encoders import EmbeddingNetwork
from siamcl.learners.incremental import IncrementalClassifier
from siamcl.learners.readout import READOUT_PARAMS, split_readout
from siamcl.learners.softmax import SoftmaxClassifier
from siamcl.learners.validation import rule_store
from siamcl.preprocess import Preprocessor
from siamcl.store import PrototypeStore
from siamcl.training import forward_dtype
from siamcl.training.stopping import Progress

__all__ = [
    "BASES",
    "METHODS",
    "AccuracyCurve",
    "MulticlassRunner",
    "check_rows",
    "is_readout",
    "is_student",
    "multiclass_row",
]

# a method: its label in tables and the words a bar names it with; a row is a method and
# suffixes (siamcl.bench.variants): "siamese-whitened-d128-bf16", "standard-b64"
BASES = {
    "standard": ("Standard network (conv4 + softmax)", "the standard network"),
    "siamese": ("Siamese learner (conv4)", "Siamese"),
    "siamese-nn": (
        "Siamese learner, every training image a prototype (1-NN)",
        "Siamese with every training image a prototype",
    ),
    "siamese-selected": ("Siamese learner, selected data", "Siamese on selected data"),
    "qat-int8": ("Siamese learner, int8 QAT", "Siamese with int8 QAT"),
    "kd-student": (
        "KD student (conv4-small, matching cached teacher outputs, no distortions)",
        "the KD student",
    ),
    "qkd-student": (
        "Quantized-KD student (conv4-small, int8 QAT, cached outputs)",
        "the quantized-KD student",
    ),
    "small-alone": ("conv4-small alone (no teacher: what distillation adds)", "conv4-small alone"),
}
METHODS = (  # the rows a run holds by default
    "standard",
    "siamese",
    "standard-16px",
    "siamese-16px",
    "siamese-nn",
    "siamese-whitened",
    "standard-whitened",
    "standard-bf16",
    "siamese-bf16",
    "siamese-whitened-bf16",
    "siamese-whitened-d128-bf16",
    "siamese-selected",
    "qat-int8",
    "siamese-ptq",
    "kd-student",
    "qkd-student",
    "kd-student-ptq",
    "small-alone",
)
STUDENTS = ("kd-student", "qkd-student")  # trained from the "siamese" run of their seed
PROTOTYPE_LEARNERS = ("siamese", "siamese-nn")  # weighed against the standard network
PREDICTIONS = 10_000  # inference energy is reported per this many predictions
# options a "standard" row takes for scoring, not training (READOUT_PARAMS):
# "standard-whitened" is the standard network read out by whitened class means of its
# backbone's normalised features, the rule of siamcl.learners.readout.prototype_readout (like
# for like with the Siamese learner's), "standard-whitened-k5" by five k-means centres a class


@dataclass
class AccuracyCurve:
    """A training-loop callback: at ``checks_per_epoch`` evenly spaced checks of each epoch
    (the last its end), whose training cost so far the loop reads with the learner's meter
    (measured where a counter is readable, estimated where not), ``score(model)`` gives the
    test accuracy and the cost of the finishing work it did (a prototype pass), and the rest
    of its time is not counted. :meth:`anchor` then adds the learner's work outside the
    epochs (setup, such as caching teacher outputs)."""

    score: Callable[[nn.Module], tuple[float, Cost]]
    device: str = "cpu"
    checks_per_epoch: int = 1
    points: list[dict[str, Any]] = field(default_factory=list)
    monitoring: list[float] = field(default_factory=lambda: [0.0, 0.0])  # J, CPU s

    def on_check(self, model: nn.Module, progress: Progress) -> None:
        (accuracy, (finish_j, finish_cpu_s)), cost = metered(lambda: self.score(model), self.device)
        self.monitoring[0] += cost[0]  # the learner's meter counts this too: taken out in anchor
        self.monitoring[1] += cost[1]
        self.points.append(
            {
                "epoch": progress.steps / progress.steps_per_epoch,
                "steps": progress.steps,
                "training_j": progress.energy_j,
                "training_cpu_s": progress.cpu_s,
                "finish_j": finish_j,
                "finish_cpu_s": finish_cpu_s,
                "accuracy": accuracy,
            }
        )

    def anchor(self, total_j: float, total_cpu_s: float) -> list[dict[str, Any]]:
        """Each point's cost to a usable model: setup (the learner's metered total less this
        monitor's own work, the epochs and one finishing pass; never below 0) + epochs so far
        + a finishing pass."""
        last = self.points[-1]
        own_j, own_cpu_s = total_j - self.monitoring[0], total_cpu_s - self.monitoring[1]
        setup_j = max(0.0, own_j - last["training_j"] - last["finish_j"])
        setup_cpu_s = max(0.0, own_cpu_s - last["training_cpu_s"] - last["finish_cpu_s"])
        for point in self.points:
            point["setup_j"] = setup_j
            point["energy_j"] = setup_j + point["training_j"] + point["finish_j"]
            point["cpu_s"] = setup_cpu_s + point["training_cpu_s"] + point["finish_cpu_s"]
        return self.points


class MulticlassRunner:
    """One seed's runs of every method on ``(X, y, X_test, y_test)`` with ``settings``."""

    def __init__(self, data: tuple[np.ndarray, ...], settings: dict[str, Any], seed: int):
        self.X, self.y, self.X_test, self.y_test = data
        self.settings, self.seed = settings, seed
        self.preprocessors: dict[Any, Preprocessor] = {}  # by input size, as the learners fit
        self.teacher: IncrementalClassifier | None = None

    def run(self, name: str) -> dict[str, Any]:
        """Train method ``name``; its curve, final test accuracy, report and inference cost."""
        if is_student(name) and self.teacher is None:
            raise ValueError(f"{name} learns from the 'siamese' run: run that method first")
        freeze_survivors()  # earlier runs' objects out of this run's garbage collections
        learner = self.learner(name)
        checks = self.settings.get("checks_per_epoch", 1)
        curve = AccuracyCurve(self._scorer(name, learner), self.settings["device"], checks)
        learner.callbacks = [curve]
        report = learner.fit_task(self.X, self.y)
        learner.callbacks = None  # the monitor is not part of the model
        if name == "siamese":
            self.teacher = learner
        if is_readout(name):  # the learner predicts with its head; the row, with prototypes
            accuracy = curve.points[-1]["accuracy"]
        else:
            accuracy = float(np.mean(learner.predict(self.X_test) == self.y_test))
        curve.anchor(report.energy_j, report.cpu_s)
        report.energy_j -= curve.monitoring[0]  # what the learner cost without the monitor
        report.cpu_s -= curve.monitoring[1]
        flops_per_step = (report.flops or 0) / max(1, curve.points[-1]["steps"])
        for point in curve.points:
            point["flops"] = flops_per_step * point["steps"] if report.flops else None
        return {
            "accuracy": accuracy,
            "curve": curve.points,
            "report": report.to_dict(),
            "inference": inference_cost(learner, self.X_test, self.settings["device"]),
            "rows_trained": report.extra.get("rows_trained", len(self.X)),
        }

    def preprocessor(self, size: Any) -> Preprocessor:
        """The training data's preprocessing at input ``size``, as a learner fits it."""
        if size not in self.preprocessors:
            self.preprocessors[size] = Preprocessor(size).fit(self.X)
        return self.preprocessors[size]

    def learner(self, name: str) -> Any:
        """Row ``name``'s learner, unfitted: its method's settings, then its suffixes'."""
        s, method, options = self.settings, *_parts(name)
        common = {"seed": self.seed, "device": s["device"], "batch_size": s["batch_size"]}
        if method == "standard":
            standard = {"encoder": "conv4", "epochs": s["epochs"], "memory_per_class": 0}
            trained, _ = split_readout(options)
            return SoftmaxClassifier(**{**standard, **common, **trained})
        siamese = {"encoder": "conv4", "epochs": s["epochs"], "memory_per_class": 0, **common}
        if method == "siamese-nn":  # as many prototypes a class as it has rows: no k-means
            siamese["prototypes_per_class"] = int(np.unique(self.y, return_counts=True)[1].max())
        elif method == "siamese-selected":
            siamese |= {"data_fraction": s["data_fraction"], "data_selection": s["data_selection"]}
        elif method == "qat-int8":
            siamese["qat"] = "int8"
        if method not in ("small-alone", *STUDENTS):
            return IncrementalClassifier(**{**siamese, **options})
        # undistorted batches: the cached teacher outputs are exactly the teacher's view of
        # each batch, and a short schedule converges faster without distortions
        small = {
            **siamese,
            "encoder": "conv4-small",
            "epochs": s["student_epochs"],
            "augment": False,
            "lr": s["student_lr"],
        }
        if method in STUDENTS:
            small |= {"teacher": self.teacher.encoder_, "teacher_targets": "cached"}
            small["qat"] = "int8" if method == "qkd-student" else None
        return IncrementalClassifier(**{**small, **options})

    def _scorer(self, name: str, learner: Any) -> Callable[[nn.Module], tuple[float, Cost]]:
        test, device = (self.X_test, self.y_test), self.settings["device"]
        dtype = forward_dtype(learner.precision, learner.qat, device)  # as the learner embeds
        method, options = _parts(name)
        preprocessor = self.preprocessor(options.get("input_size"))
        if method == "standard" and not is_readout(name):
            score = logit_scorer(preprocessor, np.unique(self.y), test, device, dtype)
        elif method == "standard":  # its backbone's features as prototypes, timed as a learner's
            per_class = options.get("prototypes_per_class", 1)
            rule = partial(PrototypeStore, prototypes_per_class=per_class, seed=self.seed)
            whitening = options.get("whitening")
            features = prototype_scorer(
                preprocessor, (self.X, self.y), test, device, rule, whitening, dtype
            )
            score = lambda model: features(EmbeddingNetwork(model.backbone))
        else:
            rows = None
            if method == "siamese-selected":
                rows = selected_rows(learner, preprocessor, self.X, self.y)
            reference = (self.X, self.y) if rows is None else (self.X[rows], self.y[rows])
            rule = rule_store(learner)  # the learner's own: every row a prototype for "siamese-nn"
            if learner.whitening is not None and learner.qat is not None:
                return whitened_int8_scorer(
                    learner, preprocessor, reference, test, self.X, device, rule
                )
            score = prototype_scorer(
                preprocessor, reference, test, device, rule, learner.whitening, dtype
            )
        return deployed_score(learner, score, (preprocessor, self.X), device)


def multiclass_row(name: str) -> Variant:
    """Multi-class row ``name`` parsed: its method, options, label and bar words."""
    return parse_variant(name, BASES)


def is_student(name: str) -> bool:
    """Whether row ``name`` learns from the "siamese" run of its seed (a KD student)."""
    return multiclass_row(name).method in STUDENTS


def is_readout(name: str) -> bool:
    """Whether row ``name`` is the standard network scored by prototypes of its features."""
    method, options = _parts(name)
    return method == "standard" and bool(split_readout(options)[1])


def _parts(name: str) -> tuple[str, dict[str, Any]]:
    parsed = multiclass_row(name)
    return parsed.method, parsed.options


def check_rows(names: Sequence[str]) -> None:
    """Refuse, before anything runs, a row whose suffixes set an option its learner lacks."""
    for name in names:
        method, options = _parts(name)
        learner = SoftmaxClassifier if method == "standard" else IncrementalClassifier
        scoring = READOUT_PARAMS if method == "standard" else ()
        unknown = sorted(set(options) - set(inspect.signature(learner).parameters) - set(scoring))
        if unknown:
            raise ValueError(f"{name}: {learner.__name__} takes no option {unknown}")


def selected_rows(learner: Any, preprocessor: Preprocessor, X: np.ndarray, y: np.ndarray) -> Any:
    """The rows a learner with ``data_fraction`` trains on in its first task (its prototypes'
    rows), chosen as the learner chooses them."""
    from siamcl.learners.task_data import task_rows

    return task_rows(learner, preprocessor.canonical(X), np.asarray(y), task_index=0)


def inference_cost(learner: Any, X: np.ndarray, device: str) -> dict[str, Any]:
    """Energy and CPU seconds of :data:`PREDICTIONS` predictions (the test split repeated)."""
    repeats = int(np.ceil(PREDICTIONS / len(X)))
    inputs = np.concatenate([X] * repeats)[:PREDICTIONS]
    learner.predict(inputs[:256])  # warm-up: first-call allocations are not a model's cost
    with torch.no_grad(), ResourceMeter(flops="off", device=device) as meter:
        learner.predict(inputs)
    report = meter.report(task=None, method="predict")
    return {
        "predictions": PREDICTIONS,
        "energy_j": report.energy_j,
        "energy_method": report.energy_method,
        "cpu_s": report.cpu_s,
        "wall_s": report.wall_s,
    }
