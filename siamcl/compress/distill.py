"""Distillation losses: match a student's outputs to a frozen teacher's."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["embedding_distillation_loss"]


def embedding_distillation_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean cosine distance between student and teacher embeddings of the same inputs.

    Used against the previous task's encoder so that old classes' embeddings (and so their
    prototypes) do not drift while new classes are learned.
    """
    if student.shape != teacher.shape:
        raise ValueError(
            f"student embeddings {tuple(student.shape)} and teacher embeddings "
            f"{tuple(teacher.shape)} differ in shape"
        )
    return (1.0 - F.cosine_similarity(student, teacher.detach(), dim=1)).mean()
