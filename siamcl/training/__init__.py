"""Training: the one loop every learner runs, its batch sources, and embedding helpers.

- :mod:`siamcl.training.loop`: :class:`TrainingLoop` and :func:`train_step` (the one place
  gradients are computed), optimizer and schedule factories, callbacks.
- :mod:`siamcl.training.batch`: :class:`Batch` and :class:`BatchPreparation`.
- :mod:`siamcl.training.sampling`: balanced, shuffled and episodic batch sources.
- :mod:`siamcl.training.stopping`: budgets, target scores and patience that end training.
- :mod:`siamcl.training.embedding`: :func:`embed_in_batches`, :func:`evaluating`,
  :func:`rebuild_prototypes`.
- :mod:`siamcl.training.precision`: mixed-precision (bfloat16) forward passes, where native.
- :mod:`siamcl.training.selection`: :func:`~siamcl.training.selection.select_rows`, the rows
  of a task to train on (``data_fraction``: stratified or coreset).
"""

from siamcl.training.batch import Batch, BatchPreparation, device_of
from siamcl.training.embedding import embed_in_batches, evaluating, rebuild_prototypes
from siamcl.training.loop import (
    BatchSource,
    Callback,
    LoopResult,
    StepHooks,
    TrainingLoop,
    cosine_schedule,
    parameter_groups,
    train_step,
)
from siamcl.training.memory_format import prefer_channels_last
from siamcl.training.optimizers import adam
from siamcl.training.precision import (
    PRECISIONS,
    forward_dtype,
    native_bf16,
    precision_with_qat,
    resolve_precision,
)
from siamcl.training.sampling import (
    BalancedBatches,
    EpisodeBatches,
    ShuffledBatches,
    balanced_epoch,
)
from siamcl.training.stopping import (
    EnergyBudget,
    Patience,
    Progress,
    StepBudget,
    TargetScore,
    check_stopping,
)

__all__ = [
    "PRECISIONS",
    "BalancedBatches",
    "Batch",
    "BatchPreparation",
    "BatchSource",
    "Callback",
    "EnergyBudget",
    "EpisodeBatches",
    "LoopResult",
    "Patience",
    "Progress",
    "ShuffledBatches",
    "StepBudget",
    "StepHooks",
    "TargetScore",
    "TrainingLoop",
    "adam",
    "balanced_epoch",
    "check_stopping",
    "cosine_schedule",
    "device_of",
    "embed_in_batches",
    "evaluating",
    "forward_dtype",
    "native_bf16",
    "parameter_groups",
    "precision_with_qat",
    "prefer_channels_last",
    "rebuild_prototypes",
    "resolve_precision",
    "train_step",
]
