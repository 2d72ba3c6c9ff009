"""PrototypeStore: the public class, composing the store's contents, its FAISS index and
its files, with one lock around every read and write."""

from __future__ import annotations

import inspect
import os
import threading
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from siamcl.store import io as store_io
from siamcl.store.contents import Batch, Contents, PrototypeRule
from siamcl.store.faiss_index import FaissIndex
from siamcl.store.inputs import as_batch, as_label, as_rows, as_statistics, integer, positive_int

__all__ = ["PrototypeStore"]


def _search_param(name: str, doc: str) -> property:
    """A store property reading and setting one search parameter of its index, locked."""

    def get(self: PrototypeStore) -> int | None:
        return getattr(self._faiss, name)

    def set_(self: PrototypeStore, value: int | None) -> None:
        with self._lock:
            self._faiss.set_search_param(name, value)

    return property(get, set_, doc=doc)


class PrototypeStore:
    """Per-class prototypes in a FAISS index, searchable by the user's integer labels.

    Parameters
    ----------
    dim : embedding dimension.
    metric : ``"cosine"`` (inner product on L2-normalised vectors) or ``"l2"``.
    index : FAISS index factory string, e.g. ``"Flat"``, ``"HNSW32"``, ``"IVF256,PQ16"``, or
        an empty ``faiss.Index`` of dimension ``dim`` and the metric's FAISS metric
        (``METRIC_INNER_PRODUCT`` for cosine, ``METRIC_L2`` for l2), which the store copies.
        The store adds an ``IDMap`` itself where the index cannot store ids.
    prototypes_per_class : prototypes kept per class (1: the class mean; k>1: k-means).
    vote_k : neighbours ``classify`` votes over (1: nearest prototype).
    nprobe : IVF lists visited per query (FAISS default when None).
    ef_search : HNSW ``efSearch`` (FAISS default when None).
    seed : seed of the per-class k-means.
    min_train_size : prototypes needed before a trainable index is trained (default: the
        least FAISS accepts for this index).
    """

    def __init__(
        self,
        dim: int,
        metric: str = "cosine",
        index: str | faiss.Index = "Flat",
        prototypes_per_class: int = 1,
        vote_k: int = 1,
        nprobe: int | None = None,
        ef_search: int | None = None,
        seed: int = 0,
        min_train_size: int | None = None,
    ) -> None:
        self._faiss = FaissIndex(dim, metric, index, nprobe, ef_search, min_train_size)
        self._dim, self._metric = self._faiss.dim, self._faiss.metric
        self._vote_k = positive_int(vote_k, "vote_k")
        per_class = positive_int(prototypes_per_class, "prototypes_per_class")
        self._rule = PrototypeRule(self._dim, per_class, metric == "cosine", integer(seed, "seed"))
        self._contents, self._next_id = Contents.empty(self._dim), 0
        self._read_only, self._memory_mapped = False, False
        self._mmap_note: str | None = None
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ parameters
    @property
    def dim(self) -> int:
        return self._dim

    @property
    def metric(self) -> str:
        return self._metric

    @property
    def index(self) -> str | faiss.Index:
        """The factory string this store was built with, or a copy of the empty ready-made
        ``faiss.Index`` it was given."""
        return self._faiss.given

    @property
    def prototypes_per_class(self) -> int:
        return self._rule.per_class

    @property
    def seed(self) -> int:
        return self._rule.seed

    @property
    def min_train_size(self) -> int:
        """Prototypes needed before a trainable index is trained automatically."""
        return self._faiss.min_train_size

    @property
    def vote_k(self) -> int:
        return self._vote_k

    @vote_k.setter
    def vote_k(self, value: int) -> None:
        self._vote_k = positive_int(value, "vote_k")

    nprobe = _search_param("nprobe", "IVF lists visited per query (None: FAISS's default).")
    ef_search = _search_param("ef_search", "HNSW ``efSearch`` (None: FAISS's default).")

    # ------------------------------------------------------------------ state
    @property
    def classes(self) -> np.ndarray:
        """Sorted user labels of the classes held (int64)."""
        return np.array(self._contents.class_labels)

    @property
    def prototype_labels(self) -> np.ndarray:
        """User label of each row of ``prototypes()`` (int64)."""
        return np.array(self._contents.labels)

    @property
    def class_counts(self) -> np.ndarray:
        """Embeddings counted per class since it was added or last updated (as ``classes``)."""
        return np.array(self._contents.class_counts)

    @property
    def n_prototypes(self) -> int:
        return len(self._contents.ids)

    @property
    def trained(self) -> bool:
        """Whether the FAISS index is trained (always True for Flat and HNSW indexes)."""
        return bool(self._faiss.index.is_trained)

    @property
    def exact_fallback(self) -> bool:
        """True while an untrained index leaves searches to exact search over the prototypes."""
        return not self._faiss.index.is_trained

    @property
    def training_error(self) -> str | None:
        """FAISS's message if automatic training failed (the store then keeps exact search)."""
        return self._faiss.training_error

    @property
    def read_only(self) -> bool:
        """True for a store loaded with ``mmap=True``: it can search and save, not change."""
        return self._read_only

    @property
    def memory_mapped(self) -> bool:
        """True when the FAISS index was read with memory-mapping."""
        return self._memory_mapped

    @property
    def mmap_note(self) -> str | None:
        """Why a store loaded with ``mmap=True`` could not map its index, if it could not."""
        return self._mmap_note

    @property
    def faiss_index(self) -> faiss.Index:
        """The underlying FAISS index (IVF, or an ``IndexIDMap`` around any other type);
        read from it, do not change it."""
        return self._faiss.index

    @property
    def index_nbytes(self) -> int:
        """Size of the FAISS index as ``faiss.write_index`` serialises it."""
        with self._lock:
            return self._faiss.nbytes

    @property
    def nbytes(self) -> int:
        """Bytes held: FAISS index, prototype copies and label map, per-class statistics
        (a float32 copy of every prototype is kept besides the index: exact search before
        training, rebuilds after removal and ``class_scores`` need it uncompressed)."""
        with self._lock:
            return self._faiss.nbytes + self._contents.nbytes

    def __len__(self) -> int:
        return len(self._contents.class_labels)

    def __contains__(self, label: object) -> bool:
        try:
            value = as_label(label)
        except (TypeError, ValueError):
            return False
        return self._contents.holds(value)

    def __repr__(self) -> str:
        return (
            f"PrototypeStore(dim={self._dim}, metric={self._metric!r}, "
            f"index={self._faiss.name}, prototypes_per_class={self.prototypes_per_class}, "
            f"vote_k={self._vote_k}, nprobe={self.nprobe}, ef_search={self.ef_search}, "
            f"seed={self.seed}) with {len(self)} classes, {self.n_prototypes} prototypes"
        )

    def prototypes(self, label: int | None = None) -> np.ndarray:
        """Prototypes as indexed, ``[P, dim]`` float32: all (rows aligned with
        ``prototype_labels``) or those of one class."""
        with self._lock:
            contents = self._contents
            if label is None:
                return np.array(contents.vectors)
            return np.array(contents.vectors[contents.rows_of(as_label(label))])

    # ------------------------------------------------------------------ mutations
    def add(self, embeddings: Any, labels: Any) -> PrototypeStore:
        """Add embeddings to their classes (new or known) and refresh those prototypes."""
        return self._merge(self._batch(embeddings, labels))

    def class_statistics(
        self, embeddings: Any, labels: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-class ``(labels, sums, counts)`` of a batch, as :meth:`add` would count it
        (cosine sums add normalised rows). Statistics of parts of the data, summed, can be
        added with :meth:`add_statistics`: how processes of a distributed job build one store.
        """
        batch = self._batch(embeddings, labels)
        return batch.classes, batch.sums, batch.counts

    def add_statistics(self, labels: Any, sums: Any, counts: Any) -> PrototypeStore:
        """Add per-class embedding sums and counts (see :meth:`class_statistics`) as
        :meth:`add` adds embeddings; one prototype per class only (k-means needs the points)."""
        statistics = as_statistics(labels, sums, counts, self._dim, self.prototypes_per_class)
        return self._merge(Batch.of_statistics(*statistics))

    def update(self, embeddings: Any, labels: Any) -> PrototypeStore:
        """Replace the prototypes and statistics of the classes in ``labels`` by ones computed
        from ``embeddings`` alone (after the encoder changed); unknown classes are added."""
        return self._merge(self._batch(embeddings, labels), replace_classes=True)

    def remove_class(self, label: int) -> PrototypeStore:
        """Forget one class: its prototypes leave the index, its statistics are dropped."""
        value = as_label(label)
        with self._lock:
            self._check_writable()
            self._commit(*self._contents.without_class(value))
        return self

    def clear(self) -> PrototypeStore:
        """Forget every class, keeping the parameters (and an already trained index)."""
        with self._lock:
            self._check_writable()
            self._commit(Contents.empty(self._dim), self._contents.ids)
        return self

    def train(self) -> PrototypeStore:
        """Train (or retrain) the index on every prototype held, then refill it.

        Raises ValueError when the store holds fewer prototypes than the index needs.
        Indexes that need no training (Flat, HNSW), or a ready-made index given trained,
        are refilled with their training unchanged.
        """
        with self._lock:
            self._check_writable()
            self._faiss.train(self._contents.vectors, self._contents.ids)
        return self

    # ------------------------------------------------------------------ queries
    def search(self, queries: Any, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest prototypes of each query.

        Returns ``(scores [N, k] float32, labels [N, k] int64)``, nearest first: cosine
        similarities for ``metric="cosine"`` (higher is closer), squared L2 distances for
        ``metric="l2"`` (lower is closer).  Approximate indexes may miss true neighbours;
        queries for which the index finds fewer than ``k`` are answered by exact search.
        """
        k = positive_int(k, "k")
        q = self._checked_rows(queries, "queries")
        with self._lock:
            self._check_not_empty()
            if k > self.n_prototypes:
                raise ValueError(f"k={k} exceeds the {self.n_prototypes} prototypes held")
            return self._nearest(q, k)

    def classify(self, queries: Any) -> np.ndarray:
        """Label of the nearest prototype, or the majority label among the ``vote_k``
        nearest prototypes (ties go to the tied label with the nearest prototype)."""
        q = self._checked_rows(queries, "queries")
        with self._lock:
            self._check_not_empty()
            k = min(self._vote_k, self.n_prototypes)
            _, labels = self._nearest(q, k)
        if k == 1:
            return labels[:, 0]
        votes = (labels[:, :, None] == labels[:, None, :]).sum(axis=2)
        winner = np.argmax(votes, axis=1)  # first maximum: the nearest among tied labels
        return labels[np.arange(len(labels)), winner]

    def class_scores(self, queries: Any) -> tuple[np.ndarray, np.ndarray]:
        """Exact score of each query against each class's nearest prototype.

        Returns ``(classes [C] int64, scores [N, C] float32)``: cosine similarity for
        ``metric="cosine"``, negative squared L2 distance for ``metric="l2"``, so higher is
        closer for both and a softmax over a row gives class probabilities.
        """
        q = self._checked_rows(queries, "queries")
        with self._lock:
            self._check_not_empty()
            contents = self._contents
        return contents.class_scores(q, l2=self._metric == "l2")

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | os.PathLike) -> Path:
        """Write the store to ``directory`` atomically (temporary directory, fsync, rename).

        An existing store directory is replaced; any other non-empty directory is refused.
        A store built on a ready-made index saves that empty index beside the filled one.
        """
        names = [name for name in inspect.signature(PrototypeStore).parameters if name != "index"]
        with self._lock:  # every constructor parameter but the index, as its property reads
            params = {name: getattr(self, name) for name in names}
            return store_io.save(directory, params, self._contents, self._faiss, self._next_id)

    @classmethod
    def load(cls, directory: str | os.PathLike, mmap: bool = False) -> PrototypeStore:
        """Read a store written by ``save``, checking every file before trusting it.

        ``mmap=True`` memory-maps the index (``IO_FLAG_MMAP_IFC`` or ``IO_FLAG_MMAP``, read
        only) and the arrays, so a store larger than RAM can serve queries; such a store is
        read-only, and ``mmap_note`` says why FAISS could not map the index, if it could not.
        """
        loaded = store_io.load(directory, mmap, make=cls)
        store = loaded.store
        store._faiss.install(loaded.index, loaded.index_nbytes)
        store._contents, store._next_id = loaded.contents, loaded.next_id
        store._read_only, store._memory_mapped = bool(mmap), loaded.mapped
        store._mmap_note = loaded.note
        return store

    def __getstate__(self) -> dict:
        with self._lock:
            state = {key: value for key, value in self.__dict__.items() if key != "_lock"}
            state["_faiss"] = self._faiss.to_state()
            state["_contents"] = self._contents.in_memory()
        state.update(_read_only=False, _memory_mapped=False, _mmap_note=None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _faiss=FaissIndex.from_state(state["_faiss"]))
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ internals
    def _check_writable(self) -> None:
        if self._read_only:
            raise ValueError(
                "this store was loaded with mmap=True and is read-only; "
                "load it with mmap=False to change it"
            )

    def _check_not_empty(self) -> None:
        if self.n_prototypes == 0:
            raise ValueError("store is empty: add classes before searching or classifying")

    def _batch(self, embeddings: Any, labels: Any) -> Batch:
        x, y = as_batch(embeddings, labels, self._dim, cosine=self._metric == "cosine")
        return Batch.of_embeddings(x, y)

    def _checked_rows(self, values: Any, name: str) -> np.ndarray:
        return as_rows(values, self._dim, self._metric == "cosine", name)

    def _nearest(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Scores and labels of the k nearest prototypes of each query."""
        contents = self._contents
        scores, rows = self._faiss.nearest(q, k, contents.vectors, contents.ids)
        return scores, contents.labels[rows]

    def _merge(self, batch: Batch, replace_classes: bool = False) -> PrototypeStore:
        """Add (or replace) the batch's classes, all or nothing."""
        with self._lock:
            self._check_writable()
            merged = self._contents.merged(batch, self._rule, replace_classes, self._next_id)
            self._commit(*merged)
        return self

    def _commit(
        self, contents: Contents, removed_ids: np.ndarray, added: np.ndarray | None = None
    ) -> None:
        """Bring the index in line with ``contents``, then make ``contents`` current;
        ``added`` are the new prototypes (the last rows of ``contents``)."""
        old = self._contents
        added = contents.vectors[:0] if added is None else added
        self._faiss.sync(contents.vectors, contents.ids, removed_ids, added, (old.vectors, old.ids))
        self._contents = contents
        self._next_id += len(added)
