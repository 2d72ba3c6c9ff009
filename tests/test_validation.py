"""The Siamese learner's validation score: its prototype rule cross-validated within the
held-out rows, which are embedded once a check."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from siamcl import IncrementalClassifier
from siamcl.data import load_dataset
from siamcl.learners.softmax import SoftmaxClassifier
from siamcl.learners.task_data import validation_split
from siamcl.learners.validation import (
    cross_validated_score,
    learner_embed,
    prototype_score,
    rule_store,
    stratified_folds,
)
from siamcl.store import PrototypeStore


def _identity(encoder, inputs):
    return inputs.numpy().astype(np.float32)


def _narrow_gap(rng: np.random.Generator, n: int):
    """Two classes whose means differ along a direction each class barely varies in, with a
    wide spread along another: plain class means confuse them, whitened ones do not."""
    y = np.repeat([0, 1], n)
    spread = rng.normal(size=(2 * n, 3)) * [1.5, 0.05, 0.0]
    X = np.array([0.0, 0.0, 1.0]) + spread + np.where(y[:, None] == 0, 0.1, -0.1) * [0, 1, 0]
    return torch.from_numpy(X / np.linalg.norm(X, axis=1, keepdims=True)), y


def _opposite_clusters(rng: np.random.Generator, n: int):
    """Each class two clusters on opposite sides: one mean a class sits near the middle and
    misleads, two k-means prototypes a class do not."""
    y = np.repeat([0, 1], 2 * n)
    angles = np.concatenate([np.repeat([0.0, np.pi], n), np.repeat([np.pi / 2, 1.5 * np.pi], n)])
    X = np.stack([np.cos(angles), np.sin(angles), np.full(4 * n, 0.3)], axis=1)
    return torch.from_numpy(X + rng.normal(scale=0.05, size=X.shape)), y


def _clusters(n_per_class: int, classes: int, seed: int, spread: float = 0.1):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, 8))
    y = np.repeat(np.arange(classes), n_per_class)
    X = centres[y] + rng.normal(scale=spread, size=(len(y), 8))
    return torch.from_numpy(X), y


def test_separable_classes_score_high_and_random_labels_near_chance():
    """Every row a prototype (a 1-NN rule): were a row among its own fold's prototypes it
    would find itself and random labels would score 1.0; cross-validated they score chance."""
    every_row = functools.partial(PrototypeStore, prototypes_per_class=1000)
    X, y = _clusters(40, 4, seed=0)
    assert cross_validated_score(_identity, (X, y), every_row)(None) > 0.95
    shuffled = np.random.default_rng(1).permutation(y)
    assert cross_validated_score(_identity, (X, shuffled), every_row)(None) < 0.45


def test_a_whitened_score_estimates_the_whitening_from_the_other_folds():
    held = _narrow_gap(np.random.default_rng(0), 100)
    plain = cross_validated_score(_identity, held, PrototypeStore)(None)
    whitened = cross_validated_score(_identity, held, PrototypeStore, whitening=0.1)(None)
    assert whitened > 0.85 and plain < whitened - 0.2


def test_prototypes_of_other_rows_are_whitened_when_the_learner_whitens():
    rng = np.random.default_rng(0)
    reference, held = _narrow_gap(rng, 100), _narrow_gap(rng, 100)
    plain = prototype_score(_identity, reference, held, PrototypeStore)(None)
    whitened = prototype_score(_identity, reference, held, PrototypeStore, whitening=0.1)(None)
    assert whitened > 0.95 and plain < whitened - 0.1


def test_a_score_embeds_the_held_out_rows_once():
    embedded = []

    def counting(encoder, inputs):
        embedded.append(len(inputs))
        return _identity(encoder, inputs)

    X, y = _clusters(30, 3, seed=2)
    cross_validated_score(counting, (X, y), PrototypeStore)(None)
    assert embedded == [len(y)]


def test_folds_split_each_class_evenly_and_leave_a_single_row_unscored():
    y = np.array([0] * 12 + [1] * 7 + [2])
    fold = stratified_folds(y, folds=5, seed=3)
    for label, expected in ((0, [3, 3, 2, 2, 2]), (1, [2, 2, 1, 1, 1])):
        assert sorted(np.bincount(fold[y == label], minlength=5).tolist(), reverse=True) == expected
    assert fold[y == 2].tolist() == [-1]
    assert np.array_equal(fold, stratified_folds(y, folds=5, seed=3))
    assert not np.array_equal(fold, stratified_folds(y, folds=5, seed=4))


def test_a_class_with_one_held_out_row_is_a_prototype_but_never_scored():
    X, y = _clusters(20, 3, seed=4)
    lone = np.concatenate([np.flatnonzero(y < 2), [np.flatnonzero(y == 2)[0]]])
    score = cross_validated_score(_identity, (X[lone], y[lone]), PrototypeStore)(None)
    assert score == 1.0  # class 2's row, which no fold could classify, is not counted


def test_a_share_holding_one_row_of_every_class_is_refused_before_training():
    X, y = _clusters(3, 4, seed=5)  # a fifth of 3 rows: one row of each class held out
    clf = IncrementalClassifier(encoder="mlp", epochs=1, validation_fraction=0.2, flops="off")
    with pytest.raises(ValueError, match="one of each class: scoring class prototypes needs two"):
        clf.fit_task(X.numpy().astype(np.float32), y)
    assert not clf.is_fitted
    with pytest.raises(
        ValueError, match=r"raise validation_fraction \(siamcl learn: --validation\)"
    ):
        clf.fit_task(X.numpy().astype(np.float32), y)  # the option named as a user set it


def test_a_small_whitened_share_is_whitened_by_every_held_out_row():
    """Two held-out rows a class: the other folds hold one of each, too few to whiten by, so
    every held-out row's covariance whitens them, and the learner trains and stops."""
    X, y = _clusters(2, 4, seed=6)
    score = cross_validated_score(_identity, (X, y), PrototypeStore, whitening=0.5)(None)
    assert score == 1.0
    digits = load_dataset("digits")
    rows = np.concatenate([np.flatnonzero(digits[1] == c)[:8] for c in range(10)])
    clf = IncrementalClassifier(epochs=1, whitening=0.1, validation_fraction=0.25, flops="off")
    report = clf.fit_task(digits[0][rows], digits[1][rows])
    assert 0.0 <= report.extra["validation_score"] <= 1.0


