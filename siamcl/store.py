"""PrototypeStore: class prototypes in a FAISS index, with their label map and class statistics.

Each class the store knows is summarised by one prototype (its mean embedding) or by up to
``prototypes_per_class`` prototypes (FAISS k-means centroids).  The prototypes live in a FAISS
index built from a factory string (``"Flat"``, ``"HNSW32"``, ``"IVF256,Flat"``, ...); each
prototype has an int64 FAISS id (IVF indexes store ids themselves, other types are wrapped in
an ``IndexIDMap``) and the store maps those ids to the user's integer labels.  Queries are
answered by nearest-prototype search.

Metrics
    ``"cosine"``: embeddings, prototypes and queries are L2-normalised and the index uses
    inner product, so every score is a cosine similarity (higher is closer).
    ``"l2"``: raw embeddings, ``METRIC_L2``; scores are squared Euclidean distances, as FAISS
    reports them (lower is closer).

Prototypes
    ``prototypes_per_class=1``: the prototype is the class mean, kept exact across calls to
    ``add`` from a running per-class sum and count (for cosine, the mean of the normalised
    embeddings, normalised again).
    ``prototypes_per_class=k>1``: FAISS k-means (spherical for cosine) over the class's
    embeddings; a class with at most k embeddings keeps one prototype per embedding.  ``add``
    on a known class re-clusters the class's current prototypes, each weighted by the number
    of embeddings it summarises, together with the new embeddings, so memory stays bounded at
    k prototypes per class; the result approximates, but is not always equal to, k-means over
    every embedding ever seen.  The per-class sum and count stay exact either way.

Trainable indexes (IVF, PQ, SQ, ...)
    They need vectors to train on.  Until the store holds ``min_train_size`` prototypes (by
    default the least FAISS accepts: ``nlist`` for IVF, ``2**nbits`` codebook entries for PQ),
    the index stays empty and searches run exactly over the prototypes held (``exact_fallback``
    is True).  When enough prototypes exist, the next mutation trains the index on all of them
    and fills it; later prototypes are added without retraining.  ``train()`` trains (or
    retrains) on demand and raises ``ValueError`` when there are too few prototypes.  FAISS
    suggests about 39 training vectors per IVF list: pass a larger ``min_train_size`` or call
    ``train()`` again once the store has grown for a better quantizer.

Removal
    Replacing or removing prototypes uses ``remove_ids`` where FAISS keeps ids and vectors
    aligned (IVF, and flat-code indexes such as Flat, PQ, SQ); other types (HNSW) are rebuilt
    from the prototypes held.  Once the index is trained, adding prototypes of new classes
    never rebuilds or retrains it.

Thread safety
    One re-entrant lock guards every read and write, so ``classify`` in one thread while
    another thread calls ``add`` sees either the old or the new store, never a mixture.

Persistence
    ``save(dir)`` writes ``index.faiss`` (``faiss.write_index``), the prototype and class
    arrays as ``.npy`` files and ``store.json`` (format name, version, parameters and a
    sha256 checksum of every file) into a temporary directory next to ``dir``, then renames
    it into place.  ``load`` verifies every checksum (one streaming read of each file) before
    trusting anything.  ``load(dir, mmap=True)`` memory-maps the index and the arrays so a
    store larger than RAM can answer queries; such a store is read-only.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from siamcl._files import fsync_path, sha256_file

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "METRICS", "PrototypeStore"]

FORMAT_NAME = "siamcl.PrototypeStore"
FORMAT_VERSION = 1
METRICS = {"cosine": faiss.METRIC_INNER_PRODUCT, "l2": faiss.METRIC_L2}

_META_FILE = "store.json"
_INDEX_FILE = "index.faiss"
_ARRAY_FILES = {
    "vectors": "prototypes.npy",
    "ids": "prototype_ids.npy",
    "labels": "prototype_labels.npy",
    "weights": "prototype_weights.npy",
    "class_labels": "class_labels.npy",
    "class_sums": "class_sums.npy",
    "class_counts": "class_counts.npy",
}
_ARRAY_DTYPES = {
    "vectors": np.float32,
    "ids": np.int64,
    "labels": np.int64,
    "weights": np.float64,
    "class_labels": np.int64,
    "class_sums": np.float64,
    "class_counts": np.int64,
}
_INT64_MIN, _INT64_MAX = np.iinfo(np.int64).min, np.iinfo(np.int64).max
_FLOAT_EXACT = 2.0**53  # floats hold every integer up to here, and only some beyond
_SCORE_CHUNK = 1 << 22  # query-by-prototype scores computed at once by class_scores
_KMEANS_ITERATIONS = 20


@dataclass(frozen=True)
class _Contents:
    """Everything the store knows, as arrays; replaced whole by each successful mutation."""

    vectors: np.ndarray  # [P, dim] float32 prototypes as indexed (unit length for cosine)
    ids: np.ndarray  # [P] int64 FAISS ids, strictly increasing
    labels: np.ndarray  # [P] int64 user label of each prototype
    weights: np.ndarray  # [P] float64 number of embeddings each prototype summarises
    class_labels: np.ndarray  # [C] int64 sorted user labels
    class_sums: np.ndarray  # [C, dim] float64 sum of the (normalised, for cosine) embeddings
    class_counts: np.ndarray  # [C] int64 embeddings seen per class

    @classmethod
    def empty(cls, dim: int) -> _Contents:
        return cls(
            vectors=np.empty((0, dim), np.float32),
            ids=np.empty(0, np.int64),
            labels=np.empty(0, np.int64),
            weights=np.empty(0, np.float64),
            class_labels=np.empty(0, np.int64),
            class_sums=np.empty((0, dim), np.float64),
            class_counts=np.empty(0, np.int64),
        )

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, name).nbytes for name in _ARRAY_FILES)


class PrototypeStore:
    """Per-class prototypes in a FAISS index, searchable by the user's integer labels.

    Parameters
    ----------
    dim : embedding dimension.
    metric : ``"cosine"`` (inner product on L2-normalised vectors) or ``"l2"``.
    index : FAISS index factory string, e.g. ``"Flat"``, ``"HNSW32"``, ``"IVF256,PQ16"``.
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
        index: str = "Flat",
        prototypes_per_class: int = 1,
        vote_k: int = 1,
        nprobe: int | None = None,
        ef_search: int | None = None,
        seed: int = 0,
        min_train_size: int | None = None,
    ) -> None:
        self._dim = _positive_int(dim, "dim")
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; expected one of {sorted(METRICS)}")
        self._metric = metric
        if not isinstance(index, str):
            raise TypeError(f"index must be a FAISS factory string, got {type(index).__name__}")
        if index.strip().upper().startswith("IDMAP"):
            raise ValueError(
                f"index {index!r}: give the index without 'IDMap', the store adds its own id map"
            )
        self._spec = index
        self._prototypes_per_class = _positive_int(prototypes_per_class, "prototypes_per_class")
        self._vote_k = _positive_int(vote_k, "vote_k")
        self._seed = _integer(seed, "seed")
        self._index = self._new_index()
        self._removable = _removes_ids_safely(self._index)
        self._faiss_defaults = {
            "nprobe": _read_nprobe(self._index),
            "efSearch": _read_ef_search(self._index),
        }
        self._nprobe = None if nprobe is None else _positive_int(nprobe, "nprobe")
        self._ef_search = None if ef_search is None else _positive_int(ef_search, "ef_search")
        self._apply_search_params(self._index)
        least = _least_training_size(self._index)
        if min_train_size is None:
            self._min_train_size = least
        else:
            self._min_train_size = max(_positive_int(min_train_size, "min_train_size"), least)
        self._next_training_attempt = self._min_train_size
        self._training_error: str | None = None
        self._contents = _Contents.empty(self._dim)
        self._next_id = 0
        self._index_nbytes: int | None = None
        self._read_only = False
        self._memory_mapped = False
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
    def index(self) -> str:
        """The FAISS factory string this store was built with."""
        return self._spec

    @property
    def prototypes_per_class(self) -> int:
        return self._prototypes_per_class

    @property
    def seed(self) -> int:
        return self._seed

    @property
    def min_train_size(self) -> int:
        """Prototypes needed before a trainable index is trained automatically."""
        return self._min_train_size

    @property
    def vote_k(self) -> int:
        return self._vote_k

    @vote_k.setter
    def vote_k(self, value: int) -> None:
        self._vote_k = _positive_int(value, "vote_k")

    @property
    def nprobe(self) -> int | None:
        return self._nprobe

    @nprobe.setter
    def nprobe(self, value: int | None) -> None:
        with self._lock:
            old = self._nprobe
            self._nprobe = None if value is None else _positive_int(value, "nprobe")
            try:
                self._apply_search_params(self._index)
            except ValueError:
                self._nprobe = old
                raise

    @property
    def ef_search(self) -> int | None:
        return self._ef_search

    @ef_search.setter
    def ef_search(self, value: int | None) -> None:
        with self._lock:
            old = self._ef_search
            self._ef_search = None if value is None else _positive_int(value, "ef_search")
            try:
                self._apply_search_params(self._index)
            except ValueError:
                self._ef_search = old
                raise

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
        return bool(self._index.is_trained)

    @property
    def exact_fallback(self) -> bool:
        """True while an untrained index leaves searches to exact search over the prototypes."""
        return not self._index.is_trained

    @property
    def training_error(self) -> str | None:
        """FAISS's message if automatic training failed (the store then keeps exact search)."""
        return self._training_error

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
        return self._index

    @property
    def index_nbytes(self) -> int:
        """Size of the FAISS index as ``faiss.write_index`` serialises it."""
        with self._lock:
            if self._index_nbytes is None:
                self._index_nbytes = _serialized_size(self._index)
            return self._index_nbytes

    @property
    def nbytes(self) -> int:
        """Bytes held: FAISS index, prototype copies and label map, per-class statistics.

        The store keeps a float32 copy of every prototype besides the index, because exact
        search before training, rebuilding after removal and ``class_scores`` need the
        uncompressed vectors.
        """
        with self._lock:
            return self.index_nbytes + self._contents.nbytes

    def __len__(self) -> int:
        return len(self._contents.class_labels)

    def __contains__(self, label: object) -> bool:
        try:
            value = _as_label(label)
        except (TypeError, ValueError):
            return False
        contents = self._contents
        pos = np.searchsorted(contents.class_labels, value)
        return bool(pos < len(contents.class_labels) and contents.class_labels[pos] == value)

    def __repr__(self) -> str:
        return (
            f"PrototypeStore(dim={self._dim}, metric={self._metric!r}, index={self._spec!r}, "
            f"prototypes_per_class={self._prototypes_per_class}, vote_k={self._vote_k}, "
            f"nprobe={self._nprobe}, ef_search={self._ef_search}, seed={self._seed}) "
            f"with {len(self)} classes, {self.n_prototypes} prototypes"
        )

    def prototypes(self, label: int | None = None) -> np.ndarray:
        """Prototypes as indexed, ``[P, dim]`` float32: all (rows aligned with
        ``prototype_labels``) or those of one class."""
        with self._lock:
            contents = self._contents
            if label is None:
                return np.array(contents.vectors)
            value = _as_label(label)
            if value not in self:
                raise ValueError(f"unknown class label {value}")
            return np.array(contents.vectors[contents.labels == value])

    # ------------------------------------------------------------------ mutations
    def add(self, embeddings: Any, labels: Any) -> PrototypeStore:
        """Add embeddings to their classes (new or known) and refresh those prototypes."""
        x, y = self._check_batch(embeddings, labels)
        with self._lock:
            self._check_writable()
            self._commit(*self._merged(x, y, replace_classes=False))
        return self

    def class_statistics(
        self, embeddings: Any, labels: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-class ``(labels, sums, counts)`` of a batch, as :meth:`add` would count it
        (cosine sums add normalised rows). Statistics of parts of the data, summed, can be
        added with :meth:`add_statistics`: how processes of a distributed job build one store.
        """
        x, y = self._check_batch(embeddings, labels)
        _, _, classes, sums, counts = _class_sums(x, y)
        return classes, sums, counts

    def add_statistics(self, labels: Any, sums: Any, counts: Any) -> PrototypeStore:
        """Add per-class embedding sums and counts (see :meth:`class_statistics`) as
        :meth:`add` adds embeddings; one prototype per class only (k-means needs the points)."""
        if self._prototypes_per_class != 1:
            raise ValueError(
                "add_statistics needs prototypes_per_class=1: k-means prototypes are "
                "computed from the embeddings themselves, not their sums"
            )
        y = _as_labels(labels)
        sums = np.asarray(sums, dtype=np.float64)
        counts = np.asarray(counts, dtype=np.int64)
        if sums.shape != (len(y), self._dim) or counts.shape != (len(y),):
            raise ValueError(
                f"expected sums [{len(y)}, {self._dim}] and counts [{len(y)}] for {len(y)} "
                f"labels, got {sums.shape} and {counts.shape}"
            )
        if len(np.unique(y)) != len(y) or not np.all(counts > 0):
            raise ValueError("statistics need distinct labels and positive counts")
        with self._lock:
            self._check_writable()
            self._commit(*self._merged(None, y, False, statistics=(y, sums, counts)))
        return self

    def update(self, embeddings: Any, labels: Any) -> PrototypeStore:
        """Replace the prototypes and statistics of the classes in ``labels`` by ones computed
        from ``embeddings`` alone (after the encoder changed); unknown classes are added."""
        x, y = self._check_batch(embeddings, labels)
        with self._lock:
            self._check_writable()
            self._commit(*self._merged(x, y, replace_classes=True))
        return self

    def remove_class(self, label: int) -> PrototypeStore:
        """Forget one class: its prototypes leave the index, its statistics are dropped."""
        value = _as_label(label)
        with self._lock:
            self._check_writable()
            if value not in self:
                raise ValueError(f"cannot remove class {value}: the store holds no such class")
            old = self._contents
            drop = old.labels == value
            keep_class = old.class_labels != value
            contents = replace(
                old,
                vectors=old.vectors[~drop],
                ids=old.ids[~drop],
                labels=old.labels[~drop],
                weights=old.weights[~drop],
                class_labels=old.class_labels[keep_class],
                class_sums=old.class_sums[keep_class],
                class_counts=old.class_counts[keep_class],
            )
            self._commit(contents, old.ids[drop], np.empty((0, self._dim), np.float32))
        return self

    def clear(self) -> PrototypeStore:
        """Forget every class, keeping the parameters (and an already trained index)."""
        with self._lock:
            self._check_writable()
            self._commit(
                _Contents.empty(self._dim),
                self._contents.ids,
                np.empty((0, self._dim), np.float32),
            )
        return self

    def train(self) -> PrototypeStore:
        """Train (or retrain) the index on every prototype held, then refill it.

        Raises ValueError when the store holds fewer prototypes than the index needs.
        Indexes that need no training (Flat, HNSW) are rebuilt unchanged.
        """
        with self._lock:
            self._check_writable()
            held = self.n_prototypes
            if held < self._min_train_size:
                raise ValueError(
                    f"index {self._spec!r} needs at least {self._min_train_size} vectors to "
                    f"train; the store holds {held} prototypes"
                )
            try:
                index = self._filled_index(self._contents, train=True)
            except RuntimeError as error:
                raise ValueError(f"FAISS could not train index {self._spec!r}: {error}") from None
            self._index, self._index_nbytes, self._training_error = index, None, None
        return self

    # ------------------------------------------------------------------ queries
    def search(self, queries: Any, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest prototypes of each query.

        Returns ``(scores [N, k] float32, labels [N, k] int64)``, nearest first: cosine
        similarities for ``metric="cosine"`` (higher is closer), squared L2 distances for
        ``metric="l2"`` (lower is closer).  Approximate indexes may miss true neighbours;
        queries for which the index finds fewer than ``k`` are answered by exact search.
        """
        k = _positive_int(k, "k")
        q = self._check_queries(queries)
        with self._lock:
            self._check_not_empty()
            if k > self.n_prototypes:
                raise ValueError(f"k={k} exceeds the {self.n_prototypes} prototypes held")
            scores, rows = self._nearest(q, k)
            return scores, self._contents.labels[rows]

    def classify(self, queries: Any) -> np.ndarray:
        """Label of the nearest prototype, or the majority label among the ``vote_k``
        nearest prototypes (ties go to the tied label with the nearest prototype)."""
        q = self._check_queries(queries)
        with self._lock:
            self._check_not_empty()
            k = min(self._vote_k, self.n_prototypes)
            _, rows = self._nearest(q, k)
            labels = self._contents.labels[rows]
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
        q = self._check_queries(queries)
        with self._lock:
            self._check_not_empty()
            contents = self._contents
        order = np.argsort(contents.labels, kind="stable")
        sorted_labels = contents.labels[order]
        starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
        vectors = contents.vectors  # read in place: it may be memory-mapped
        if self._metric == "l2":
            squared_norms = _squared_norms(vectors)
        out = np.empty((len(q), len(starts)), np.float32)
        step = max(1, _SCORE_CHUNK // max(1, len(vectors)))
        for begin in range(0, len(q), step):
            block = q[begin : begin + step]
            scores = block @ vectors.T
            if self._metric == "l2":
                scores = np.minimum(2 * scores - _squared_norms(block)[:, None] - squared_norms, 0)
            out[begin : begin + step] = np.maximum.reduceat(scores[:, order], starts, axis=1)
        return sorted_labels[starts].copy(), out

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | os.PathLike) -> Path:
        """Write the store to ``directory`` atomically (temporary directory, fsync, rename).

        An existing store directory is replaced; any other non-empty directory is refused.
        """
        target = Path(directory)
        if target.exists() and not target.is_dir():
            raise ValueError(f"cannot save store to {target}: it is a file, not a directory")
        if target.is_dir() and any(target.iterdir()) and not (target / _META_FILE).is_file():
            raise ValueError(
                f"refusing to replace {target}: it is a non-empty directory without {_META_FILE}"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
            try:
                self._write(staging)
                _swap_into_place(staging, target)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
        return target

    @classmethod
    def load(cls, directory: str | os.PathLike, mmap: bool = False) -> PrototypeStore:
        """Read a store written by ``save``.

        ``mmap=True`` memory-maps the index (``IO_FLAG_MMAP_IFC`` or ``IO_FLAG_MMAP`` with
        ``IO_FLAG_READ_ONLY``, whichever the index type supports) and the arrays, so a store
        larger than RAM can serve queries; structures FAISS rebuilds on reading (HNSW links,
        PQ codes, the id map) still live in RAM.  Where no mapping works the index is read
        normally and ``mmap_note`` says why.  A memory-mapped store is read-only.
        """
        source = Path(directory)
        if not source.exists():
            raise FileNotFoundError(f"no saved store at {source}")
        if not source.is_dir():
            raise FileNotFoundError(f"{source} is not a directory holding a saved store")
        meta = _read_meta(source)
        params = meta["params"]
        try:
            store = cls(
                dim=meta["dim"],
                metric=meta["metric"],
                index=meta["index"],
                prototypes_per_class=params["prototypes_per_class"],
                vote_k=params["vote_k"],
                nprobe=params["nprobe"],
                ef_search=params["ef_search"],
                seed=params["seed"],
                min_train_size=params["min_train_size"],
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{source / _META_FILE} holds invalid parameters: {error}") from None
        arrays = {
            name: _read_array(source / file, _ARRAY_DTYPES[name], mmap)
            for name, file in _ARRAY_FILES.items()
        }
        contents = _Contents(**arrays)
        _check_contents(contents, store.dim, source)
        index, mapped, note = _read_index(source / _INDEX_FILE, mmap)
        _check_index(index, store, contents, source)
        store._apply_search_params(index)
        store._index = index
        store._removable = _removes_ids_safely(index)
        store._contents = contents
        next_id = meta["next_id"]
        in_use = int(contents.ids[-1]) if len(contents.ids) else -1
        if not isinstance(next_id, int) or isinstance(next_id, bool) or next_id <= in_use:
            raise ValueError(
                f"{source / _META_FILE}: next_id {next_id!r} is not above the ids in use"
            )
        store._next_id = next_id
        store._index_nbytes = (source / _INDEX_FILE).stat().st_size
        store._read_only = bool(mmap)
        store._memory_mapped = mapped
        store._mmap_note = note
        return store

    def __getstate__(self) -> dict:
        with self._lock:
            state = {key: value for key, value in self.__dict__.items() if key != "_lock"}
            state["_index"] = faiss.serialize_index(self._index)
            state["_contents"] = _Contents(
                **{name: np.array(getattr(self._contents, name)) for name in _ARRAY_FILES}
            )
        state.update(_read_only=False, _memory_mapped=False, _mmap_note=None)
        return state

    def __setstate__(self, state: dict) -> None:
        state = dict(state)
        state["_index"] = faiss.deserialize_index(state["_index"])
        self.__dict__.update(state)
        self._lock = threading.RLock()
        self._apply_search_params(self._index)

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

    def _check_batch(self, embeddings: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
        x = self._prepared(_as_embeddings(embeddings, self._dim, "embeddings"), "embeddings")
        y = _as_labels(labels)
        if len(x) != len(y):
            raise ValueError(f"got {len(x)} embeddings but {len(y)} labels")
        if len(x) == 0:
            raise ValueError("no embeddings given: embeddings and labels are empty")
        return x, y

    def _check_queries(self, queries: Any) -> np.ndarray:
        return self._prepared(_as_embeddings(queries, self._dim, "queries"), "queries")

    def _prepared(self, x: np.ndarray, name: str) -> np.ndarray:
        """Normalise rows for cosine (rejecting zero vectors, which have no direction)."""
        if self._metric == "cosine" and len(x):
            norms = np.linalg.norm(x, axis=1)
            if not np.all(norms > 0):
                raise ValueError(f"{name} row {int(np.argmin(norms))} is all zeros")
            faiss.normalize_L2(x)
        return x

    def _merged(
        self,
        x: np.ndarray | None,
        y: np.ndarray,
        replace_classes: bool,
        statistics: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    ) -> tuple[_Contents, np.ndarray, np.ndarray]:
        """The contents after adding (or replacing) the batch's classes, the FAISS ids to
        remove and the new prototypes; nothing is changed here. ``statistics`` (labels,
        sums, counts) stand in for ``x`` when there is one prototype per class."""
        old = self._contents
        if statistics is not None:
            order = np.argsort(statistics[0], kind="stable")
            batch_classes, batch_sums, batch_counts = (a[order] for a in statistics)
        else:
            order, starts, batch_classes, batch_sums, batch_counts = _class_sums(x, y)

        pos = np.searchsorted(old.class_labels, batch_classes)
        known = pos < len(old.class_labels)
        known[known] = old.class_labels[pos[known]] == batch_classes[known]
        # new classes are inserted in label order (one copy); known ones are updated on it
        slots = pos[~known]
        class_labels = np.insert(old.class_labels, slots, batch_classes[~known])
        sums = np.insert(old.class_sums, slots, batch_sums[~known], axis=0)
        counts = np.insert(old.class_counts, slots, batch_counts[~known])
        at = np.searchsorted(class_labels, batch_classes)[known]
        if replace_classes:
            sums[at], counts[at] = batch_sums[known], batch_counts[known]
        else:
            sums[at] += batch_sums[known]
            counts[at] += batch_counts[known]

        drop = np.isin(old.labels, batch_classes[known])
        kept = slice(None) if not drop.any() else ~drop
        if self._prototypes_per_class == 1:
            at = np.searchsorted(class_labels, batch_classes)
            added = (sums[at] / counts[at, None]).astype(np.float32)
            added_labels, added_weights = batch_classes, counts[at].astype(np.float64)
        else:
            members = np.split(order, starts[1:])
            held = None if replace_classes else (old.vectors[drop], old.weights[drop])
            added, added_labels, added_weights = self._clustered_classes(
                x, batch_classes, members, old.labels[drop], held
            )
        if self._metric == "cosine":
            added = _unit_rows(added)
        added_ids = np.arange(self._next_id, self._next_id + len(added), dtype=np.int64)
        contents = _Contents(
            vectors=np.concatenate([old.vectors[kept], added]),
            ids=np.concatenate([old.ids[kept], added_ids]),
            labels=np.concatenate([old.labels[kept], added_labels]),
            weights=np.concatenate([old.weights[kept], added_weights]),
            class_labels=class_labels,
            class_sums=sums,
            class_counts=counts,
        )
        return contents, old.ids[drop], added

    def _clustered_classes(
        self,
        x: np.ndarray,
        classes: np.ndarray,
        members: list[np.ndarray],
        held_labels: np.ndarray,
        held: tuple[np.ndarray, np.ndarray] | None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Up to k prototypes for each class, from its new embeddings and (when ``held`` is
        given) its current prototypes weighted by the embeddings they summarise."""
        vectors, labels, weights = [], [], []
        for label, rows in zip(classes, members):
            points, mass = x[rows], np.ones(len(rows))
            if held is not None:
                mine = held_labels == label
                points = np.concatenate([np.asarray(held[0][mine]), points])
                mass = np.concatenate([np.asarray(held[1][mine]), mass])
            centroids, centroid_mass = self._clustered(points, mass)
            vectors.append(centroids)
            labels.append(np.full(len(centroids), label, np.int64))
            weights.append(centroid_mass)
        return np.concatenate(vectors), np.concatenate(labels), np.concatenate(weights)

    def _clustered(self, points: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Up to k weighted centroids of ``points`` and the weight each one summarises."""
        k = self._prototypes_per_class
        if len(points) <= k:
            return points.astype(np.float32), weights.astype(np.float64)
        points = np.ascontiguousarray(points, dtype=np.float32)
        kmeans = faiss.Kmeans(
            self._dim,
            k,
            niter=_KMEANS_ITERATIONS,
            seed=self._seed,
            spherical=self._metric == "cosine",
            min_points_per_centroid=1,
            max_points_per_centroid=len(points),
            verbose=False,
        )
        kmeans.train(points, weights=weights.astype(np.float32))
        _, assignment = kmeans.index.search(points, 1)
        assignment = assignment[:, 0]
        mass = np.bincount(assignment, weights=weights, minlength=k)
        sums = np.zeros((k, self._dim))
        np.add.at(sums, assignment, points * weights[:, None])
        used = mass > 0
        return (sums[used] / mass[used, None]).astype(np.float32), mass[used]

    def _commit(self, contents: _Contents, removed_ids: np.ndarray, added: np.ndarray) -> None:
        """Bring the index in line with ``contents``, then make ``contents`` current."""
        index = self._index
        held = len(contents.ids)
        if not index.is_trained:
            if held >= self._next_training_attempt:
                try:
                    index = self._filled_index(contents, train=True)
                    self._training_error = None
                except RuntimeError as error:
                    self._training_error = str(error)
                    self._next_training_attempt = 2 * held
        elif len(removed_ids) and not self._removable:
            index = self._filled_index(contents, train=False)
        else:
            added_ids = contents.ids[held - len(added) :]
            try:
                if len(removed_ids):
                    index.remove_ids(np.ascontiguousarray(removed_ids))
                if len(added):
                    index.add_with_ids(added, added_ids)
            except RuntimeError:
                self._index = self._filled_index(self._contents, train=False)
                raise
        self._index, self._contents, self._index_nbytes = index, contents, None
        self._next_id += len(added)

    def _filled_index(self, contents: _Contents, train: bool) -> faiss.Index:
        """A new index holding ``contents``, trained on them when ``train`` (or when the
        current index is trained) and they are enough; left untrained otherwise."""
        index = self._new_index()
        wanted = train or self._index.is_trained
        if not index.is_trained and wanted and len(contents.ids) >= self._min_train_size:
            index.train(np.ascontiguousarray(contents.vectors))
        if index.is_trained and len(contents.ids):
            index.add_with_ids(np.ascontiguousarray(contents.vectors), contents.ids)
        self._apply_search_params(index)
        return index

    def _new_index(self) -> faiss.Index:
        """An empty index from the factory string, able to store int64 ids."""
        try:
            index = faiss.index_factory(self._dim, self._spec, METRICS[self._metric])
            if not _stores_ids(index):
                index = faiss.index_factory(self._dim, f"IDMap,{self._spec}", index.metric_type)
            return index
        except RuntimeError as error:
            reason = str(error).strip().splitlines()[-1]
            raise ValueError(
                f"unknown or invalid FAISS index factory string {self._spec!r} for dim "
                f"{self._dim}: {reason}"
            ) from None

    def _apply_search_params(self, index: faiss.Index) -> None:
        space = faiss.ParameterSpace()
        for name, value, needs in (
            ("nprobe", self._nprobe, "an IVF index"),
            ("efSearch", self._ef_search, "an HNSW index or IVF quantizer"),
        ):
            if value is None:
                value = self._faiss_defaults[name]
                if value is None:
                    continue
            try:
                space.set_index_parameter(index, name, value)
            except RuntimeError:
                raise ValueError(
                    f"{name} applies to {needs}; index {self._spec!r} has none"
                ) from None

    def _nearest(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Scores and row positions (into the contents arrays) of the k nearest prototypes."""
        contents = self._contents
        metric = METRICS[self._metric]
        if not self._index.is_trained:
            return faiss.knn(q, contents.vectors, k, metric)
        scores, ids = self._index.search(q, k)
        missing = np.any(ids < 0, axis=1)
        rows = np.searchsorted(contents.ids, ids)
        if missing.any():
            scores[missing], rows[missing] = faiss.knn(q[missing], contents.vectors, k, metric)
        return scores, rows

    def _write(self, staging: Path) -> None:
        contents = self._contents
        checksums = {}
        for name, file in _ARRAY_FILES.items():
            with open(staging / file, "wb") as handle:
                np.save(handle, np.asarray(getattr(contents, name)), allow_pickle=False)
                handle.flush()
                os.fsync(handle.fileno())
            checksums[file] = sha256_file(staging / file)
        faiss.write_index(self._index, str(staging / _INDEX_FILE))
        fsync_path(staging / _INDEX_FILE)
        checksums[_INDEX_FILE] = sha256_file(staging / _INDEX_FILE)
        meta = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "dim": self._dim,
            "metric": self._metric,
            "index": self._spec,
            "params": {
                "prototypes_per_class": self._prototypes_per_class,
                "vote_k": self._vote_k,
                "nprobe": self._nprobe,
                "ef_search": self._ef_search,
                "seed": self._seed,
                "min_train_size": self._min_train_size,
            },
            "next_id": self._next_id,
            "n_classes": len(contents.class_labels),
            "n_prototypes": len(contents.ids),
            "trained": bool(self._index.is_trained),
            "faiss_version": faiss.__version__,
            "checksums": checksums,
        }
        with open(staging / _META_FILE, "w") as handle:
            json.dump(meta, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        fsync_path(staging)


# ---------------------------------------------------------------------- input validation
def _positive_int(value: Any, name: str) -> int:
    number = _integer(value, name)
    if number < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return number


def _integer(value: Any, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    return int(value)


def _to_numpy(values: Any) -> Any:
    """Torch tensors to numpy without importing torch; anything else unchanged."""
    if hasattr(values, "detach") and hasattr(values, "cpu"):
        values = values.detach().cpu()
        if values.is_floating_point():
            values = values.float()
        return values.numpy()
    return values


def _as_embeddings(values: Any, dim: int, name: str) -> np.ndarray:
    """A C-contiguous float32 copy of a finite ``[N, dim]`` array."""
    array = np.asarray(_to_numpy(values))
    if array.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be real numbers, got dtype {array.dtype}")
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [N, dim], got shape {array.shape}")
    if array.shape[1] != dim:
        raise ValueError(
            f"{name} have dimension {array.shape[1]} but the store's dimension is {dim}"
        )
    array = np.array(array, dtype=np.float32, order="C", copy=True)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contain NaN or infinite values (after conversion to float32)")
    return array


def _as_labels(values: Any) -> np.ndarray:
    """A 1-D int64 array of integer labels; floats are accepted when they are whole."""
    raw = _to_numpy(values)
    array = np.asarray(raw)
    if array.dtype.kind == "O" or (array.dtype.kind == "f" and not isinstance(raw, np.ndarray)):
        array = np.asarray(raw, dtype=object)
    if array.ndim != 1:
        raise ValueError(f"labels must be a 1-D array, got shape {array.shape}")
    kind = array.dtype.kind
    if kind == "O":
        return np.array([_as_label(value) for value in array], dtype=np.int64)
    if kind == "i":
        return array.astype(np.int64)
    if kind == "u":
        if array.size and array.max() > _INT64_MAX:
            raise ValueError(f"label {array.max()} does not fit in int64")
        return array.astype(np.int64)
    if kind == "f":
        if not np.isfinite(array).all() or np.any(array != np.round(array)):
            bad = array[~np.isfinite(array) | (array != np.round(array))][0]
            raise TypeError(f"labels must be integers, got {bad!r}")
        if array.size and np.abs(array).max() > _FLOAT_EXACT:
            raise ValueError(
                f"labels given as floats must be within +-2**53 to be exact; got "
                f"{np.abs(array).max():g}: pass integer labels"
            )
        return array.astype(np.int64)
    raise TypeError(f"labels must be integers, got dtype {array.dtype}")


def _as_label(value: Any) -> int:
    """One integer label (a Python or numpy integer, or a whole float) as int."""
    value = _to_numpy(value)
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"labels must be integers, got {value!r}")
    whole_float = (
        isinstance(value, (float, np.floating)) and np.isfinite(value) and value == int(value)
    )
    if not (isinstance(value, (int, np.integer)) or whole_float):
        raise TypeError(f"labels must be integers, got {value!r}")
    if whole_float and abs(value) > _FLOAT_EXACT:
        raise ValueError(f"label {value!r} given as a float is beyond 2**53: pass an integer")
    number = int(value)
    if not _INT64_MIN <= number <= _INT64_MAX:
        raise ValueError(f"label {number} does not fit in int64")
    return number


def _squared_norms(vectors: np.ndarray, rows_at_once: int = 1 << 16) -> np.ndarray:
    """Squared L2 norm of each row (float32), a block of rows at a time."""
    out = np.empty(len(vectors), np.float32)
    for begin in range(0, len(vectors), rows_at_once):
        block = np.asarray(vectors[begin : begin + rows_at_once], dtype=np.float64)
        out[begin : begin + rows_at_once] = np.einsum("ij,ij->i", block, block)
    return out


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    faiss.normalize_L2(vectors)
    return vectors


# ---------------------------------------------------------------------- FAISS introspection
def _ivf(index: faiss.Index) -> faiss.IndexIVF | None:
    try:
        return faiss.downcast_index(faiss.extract_index_ivf(index))
    except RuntimeError:
        return None


def _innermost(index: faiss.Index) -> faiss.Index:
    index = faiss.downcast_index(index)
    while isinstance(index, (faiss.IndexIDMap, faiss.IndexPreTransform)):
        index = faiss.downcast_index(index.index)
    return index


def _read_nprobe(index: faiss.Index) -> int | None:
    ivf = _ivf(index)
    return None if ivf is None else int(ivf.nprobe)


def _read_ef_search(index: faiss.Index) -> int | None:
    ivf = _ivf(index)
    graph = _innermost(faiss.downcast_index(ivf.quantizer) if ivf is not None else index)
    return int(graph.hnsw.efSearch) if hasattr(graph, "hnsw") else None


def _least_training_size(index: faiss.Index) -> int:
    """The fewest vectors FAISS trains this index on: nlist for IVF, 2**nbits for PQ."""
    if index.is_trained:
        return 1
    least = 1
    ivf = _ivf(index)
    if ivf is not None:
        least = max(least, int(ivf.nlist))
    for part in (ivf, _innermost(index)):
        pq = getattr(part, "pq", None)
        if pq is not None:
            least = max(least, int(pq.ksub))
    return least


def _stores_ids(index: faiss.Index) -> bool:
    """IVF indexes (possibly behind a pre-transform) keep the ids they are given."""
    index = faiss.downcast_index(index)
    while isinstance(index, faiss.IndexPreTransform):
        index = faiss.downcast_index(index.index)
    return isinstance(index, faiss.IndexIVF)


def _removes_ids_safely(index: faiss.Index) -> bool:
    """Whether ``remove_ids`` keeps ids and vectors aligned: IVF indexes (which store ids)
    and id maps over flat-code indexes (which renumber on removal).  ``IndexIDMap`` over
    anything else either cannot remove (HNSW) or would desynchronise; those are rebuilt."""
    if _stores_ids(index):
        return True
    index = faiss.downcast_index(index)
    return isinstance(index, faiss.IndexIDMap) and isinstance(
        _innermost(index), faiss.IndexFlatCodes
    )


def _serialized_size(index: faiss.Index) -> int:
    """Bytes ``faiss.write_index`` produces, counted without holding a copy."""
    total = 0

    def count(chunk: bytes) -> int:
        nonlocal total
        total += len(chunk)
        return len(chunk)

    writer = faiss.PyCallbackIOWriter(count, 1 << 20)
    faiss.write_index(index, writer)
    del writer  # flushes the last chunk
    return total


def _class_sums(
    x: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows grouped by label: the stable sort order, each group's start in it, and each
    class's label, float64 sum and count (classes in increasing label order)."""
    order = np.argsort(y, kind="stable")
    sorted_labels = y[order]
    starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
    counts = np.diff(np.r_[starts, len(y)]).astype(np.int64)
    ordered = x[order].astype(np.float64)
    singletons = len(starts) == len(y)  # reduceat is slow on one-row groups
    sums = ordered if singletons else np.add.reduceat(ordered, starts, axis=0)
    return order, starts, sorted_labels[starts], sums, counts


# ---------------------------------------------------------------------- files


def _swap_into_place(staging: Path, target: Path) -> None:
    """Rename ``staging`` to ``target``; an existing ``target`` is moved aside first and
    deleted only once the new directory is in place (restored if the rename fails)."""
    retired = None
    if target.exists():
        retired = target.with_name(f".{target.name}.old-{uuid.uuid4().hex}")
        os.rename(target, retired)
    try:
        os.rename(staging, target)
    except BaseException:
        if retired is not None:
            os.rename(retired, target)
        raise
    fsync_path(target.parent)
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)


def _read_meta(source: Path) -> dict:
    path = source / _META_FILE
    if not path.is_file():
        raise ValueError(f"{source} is not a saved PrototypeStore: {_META_FILE} is missing")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is corrupt: {error}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ValueError(f"{path} is not a {FORMAT_NAME} file (format is {found!r})")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"{path} has an invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{path} has format version {version}, newer than this siamcl reads "
            f"({FORMAT_VERSION}); upgrade siamcl"
        )
    for key in ("dim", "metric", "index", "params", "next_id", "checksums"):
        if key not in meta:
            raise ValueError(f"{path} is corrupt: key {key!r} is missing")
    checksums = meta["checksums"]
    if not isinstance(checksums, dict) or not isinstance(meta["params"], dict):
        problem = "'checksums' and 'params' must be objects"  # a malformed file: ValueError
        raise ValueError(f"{path} is corrupt: {problem}")  # noqa: TRY004
    for file in [_INDEX_FILE, *_ARRAY_FILES.values()]:
        if not (source / file).is_file():
            raise ValueError(f"{source} is incomplete: {file} is missing")
        if checksums.get(file) != sha256_file(source / file):
            raise ValueError(f"{source / file} does not match its checksum in {_META_FILE}")
    return meta


def _read_array(path: Path, dtype: type, mmap: bool) -> np.ndarray:
    try:
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise ValueError(f"{path} is not a readable array: {error}") from None
    if array.dtype != dtype:
        raise ValueError(f"{path} holds {array.dtype}, expected {np.dtype(dtype)}")
    return array


def _check_contents(contents: _Contents, dim: int, source: Path) -> None:
    n, c = len(contents.ids), len(contents.class_labels)
    shapes = {
        "vectors": (n, dim),
        "labels": (n,),
        "weights": (n,),
        "class_sums": (c, dim),
        "class_counts": (c,),
    }
    for name, shape in shapes.items():
        if getattr(contents, name).shape != shape:
            raise ValueError(
                f"{source / _ARRAY_FILES[name]} has shape {getattr(contents, name).shape}, "
                f"expected {shape}"
            )
    if np.any(np.diff(contents.ids) <= 0) or np.any(np.diff(contents.class_labels) <= 0):
        raise ValueError(f"{source}: prototype ids or class labels are not strictly increasing")
    if not np.array_equal(np.unique(contents.labels), contents.class_labels):
        raise ValueError(f"{source}: prototype labels and class labels disagree")


def _read_index(path: Path, mmap: bool) -> tuple[faiss.Index, bool, str | None]:
    notes = []
    if mmap:
        for flag_name in ("IO_FLAG_MMAP_IFC", "IO_FLAG_MMAP"):
            flag = getattr(faiss, flag_name, None)
            if flag is None:
                notes.append(f"this FAISS has no {flag_name}")
                continue
            try:
                return faiss.read_index(str(path), flag | faiss.IO_FLAG_READ_ONLY), True, None
            except RuntimeError as error:
                notes.append(f"{flag_name}: {str(error).strip().splitlines()[-1]}")
    try:
        index = faiss.read_index(str(path))
    except RuntimeError as error:
        raise ValueError(f"{path} is not a readable FAISS index: {error}") from None
    note = "index read into memory; FAISS could not map it (" + "; ".join(notes) + ")"
    return index, False, note if mmap else None


def _check_index(index: faiss.Index, store: PrototypeStore, contents: _Contents, source: Path):
    path = source / _INDEX_FILE
    if index.d != store.dim:
        raise ValueError(f"{path} has dimension {index.d}, store.json says {store.dim}")
    if index.metric_type != METRICS[store.metric]:
        raise ValueError(f"{path} uses FAISS metric {index.metric_type}, not {store.metric}")
    expected = len(contents.ids) if index.is_trained else 0
    if index.ntotal != expected:
        raise ValueError(f"{path} holds {index.ntotal} vectors, expected {expected}")
