"""What a store knows, as arrays: prototypes (with FAISS ids, labels and weights) and
per-class running sums and counts, and how a batch of embeddings changes them.

Nothing here changes in place: every mutation builds a new :class:`Contents`, so a call that
fails leaves the old one whole, and a reader holding the old one never sees a mixture.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import faiss
import numpy as np

__all__ = [
    "FIELDS",
    "Batch",
    "Contents",
    "PrototypeRule",
]

FIELDS = {  # field of Contents -> dtype it holds
    "vectors": np.float32,
    "ids": np.int64,
    "labels": np.int64,
    "weights": np.float64,
    "class_labels": np.int64,
    "class_sums": np.float64,
    "class_counts": np.int64,
}
_SCORE_CHUNK = 1 << 22  # query-by-prototype scores computed at once by class_scores
_KMEANS_ITERATIONS = 20


@dataclass(frozen=True)
class Contents:
    """Everything the store knows, as arrays; replaced whole by each successful mutation."""

    vectors: np.ndarray  # [P, dim] float32 prototypes as indexed (unit length for cosine)
    ids: np.ndarray  # [P] int64 FAISS ids, strictly increasing
    labels: np.ndarray  # [P] int64 user label of each prototype
    weights: np.ndarray  # [P] float64 number of embeddings each prototype summarises
    class_labels: np.ndarray  # [C] int64 sorted user labels
    class_sums: np.ndarray  # [C, dim] float64 sum of the (normalised, for cosine) embeddings
    class_counts: np.ndarray  # [C] int64 embeddings seen per class

    @classmethod
    def empty(cls, dim: int) -> Contents:
        """No classes, no prototypes."""
        shapes = {"vectors": (0, dim), "class_sums": (0, dim)}
        return cls(**{name: np.empty(shapes.get(name, 0), dtype) for name, dtype in FIELDS.items()})

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, name).nbytes for name in FIELDS)

    def in_memory(self) -> Contents:
        """A copy whose arrays live in memory (the arrays may be memory-mapped)."""
        return Contents(**{name: np.array(getattr(self, name)) for name in FIELDS})

    def holds(self, label: int) -> bool:
        """Whether ``label`` is one of the classes held."""
        pos = np.searchsorted(self.class_labels, label)
        return bool(pos < len(self.class_labels) and self.class_labels[pos] == label)

    def rows_of(self, label: int) -> np.ndarray:
        """Boolean mask of the prototypes of one class; ValueError if it is not held."""
        if not self.holds(label):
            raise ValueError(f"unknown class label {label}")
        return self.labels == label

    def merged(
        self, batch: Batch, rule: PrototypeRule, replace_classes: bool, next_id: int
    ) -> tuple[Contents, np.ndarray, np.ndarray]:
        """The contents after adding (or, with ``replace_classes``, replacing) the batch's
        classes, the FAISS ids to remove and the new prototypes; ``self`` is left as it is.
        New prototypes get ids from ``next_id`` on and come last."""
        class_labels, sums, counts, known = _class_table(self, batch, replace_classes)
        drop = np.isin(self.labels, batch.classes[known])
        kept = slice(None) if not drop.any() else ~drop
        if rule.per_class == 1:
            at = np.searchsorted(class_labels, batch.classes)
            added, added_labels, added_weights = rule.of_means(batch.classes, sums[at], counts[at])
        else:
            held = None if replace_classes else (self.vectors[drop], self.weights[drop])
            added, added_labels, added_weights = rule.of_members(batch, self.labels[drop], held)
        added_ids = np.arange(next_id, next_id + len(added), dtype=np.int64)
        contents = Contents(
            vectors=np.concatenate([self.vectors[kept], added]),
            ids=np.concatenate([self.ids[kept], added_ids]),
            labels=np.concatenate([self.labels[kept], added_labels]),
            weights=np.concatenate([self.weights[kept], added_weights]),
            class_labels=class_labels,
            class_sums=sums,
            class_counts=counts,
        )
        return contents, self.ids[drop], added

    def without_class(self, label: int) -> tuple[Contents, np.ndarray]:
        """The contents without one class, and the FAISS ids of the prototypes it drops."""
        if not self.holds(label):
            raise ValueError(f"cannot remove class {label}: the store holds no such class")
        drop = self.labels == label
        keep_class = self.class_labels != label
        contents = replace(
            self,
            vectors=self.vectors[~drop],
            ids=self.ids[~drop],
            labels=self.labels[~drop],
            weights=self.weights[~drop],
            class_labels=self.class_labels[keep_class],
            class_sums=self.class_sums[keep_class],
            class_counts=self.class_counts[keep_class],
        )
        return contents, self.ids[drop]

    def class_scores(self, q: np.ndarray, l2: bool) -> tuple[np.ndarray, np.ndarray]:
        """Exact score of each query against each class's nearest prototype, higher is closer:
        ``(classes [C], scores [N, C] float32)``, inner products or negative squared L2."""
        order = np.argsort(self.labels, kind="stable")
        sorted_labels = self.labels[order]
        starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
        vectors = self.vectors  # read in place: it may be memory-mapped
        if l2:
            squared_norms = _squared_norms(vectors)
        out = np.empty((len(q), len(starts)), np.float32)
        step = max(1, _SCORE_CHUNK // max(1, len(vectors)))
        for begin in range(0, len(q), step):
            block = q[begin : begin + step]
            scores = block @ vectors.T
            if l2:
                scores = np.minimum(2 * scores - _squared_norms(block)[:, None] - squared_norms, 0)
            out[begin : begin + step] = np.maximum.reduceat(scores[:, order], starts, axis=1)
        return sorted_labels[starts].copy(), out


@dataclass(frozen=True)
class Batch:
    """New data for some classes, grouped by class in increasing label order: each class's
    float64 sum and count, and (when built from embeddings) the embeddings, their stable
    sort order by label and where each class starts in it."""

    classes: np.ndarray
    sums: np.ndarray
    counts: np.ndarray
    x: np.ndarray | None = None
    order: np.ndarray | None = None
    starts: np.ndarray | None = None

    @property
    def members(self) -> list[np.ndarray]:
        """Rows of ``x`` of each class."""
        return np.split(self.order, self.starts[1:])

    @classmethod
    def of_embeddings(cls, x: np.ndarray, y: np.ndarray) -> Batch:
        order = np.argsort(y, kind="stable")
        sorted_labels = y[order]
        starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
        counts = np.diff(np.r_[starts, len(y)]).astype(np.int64)
        ordered = x[order].astype(np.float64)
        singletons = len(starts) == len(y)  # reduceat is slow on one-row groups
        sums = ordered if singletons else np.add.reduceat(ordered, starts, axis=0)
        return cls(sorted_labels[starts], sums, counts, x, order, starts)

    @classmethod
    def of_statistics(cls, labels: np.ndarray, sums: np.ndarray, counts: np.ndarray) -> Batch:
        order = np.argsort(labels, kind="stable")
        return cls(labels[order], sums[order], counts[order])


@dataclass(frozen=True)
class PrototypeRule:
    """How a class becomes prototypes: its mean (``per_class=1``), or up to ``per_class``
    weighted k-means centroids (spherical for cosine), seeded for reproducibility."""

    dim: int
    per_class: int
    spherical: bool
    seed: int

    def of_means(self, classes: np.ndarray, sums: np.ndarray, counts: np.ndarray):
        """One prototype per class: the mean, weighted by the embeddings it summarises."""
        means = (sums / counts[:, None]).astype(np.float32)
        return self._finished(means), classes, counts.astype(np.float64)

    def of_members(
        self,
        batch: Batch,
        held_labels: np.ndarray,
        held: tuple[np.ndarray, np.ndarray] | None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Up to k prototypes for each class of ``batch``, from its new embeddings and (when
        ``held`` is given) its current prototypes weighted by the embeddings they summarise."""
        vectors, labels, weights = [], [], []
        for label, rows in zip(batch.classes, batch.members):
            points, mass = batch.x[rows], np.ones(len(rows))
            if held is not None:
                mine = held_labels == label
                points = np.concatenate([np.asarray(held[0][mine]), points])
                mass = np.concatenate([np.asarray(held[1][mine]), mass])
            centroids, centroid_mass = self._clustered(points, mass)
            vectors.append(centroids)
            labels.append(np.full(len(centroids), label, np.int64))
            weights.append(centroid_mass)
        vectors = self._finished(np.concatenate(vectors))
        return vectors, np.concatenate(labels), np.concatenate(weights)

    def _clustered(self, points: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Up to k weighted centroids of ``points`` and the weight each one summarises."""
        k = self.per_class
        if len(points) <= k:
            return points.astype(np.float32), weights.astype(np.float64)
        points = np.ascontiguousarray(points, dtype=np.float32)
        kmeans = faiss.Kmeans(
            self.dim,
            k,
            niter=_KMEANS_ITERATIONS,
            seed=self.seed,
            spherical=self.spherical,
            min_points_per_centroid=1,
            max_points_per_centroid=len(points),
            verbose=False,
        )
        kmeans.train(points, weights=weights.astype(np.float32))
        _, assignment = kmeans.index.search(points, 1)
        assignment = assignment[:, 0]
        mass = np.bincount(assignment, weights=weights, minlength=k)
        sums = np.zeros((k, self.dim))
        np.add.at(sums, assignment, points * weights[:, None])
        used = mass > 0
        return (sums[used] / mass[used, None]).astype(np.float32), mass[used]

    def _finished(self, vectors: np.ndarray) -> np.ndarray:
        """Prototypes as indexed: contiguous float32, unit length for cosine."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if self.spherical:
            faiss.normalize_L2(vectors)
        return vectors


def _class_table(
    old: Contents, batch: Batch, replace_classes: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Class labels, sums and counts after the batch, and which batch classes were known."""
    pos = np.searchsorted(old.class_labels, batch.classes)
    known = pos < len(old.class_labels)
    known[known] = old.class_labels[pos[known]] == batch.classes[known]
    # new classes are inserted in label order (one copy); known ones are updated on it
    slots = pos[~known]
    class_labels = np.insert(old.class_labels, slots, batch.classes[~known])
    sums = np.insert(old.class_sums, slots, batch.sums[~known], axis=0)
    counts = np.insert(old.class_counts, slots, batch.counts[~known])
    at = np.searchsorted(class_labels, batch.classes)[known]
    if replace_classes:
        sums[at], counts[at] = batch.sums[known], batch.counts[known]
    else:
        sums[at] += batch.sums[known]
        counts[at] += batch.counts[known]
    return class_labels, sums, counts, known


def _squared_norms(vectors: np.ndarray, rows_at_once: int = 1 << 16) -> np.ndarray:
    """Squared L2 norm of each row (float32), a block of rows at a time."""
    out = np.empty(len(vectors), np.float32)
    for begin in range(0, len(vectors), rows_at_once):
        block = np.asarray(vectors[begin : begin + rows_at_once], dtype=np.float64)
        out[begin : begin + rows_at_once] = np.einsum("ij,ij->i", block, block)
    return out
