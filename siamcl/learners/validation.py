"""How a Siamese learner's encoder is scored on held-out rows: prototypes built as the
learner builds them (:func:`rule_store`, :func:`embedded_store`), the accuracy of the nearest
one (:func:`store_accuracy`), and the validation score stopping policies read
(:func:`task_validation`: cross-validated within the held-out rows, so a check embeds them
once). The benchmarks score test splits with the same functions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from siamcl.compress import calibration_rows
from siamcl.learners.siamese_task import embedder
from siamcl.learners.task_data import validation_split
from siamcl.preprocess import Preprocessor
from siamcl.store import PrototypeStore
from siamcl.whitening import whiten_rows, within_class_whitening

__all__ = [
    "VALIDATION_FOLDS",
    "cross_validated_score",
    "embedded_store",
    "learner_embed",
    "prototype_score",
    "reference_store",
    "rule_store",
    "store_accuracy",
    "stratified_folds",
    "task_validation",
]


def reference_store(
    encoder: nn.Module,
    embed: Callable[[nn.Module, torch.Tensor], np.ndarray],
    reference: tuple[torch.Tensor, np.ndarray],
    new_store: Callable[[int], PrototypeStore],
    whitening: float | None = None,
) -> tuple[PrototypeStore, np.ndarray | None]:
    """A store ``new_store(dim)`` filled with the ``reference`` rows' embeddings under
    ``encoder`` (:func:`embedded_store`), and the whitening matrix or None beside it."""
    return embedded_store(embed(encoder, reference[0]), reference[1], new_store, whitening)


def embedded_store(
    embedded: np.ndarray,
    labels: np.ndarray,
    new_store: Callable[[int], PrototypeStore],
    whitening: float | None = None,
    matrix: np.ndarray | None = None,
) -> tuple[PrototypeStore, np.ndarray | None]:
    """A store ``new_store(dim)`` of the ``embedded`` rows (its prototypes class means,
    k-means centres or every row, as its rule says), with ``whitening`` (a shrinkage) first
    whitened by their within-class covariance, or by ``matrix`` if given, as the learner's
    prototypes are after a task: the matrix, or None, comes back beside it."""
    if whitening is not None and matrix is None:
        matrix = within_class_whitening(embedded, labels, whitening)
    if matrix is not None:
        embedded = whiten_rows(embedded, matrix)
    return new_store(embedded.shape[1]).add(embedded, labels), matrix


def rule_store(clf: Any) -> Callable[[int], PrototypeStore]:
    """New stores of a given size with the learner's prototype rule (prototypes a class,
    metric, vote) over exact search: a sample may hold too few rows to train the learner's
    own (approximate) index on."""

    def new_store(dim: int) -> PrototypeStore:
        per_class, vote_k = clf.prototypes_per_class, clf.vote_k
        return PrototypeStore(dim, clf.metric, "Flat", per_class, vote_k, seed=clf.seed)

    return new_store


def store_accuracy(
    store: PrototypeStore, matrix: np.ndarray | None, queries: np.ndarray, labels: np.ndarray
) -> float:
    """Accuracy of ``store`` on embedded ``queries``, whitened by ``matrix`` first if given."""
    if matrix is not None:
        queries = whiten_rows(queries, matrix)
    return float(np.mean(store.classify(queries) == labels))


def prototype_score(
    embed: Callable[[nn.Module, torch.Tensor], np.ndarray],
    reference: tuple[torch.Tensor, np.ndarray],
    held_out: tuple[torch.Tensor, np.ndarray],
    new_store: Callable[[int], PrototypeStore],
    whitening: float | None = None,
) -> Callable[[nn.Module], float]:
    """A score under the encoder being trained: the accuracy on the ``held_out`` rows of the
    :func:`reference_store` of the ``reference`` rows."""

    def score(encoder: nn.Module) -> float:
        store, matrix = reference_store(encoder, embed, reference, new_store, whitening)
        return store_accuracy(store, matrix, embed(encoder, held_out[0]), held_out[1])

    return score


VALIDATION_FOLDS = 5


def cross_validated_score(
    embed: Callable[[nn.Module, torch.Tensor], np.ndarray],
    held_out: tuple[torch.Tensor, np.ndarray],
    new_store: Callable[[int], PrototypeStore],
    whitening: float | None = None,
    seed: int = 0,
    folds: int = VALIDATION_FOLDS,
) -> Callable[[nn.Module], float]:
    """A validation score from the ``held_out`` rows alone, embedded once under the encoder
    being trained: each of ``folds`` stratified folds is classified by a store
    ``new_store(dim)`` of the other folds, whitened by their within-class covariance (by
    every held-out row's where the other folds hold no two rows of a class), so no row meets
    its own embedding among the prototypes. One pass over the held-out rows, as the standard
    network's score needs, where prototypes of training rows would take a second. A class
    with a single held-out row is a prototype in every fold and is never scored; ValueError
    if no class has two."""
    inputs, labels = held_out
    fold = stratified_folds(labels, folds, seed)
    if not (fold >= 0).any():
        raise ValueError(
            f"the validation share holds {len(labels)} rows, one of each class: scoring "
            "class prototypes needs two of a class; raise validation_fraction (siamcl learn: "
            "--validation) or set it to 0"
        )
    codes = np.unique(labels, return_inverse=True)[1]
    each_fold_whitens = all(np.bincount(codes[fold != i]).max() > 1 for i in range(folds))

    def score(encoder: nn.Module) -> float:
        embedded, right = embed(encoder, inputs), 0.0
        shared = None
        if whitening is not None and not each_fold_whitens:
            shared = within_class_whitening(embedded, labels, whitening)
        for scored in (fold == i for i in range(folds)):
            if not scored.any():
                continue
            reference = (embedded[~scored], labels[~scored])
            store, matrix = embedded_store(*reference, new_store, whitening, shared)
            accuracy = store_accuracy(store, matrix, embedded[scored], labels[scored])
            right += accuracy * np.count_nonzero(scored)
        return float(right / np.count_nonzero(fold >= 0))

    return score


def stratified_folds(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Each row's fold, 0 to ``folds - 1``, dealt class by class in a random order from
    ``seed``, so every fold holds each class's rows as evenly as they divide; -1 for the
    row of a class with only one."""
    rng, fold = np.random.default_rng(seed), np.full(len(labels), -1)
    for label in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == label))
        if len(rows) > 1:
            fold[rows] = np.arange(len(rows)) % folds
    return fold


