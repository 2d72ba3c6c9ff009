"""N-way K-shot evaluation on episodes of held-out classes."""

import numpy as np
import pytest

from siamcl import IncrementalClassifier
from siamcl.data import EpisodeSampler, load_dataset
from siamcl.evaluation import evaluate_episodes


def test_episodes_of_unseen_classes_score_above_chance_and_leave_the_model_alone():
    X, y, X_test, y_test = load_dataset("digits")
    seen = y < 5
    clf = IncrementalClassifier(epochs=3, batch_size=32, flops="off", seed=0)
    clf.fit_task(X[seen], y[seen])
    before = clf.predict(X_test[:50])
    unseen = y_test >= 5
    sampler = EpisodeSampler(
        X_test[unseen], y_test[unseen], n_way=5, k_shot=1, n_query=5, n_episodes=20, seed=0
    )
    result = evaluate_episodes(clf, sampler)
    assert result["episodes"] == 20 and len(result["accuracies"]) == 20
    assert result["mean_accuracy"] > 0.4  # five-way: chance is 0.2
    assert result["ci95"] > 0
    np.testing.assert_array_equal(clf.predict(X_test[:50]), before)
    assert sorted(clf.classes_.tolist()) == [0, 1, 2, 3, 4]
    again = evaluate_episodes(clf, sampler)  # the same episodes: the same score
    assert again["mean_accuracy"] == result["mean_accuracy"]


def test_episodes_without_queries_cannot_be_scored():
    X, y, _, _ = load_dataset("digits")
    clf = IncrementalClassifier(epochs=1, flops="off").fit(X[:100], y[:100])
    with pytest.raises(ValueError, match="at least one query"):
        evaluate_episodes(clf, EpisodeSampler(X, y, n_way=3, k_shot=1, n_query=0))
