"""The standard network siamcl is compared against: the same backbone with a softmax head.

:class:`SoftmaxClassifier` has the learner's task interface (``fit_task``, ``predict``,
``reports``) and the same preprocessing, augmentation, optimiser and exemplar budget, but
learns with cross-entropy through a linear head that grows as classes arrive. Replaying the
same exemplars makes it the usual experience-replay baseline of class-incremental learning.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from siamcl._checks import OPTIMIZER_FACTORY, Integer, Options, Real, check_params
from siamcl.accounting import ResourceMeter, TaskReport
from siamcl.augment import RandomAffine
from siamcl.compress import FloatTraining, calibration_rows, logit_teacher, training_scheme
from siamcl.encoders import build_encoder
from siamcl.learners.head import HeadClassifier
from siamcl.learners.task_data import (
    DATA_CONSTRAINTS,
    distorts,
    row_figures,
    task_rows,
    training_figures,
    validation_split,
)
from siamcl.losses import CrossEntropyTerm, Objective, distillation_term, logit_distillation
from siamcl.preprocess import Preprocessor, as_array, as_labels
from siamcl.replay import ExemplarMemory
from siamcl.training import (
    BalancedBatches,
    BatchPreparation,
    LoopResult,
    TrainingLoop,
    adam,
    check_stopping,
    embed_in_batches,
)
from siamcl.training.freezing import (
    check_float_training,
    check_frozen_layers,
    freeze_leading_layers,
)
from siamcl.training.precision import PRECISIONS, forward_dtype, precision_with_qat

__all__ = ["HeadClassifier", "SoftmaxClassifier"]


class SoftmaxClassifier:
    """Cross-entropy classifier with a growing head and experience replay.

    ``encoder`` names the backbone (as for :class:`~siamcl.IncrementalClassifier`); its
    embedding layer becomes a ``features``-wide representation feeding the softmax head.

    ``qat`` (``"int8"`` or ``"int4"``) trains the backbone quantization-aware and predicts with
    its converted quantized form (``"int8-ptq"``: trains in float and quantizes it after
    training); the growing head stays float. ``teacher`` (a fitted
    SoftmaxClassifier knowing the task's classes, or a module producing their logits) adds
    ``teacher_weight`` x logit distillation at temperature ``distill_temperature``.
    ``optimizer`` is a factory of the parameter groups to train (None: Adam with ``lr`` and
    ``weight_decay``). All randomness (initial weights, the rows of a head that grows, batches,
    distortions) comes from ``seed``. ``callbacks`` are :class:`siamcl.training.Callback`
    objects the training loop calls between epochs, their time not counted as training.
    ``teacher_targets``: ``"cached"`` computes the teacher's logits once per training row
    (undistorted) before the loop, ``"per_step"`` runs the teacher on every (distorted)
    batch, ``"auto"`` caches unless the batches are distorted (``augment`` on images).
    ``data_fraction`` / ``data_selection``: train on that fraction of each class of a task,
    chosen ``"stratified"`` (at random) or ``"coreset"`` (spread out, k-center greedy); only
    those rows are trained on and kept as exemplars (see :mod:`siamcl.training.selection`).
    ``precision``: ``"fp32"``, ``"bf16"`` (mixed-precision forward passes) or ``"auto"``
    (bf16 where the hardware computes it natively; :mod:`siamcl.training.precision`).
    ``stopping``, ``validation_fraction``, ``checks_per_epoch`` and ``frozen_layers`` (float
    backbones only) as for :class:`~siamcl.IncrementalClassifier`, the validation score being
    the deployed network's accuracy on the share of each class held out.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "features": [Integer(1)],
        "epochs": [Integer(1)],
        "batch_size": [Integer(1)],
        "lr": [Real(0, closed="neither")],
        "weight_decay": [Real(0)],
        "balance": [Real(0, 1)],
        "teacher_weight": [Real(0)],
        "distill_temperature": [Real(0, closed="neither")],
        "optimizer": OPTIMIZER_FACTORY,
        "precision": [Options(PRECISIONS)],
        "frozen_layers": [Integer(0)],
        **DATA_CONSTRAINTS,
    }

    def __init__(
        self,
        encoder: str = "conv4",
        features: int = 64,
        epochs: int = 8,
        batch_size: int = 128,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        memory_per_class: int | None = 20,
        memory_total: int | None = None,
        balance: float = 0.5,
        augment: bool = True,
        input_size: tuple[int, int] | None = None,
        invert: bool | str = "auto",
        device: str = "cpu",
        seed: int = 0,
        progress: bool = False,
        energy: str = "auto",
        flops: str = "sample",
        qat: str | None = None,
        teacher: Any = None,
        teacher_weight: float = 1.0,
        distill_temperature: float = 4.0,
        optimizer: Any = None,
        callbacks: Sequence[Any] | None = None,
        teacher_targets: str = "auto",
        data_fraction: float = 1.0,
        data_selection: str = "stratified",
        precision: str = "fp32",
        stopping: Any = None,
        validation_fraction: float = 0.0,
        frozen_layers: int = 0,
        checks_per_epoch: int = 1,
    ):
        # scikit-learn's habit: the constructor only stores its parameters, as given
        vars(self).update({k: v for k, v in locals().items() if k != "self"})

    @property
    def reports(self) -> list[TaskReport]:
        return getattr(self, "reports_", [])

    @property
    def classes_(self) -> np.ndarray:
        """Labels in the order their head outputs were added."""
        return np.asarray(getattr(self, "classes_list_", []), dtype=np.int64)

    def fit_task(self, X: Any, y: Any) -> TaskReport:
        """Train on one task plus replayed exemplars; the head grows for new classes."""
        X = as_array(X)
        y = as_labels(y, len(X))
        fitted = hasattr(self, "model_")
        check_params(self, self._parameter_constraints)
        check_stopping(self.stopping, self.validation_fraction)
        precision_with_qat(self.precision, self.qat)
        scheme = training_scheme(self.qat, self.device)
        if fitted and scheme.scheme != self.qat_:
            raise ValueError("qat cannot be switched on or off after the first task")
        check_float_training(self.frozen_layers, self.qat, part="backbone")
        preprocessor = (
            self.preprocessor_ if fitted else Preprocessor(self.input_size, self.invert).fit(X)
        )
        canonical = preprocessor.canonical(X)
        classes = list(self.classes_.tolist())
        classes += [c for c in np.unique(y).tolist() if c not in classes]  # selection keeps all
        task_index = len(self.reports)
        model = self._task_model(fitted, preprocessor, len(classes), scheme, task_index)
        memory = copy.deepcopy(self.memory_) if fitted else self._new_memory()
        with ResourceMeter(energy=self.energy, flops=self.flops, device=self.device) as meter:
            current = self._backbone_embedder(preprocessor) if fitted else None
            rows = task_rows(self, canonical, y, task_index, current)  # selection is metered
            canonical, y = (canonical, y) if len(rows) == len(y) else (canonical[rows], y[rows])
            train, validate = self._validation(preprocessor, canonical, y, classes, task_index)
            inputs, targets = self._with_replay(canonical[train], y[train], memory, classes)
            objective = self._objective(preprocessor, classes, inputs)
            args = (preprocessor, inputs, targets, task_index, meter, scheme, validate)
            result = self._train(model, objective, *args)
            deployed = self.deployed(model)
            memory.add(canonical.numpy().astype(np.float16), y)
        report = meter.report(
            task=task_index,
            method="fit_task",
            retained_bytes={"replay": memory.nbytes},
            extra={**training_figures(result), **row_figures(len(y[train]), len(X))},
        )
        report.stopped_by = result.stopped_by
        self.preprocessor_, self.model_, self.memory_ = preprocessor, deployed, memory
        self.trainable_model_, self.qat_ = model, scheme.scheme
        self.classes_list_ = classes
        self.reports_ = [*self.reports, report]
        return report

    @classmethod
    def from_backbone(
        cls,
        params: dict[str, Any],
        preprocessor: Preprocessor,
        backbone: nn.Module,
        n_outputs: int = 1,
    ) -> SoftmaxClassifier:
        """A classifier to fine-tune from a trained ``backbone`` (a copy is used): a fresh
        head of ``n_outputs`` rows, drawn from the seed, that grows as classes arrive."""
        clf = cls(**params)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(clf.seed)
            model = HeadClassifier(copy.deepcopy(backbone), clf.features, n_outputs)
        clf.preprocessor_, clf.memory_ = preprocessor, clf._new_memory()
        clf.model_ = clf.trainable_model_ = model
        clf.qat_, clf.classes_list_ = None, []
        return clf

    def deployed(
        self, model: HeadClassifier, calibration: torch.Tensor | None = None
    ) -> HeadClassifier:
        """The network it predicts with, from ``model`` as trained (under ``qat``, the backbone
        converted, calibrated on ``calibration`` rows after float epochs): what validation
        and a benchmark's checks score mid-training."""
        scheme = training_scheme(self.qat, self.device)
        return model.with_backbone(scheme.convert(model.backbone, calibration))

    def reset_memory(self) -> None:
        """Drop every replayed exemplar (the head and what it learned stay)."""
        self.memory_ = self._new_memory()

    def predict(self, X: Any) -> np.ndarray:
        """Label of the highest logit among the classes seen so far."""
        if not hasattr(self, "model_"):
            raise RuntimeError("SoftmaxClassifier is not fitted: call fit_task first")
        inputs = self.preprocessor_(X)
        logits = embed_in_batches(
            self.model_, inputs, device=self.device, autocast_dtype=self._dtype()
        )
        return self.classes_[logits.argmax(axis=1)]

    def score(self, X: Any, y: Any) -> float:
        X = as_array(X)
        return float((self.predict(X) == as_labels(y, len(X))).mean())

    def _new_model(
        self, input_shape: tuple[int, ...], n_classes: int, scheme: FloatTraining
    ) -> HeadClassifier:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            body = build_encoder(self.encoder, input_shape, self.features).body
            model = HeadClassifier(body, self.features, n_classes)
        # after the head is drawn: preparing for QAT draws random numbers of its own, and a
        # QAT network starts from the float network's weights
        model.backbone = scheme.prepare(body, torch.zeros((2, *input_shape)))
        return model

    def _task_model(
        self,
        fitted: bool,
        preprocessor: Preprocessor,
        n_classes: int,
        scheme: FloatTraining,
        task_index: int,
    ) -> HeadClassifier:
        """A copy of the model as trained so far (or a new one), its head grown to
        ``n_classes`` with new rows drawn from the seed; after the first task, the backbone's
        first ``frozen_layers`` frozen (a count that cannot be is refused on any task)."""
        model = (
            copy.deepcopy(self.trainable_model_)
            if fitted
            else self._new_model(preprocessor.input_shape, n_classes, scheme)
        )
        check_frozen_layers(model.backbone, self.frozen_layers)
        if fitted:
            freeze_leading_layers(model.backbone, self.frozen_layers)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed * 1000 + task_index)
            model.grow(n_classes)
        return model

    @staticmethod
    def _with_replay(
        canonical: torch.Tensor, y: np.ndarray, memory: ExemplarMemory, classes: list[int]
    ) -> tuple[torch.Tensor, np.ndarray]:
        """The task's inputs followed by the memory's, and their head positions."""
        memory_X, memory_y = memory.arrays()
        inputs, labels = canonical, y
        if memory_X is not None:
            inputs = torch.cat([canonical, torch.from_numpy(memory_X.astype(np.float32))])
            labels = np.concatenate([y, memory_y])
        position = {label: i for i, label in enumerate(classes)}
        return inputs, np.array([position[label] for label in labels.tolist()], dtype=np.int64)

    def _backbone_embedder(self, preprocessor: Preprocessor):
        """Features of canonical inputs under the deployed backbone (coreset selection)."""

        def embed(canonical: torch.Tensor) -> np.ndarray:
            backbone, standardise = self.model_.backbone, preprocessor.standardise
            dtype = self._dtype()
            return embed_in_batches(
                backbone, canonical, standardise, self.device, autocast_dtype=dtype
            )

        return embed

    def _dtype(self) -> torch.dtype | None:
        """The autocast dtype of every forward pass (:func:`~siamcl.training.forward_dtype`)."""
        return forward_dtype(self.precision, self.qat, self.device)

    def _objective(
        self, preprocessor: Preprocessor, classes: list[int], inputs: torch.Tensor
    ) -> Objective:
        """Cross-entropy, plus logit distillation toward ``teacher`` if one is given (its
        logits computed once per row of ``inputs`` or on every step: ``teacher_targets``)."""
        terms = [("cross_entropy", 1.0, CrossEntropyTerm())]
        if self.teacher is not None:
            teacher = logit_teacher(self.teacher, preprocessor, classes, self._dtype())
            if self.teacher_weight:
                loss = logit_distillation(self.distill_temperature)
                prepare, distorted = preprocessor.standardise, distorts(self, preprocessor)
                targets = (self.teacher_targets, inputs, prepare, distorted)
                term = distillation_term(teacher, loss, *targets)
                terms.append(("teacher", self.teacher_weight, term))
        return Objective(terms)

    def _validation(
        self,
        preprocessor: Preprocessor,
        canonical: torch.Tensor,
        y: np.ndarray,
        classes: list[int],
        task_index: int,
    ) -> tuple[Any, Callable[[nn.Module], float] | None]:
        """The task's rows to train on and the loop's validation score: the deployed network's
        accuracy on ``validation_fraction`` of each class held out (none at a fraction of 0)."""
        if not self.validation_fraction:
            return slice(None), None
        train, held = validation_split(y, self.validation_fraction, self.seed * 1000 + task_index)
        position = {label: i for i, label in enumerate(classes)}
        truth = np.array([position[label] for label in y[held].tolist()])
        standardise, dtype = preprocessor.standardise, self._dtype()
        calibration = calibration_rows(canonical[train], standardise) if self.qat else None

        def score(model: nn.Module) -> float:
            deployed = self.deployed(model, calibration)
            logits = embed_in_batches(
                deployed, canonical[held], standardise, self.device, None, dtype
            )
            return float(np.mean(logits.argmax(axis=1) == truth))

        return train, score

    def _train(
        self,
        model: nn.Module,
        objective: Objective,
        preprocessor: Preprocessor,
        inputs: torch.Tensor,
        targets: np.ndarray,
        task_index: int,
        meter: ResourceMeter,
        scheme: FloatTraining,
        validate: Callable[[nn.Module], float] | None,
    ) -> LoopResult:
        generator = torch.Generator().manual_seed(self.seed * 1000 + task_index)
        augment = RandomAffine() if distorts(self, preprocessor) else None
        loop = TrainingLoop(
            epochs=self.epochs,
            optimizer=self.optimizer or adam(self.lr, self.weight_decay),
            prepare=BatchPreparation(preprocessor.standardise, augment, generator, self.device),
            callbacks=[scheme, *(self.callbacks or ())],
            meter=meter,
            progress=self.progress,
            description=f"softmax task {task_index}",
            precision=precision_with_qat(self.precision, self.qat),
            validate=validate,
            stopping=tuple(self.stopping or ()),
            checks_per_epoch=self.checks_per_epoch,
        )
        model.to(self.device)
        source = BalancedBatches(inputs, targets, self.batch_size, self.balance)
        result = loop.run(model, objective, source, generator)
        scheme.settle(model.backbone, inputs, preprocessor.standardise)
        return result

    def _new_memory(self) -> ExemplarMemory:
        return ExemplarMemory.with_budget(
            self.memory_per_class, self.memory_total, "random", self.seed
        )
