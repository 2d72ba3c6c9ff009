"""Frozen leading layers for any Avalanche strategy, as a plugin.

siamcl's ``IncrementalClassifier(frozen_layers=k)`` trains later tasks above its encoder's
first ``k`` layers (:mod:`siamcl.training.freezing`). :class:`FrozenLeadingLayers` does the
same inside Avalanche's own loop, so a baseline such as Replay can be given the same saving
and compared like for like: from the second experience on, the first ``k`` layers of the
strategy's backbone stop requiring gradients, and their batch norms stay in evaluation mode
whenever the template puts the model back in training mode (every epoch).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from siamcl._extras import needs_extra
from siamcl.training.freezing import check_frozen_layers, freeze_leading_layers, hold_frozen_norms

with needs_extra("the Avalanche plugin"):
    from avalanche.core import SupervisedPlugin

__all__ = ["FrozenLeadingLayers", "strategy_backbone"]


def strategy_backbone(model: nn.Module) -> nn.Module:
    """The part of a strategy's model whose leading layers are frozen: a siamcl
    ``HeadClassifier``'s ``backbone``, a ``PrototypeModel``'s ``encoder``, else the model."""
    for name in ("backbone", "encoder"):
        part = getattr(model, name, None)
        if isinstance(part, nn.Module):
            return part
    return model


class FrozenLeadingLayers(SupervisedPlugin):
    """From the second training experience on, the backbone's first ``count`` layers (conv4:
    blocks) keep the weights and batch-norm statistics the first experience left them.

    The strategy's optimizer may still hold the frozen parameters: they get no gradient, and
    PyTorch's optimizers skip a parameter without one. Experiences are counted by the
    strategy's clock, so a strategy restored from a checkpoint freezes where it left off."""

    def __init__(self, count: int):
        super().__init__()
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"count must be a non-negative integer; got {count!r}")
        self.count = count

    def before_training(self, strategy: Any, **kwargs: Any) -> None:
        check_frozen_layers(strategy_backbone(strategy.model), self.count)  # refused up front

    def before_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        if strategy.clock.train_exp_counter > 0:
            freeze_leading_layers(strategy_backbone(strategy.model), self.count)

    def before_training_epoch(self, strategy: Any, **kwargs: Any) -> None:
        hold_frozen_norms(strategy.model)
