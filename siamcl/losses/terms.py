"""Loss terms: each maps a model's outputs on a batch to a scalar, and one objective sums them.

A term sees the model's outputs and the :class:`~siamcl.training.Batch` they came from (the
model-ready inputs, the labels and the rows of the training data), so a distillation term can
ask its teacher for the same inputs, or look up the teacher's outputs computed once per row. Terms are ``nn.Module``s: a term with parameters of its own (a pml proxy loss) hands
them to the optimizer through :meth:`siamcl.losses.Objective.parameters`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from siamcl.compress.distill import embedding_distillation_loss, logit_distillation_loss
from siamcl.losses.metric import MetricLoss

if TYPE_CHECKING:
    from siamcl.training.batch import Batch

TARGET_BATCH = 512  # rows per teacher call when targets are computed once

__all__ = [
    "TEACHER_TARGETS",
    "CrossEntropyTerm",
    "DistillationTerm",
    "MetricTerm",
    "PrototypicalTerm",
    "distillation_term",
    "logit_distillation",
    "prototypical_loss",
]


class MetricTerm(nn.Module):
    """A pml metric loss (with its miner) on the batch's embeddings and labels."""

    def __init__(self, metric_loss: MetricLoss):
        super().__init__()
        self.metric_loss = metric_loss

    def forward(self, outputs: torch.Tensor, batch: Batch) -> torch.Tensor:
        return self.metric_loss(outputs, batch.labels)


class CrossEntropyTerm(nn.Module):
    """Cross-entropy of class logits against the batch's label positions."""

    def forward(self, outputs: torch.Tensor, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(outputs, batch.labels)


TEACHER_TARGETS = ("auto", "cached", "per_step")


class DistillationTerm(nn.Module):
    """``loss(outputs, target)`` toward a frozen teacher's outputs for the batch's rows.

    Without ``targets`` the teacher runs on every step on the same (distorted, standardised)
    inputs as the student: ``per_step``. With ``targets`` (the teacher's outputs for every row
    of the training tensor, computed once by :meth:`cached`) the term looks the batch's
    targets up by ``batch.rows`` and the teacher never runs during training: with
    augmentation the student then matches the teacher's output for the undistorted input
    (a consistency target).

    ``loss`` defaults to the cosine distance between embeddings
    (:func:`~siamcl.compress.embedding_distillation_loss`); pass
    :class:`~siamcl.compress.EmbeddingDistillation` for relational distillation or
    :func:`logit_distillation` for softened logits. The teacher is not a submodule: its
    parameters are never trained or saved with the objective.
    """

    def __init__(
        self,
        teacher: Callable[[torch.Tensor], torch.Tensor],
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = embedding_distillation_loss,
        targets: torch.Tensor | None = None,
    ):
        super().__init__()
        self._teacher = (teacher,)  # a tuple: not registered as a submodule
        self.loss = loss
        self.targets = targets

    @classmethod
    def cached(
        cls,
        teacher: Callable[[torch.Tensor], torch.Tensor],
        inputs: torch.Tensor,
        prepare: Callable[[torch.Tensor], torch.Tensor] = lambda x: x,
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = embedding_distillation_loss,
    ) -> DistillationTerm:
        """A term whose targets are ``teacher(prepare(inputs))``, computed once here, in
        batches, without gradients; ``inputs`` is the training tensor the batches' ``rows``
        index (canonical, undistorted), ``prepare`` makes it model-ready (standardises)."""
        outputs = []
        with torch.no_grad():
            for start in range(0, len(inputs), TARGET_BATCH):
                batch = prepare(inputs[start : start + TARGET_BATCH].float())
                outputs.append(teacher(batch).detach().float().cpu())
        targets = torch.cat(outputs) if outputs else torch.zeros(0)
        return cls(teacher, loss, targets)

    def forward(self, outputs: torch.Tensor, batch: Batch) -> torch.Tensor:
        if self.targets is None:
            with torch.no_grad():
                target = self._teacher[0](batch.inputs)
        elif batch.rows is None:
            raise ValueError(
                "cached teacher targets are looked up by the batch's rows, but this batch "
                "source gives none: use a source that does or per-step targets"
            )
        else:
            target = self.targets[batch.rows.cpu()].to(outputs.device)
        return self.loss(outputs, target)


def distillation_term(
    teacher: Callable[[torch.Tensor], torch.Tensor],
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    targets: str,
    inputs: torch.Tensor,
    prepare: Callable[[torch.Tensor], torch.Tensor],
    distorted: bool,
) -> DistillationTerm:
    """The learners' distillation term: ``targets="cached"`` computes the teacher's outputs
    once per row of ``inputs`` (:meth:`DistillationTerm.cached`), ``"per_step"`` runs the
    teacher on every step's batch, ``"auto"`` caches when the batches are not ``distorted``
    (the cached targets are then the very outputs the teacher would give each step) and runs
    per step when they are (a target for the undistorted input cost 0.1 to 1.05 points of
    accuracy on mnist5k: ``benchmarks/results/work_once.md``)."""
    if targets == "auto":
        targets = "per_step" if distorted else "cached"
    if targets == "cached":
        return DistillationTerm.cached(teacher, inputs, prepare, loss)
    if targets == "per_step":
        return DistillationTerm(teacher, loss)
    raise ValueError(f"teacher_targets must be one of {list(TEACHER_TARGETS)}, got {targets!r}")


def logit_distillation(temperature: float) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Hinton's softened-logit KL at ``temperature``, as a :class:`DistillationTerm` loss."""

    def loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        return logit_distillation_loss(student, teacher, temperature)

    return loss


def prototypical_loss(
    embeddings: torch.Tensor, shots: int, temperature: float = 0.1
) -> torch.Tensor:
    """Cross-entropy of each query against the class means of the support images.

    ``embeddings`` is ``[ways, shots + queries, D]`` (L2-normalised); the first ``shots`` of
    each class are its support. Similarities are cosines divided by ``temperature``: the
    prototypical-network objective, on the sphere the prototype store searches.
    """
    ways = embeddings.shape[0]
    prototypes = F.normalize(embeddings[:, :shots].mean(dim=1), dim=1)
    queries = embeddings[:, shots:].reshape(-1, embeddings.shape[-1])
    logits = queries @ prototypes.T / temperature
    targets = torch.arange(ways, device=embeddings.device)
    return F.cross_entropy(logits, targets.repeat_interleave(embeddings.shape[1] - shots))


class PrototypicalTerm(nn.Module):
    """:func:`prototypical_loss` on an episode laid out as ``ways`` blocks of equal size."""

    def __init__(self, ways: int, shots: int, temperature: float = 0.1):
        super().__init__()
        self.ways = ways
        self.shots = shots
        self.temperature = temperature

    def forward(self, outputs: torch.Tensor, batch: Batch) -> torch.Tensor:
        grouped = outputs.view(self.ways, -1, outputs.shape[-1])
        return prototypical_loss(grouped, self.shots, self.temperature)
