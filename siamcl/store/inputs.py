"""Checks and conversions at the store's boundary: parameters, embeddings, labels.

Every public method of the store runs its inputs through these before touching any state,
so a bad call raises a clear error and changes nothing.
"""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np

__all__ = [
    "as_batch",
    "as_embeddings",
    "as_label",
    "as_labels",
    "as_rows",
    "as_statistics",
    "as_unit_rows",
    "integer",
    "positive_int",
]

INT64_MIN, INT64_MAX = np.iinfo(np.int64).min, np.iinfo(np.int64).max
FLOAT_EXACT = 2.0**53  # floats hold every integer up to here, and only some beyond


def positive_int(value: Any, name: str) -> int:
    """``value`` as an int, refusing booleans, non-integers and values below 1."""
    number = integer(value, name)
    if number < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return number


def integer(value: Any, name: str) -> int:
    """``value`` as an int, refusing booleans and non-integers."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    return int(value)


def _to_numpy(values: Any) -> Any:
    """Torch tensors to numpy without importing torch; anything else unchanged."""
    if hasattr(values, "detach") and hasattr(values, "cpu"):
        values = values.detach().cpu()
        if values.is_floating_point():
            values = values.float()
        return values.numpy()
    return values


def as_embeddings(values: Any, dim: int, name: str) -> np.ndarray:
    """A C-contiguous float32 copy of a finite ``[N, dim]`` array."""
    array = np.asarray(_to_numpy(values))
    if array.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be real numbers, got dtype {array.dtype}")
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [N, dim], got shape {array.shape}")
    if array.shape[1] != dim:
        raise ValueError(
            f"{name} have dimension {array.shape[1]} but the store's dimension is {dim}"
        )
    array = np.array(array, dtype=np.float32, order="C", copy=True)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contain NaN or infinite values (after conversion to float32)")
    return array


def as_unit_rows(x: np.ndarray, name: str) -> np.ndarray:
    """Normalise the rows of ``x`` in place, refusing zero rows (they have no direction)."""
    if len(x):
        norms = np.linalg.norm(x, axis=1)
        if not np.all(norms > 0):
            raise ValueError(f"{name} row {int(np.argmin(norms))} is all zeros")
        faiss.normalize_L2(x)
    return x


def as_labels(values: Any) -> np.ndarray:
    """A 1-D int64 array of integer labels; floats are accepted when they are whole."""
    raw = _to_numpy(values)
    array = np.asarray(raw)
    if array.dtype.kind == "O" or (array.dtype.kind == "f" and not isinstance(raw, np.ndarray)):
        array = np.asarray(raw, dtype=object)
    if array.ndim != 1:
        raise ValueError(f"labels must be a 1-D array, got shape {array.shape}")
    kind = array.dtype.kind
    if kind == "O":
        return np.array([as_label(value) for value in array], dtype=np.int64)
    if kind == "i":
        return array.astype(np.int64)
    if kind == "u":
        if array.size and array.max() > INT64_MAX:
            raise ValueError(f"label {array.max()} does not fit in int64")
        return array.astype(np.int64)
    if kind == "f":
        return _whole_floats(array)
    raise TypeError(f"labels must be integers, got dtype {array.dtype}")


def _whole_floats(array: np.ndarray) -> np.ndarray:
    """Float labels as int64, when every one is a whole number exact as a float."""
    if not np.isfinite(array).all() or np.any(array != np.round(array)):
        bad = array[~np.isfinite(array) | (array != np.round(array))][0]
        raise TypeError(f"labels must be integers, got {bad!r}")
    if array.size and np.abs(array).max() > FLOAT_EXACT:
        raise ValueError(
            f"labels given as floats must be within +-2**53 to be exact; got "
            f"{np.abs(array).max():g}: pass integer labels"
        )
    return array.astype(np.int64)


def as_label(value: Any) -> int:
    """One integer label (a Python or numpy integer, or a whole float) as int."""
    value = _to_numpy(value)
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"labels must be integers, got {value!r}")
    whole_float = (
        isinstance(value, (float, np.floating)) and np.isfinite(value) and value == int(value)
    )
    if not (isinstance(value, (int, np.integer)) or whole_float):
        raise TypeError(f"labels must be integers, got {value!r}")
    if whole_float and abs(value) > FLOAT_EXACT:
        raise ValueError(f"label {value!r} given as a float is beyond 2**53: pass an integer")
    number = int(value)
    if not INT64_MIN <= number <= INT64_MAX:
        raise ValueError(f"label {number} does not fit in int64")
    return number


def as_statistics(
    labels: Any, sums: Any, counts: Any, dim: int, prototypes_per_class: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class ``(labels int64, sums float64 [C, dim], counts int64)``, checked; only a
    store of class means can take them (k-means prototypes need the embeddings)."""
    if prototypes_per_class != 1:
        raise ValueError(
            "add_statistics needs prototypes_per_class=1: k-means prototypes are "
            "computed from the embeddings themselves, not their sums"
        )
    y = as_labels(labels)
    sums = np.asarray(sums, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.int64)
    if sums.shape != (len(y), dim) or counts.shape != (len(y),):
        raise ValueError(
            f"expected sums [{len(y)}, {dim}] and counts [{len(y)}] for {len(y)} "
            f"labels, got {sums.shape} and {counts.shape}"
        )
    if len(np.unique(y)) != len(y) or not np.all(counts > 0):
        raise ValueError("statistics need distinct labels and positive counts")
    return y, sums, counts


def as_rows(values: Any, dim: int, cosine: bool, name: str) -> np.ndarray:
    """A float32 ``[N, dim]`` copy of embeddings or queries, rows normalised for cosine."""
    x = as_embeddings(values, dim, name)
    return as_unit_rows(x, name) if cosine else x


def as_batch(embeddings: Any, labels: Any, dim: int, cosine: bool) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings (as :func:`as_rows`) and their int64 labels, one label a row, not empty."""
    x = as_rows(embeddings, dim, cosine, "embeddings")
    y = as_labels(labels)
    if len(x) != len(y):
        raise ValueError(f"got {len(x)} embeddings but {len(y)} labels")
    if len(x) == 0:
        raise ValueError("no embeddings given: embeddings and labels are empty")
    return x, y
