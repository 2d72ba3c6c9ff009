"""Transductive one-shot classification: queries refine the prototypes they are scored on."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from siamcl.transductive import balance, match, refine_prototypes, transductive_predict


def _on_circle(degrees) -> np.ndarray:
    radians = np.deg2rad(np.asarray(degrees, dtype=np.float64))
    return np.stack([np.cos(radians), np.sin(radians)], axis=1)


# Prototype A at 0 degrees, B at 60; A's queries drift to 35-45 degrees (nearer B), B's to
# 80-90. Nearest-prototype gives all six to B; the balanced assignment recovers both classes.
PROTOTYPES = _on_circle([0, 60])
QUERIES = _on_circle([35, 80, 40, 85, 45, 90])
TRUTH = np.array([0, 1, 0, 1, 0, 1])


def test_balance_gives_every_class_an_equal_share():
    rng = np.random.default_rng(0)
    weights = balance(rng.normal(size=(12, 4)) * 5)
    np.testing.assert_allclose(weights.sum(axis=1), 1, atol=1e-6)
    np.testing.assert_allclose(weights.sum(axis=0), 3, atol=1e-3)


def test_balanced_refinement_recovers_queries_that_drift_towards_a_neighbour():
    inductive = transductive_predict(PROTOTYPES, QUERIES, "none")
    assert inductive.tolist() == [1] * 6  # half wrong
    assert transductive_predict(PROTOTYPES, QUERIES, "balanced").tolist() == TRUTH.tolist()


def test_refined_prototypes_are_unit_vectors_that_move_towards_their_queries():
    refined = refine_prototypes(PROTOTYPES, QUERIES, steps=3, balanced=True)
    np.testing.assert_allclose(np.linalg.norm(refined, axis=1), 1)
    angle = np.rad2deg(np.arctan2(refined[:, 1], refined[:, 0]))
    assert 0 < angle[0] < 40 and 60 < angle[1] < 90
    np.testing.assert_allclose(refine_prototypes(PROTOTYPES, QUERIES, steps=0), PROTOTYPES)


def test_balance_is_an_assumption_soft_refinement_does_not_make():
    # Every query is a drawing of A: soft refinement leaves B where it was, balance drags B
    # towards A's queries (it gives B its share of them).
    prototypes, queries = _on_circle([0, 90]), _on_circle([5, 10, 15, 20])
    assert transductive_predict(prototypes, queries, "soft").tolist() == [0, 0, 0, 0]
    for balanced, low, high in ((False, 85, 90.01), (True, 20, 60)):
        b = refine_prototypes(prototypes, queries, balanced=balanced)[1]
        assert low < np.rad2deg(np.arctan2(b[1], b[0])) < high


def test_matching_gives_each_class_its_share_of_the_drifting_queries():
    assert transductive_predict(PROTOTYPES, QUERIES, "matched").tolist() == TRUTH.tolist()


def test_one_query_a_class_is_matched_one_to_one():
    # Queries at 5 and 18 degrees both lie nearest A (0); no query lies nearest B (40). The
    # matching of greatest total similarity keeps 5 with A and sends 18 on to B, 70 to C.
    prototypes, queries = _on_circle([0, 40, 90]), _on_circle([5, 18, 70])
    assert transductive_predict(prototypes, queries, "none").tolist() == [0, 0, 2]
    assert transductive_predict(prototypes, queries, "matched").tolist() == [0, 1, 2]


@pytest.mark.parametrize("queries", [4, 5, 6])
def test_match_is_the_best_assignment_with_at_most_its_share_per_class(queries):
    rng = np.random.default_rng(queries)
    similarity = rng.normal(size=(queries, 3))
    classes = match(similarity)
    share = -(-queries // 3)
    assert np.bincount(classes, minlength=3).max() <= share
    best = max(
        similarity[np.arange(queries), list(labels)].sum()
        for labels in itertools.product(range(3), repeat=queries)
        if max(labels.count(c) for c in range(3)) <= share
    )
    assert similarity[np.arange(queries), classes].sum() == pytest.approx(best)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((PROTOTYPES, QUERIES, "hungarian"), {}, "unknown transduction 'hungarian'"),
        ((PROTOTYPES, QUERIES[:, :1], "soft"), {}, "one width"),
        ((PROTOTYPES, QUERIES, "balanced"), {"steps": -1}, "steps must be"),
        ((PROTOTYPES, QUERIES, "balanced"), {"temperature": 0.0}, "temperature must be"),
        ((PROTOTYPES[:0], QUERIES, "soft"), {}, "at least one prototype"),
    ],
)
def test_bad_inputs_are_refused(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        transductive_predict(*args, **kwargs)
