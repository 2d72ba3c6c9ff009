"""Fingerprints of data: the same task gives the same sha256, any change another."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from siamcl.preprocess import as_array, as_labels

__all__ = ["task_fingerprint"]


def task_fingerprint(X: Any, y: Any) -> str:
    """sha256 of a task's inputs (dtype, shape, values) and integer labels."""
    X = as_array(X)
    y = as_labels(y, len(X))
    digest = hashlib.sha256()
    digest.update(f"{X.dtype.str}{X.shape}|{y.shape}|".encode())
    digest.update(np.ascontiguousarray(X))
    digest.update(np.ascontiguousarray(y))
    return digest.hexdigest()
