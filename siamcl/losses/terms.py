"""Loss terms: each maps a model's outputs on a batch to a scalar, and one objective sums them.

A term sees the model's outputs and the :class:`~siamcl.training.Batch` they came from (the
model-ready inputs and the labels), so a distillation term can ask its teacher for the same
inputs. Terms are ``nn.Module``s: a term with parameters of its own (a pml proxy loss) hands
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

__all__ = [
    "CrossEntropyTerm",
    "DistillationTerm",
    "MetricTerm",
    "PrototypicalTerm",
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


class DistillationTerm(nn.Module):
    """``loss(outputs, teacher(inputs))`` for a frozen teacher run on the same inputs.

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
    ):
        super().__init__()
        self._teacher = (teacher,)  # a tuple: not registered as a submodule
        self.loss = loss

    def forward(self, outputs: torch.Tensor, batch: Batch) -> torch.Tensor:
        with torch.no_grad():
            target = self._teacher[0](batch.inputs)
        return self.loss(outputs, target)


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
