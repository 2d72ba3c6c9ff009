"""Class-incremental streams: split a labelled data set into tasks of disjoint classes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from siamcl.data._checks import as_labels, as_samples, check_positive_int


def classes_mask(y: Iterable[int], classes: Iterable[int]) -> np.ndarray:
    """Boolean mask of the samples whose label is one of ``classes``."""
    return np.isin(as_labels(np.asarray(y)), np.asarray(list(classes), dtype=np.int64))


@dataclass(frozen=True, repr=False, eq=False)
class Task:
    """One step of a class-incremental stream.

    ``X`` and ``y`` hold the samples of the task's ``classes`` (in their original order);
    ``index`` is the task's position in the stream, starting at 0.
    """

    X: np.ndarray
    y: np.ndarray
    classes: tuple[int, ...]
    index: int

    def mask(self, y: Iterable[int]) -> np.ndarray:
        """Boolean mask of the labels in ``y`` that belong to this task's classes."""
        return classes_mask(y, self.classes)

    def select(self, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The samples of ``(X, y)`` (e.g. a test split) whose labels are this task's classes.

        Used to build accuracy matrices: accuracy after task ``t`` on ``task.select(Xte, yte)``.
        """
        samples, labels = as_samples(X, y)
        keep = classes_mask(labels, self.classes)
        return samples[keep], labels[keep]

    def __len__(self) -> int:
        return len(self.y)

    def __repr__(self) -> str:
        return (
            f"Task(index={self.index}, classes={self.classes}, "
            f"X.shape={tuple(self.X.shape)}, n_samples={len(self.y)})"
        )


def _class_order(labels: np.ndarray, seed: int, class_order: Sequence[int] | None) -> np.ndarray:
    present = np.unique(labels)
    if class_order is None:
        return np.random.default_rng(seed).permutation(present)
    order = as_labels(np.asarray(list(class_order)), name="class_order")
    if len(np.unique(order)) != len(order):
        raise ValueError(f"class_order repeats a class: {order.tolist()}")
    missing = sorted(set(present.tolist()) - set(order.tolist()))
    extra = sorted(set(order.tolist()) - set(present.tolist()))
    if missing or extra:
        raise ValueError(
            "class_order must be a permutation of the labels in y "
            f"(missing from class_order: {missing}, not in y: {extra})"
        )
    return order


def class_incremental(
    X: np.ndarray,
    y: np.ndarray,
    n_tasks: int,
    seed: int = 0,
    class_order: Sequence[int] | None = None,
) -> list[Task]:
    """Split ``(X, y)`` into ``n_tasks`` tasks whose classes are disjoint.

    Classes are taken in ``class_order`` if given, otherwise in an order shuffled with
    ``seed`` (independent of numpy's global random state), and dealt out as evenly as
    possible: the first ``n_classes % n_tasks`` tasks get one class more.
    """
    samples, labels = as_samples(X, y)
    n_tasks = check_positive_int(n_tasks, "n_tasks")
    order = _class_order(labels, seed, class_order)
    if n_tasks > len(order):
        raise ValueError(
            f"n_tasks={n_tasks} is more than the number of classes ({len(order)}): "
            "every task needs at least one class"
        )
    tasks = []
    for index, task_classes in enumerate(np.array_split(order, n_tasks)):
        keep = classes_mask(labels, task_classes)
        classes = tuple(int(c) for c in task_classes)
        tasks.append(Task(X=samples[keep], y=labels[keep], classes=classes, index=index))
    return tasks
