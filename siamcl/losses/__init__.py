"""Losses: pml metric losses by name, loss terms, and the one weighted objective.

- :mod:`siamcl.losses.metric`: :func:`build_loss` and :data:`LOSSES` (pml loss + miner).
- :mod:`siamcl.losses.terms`: metric, cross-entropy, distillation and prototypical terms.
- :mod:`siamcl.losses.objective`: :class:`Objective`, the weighted sum every learner trains.
"""

from siamcl.losses.metric import LOSSES, MetricLoss, build_loss, is_pml_loss
from siamcl.losses.objective import Objective
from siamcl.losses.terms import (
    TEACHER_TARGETS,
    CrossEntropyTerm,
    DistillationTerm,
    MetricTerm,
    PrototypicalTerm,
    distillation_term,
    logit_distillation,
    prototypical_loss,
)

__all__ = [
    "LOSSES",
    "TEACHER_TARGETS",
    "CrossEntropyTerm",
    "DistillationTerm",
    "MetricLoss",
    "MetricTerm",
    "Objective",
    "PrototypicalTerm",
    "build_loss",
    "distillation_term",
    "is_pml_loss",
    "logit_distillation",
    "prototypical_loss",
]
