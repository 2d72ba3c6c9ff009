"""``siamcl learn``'s options for stopping a task's training early, turned into the
classifier's ``stopping`` policies, ``validation_fraction`` and ``checks_per_epoch`` (see
:mod:`siamcl.training.stopping`), and the line that says why training stopped."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any

from siamcl.reporting.records import positive_int

__all__ = ["DEFAULT_VALIDATION", "add_stopping_options", "stop_note", "stopping_params"]

DEFAULT_VALIDATION = 0.2  # share of each class held out when a policy needs validation scores


def _number(low: float, high: float, low_open: bool, what: str) -> Callable[[str], float]:
    """An argparse ``type``: a number in (low, high], or [low, high) when not ``low_open``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        inside = (low < value <= high) if low_open else (low <= value < high)
        if not inside:  # NaN fails both
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


def add_stopping_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "stopping early",
        "Each task's training may end before --epochs. Given any of these, they replace a "
        "saved model's own policies; given none, a saved model keeps its own.",
    )
    group.add_argument(
        "--target",
        type=_number(0, 1, True, "an accuracy in (0, 1]"),
        metavar="ACC",
        help="stop once the validation accuracy reaches ACC",
    )
    group.add_argument(
        "--patience",
        type=positive_int,
        metavar="EPOCHS",
        help="stop after EPOCHS epochs without a better validation accuracy",
    )
    group.add_argument(
        "--energy-budget",
        type=_number(0, math.inf, True, "a positive number of joules"),
        metavar="JOULES",
        help="stop once the epochs have spent JOULES (measured where a counter is readable, "
        "else estimated; validation not counted)",
    )
    group.add_argument(
        "--validation",
        type=_number(0, 0.5, False, "a share in [0, 0.5)"),
        metavar="SHARE",
        help="share of each class held out and scored after every epoch (or at every check, "
        "--checks-per-epoch), not trained on "
        f"(default {DEFAULT_VALIDATION} with --target or --patience, else a saved model's own "
        "or none)",
    )
    group.add_argument(
        "--checks-per-epoch",
        type=positive_int,
        metavar="N",
        help="validate and ask the policies N times an epoch, evenly spaced, so training can "
        "stop inside an epoch (default 1, or a saved model's own: at epoch ends)",
    )


def stopping_params(classifier: Any, args: argparse.Namespace) -> dict[str, Any]:
    """``stopping`` and ``validation_fraction`` from ``siamcl learn``'s stopping options,
    checked together before any image is read (a target with no validation share would
    never stop training)."""
    if not hasattr(args, "target"):  # add and predict do not train
        return {}
    from siamcl.training import EnergyBudget, Patience, TargetScore, check_stopping

    given = {"target": TargetScore, "patience": Patience, "energy_budget": EnergyBudget}
    policies = [
        make(getattr(args, name)) for name, make in given.items() if getattr(args, name) is not None
    ]
    params: dict[str, Any] = {"stopping": policies} if policies else {}
    validation = args.validation
    if validation is None and (args.target is not None or args.patience is not None):
        validation = classifier.validation_fraction or DEFAULT_VALIDATION
    if validation is not None:
        params["validation_fraction"] = validation
    if getattr(args, "checks_per_epoch", None) is not None:
        params["checks_per_epoch"] = args.checks_per_epoch
    check_stopping(
        params.get("stopping", classifier.stopping),
        params.get("validation_fraction", classifier.validation_fraction),
    )
    return params


def stop_note(report: Any) -> str:
    """Why training stopped (when a policy stopped it or validation ran) and the last
    validation accuracy."""
    score, stopped_by = report.extra.get("validation_score"), report.stopped_by
    if score is None and (not stopped_by or stopped_by.startswith("epochs")):
        return ""
    # part of an epoch after a stop inside one
    epochs = round(float(report.extra.get("epochs_run", 0)), 2)
    note = f"; stopped by {stopped_by} after {epochs:g} epoch{'s' * (epochs != 1)}"
    if score is not None:
        cpu_s = report.extra.get("validation_cpu_s", 0)
        note += f", validation accuracy {score:.3f} (scoring it took {cpu_s:.1f} of those CPU s)"
    return note
