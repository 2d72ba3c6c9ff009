"""Compression wrappers: quantization-aware training and distillation.

- :mod:`siamcl.compress.qat`: fake-quantised training and conversion to int8 (conv and linear)
  or int4 weight-only (linear) models; int8 after float training (the ``-ptq`` schemes).
- :mod:`siamcl.compress.float_phase`: an int8 graph's float epochs (QAT's first two thirds,
  every epoch after ``-ptq``) run the float network, and a conversion after them calibrates
  its ranges on training rows.
- :mod:`siamcl.compress.sizes`: a model's bytes, in memory and on disk.
- :mod:`siamcl.compress.distill`: embedding, relational and logit distillation losses.
- :mod:`siamcl.compress.teachers`: a fitted classifier or module as a frozen teacher.

Quantized distillation is the two together: a QAT student trained against a float teacher.
"""

import logging

from siamcl.compress.distill import (
    TEACHER_LOSSES,
    EmbeddingDistillation,
    embedding_distillation_loss,
    logit_distillation_loss,
    relational_distillation_loss,
    teacher_distillation,
)
from siamcl.compress.float_phase import calibration_rows
from siamcl.compress.qat import (
    POST_TRAINING,
    SCHEMES,
    FloatTraining,
    QuantizationAwareTraining,
    check_scheme,
    convert_qat,
    freeze_qat,
    prepare_qat,
    schedule_qat,
    training_scheme,
)
from siamcl.compress.sizes import model_bytes, serialized_bytes
from siamcl.compress.teachers import FrozenTeacher, embedding_teacher, logit_teacher


class _TorchaoRegistrationNote(logging.Filter):
    """Drops the one line torch logs when torchao, on its first import in a process, registers
    its ``KernelPreference`` enum as a pytree constant (deprecated in torch 2.14): a note for
    torchao's maintainers that a siamcl user can do nothing about. Every other record of that
    logger passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "KernelPreference" not in record.getMessage()


logging.getLogger("torch.utils._pytree").addFilter(_TorchaoRegistrationNote())


__all__ = [
    "POST_TRAINING",
    "SCHEMES",
    "TEACHER_LOSSES",
    "EmbeddingDistillation",
    "FloatTraining",
    "FrozenTeacher",
    "QuantizationAwareTraining",
    "calibration_rows",
    "check_scheme",
    "convert_qat",
    "embedding_distillation_loss",
    "embedding_teacher",
    "freeze_qat",
    "logit_distillation_loss",
    "logit_teacher",
    "model_bytes",
    "prepare_qat",
    "relational_distillation_loss",
    "schedule_qat",
    "serialized_bytes",
    "teacher_distillation",
    "training_scheme",
]
