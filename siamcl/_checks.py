"""Parameter constraints declared once per class, checked in one place.

Each learner lists its constraints the way scikit-learn's ``_parameter_constraints`` does::

    _parameter_constraints = {"epochs": [Integer(1)], "lr": [Real(0, closed="neither")], ...}

and calls :func:`check_params` at the start of the methods that learn; a value fails when
it satisfies none of its constraints (``None`` in the list allows ``None``). The messages say
what the parameter must be and what it was.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "OPTIMIZER_FACTORY",
    "ImageSize",
    "Integer",
    "Options",
    "Real",
    "Satisfies",
    "check_params",
    "check_size",
    "is_integer",
]


ImageSize = int | tuple[int, int]  # an int means a square image


def check_size(size: ImageSize | None) -> tuple[int, int] | None:
    """Return ``size`` as ``(height, width)``; an int means a square image."""
    if size is None:
        return None
    if is_integer(size):
        size = (int(size), int(size))
    if not isinstance(size, (tuple, list)) or len(size) != 2 or not all(map(is_integer, size)):
        raise TypeError(f"size must be an int or a (height, width) pair of ints, got {size!r}")
    if min(size) < 1:
        raise ValueError(f"size must be positive, got {tuple(size)}")
    return int(size[0]), int(size[1])


def is_integer(value: Any) -> bool:
    """An integer that is not a bool (numpy integers included)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Integer:
    """An integer ``>= minimum`` (and ``<= maximum`` if given)."""

    minimum: int | None = None
    maximum: int | None = None

    def accepts(self, value: Any) -> bool:
        if not is_integer(value):
            return False
        return (self.minimum is None or value >= self.minimum) and (
            self.maximum is None or value <= self.maximum
        )

    def __str__(self) -> str:
        if self.minimum == 1 and self.maximum is None:
            return "a positive integer"
        if self.maximum is None:
            return f"an integer of at least {self.minimum}"
        return f"an integer in [{self.minimum}, {self.maximum}]"


@dataclass(frozen=True)
class Real:
    """A finite real number within ``[minimum, maximum]``; ``closed`` says which ends count."""

    minimum: float | None = None
    maximum: float | None = None
    closed: str = "both"  # "both", "left", "right" or "neither"

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            return False
        if not math.isfinite(float(value)) or abs(value) >= 2**63:
            return False
        low_ok = self.minimum is None or (
            value >= self.minimum if self.closed in ("both", "left") else value > self.minimum
        )
        high_ok = self.maximum is None or (
            value <= self.maximum if self.closed in ("both", "right") else value < self.maximum
        )
        return low_ok and high_ok

    def __str__(self) -> str:
        if self.maximum is None and self.minimum == 0:
            return "positive" if self.closed in ("neither", "right") else "non-negative"
        if self.maximum is None and self.minimum is None:
            return "a finite number"
        low = "[" if self.closed in ("both", "left") else "("
        high = "]" if self.closed in ("both", "right") else ")"
        return f"in {low}{self.minimum}, {self.maximum}{high}"


@dataclass(frozen=True)
class Options:
    """One of the listed values."""

    values: tuple[Any, ...]

    def accepts(self, value: Any) -> bool:
        return any(
            value is option or (type(value) is type(option) and value == option)
            for option in self.values
        )

    def __str__(self) -> str:
        return f"one of {list(self.values)}"


@dataclass(frozen=True)
class Satisfies:
    """Whatever ``test`` accepts, described by ``description``."""

    test: Callable[[Any], bool]
    description: str
    error: type[Exception] = ValueError  # TypeError when the test is about the kind of value

    def accepts(self, value: Any) -> bool:
        return bool(self.test(value))

    def __str__(self) -> str:
        return self.description


# a learner's ``optimizer`` parameter: None (Adam) or a factory of parameter groups
OPTIMIZER_FACTORY = [None, Satisfies(callable, "a callable building an optimizer")]


def _describe(constraints: Iterable[Any]) -> str:
    parts = ["None" if c is None else str(c) for c in constraints]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " or " + parts[-1]


def check_params(owner: Any, constraints: Mapping[str, list[Any]]) -> None:
    """Raise ValueError (TypeError for a value of the wrong kind) naming the first parameter
    of ``owner`` that satisfies none of its constraints."""
    for name, allowed in constraints.items():
        value = getattr(owner, name)
        if any(value is None if c is None else c.accepts(value) for c in allowed):
            continue
        numeric = [c for c in allowed if isinstance(c, (Integer, Real))]
        wrong_kind = (
            numeric
            and len(numeric) == len([c for c in allowed if c is not None])
            and (
                isinstance(value, bool)
                or not isinstance(value, (int, float, np.integer, np.floating))
            )
        )
        error = TypeError if wrong_kind and isinstance(numeric[0], Real) else ValueError
        kinds = [c.error for c in allowed if isinstance(c, Satisfies)]
        if kinds and all(kind is TypeError for kind in kinds):
            error = TypeError
        raise error(f"{name} must be {_describe(allowed)}, got {value!r}")
