"""Input checks shared by the data helpers (arrays in, clear errors out)."""

from __future__ import annotations

from typing import Any

import numpy as np


def as_labels(y: Any, name: str = "y") -> np.ndarray:
    """Return ``y`` as a 1-D int64 array, or raise if it is not integer labels."""
    labels = np.asarray(y)
    if labels.ndim != 1:
        raise ValueError(f"{name} must be 1-D labels, got shape {labels.shape}")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"{name} must hold integer labels, got dtype {labels.dtype}")
    return labels.astype(np.int64, copy=False)


def as_samples(X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(X, y)`` as arrays with one label per sample, or raise."""
    samples = np.asarray(X)
    labels = as_labels(y)
    if samples.ndim == 0:
        raise ValueError("X must have one row per sample, got a scalar")
    if len(samples) != len(labels):
        raise ValueError(f"X has {len(samples)} samples but y has {len(labels)} labels")
    if len(labels) == 0:
        raise ValueError("X and y are empty")
    return samples, labels


def check_fraction(value: float, name: str) -> float:
    """Return ``value`` if it lies strictly between 0 and 1, else raise."""
    if not isinstance(value, (int, float, np.floating)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not 0.0 < float(value) < 1.0:
        raise ValueError(f"{name} must be strictly between 0 and 1, got {value}")
    return float(value)


def check_positive_int(value: int, name: str, minimum: int = 1) -> int:
    """Return ``value`` if it is an integer >= ``minimum``, else raise."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return int(value)
