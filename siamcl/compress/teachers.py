"""Teachers for distillation: a fitted classifier or a plain module, fed the student's batches.

A student trains on inputs standardised by its own preprocessor. A teacher that is a fitted
siamcl classifier was trained on inputs standardised by *its* preprocessor, so
:class:`FrozenTeacher` undoes the student's standardisation and applies the teacher's before
calling the teacher's network. Everything that can be wrong with a teacher (not fitted, another
input shape, another number of classes, an output that is not ``[N, D]``) is found here, before
any training step.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from siamcl.preprocess import Preprocessor
from siamcl.training.batch import device_of
from siamcl.training.precision import autocast

__all__ = ["FrozenTeacher", "embedding_teacher", "logit_teacher"]


class FrozenTeacher(nn.Module):
    """A teacher network in eval mode, without gradients, reading the student's standardised inputs.

    ``student`` and ``teacher`` are the two preprocessors (``teacher=None``: the network reads
    the student's inputs as they are); ``columns`` picks and orders output columns (the
    teacher's logits of the student's classes). With ``autocast_dtype`` (the student's
    training precision, :func:`~siamcl.training.precision.resolve_precision`) the teacher's
    forward pass runs mixed-precision too; its outputs are float32 either way.
    """

    def __init__(
        self,
        network: nn.Module,
        student: Preprocessor | None = None,
        teacher: Preprocessor | None = None,
        columns: list[int] | None = None,
        autocast_dtype: torch.dtype | None = None,
    ):
        super().__init__()
        self.network = network.eval()
        self.student = student
        self.teacher = teacher
        self.columns = columns
        self.autocast_dtype = autocast_dtype

    def train(self, mode: bool = True) -> FrozenTeacher:
        super().train(False)  # a teacher never leaves eval mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            if self.teacher is not None and self.student is not None:
                x = self.teacher.standardise(_unstandardise(self.student, x))
            device = device_of(self.network)
            with autocast(self.autocast_dtype, device):
                out = self.network(x.to(device))
            if self.columns is not None:
                out = out[:, self.columns]
            return out.to(x.device).float()


def embedding_teacher(
    teacher: Any, student: Preprocessor, autocast_dtype: torch.dtype | None = None
) -> FrozenTeacher:
    """Wrap a fitted IncrementalClassifier or an encoder module as a teacher of embeddings."""
    if isinstance(teacher, nn.Module):
        wrapped = FrozenTeacher(teacher, autocast_dtype=autocast_dtype)
    elif hasattr(teacher, "fit_task"):
        _require_fitted(teacher, "encoder_")
        _require_same_inputs(teacher.preprocessor_, student)
        wrapped = FrozenTeacher(
            teacher.encoder_, student, teacher.preprocessor_, autocast_dtype=autocast_dtype
        )
    else:
        raise TypeError(
            f"teacher must be a fitted IncrementalClassifier or an nn.Module encoder, got "
            f"{type(teacher).__name__}"
        )
    out = _probe(wrapped, student.input_shape)
    if out.ndim != 2:
        raise ValueError(f"teacher must map inputs to embeddings [N, D]; got {tuple(out.shape)}")
    return wrapped


def logit_teacher(
    teacher: Any,
    student: Preprocessor,
    classes: list[int],
    autocast_dtype: torch.dtype | None = None,
) -> FrozenTeacher:
    """Wrap a fitted SoftmaxClassifier or a logits module as a teacher over ``classes``.

    A fitted classifier must know every class in ``classes``; its logits are reordered to
    match. A module must output exactly ``len(classes)`` logits, in the student's class order.
    """
    if isinstance(teacher, nn.Module):
        wrapped = FrozenTeacher(teacher, autocast_dtype=autocast_dtype)
    elif hasattr(teacher, "fit_task") and hasattr(teacher, "classes_"):
        _require_fitted(teacher, "model_")
        _require_same_inputs(teacher.preprocessor_, student)
        known = [int(c) for c in teacher.classes_]
        missing = [c for c in classes if c not in known]
        if missing:
            raise ValueError(
                f"the teacher was not trained on classes {missing}: it cannot supply logits "
                f"for them (it knows {known})"
            )
        columns = [known.index(c) for c in classes]
        wrapped = FrozenTeacher(
            teacher.model_, student, teacher.preprocessor_, columns, autocast_dtype
        )
    else:
        raise TypeError(
            f"teacher must be a fitted SoftmaxClassifier or an nn.Module producing logits, got "
            f"{type(teacher).__name__}"
        )
    out = _probe(wrapped, student.input_shape)
    if out.ndim != 2 or out.shape[1] != len(classes):
        raise ValueError(
            f"teacher outputs {tuple(out.shape)[1:]} values per sample but the student scores "
            f"{len(classes)} classes: their output sizes must match"
        )
    return wrapped


def _unstandardise(preprocessor: Preprocessor, x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(preprocessor.mean, dtype=x.dtype, device=x.device)
    std = torch.tensor(preprocessor.std, dtype=x.dtype, device=x.device)
    if preprocessor.kind == "image":
        mean, std = mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1)
    return x * std + mean


def _require_fitted(teacher: Any, attribute: str) -> None:
    if not hasattr(teacher, attribute):
        raise ValueError(f"the teacher {type(teacher).__name__} is not fitted: train it first")


def _require_same_inputs(teacher: Preprocessor, student: Preprocessor) -> None:
    if teacher.input_shape != student.input_shape:
        raise ValueError(
            f"the teacher reads inputs of shape {teacher.input_shape} but the student reads "
            f"{student.input_shape}: give both the same input_size"
        )


def _probe(teacher: FrozenTeacher, input_shape: tuple[int, ...]) -> torch.Tensor:
    try:
        return teacher(torch.zeros((2, *input_shape)))
    except Exception as error:  # a user module that cannot take the student's inputs
        raise ValueError(
            f"the teacher failed on the student's inputs of shape [N, "
            f"{', '.join(map(str, input_shape))}]: {error}"
        ) from error