def task_validation(
    clf: Any, preprocessor: Preprocessor, canonical: torch.Tensor, y: np.ndarray, task: int
) -> tuple[Any, Callable[[nn.Module], float] | None]:
    """The task's rows to train on and the validation score the loop computes at each check:
    ``validation_fraction`` of each class held out and classified, by
    :func:`cross_validated_score`, with the learner's prototype rule (class means, k-means
    centres or every row; its metric and vote), whitened as its prototypes will be when it
    whitens, under the encoder it would deploy (``clf.deployed``: quantized under ``qat``);
    all rows and no score when the fraction is 0."""
    if not clf.validation_fraction:
        return slice(None), None
    seed = clf.seed * 1000 + task
    train, held = validation_split(y, clf.validation_fraction, seed)
    embed, held_out = learner_embed(clf, preprocessor), (canonical[held], y[held])
    score = cross_validated_score(embed, held_out, rule_store(clf), clf.whitening, seed + 1)
    calibration = (  # rows a quantized network's conversion calibrates on, as it trains
        calibration_rows(canonical[train], preprocessor.standardise) if clf.qat else None
    )
    return train, lambda encoder: score(clf.deployed(encoder, calibration))


def learner_embed(
    clf: Any, preprocessor: Preprocessor
) -> Callable[[nn.Module, torch.Tensor], np.ndarray]:
    """``embed(encoder, inputs)`` as the scores here take it: the learner's embedding
    (:func:`~siamcl.learners.siamese_task.embedder`) under the encoder being trained."""

    def embed(encoder: nn.Module, inputs: torch.Tensor) -> np.ndarray:
        return embedder(clf, encoder, preprocessor)(inputs)

    return embed
