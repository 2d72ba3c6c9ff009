"""Bounded exemplar memory for replay.

Holds a few inputs per class, chosen at random or by herding (iCaRL's rule: greedily pick the
samples whose running mean embedding stays closest to the class mean), under a budget per
class or in total. Each class's exemplars are kept in selection order, so shrinking a class
to make room for new ones keeps its best exemplars.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["ExemplarMemory", "herding_order"]

SELECTIONS = ("random", "herding")


def herding_order(embeddings: np.ndarray, m: int) -> np.ndarray:
    """Indices of ``m`` rows whose running mean best tracks the mean of all rows (iCaRL)."""
    embeddings = np.asarray(embeddings, dtype=np.float64)
    m = min(m, len(embeddings))
    target = embeddings.mean(axis=0)
    chosen: list[int] = []
    running = np.zeros_like(target)
    available = np.ones(len(embeddings), dtype=bool)
    for step in range(1, m + 1):
        candidate_means = (running + embeddings) / step
        distances = np.linalg.norm(candidate_means - target, axis=1)
        distances[~available] = np.inf
        best = int(np.argmin(distances))
        chosen.append(best)
        available[best] = False
        running += embeddings[best]
    return np.asarray(chosen, dtype=np.int64)


class ExemplarMemory:
    """Exemplars per class under ``per_class`` or ``total`` budget (exactly one must be set).

    Inputs are stored as given to :meth:`add` (the learner stores them in its canonical
    layout as float16); ``nbytes`` is what the memory retains.
    """

    def __init__(
        self,
        per_class: int | None = 20,
        total: int | None = None,
        selection: str = "herding",
        seed: int = 0,
    ):
        if (per_class is None) == (total is None):
            raise ValueError("set exactly one of per_class and total for the exemplar budget")
        for name, value in (("per_class", per_class), ("total", total)):
            if value is not None and (not isinstance(value, (int, np.integer)) or value < 0):
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        if selection not in SELECTIONS:
            raise ValueError(f"unknown selection {selection!r}; choose one of {SELECTIONS}")
        self.per_class = per_class
        self.total = total
        self.selection = selection
        self.seed = seed
        self._exemplars: dict[int, np.ndarray] = {}
        self._rng = np.random.default_rng(seed)

    @classmethod
    def with_budget(
        cls,
        per_class: int | None,
        total: int | None,
        selection: str = "herding",
        seed: int = 0,
    ) -> ExemplarMemory:
        """The memory a learner's ``memory_per_class`` / ``memory_total`` ask for: a total
        budget when one is given, else a budget per class."""
        if total is not None:
            return cls(None, total, selection, seed)
        return cls(per_class, None, selection, seed)

    @property
    def classes(self) -> list[int]:
        return sorted(self._exemplars)

    def __len__(self) -> int:
        return sum(len(x) for x in self._exemplars.values())

    def __contains__(self, label: int) -> bool:
        return int(label) in self._exemplars

    def quota(self, n_classes: int) -> int:
        """Exemplars each class may keep when ``n_classes`` classes share the memory."""
        if self.per_class is not None:
            return int(self.per_class)
        return int(self.total) // max(n_classes, 1)

    def add(
        self,
        X: np.ndarray,
        y: np.ndarray,
        embed: Callable[[np.ndarray], np.ndarray] | None = None,
        embeddings: np.ndarray | None = None,
    ) -> None:
        """Select exemplars for each class in ``y`` and shrink the others to fit the budget.

        A class already held is reselected from its old exemplars plus the new samples.
        ``embed`` maps stored inputs to embeddings; herding needs it. ``embeddings`` (one row
        per row of ``X``, computed once by the caller) spare herding embedding ``X`` again:
        only the exemplars already held are then passed to ``embed``.
        """
        if self.selection == "herding" and embed is None:
            raise ValueError("herding selection needs an embed function")
        if embeddings is not None and len(embeddings) != len(X):
            raise ValueError(f"{len(embeddings)} embeddings given for {len(X)} inputs")
        new_classes = set(np.unique(y).tolist())
        quota = self.quota(len(new_classes | set(self._exemplars)))
        selected: dict[int, np.ndarray] = {}
        for label in sorted(new_classes):
            candidates = X[y == label]
            held = self._exemplars.get(label)
            if held is not None:
                candidates = np.concatenate([held, candidates])
            selected[label] = self._select(
                candidates,
                quota,
                _candidate_embeddings(embed, candidates, held, embeddings, y == label),
            )
        for label, exemplars in self._exemplars.items():
            if label not in selected:
                selected[label] = exemplars[:quota]
        self._exemplars = selected

    def get(self, label: int) -> np.ndarray:
        return self._exemplars[int(label)]

    def remove_class(self, label: int) -> None:
        self._exemplars.pop(int(label), None)

    def clear(self) -> None:
        self._exemplars = {}

    def arrays(self) -> tuple[np.ndarray | None, np.ndarray]:
        """All exemplars and their labels (``None`` and an empty array when empty)."""
        if not self._exemplars:
            return None, np.zeros(0, dtype=np.int64)
        labels = [np.full(len(x), label, dtype=np.int64) for label, x in self._exemplars.items()]
        return np.concatenate(list(self._exemplars.values())), np.concatenate(labels)

    @property
    def nbytes(self) -> int:
        return int(sum(x.nbytes for x in self._exemplars.values()))

    def state_dict(self) -> dict[str, Any]:
        return {
            "per_class": self.per_class,
            "total": self.total,
            "selection": self.selection,
            "seed": self.seed,
            "rng": self._rng.bit_generator.state,
            "exemplars": {str(k): v for k, v in self._exemplars.items()},
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> ExemplarMemory:
        memory = cls(state["per_class"], state["total"], state["selection"], state["seed"])
        memory._rng.bit_generator.state = state["rng"]
        memory._exemplars = {int(k): np.asarray(v) for k, v in state["exemplars"].items()}
        return memory

    def _select(self, X: np.ndarray, m: int, embeddings: Callable[[], np.ndarray]) -> np.ndarray:
        if len(X) <= m:
            return X.copy()
        if self.selection == "herding":
            return X[herding_order(embeddings(), m)]
        return X[np.sort(self._rng.choice(len(X), size=m, replace=False))]


def _candidate_embeddings(
    embed: Callable[[np.ndarray], np.ndarray] | None,
    candidates: np.ndarray,
    held: np.ndarray | None,
    embeddings: np.ndarray | None,
    rows: np.ndarray,
) -> Callable[[], np.ndarray]:
    """The candidates' embeddings, computed only when herding asks: the given ``embeddings``
    of the new ``rows`` (the held exemplars embedded first), else ``embed(candidates)``."""

    def compute() -> np.ndarray:
        if embeddings is None:
            return embed(candidates)
        if held is None:
            return embeddings[rows]
        return np.concatenate([embed(held), embeddings[rows]])

    return compute
