"""When training stops: a budget, a target, patience, or an energy budget.

The loop asks its stopping policies after every epoch, given the :class:`Progress` so far;
the first to answer with a reason ends training, and the reason goes into the task's
:class:`~siamcl.TaskReport` (``stopped_by``). A fixed number of epochs is the loop's own
``epochs``; these policies end training earlier. Validation scores come from a split the
learner carves from the task's own training data, never from test data, and their cost is
reported apart from training's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "EnergyBudget",
    "Patience",
    "Progress",
    "StepBudget",
    "StoppingPolicy",
    "TargetScore",
    "first_stop",
]


@dataclass
class Progress:
    """What training has done so far: epochs and steps run, validation scores after each
    epoch (empty without validation), and the CPU seconds and energy spent training (joules,
    estimated from those CPU seconds), validation and callbacks' epoch ends left out."""

    epochs: int = 0
    steps: int = 0
    scores: list[float] = field(default_factory=list)
    energy_j: float = 0.0
    cpu_s: float = 0.0


class StoppingPolicy(Protocol):
    """``reason(progress)``: why to stop now, or None to go on."""

    def reason(self, progress: Progress) -> str | None: ...


@dataclass(frozen=True)
class StepBudget:
    """Stop once ``steps`` optimizer steps have run (checked after each epoch)."""

    steps: int

    def reason(self, progress: Progress) -> str | None:
        return f"step budget ({self.steps})" if progress.steps >= self.steps else None


@dataclass(frozen=True)
class TargetScore:
    """Stop once the validation score reaches ``target``."""

    target: float

    def reason(self, progress: Progress) -> str | None:
        if progress.scores and progress.scores[-1] >= self.target:
            return f"target score ({self.target:g}) reached"
        return None


@dataclass(frozen=True)
class Patience:
    """Stop when the validation score has not improved by ``min_delta`` for ``epochs``
    epochs in a row."""

    epochs: int = 2
    min_delta: float = 0.0

    def reason(self, progress: Progress) -> str | None:
        scores = progress.scores
        if len(scores) <= self.epochs:
            return None
        best_before = max(scores[: -self.epochs])
        if max(scores[-self.epochs :]) <= best_before + self.min_delta:
            return f"no improvement for {self.epochs} epochs"
        return None


@dataclass(frozen=True)
class EnergyBudget:
    """Stop once training has spent ``joules`` (checked after each epoch)."""

    joules: float

    def reason(self, progress: Progress) -> str | None:
        return f"energy budget ({self.joules:g} J)" if progress.energy_j >= self.joules else None


def first_stop(policies: Sequence[StoppingPolicy], progress: Progress) -> str | None:
    """The reason of the first policy that says stop, or None."""
    for policy in policies:
        reason = policy.reason(progress)
        if reason:
            return reason
    return None
