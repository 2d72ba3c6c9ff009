"""What one training step sees: a :class:`Batch`, and the preparation that makes it model-ready."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from siamcl.augment import RandomAffine

__all__ = ["Batch", "BatchPreparation", "device_of"]


def device_of(module: torch.nn.Module) -> torch.device:
    """The device ``module``'s parameters live on (the CPU for a module without any)."""
    parameter = next(module.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


@dataclass
class Batch:
    """Model-ready ``inputs``, the ``labels`` the objective compares against, and the ``rows``
    of the training data they came from (``None`` when the source has no row numbers)."""

    inputs: torch.Tensor
    labels: torch.Tensor
    rows: torch.Tensor | None = None


@dataclass
class BatchPreparation:
    """Distort (optionally), standardise and move a batch of canonical inputs to ``device``;
    then, with ``features``, run an encoder's frozen first layers on it once, for the student
    and the teachers alike (:func:`~siamcl.training.freezing.split_frozen`).

    ``augment`` draws its distortions from ``generator``, which the learner seeds, so the
    same seed distorts the same batches the same way.
    """

    standardise: Callable[[torch.Tensor], torch.Tensor] = lambda x: x
    augment: RandomAffine | Callable[..., torch.Tensor] | None = None
    generator: torch.Generator | None = None
    device: torch.device | str = "cpu"
    features: Callable[[torch.Tensor], torch.Tensor] | None = None

    def __call__(self, batch: Batch) -> Batch:
        inputs = batch.inputs
        if self.augment is not None:
            inputs = self.augment(inputs, self.generator)
        inputs = self.standardise(inputs).to(self.device)
        if self.features is not None:  # frozen layers (siamcl.training.freezing.FrozenFeatures)
            inputs = self.features(inputs)
        return Batch(inputs, batch.labels.to(self.device), batch.rows)
