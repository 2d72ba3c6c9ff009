"""The synthetic embeddings of ``siamcl bench store`` and the FAISS indexes it compares.

``n_classes`` classes in families of ten (sibling class centres share a family direction, so
some classes overlap); samples are Gaussian around their class centre and everything lies on
the unit sphere.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import faiss
import numpy as np

__all__ = [
    "CLASS_SPREAD",
    "FAMILY_SIZE",
    "INDEX_KINDS",
    "SAMPLE_SPREAD",
    "clustered_embeddings",
    "index_specs",
]

FAMILY_SIZE = 10  # classes whose centres share a family direction (the confusable ones)
CLASS_SPREAD = 0.5  # spread of class centres around their family direction
SAMPLE_SPREAD = 0.8  # spread of samples around their class centre
INDEX_KINDS = ("Flat", "HNSW32", "IVF-Flat", "IVF-PQ")


def clustered_embeddings(
    size: int, dim: int, n_classes: int, n_queries: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Unit-length embeddings of ``n_classes`` overlapping Gaussian classes, and queries.

    Returns ``(X [size, dim], y [size], Q [n_queries, dim], q_y [n_queries])``; ``X`` is
    sorted by class (class sizes differ by at most one) and float32.
    """
    rng = np.random.default_rng([seed, size, dim])
    families = _unit(rng.standard_normal((-(-n_classes // FAMILY_SIZE), dim)))
    noise = rng.standard_normal((n_classes, dim)) * CLASS_SPREAD / math.sqrt(dim)
    centres = _unit(families[np.arange(n_classes) // FAMILY_SIZE] + noise)
    y = np.sort(np.arange(size) % n_classes)
    q_y = rng.integers(0, n_classes, n_queries)
    return _samples(centres, y, rng), y, _samples(centres, q_y, rng), q_y


def _samples(centres: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    dim = centres.shape[1]
    out = np.empty((len(labels), dim), np.float32)
    for begin in range(0, len(labels), 1 << 16):  # bounded float32 blocks, no float64 copy
        part = labels[begin : begin + (1 << 16)]
        noise = rng.standard_normal((len(part), dim), dtype=np.float32)
        out[begin : begin + len(part)] = centres[part] + noise * (SAMPLE_SPREAD / math.sqrt(dim))
    faiss.normalize_L2(out)
    return out


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    faiss.normalize_L2(vectors)
    return vectors


def index_specs(size: int, dim: int, kinds: Sequence[str] = INDEX_KINDS) -> dict[str, str]:
    """FAISS factory string of each index kind for a store of ``size`` vectors of ``dim``:
    ``nlist = 4 sqrt(size)`` IVF lists and ``dim / 8`` one-byte PQ codes (``np``: no
    polysemous training, which only serves Hamming-filtered search and triples training)."""
    nlist = max(1, round(4 * math.sqrt(size)))
    specs = {
        "Flat": "Flat",
        "HNSW32": "HNSW32",
        "IVF-Flat": f"IVF{nlist},Flat",
        "IVF-PQ": f"IVF{nlist},PQ{dim // 8}np",
    }
    return {kind: specs[kind] for kind in kinds}
