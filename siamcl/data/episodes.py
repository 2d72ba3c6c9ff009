"""N-way K-shot episodes for few-shot training and evaluation."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from siamcl.data._checks import as_samples, check_positive_int


@dataclass(frozen=True, repr=False, eq=False)
class Episode:
    """One few-shot episode: ``k_shot`` support and ``n_query`` query samples per class.

    Labels are the data set's own; ``classes`` lists the episode's classes in sampling
    order, and samples are grouped class by class in that order.
    """

    support_X: np.ndarray
    support_y: np.ndarray
    query_X: np.ndarray
    query_y: np.ndarray
    classes: tuple[int, ...]

    @property
    def support_targets(self) -> np.ndarray:
        """Support labels as positions in ``classes`` (0 .. n_way-1)."""
        return _positions(self.support_y, self.classes)

    @property
    def query_targets(self) -> np.ndarray:
        """Query labels as positions in ``classes`` (0 .. n_way-1)."""
        return _positions(self.query_y, self.classes)

    def __repr__(self) -> str:
        return (
            f"Episode(n_way={len(self.classes)}, support={len(self.support_y)}, "
            f"query={len(self.query_y)}, classes={self.classes})"
        )


def _positions(labels: np.ndarray, classes: tuple[int, ...]) -> np.ndarray:
    lookup = {label: position for position, label in enumerate(classes)}
    return np.array([lookup[int(label)] for label in labels], dtype=np.int64)


class EpisodeSampler:
    """Iterable of ``n_episodes`` random N-way K-shot episodes drawn from ``(X, y)``.

    Each episode picks ``n_way`` distinct classes, then ``k_shot + n_query`` distinct
    samples of each; support and query never share a sample. Iterating twice yields the
    same episodes (the generator is re-seeded with ``seed``); call :meth:`sample` with
    your own generator for a fresh stream.
    """

    def __init__(
        self,
        X: np.ndarray,
        y: np.ndarray,
        n_way: int,
        k_shot: int,
        n_query: int,
        seed: int = 0,
        n_episodes: int = 100,
    ) -> None:
        self.X, self.y = as_samples(X, y)
        self.n_way = check_positive_int(n_way, "n_way")
        self.k_shot = check_positive_int(k_shot, "k_shot")
        self.n_query = check_positive_int(n_query, "n_query", minimum=0)
        self.seed = seed
        self.n_episodes = check_positive_int(n_episodes, "n_episodes")
        self._by_class = self._index_classes()

    def _index_classes(self) -> dict[int, np.ndarray]:
        classes, counts = np.unique(self.y, return_counts=True)
        if len(classes) < self.n_way:
            raise ValueError(f"n_way={self.n_way} but y holds only {len(classes)} classes")
        needed = self.k_shot + self.n_query
        short = {int(c): int(n) for c, n in zip(classes, counts) if n < needed}
        if short:
            shown = dict(list(short.items())[:10])
            raise ValueError(
                f"each class needs k_shot + n_query = {needed} samples; "
                f"{len(short)} classes have fewer (class: count) {shown}"
            )
        return {int(c): np.flatnonzero(self.y == c) for c in classes}

    def sample(self, rng: np.random.Generator) -> Episode:
        """Draw one episode with the generator ``rng``."""
        all_classes = np.fromiter(self._by_class, dtype=np.int64)
        classes = rng.choice(all_classes, size=self.n_way, replace=False)
        support, query = [], []
        for label in classes:
            picked = rng.choice(self._by_class[int(label)], self.k_shot + self.n_query, False)
            support.append(picked[: self.k_shot])
            query.append(picked[self.k_shot :])
        support_idx, query_idx = np.concatenate(support), np.concatenate(query)
        return Episode(
            support_X=self.X[support_idx],
            support_y=self.y[support_idx],
            query_X=self.X[query_idx],
            query_y=self.y[query_idx],
            classes=tuple(int(c) for c in classes),
        )

    def __iter__(self) -> Iterator[Episode]:
        rng = np.random.default_rng(self.seed)
        for _ in range(self.n_episodes):
            yield self.sample(rng)

    def __len__(self) -> int:
        return self.n_episodes
