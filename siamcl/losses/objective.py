"""One weighted objective: the sum of weighted loss terms every learner trains with.

The way pytorch-metric-learning composes a loss from a distance, a miner and a reducer, a
learner composes its objective from terms: a metric loss, distillation toward the previous
encoder, toward an external teacher, cross-entropy... Weights of zero drop a term, so no term
is switched on or off by a flag anywhere else.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from siamcl.training.batch import Batch

__all__ = ["Objective"]


class Objective(nn.Module):
    """``sum(weight * term(outputs, batch))`` over named terms.

    ``terms`` is an iterable of ``(name, weight, term)``; terms whose weight is 0 are dropped.
    Terms are submodules, so ``objective.parameters()`` holds every trainable parameter of
    the loss (pml proxies), which the training loop gives the optimizer.
    """

    def __init__(self, terms: Iterable[tuple[str, float, nn.Module]]):
        super().__init__()
        kept = [(name, float(weight), term) for name, weight, term in terms if weight != 0]
        if not kept:
            raise ValueError("an objective needs at least one term with a non-zero weight")
        self.terms = nn.ModuleDict({name: term for name, _, term in kept})
        self.weights = {name: weight for name, weight, _ in kept}

    def forward(self, outputs: torch.Tensor, batch: Batch) -> torch.Tensor:
        total = None
        for name, term in self.terms.items():
            value = term(outputs, batch)
            weight = self.weights[name]
            value = value if weight == 1.0 else weight * value
            total = value if total is None else total + value
        return total
