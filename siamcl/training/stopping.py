"""When training stops: a budget, a target, patience, or an energy budget.

The loop asks its stopping policies after every epoch, or at each of its checks inside an
epoch (``checks_per_epoch``), given the :class:`Progress` so far;
the first to answer with a reason ends training, and the reason goes into the task's
:class:`~siamcl.TaskReport` (``stopped_by``). A fixed number of epochs is the loop's own
``epochs``; these policies end training earlier. Validation scores come from a split the
learner carves from the task's own training data, never from test data, and their cost is
reported apart from training's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

__all__ = [
    "EnergyBudget",
    "Patience",
    "Progress",
    "StepBudget",
    "StoppingPolicy",
    "TargetScore",
    "check_stopping",
    "first_stop",
    "policies_from_json",
    "policies_to_json",
]


@dataclass
class Progress:
    """What training has done so far: epochs and steps run (``steps_per_epoch`` an epoch, so
    a check inside one is ``steps / steps_per_epoch`` epochs in), validation scores at each
    of the loop's ``checks_per_epoch`` checks of an epoch (empty without validation), and
    the CPU seconds and joules spent training, validation and callbacks' checks and epoch
    ends left out. The joules are read as the learner's meter reads its task
    (``energy_method``: a counter such as ``"rapl"`` or ``"nvml"`` where one is readable,
    else ``"estimate"``)."""

    epochs: int = 0
    steps: int = 0
    steps_per_epoch: int = 0
    checks_per_epoch: int = 1
    scores: list[float] = field(default_factory=list)
    energy_j: float = 0.0
    cpu_s: float = 0.0
    energy_method: str = "estimate"


class StoppingPolicy(Protocol):
    """``reason(progress)``: why to stop now, or None to go on."""

    def reason(self, progress: Progress) -> str | None: ...


@dataclass(frozen=True)
class StepBudget:
    """Stop once ``steps`` optimizer steps have run (checked at the loop's checks)."""

    steps: int

    def reason(self, progress: Progress) -> str | None:
        return f"step budget ({self.steps})" if progress.steps >= self.steps else None


@dataclass(frozen=True)
class TargetScore:
    """Stop once the validation score reaches ``target``."""

    uses_scores: ClassVar[bool] = True
    target: float

    def reason(self, progress: Progress) -> str | None:
        if progress.scores and progress.scores[-1] >= self.target:
            return f"target score ({self.target:g}) reached"
        return None


@dataclass(frozen=True)
class Patience:
    """Stop when the validation score has not improved by ``min_delta`` for ``epochs``
    epochs in a row (as many scores as the loop checks in that many epochs)."""

    uses_scores: ClassVar[bool] = True
    epochs: int = 2
    min_delta: float = 0.0

    def reason(self, progress: Progress) -> str | None:
        scores, window = progress.scores, self.epochs * progress.checks_per_epoch
        if len(scores) <= window:
            return None
        best_before = max(scores[:-window])
        if max(scores[-window:]) <= best_before + self.min_delta:
            return f"no improvement for {self.epochs} epochs"
        return None


@dataclass(frozen=True)
class EnergyBudget:
    """Stop once a task's training has spent ``joules`` (checked at the loop's checks): measured
    by the learner's energy counter where one is readable (a GPU's through NVML, RAPL),
    otherwise the estimate its reports give."""

    joules: float

    def reason(self, progress: Progress) -> str | None:
        return f"energy budget ({self.joules:g} J)" if progress.energy_j >= self.joules else None


def check_stopping(policies: Sequence[Any] | None, validation_fraction: float) -> None:
    """Refuse a lone policy not in a list (TypeError) and policies that wait for validation
    scores when none will be computed, which would never stop training (ValueError naming
    the first)."""
    if policies is not None and not isinstance(policies, (list, tuple)):
        raise TypeError(f"stopping must be a list of policies, e.g. [{policies!r}]")
    waiting = [p for p in policies or () if getattr(p, "uses_scores", False)]
    if waiting and not validation_fraction:
        raise ValueError(
            f"{type(waiting[0]).__name__} stops on validation scores, and there are none: set "
            f"validation_fraction (a share of each task held out, e.g. 0.2)"
        )


def first_stop(policies: Sequence[StoppingPolicy], progress: Progress) -> str | None:
    """The reason of the first policy that says stop, or None."""
    for policy in policies:
        reason = policy.reason(progress)
        if reason:
            return reason
    return None


POLICIES = (StepBudget, TargetScore, Patience, EnergyBudget)  # what a save holds as JSON


def policies_to_json(policies: Sequence[Any]) -> list[dict[str, Any]] | None:
    """siamcl's own policies as JSON data (``{"policy": "TargetScore", "target": 0.95}``),
    so that a saved model holding them loads without unpickling anything; None when one of
    them is a class of the user's, which a save keeps as a Python object instead."""
    if not isinstance(policies, (list, tuple)) or any(type(p) not in POLICIES for p in policies):
        return None
    return [{"policy": type(p).__name__, **dataclasses.asdict(p)} for p in policies]


def policies_from_json(data: Any) -> list[StoppingPolicy]:
    """The policies :func:`policies_to_json` wrote. Anything else (an unknown policy, a
    field it does not have, a value that is not a number) raises ValueError."""
    classes = {cls.__name__: cls for cls in POLICIES}
    if not isinstance(data, list):
        raise ValueError(  # noqa: TRY004 - corrupt saved data is a ValueError
            f"stopping policies must be a list, got {type(data).__name__}"
        )
    policies = []
    for item in data:
        name = item.get("policy") if isinstance(item, dict) else None
        if name not in classes:
            raise ValueError(f"unknown stopping policy {item!r}; known: {', '.join(classes)}")
        values = {key: value for key, value in item.items() if key != "policy"}
        known = {f.name for f in dataclasses.fields(classes[name])}
        numbers = all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in values.values()
        )
        if not values.keys() <= known or not numbers:
            raise ValueError(f"stopping policy {item!r} is not a {name} (fields: {sorted(known)})")
        policies.append(classes[name](**values))
    return policies
