"""N-way K-shot accuracy of a fitted classifier on episodes of any labelled data.

Each episode of an :class:`~siamcl.data.EpisodeSampler` makes its support images the only
classes the classifier knows (``reset_classes`` then ``add_classes``: no gradient step) and
classifies its query images; the classifier given is left unchanged. This is how few-shot
learners are scored on held-out classes, on data of your own.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from siamcl.data.episodes import EpisodeSampler

__all__ = ["evaluate_episodes"]


def evaluate_episodes(classifier: Any, sampler: EpisodeSampler) -> dict[str, Any]:
    """Mean accuracy over the sampler's episodes, with its spread and a 95% interval.

    Returns ``{"episodes", "n_way", "k_shot", "mean_accuracy", "std", "ci95", "accuracies"}``.
    """
    if sampler.n_query < 1:
        raise ValueError("episodes need at least one query per class to be scored (n_query=0)")
    accuracies = []
    for episode in sampler:
        learner = copy.copy(classifier)  # reset_classes replaces the copy's store, not ours
        learner.reset_classes()
        learner.add_classes(episode.support_X, episode.support_y)
        accuracies.append(float(np.mean(learner.predict(episode.query_X) == episode.query_y)))
    scores = np.asarray(accuracies)
    spread = float(scores.std(ddof=1)) if len(scores) > 1 else 0.0
    return {
        "episodes": len(scores),
        "n_way": sampler.n_way,
        "k_shot": sampler.k_shot,
        "mean_accuracy": float(scores.mean()),
        "std": spread,
        "ci95": 1.96 * spread / np.sqrt(len(scores)),
        "accuracies": accuracies,
    }
