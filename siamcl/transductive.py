"""Transductive one-shot classification: the query set refines the prototypes it is scored on.

A one-shot prototype is one drawing, so it sits wherever that drawing's wobbles put it. The
queries of a run are unlabelled drawings of the same classes; moving each prototype towards
the queries that resemble it (a soft k-means started from the prototypes, Ren et al. 2018)
centres it on its class. ``"balanced"`` also assumes that every class has about as many
queries as the others, as in N-way runs: the soft assignments are balanced with Sinkhorn
iterations before the prototypes move, so one prototype cannot swallow its neighbours'
queries. ``"matched"`` takes that assumption to its end: every class gets at most
``ceil(M / K)`` of the ``M`` queries, and the queries are matched to classes all at once by
the assignment of greatest total similarity (SciPy's ``linear_sum_assignment``). In an N-way
run with one query per class that is a one-to-one matching: a query whose nearest prototype is
taken by a closer query goes to its next best. It uses the run's structure, which a person
judging one query at a time does not; say so when comparing. Nothing here trains: it costs
a few small matrix products (and one assignment) per run.

:func:`transductive_predict` works on embeddings (``IncrementalClassifier.embed``);
:func:`siamcl.fewshot.one_shot_predict` and ``siamcl fewshot eval --transduction`` use it.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["TRANSDUCTIONS", "balance", "match", "refine_prototypes", "transductive_predict"]

TRANSDUCTIONS = ("none", "soft", "balanced", "matched")
# Chosen on the default split's 100 runs (docs/fewshot.md): a sharp assignment (0.03; 0.1
# gives 2-3 points less: benchmarks/results/fewshot_issue19/evaluations.jsonl) and enough
# steps for it to settle.
TEMPERATURE = 0.03
STEPS = 10


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def balance(logits: np.ndarray, iterations: int = 30) -> np.ndarray:
    """Soft assignments ``[M, K]`` from ``logits``: rows sum to 1, columns to ``M / K``
    (Sinkhorn's alternating normalisation), i.e. every class gets an equal share."""
    weights = np.exp(logits - logits.max())
    m, k = weights.shape
    for _ in range(iterations):
        weights = weights / weights.sum(axis=0, keepdims=True) * (m / k)
        weights = weights / weights.sum(axis=1, keepdims=True)
    return weights


def refine_prototypes(
    prototypes: np.ndarray,
    queries: np.ndarray,
    steps: int = STEPS,
    temperature: float = TEMPERATURE,
    balanced: bool = True,
) -> np.ndarray:
    """Prototypes ``[K, D]`` moved towards the queries ``[M, D]`` they claim, ``steps`` times.

    Each step assigns every query softly to the prototypes (softmax of cosine similarity over
    ``temperature``, balanced across classes when ``balanced``) and sets each prototype to
    the normalised sum of its original embedding and its share of the queries. Inputs are
    L2-normalised embeddings; so is the result.
    """
    prototypes = np.asarray(prototypes, dtype=np.float64)
    queries = np.asarray(queries, dtype=np.float64)
    _check(prototypes, queries, steps, temperature)
    start = _normalise(prototypes)
    queries = _normalise(queries)
    refined = start
    for _ in range(steps):
        logits = queries @ refined.T / temperature
        weights = balance(logits) if balanced else _softmax(logits)
        refined = _normalise(start + weights.T @ queries)
    return refined


def match(similarity: np.ndarray) -> np.ndarray:
    """Class of each query from ``similarity`` ``[M, K]``: the assignment of greatest total
    similarity in which no class takes more than ``ceil(M / K)`` queries."""
    from scipy.optimize import linear_sum_assignment  # here: the CLI imports this module early

    m, k = similarity.shape
    share = math.ceil(m / k)
    slots = np.repeat(similarity, share, axis=1)  # column j is a slot of class j // share
    rows, columns = linear_sum_assignment(slots, maximize=True)
    classes = np.empty(m, dtype=np.int64)
    classes[rows] = columns // share
    return classes


def transductive_predict(
    prototypes: np.ndarray,
    queries: np.ndarray,
    method: str = "balanced",
    steps: int = STEPS,
    temperature: float = TEMPERATURE,
) -> np.ndarray:
    """Position of the nearest (refined) prototype for each query.

    ``method`` is ``"none"`` (the prototypes as given), ``"soft"`` or ``"balanced"``
    (:func:`refine_prototypes` with or without class balance), or ``"matched"`` (the
    prototypes as given, queries matched to classes jointly: :func:`match`).
    """
    if method not in TRANSDUCTIONS:
        raise ValueError(f"unknown transduction {method!r}; use one of {list(TRANSDUCTIONS)}")
    _check(np.asarray(prototypes), np.asarray(queries), steps, temperature)
    if method in ("soft", "balanced"):
        prototypes = refine_prototypes(
            prototypes, queries, steps, temperature, balanced=method == "balanced"
        )
    similarity = _normalise(np.asarray(queries, np.float64)) @ _normalise(prototypes).T
    return match(similarity) if method == "matched" else np.argmax(similarity, 1)


def _check(prototypes: np.ndarray, queries: np.ndarray, steps: int, temperature: float) -> None:
    if prototypes.ndim != 2 or queries.ndim != 2 or prototypes.shape[1] != queries.shape[1]:
        raise ValueError(
            f"prototypes [K, D] and queries [M, D] must be matrices of one width, got "
            f"{prototypes.shape} and {queries.shape}"
        )
    if len(prototypes) < 1 or len(queries) < 1:
        raise ValueError("transduction needs at least one prototype and one query")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature!r}")
