"""The standard network siamcl is compared against: the same backbone with a softmax head.

:class:`SoftmaxClassifier` has the learner's task interface (``fit_task``, ``predict``,
``reports``) and the same preprocessing, augmentation, optimiser and exemplar budget, but
learns with cross-entropy through a linear head that grows as classes arrive. Replaying the
same exemplars makes it the usual experience-replay baseline of class-incremental learning.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from siamcl.accounting import ResourceMeter, TaskReport
from siamcl.augment import RandomAffine
from siamcl.compress import (
    check_scheme,
    convert_qat,
    logit_distillation_loss,
    logit_teacher,
    prepare_qat,
    schedule_qat,
)
from siamcl.encoders import build_encoder
from siamcl.preprocess import Preprocessor, as_array, as_labels
from siamcl.replay import ExemplarMemory
from siamcl.training import balanced_epoch

__all__ = ["HeadClassifier", "SoftmaxClassifier"]


class HeadClassifier(nn.Module):
    """A backbone producing features followed by a linear layer producing class logits."""

    def __init__(self, backbone: nn.Module, features: int, n_classes: int):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(features, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def grow(self, n_classes: int) -> None:
        """Widen the head to ``n_classes`` outputs, keeping the weights of existing ones."""
        old = self.head
        if n_classes <= old.out_features:
            return
        self.head = nn.Linear(old.in_features, n_classes).to(old.weight.device)
        with torch.no_grad():
            self.head.weight[: old.out_features] = old.weight
            self.head.bias[: old.out_features] = old.bias


class SoftmaxClassifier:
    """Cross-entropy classifier with a growing head and experience replay.

    ``encoder`` names the backbone (as for :class:`~siamcl.IncrementalClassifier`); its
    embedding layer becomes a ``features``-wide representation feeding the softmax head.

    ``qat`` (``"int8"`` or ``"int4"``) trains the backbone quantization-aware and predicts with
    its converted quantized form; the growing head stays float. ``teacher`` (a fitted
    SoftmaxClassifier knowing the task's classes, or a module producing their logits) adds
    ``teacher_weight`` x logit distillation at temperature ``distill_temperature``.
    """

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
    ):
        self.encoder = encoder
        self.features = features
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.memory_per_class = memory_per_class
        self.memory_total = memory_total
        self.balance = balance
        self.augment = augment
        self.input_size = input_size
        self.invert = invert
        self.device = device
        self.seed = seed
        self.progress = progress
        self.energy = energy
        self.flops = flops
        self.qat = qat
        self.teacher = teacher
        self.teacher_weight = teacher_weight
        self.distill_temperature = distill_temperature

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
        check_scheme(self.qat)
        if self.qat and torch.device(self.device).type != "cpu":
            raise ValueError(
                f"quantized models run on the CPU: use device='cpu' with qat={self.qat!r}"
            )
        if fitted and bool(self.qat) != hasattr(self, "qat_model_"):
            raise ValueError("qat cannot be switched on or off after the first task")
        if not self.teacher_weight >= 0:
            raise ValueError(f"teacher_weight must be non-negative, got {self.teacher_weight!r}")
        if not self.distill_temperature > 0:
            raise ValueError(
                f"distill_temperature must be positive, got {self.distill_temperature!r}"
            )
        preprocessor = (
            self.preprocessor_ if fitted else Preprocessor(self.input_size, self.invert).fit(X)
        )
        canonical = preprocessor.canonical(X)
        classes = list(self.classes_.tolist())
        classes += [c for c in np.unique(y).tolist() if c not in classes]
        if fitted:
            model = copy.deepcopy(self.qat_model_ if self.qat else self.model_)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                body = build_encoder(self.encoder, preprocessor.input_shape, self.features).body
                if self.qat:
                    example = torch.zeros((2, *preprocessor.input_shape))
                    body = prepare_qat(body, self.qat, example)
                model = HeadClassifier(body, self.features, len(classes))
        model.grow(len(classes))
        external = None
        if self.teacher is not None:
            external = logit_teacher(self.teacher, preprocessor, classes)
        memory = copy.deepcopy(self.memory_) if fitted else self._new_memory()
        memory_X, memory_y = memory.arrays()
        inputs, labels = canonical, y
        if memory_X is not None:
            inputs = torch.cat([canonical, torch.from_numpy(memory_X.astype(np.float32))])
            labels = np.concatenate([y, memory_y])
        position = {label: i for i, label in enumerate(classes)}
        targets = np.array([position[label] for label in labels.tolist()], dtype=np.int64)
        task_index = len(self.reports)
        with ResourceMeter(energy=self.energy, flops=self.flops, device=self.device) as meter:
            self._train(model, preprocessor, inputs, targets, task_index, meter, external)
            trained = model
            if self.qat:
                model = copy.deepcopy(trained).cpu()
                model.backbone = convert_qat(trained.backbone, self.qat)
            memory.add(canonical.numpy().astype(np.float16), y)
        report = meter.report(
            task=task_index, method="fit_task", retained_bytes={"replay": memory.nbytes}
        )
        self.preprocessor_, self.model_, self.memory_ = preprocessor, model, memory
        self.classes_list_ = classes
        self.reports_ = [*self.reports, report]
        if self.qat:
            self.qat_model_ = trained
        return report

    def predict(self, X: Any) -> np.ndarray:
        """Label of the highest logit among the classes seen so far."""
        if not hasattr(self, "model_"):
            raise RuntimeError("SoftmaxClassifier is not fitted: call fit_task first")
        inputs = self.preprocessor_(X)
        self.model_.eval()
        with torch.no_grad():
            logits = torch.cat(
                [
                    self.model_(inputs[i : i + 512].to(self.device)).cpu()
                    for i in range(0, len(inputs), 512)
                ]
            )
        return self.classes_[logits.argmax(dim=1).numpy()]

    def score(self, X: Any, y: Any) -> float:
        X = as_array(X)
        return float((self.predict(X) == as_labels(y, len(X))).mean())

    def _train(
        self,
        model: nn.Module,
        preprocessor: Preprocessor,
        inputs: torch.Tensor,
        targets: np.ndarray,
        task_index: int,
        meter: ResourceMeter,
        external: nn.Module | None = None,
    ) -> None:
        generator = torch.Generator().manual_seed(self.seed * 1000 + task_index)
        optimizer = torch.optim.Adam(model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        steps = self.epochs * max(1, int(np.ceil(len(inputs) / self.batch_size)))
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
        augment = RandomAffine() if self.augment and preprocessor.kind == "image" else None
        target_tensor = torch.from_numpy(np.asarray(targets, dtype=np.int64))
        model.to(self.device).train()
        bar = tqdm(
            total=steps, desc=f"softmax task {task_index}", leave=False, disable=not self.progress
        )
        for epoch in range(self.epochs):
            if self.qat:
                schedule_qat(model, epoch, self.epochs)
            order = balanced_epoch(targets, self.balance, generator)
            for start in range(0, len(order), self.batch_size):
                rows = order[start : start + self.batch_size]
                batch = inputs[rows]
                if augment is not None:
                    batch = augment(batch, generator)
                batch = preprocessor.standardise(batch).to(self.device)
                with meter.batch(n_samples=len(rows)):
                    logits = model(batch)
                    loss = F.cross_entropy(logits, target_tensor[rows].to(self.device))
                    if external is not None and self.teacher_weight > 0:
                        loss = loss + self.teacher_weight * logit_distillation_loss(
                            logits, external(batch), self.distill_temperature
                        )
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                scheduler.step()
                bar.update(1)
        bar.close()
        model.eval()

    def _new_memory(self) -> ExemplarMemory:
        if self.memory_total is not None:
            return ExemplarMemory(None, self.memory_total, "random", self.seed)
        return ExemplarMemory(self.memory_per_class, None, "random", self.seed)