def test_the_scores_classify_by_the_learners_prototype_rule():
    """Two k-means prototypes a class (the learner's rule here) separate what one mean a class
    confuses, scored against other rows and cross-validated alike."""
    two_a_class = functools.partial(PrototypeStore, prototypes_per_class=2)
    rng = np.random.default_rng(1)
    reference, held = _opposite_clusters(rng, 40), _opposite_clusters(rng, 40)
    one = prototype_score(_identity, reference, held, PrototypeStore)(None)
    two = prototype_score(_identity, reference, held, two_a_class)(None)
    assert two > 0.95 and one < 0.8
    held = _opposite_clusters(np.random.default_rng(1), 40)
    one = cross_validated_score(_identity, held, PrototypeStore)(None)
    two = cross_validated_score(_identity, held, two_a_class)(None)
    assert two > 0.95 and one < 0.8


QAT_PARAMS = {"qat": "int8", "epochs": 2, "batch_size": 64, "memory_per_class": 0, "seed": 0}


def _validated_on_digits(learner_class, fraction: float):
    """A quantization-aware learner fitted on digits with ``fraction`` held out; its report,
    the rows it held out, and the data."""
    X, y, _, _ = load_dataset("digits")
    clf = learner_class(validation_fraction=fraction, flops="off", **QAT_PARAMS)
    report = clf.fit_task(X, y)
    return clf, report, validation_split(y, fraction, seed=0)[1], (X, y)


def test_a_quantization_aware_learner_validates_the_int8_network_it_deploys():
    clf, report, held, (X, y) = _validated_on_digits(IncrementalClassifier, 0.4)
    # the held-out rows of task 0, scored as the loop scores them, under the int8 encoder it
    # deploys (here its fake-quantised form scores a few held-out rows differently)
    canonical = clf.preprocessor_.canonical(X)
    score = cross_validated_score(
        learner_embed(clf, clf.preprocessor_), (canonical[held], y[held]), rule_store(clf), seed=1
    )
    assert report.extra["validation_score"] == score(clf.encoder_)


def test_a_quantization_aware_softmax_network_validates_its_int8_form():
    clf, report, held, (X, y) = _validated_on_digits(SoftmaxClassifier, 0.3)
    assert report.extra["validation_score"] == clf.score(X[held], y[held])
