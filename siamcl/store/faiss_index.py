"""The FAISS side of a store: one index, built from a factory string (``"Flat"``,
``"HNSW32"``, ``"IVF256,Flat"``) or from a ready-made empty ``faiss.Index``, able to hold
int64 ids, trained once enough prototypes exist, kept in step with the prototypes and
searched with an exact fallback.

The store owns the index it searches: a ready-made index is copied (it is the template
every rebuild starts from), so the caller's object is never filled or changed.
"""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np

from siamcl.store.inputs import positive_int

__all__ = ["METRICS", "FaissIndex"]

METRICS = {"cosine": faiss.METRIC_INNER_PRODUCT, "l2": faiss.METRIC_L2}
_METRIC_NAMES = {faiss.METRIC_INNER_PRODUCT: "METRIC_INNER_PRODUCT", faiss.METRIC_L2: "METRIC_L2"}


class FaissIndex:
    """An index with its recipe, search parameters and training state.

    ``index`` is a factory string or an empty ``faiss.Index`` of dimension ``dim`` and the
    FAISS metric of ``metric``; the index searched is ``self.index`` (IVF, or an
    ``IndexIDMap`` around any other type).  Not locked: the store that owns it is.
    """

    def __init__(
        self,
        dim: int,
        metric: str,
        index: str | faiss.Index,
        nprobe: int | None = None,
        ef_search: int | None = None,
        min_train_size: int | None = None,
    ) -> None:
        self.dim = positive_int(dim, "dim")
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; expected one of {sorted(METRICS)}")
        self.metric = metric
        if isinstance(index, str):
            self.spec, self.template = _checked_spec(index), None
        elif isinstance(index, faiss.Index):
            self.spec, self.template = None, _ready_made(index, self.dim, metric)
        else:
            raise TypeError(
                f"index must be a FAISS factory string or a faiss.Index, got {type(index).__name__}"
            )
        self.index = self.new_index()
        self.removable = _removes_ids_safely(self.index)
        self._defaults = {
            "nprobe": _read_nprobe(self.index),
            "efSearch": _read_ef_search(self.index),
        }
        self.nprobe = None if nprobe is None else positive_int(nprobe, "nprobe")
        self.ef_search = None if ef_search is None else positive_int(ef_search, "ef_search")
        self.apply_search_params(self.index)
        least = _least_training_size(self.index)
        if min_train_size is not None:
            least = max(positive_int(min_train_size, "min_train_size"), least)
        self.min_train_size = least
        self.next_training_attempt = least
        self.training_error: str | None = None
        self._nbytes: int | None = None

    @property
    def name(self) -> str:
        """The index as error messages name it."""
        if self.spec is not None:
            return repr(self.spec)
        return f"<ready-made {type(self.template).__name__}>"

    @property
    def given(self) -> str | faiss.Index:
        """The factory string, or a copy of the empty ready-made index."""
        return self.spec if self.spec is not None else faiss.clone_index(self.template)

    @property
    def nbytes(self) -> int:
        """Size of the index as ``faiss.write_index`` serialises it (cached)."""
        if self._nbytes is None:
            self._nbytes = _serialized_size(self.index)
        return self._nbytes

    def set_search_param(self, name: str, value: int | None) -> None:
        """Set ``nprobe`` or ``ef_search`` (None: FAISS's default) on the live index; a
        value the index has no use for raises ValueError and changes nothing."""
        old = getattr(self, name)
        setattr(self, name, None if value is None else positive_int(value, name))
        try:
            self.apply_search_params(self.index)
        except ValueError:
            setattr(self, name, old)
            raise

    def apply_search_params(self, index: faiss.Index) -> None:
        space = faiss.ParameterSpace()
        for name, value, needs in (
            ("nprobe", self.nprobe, "an IVF index"),
            ("efSearch", self.ef_search, "an HNSW index or IVF quantizer"),
        ):
            if value is None:
                value = self._defaults[name]
                if value is None:
                    continue
            try:
                space.set_index_parameter(index, name, value)
            except RuntimeError:
                raise ValueError(f"{name} applies to {needs}; index {self.name} has none") from None

    def new_index(self) -> faiss.Index:
        """An empty index from the recipe, able to store int64 ids."""
        if self.template is not None:
            index = faiss.clone_index(self.template)
            if _stores_ids(index):
                return index
            return faiss.clone_index(faiss.IndexIDMap(index))  # the copy owns its inner index
        try:
            index = faiss.index_factory(self.dim, self.spec, METRICS[self.metric])
            if not _stores_ids(index):
                index = faiss.index_factory(self.dim, f"IDMap,{self.spec}", index.metric_type)
            return index
        except RuntimeError as error:
            reason = str(error).strip().splitlines()[-1]
            raise ValueError(
                f"unknown or invalid FAISS index factory string {self.spec!r} for dim "
                f"{self.dim}: {reason}"
            ) from None

    def filled(self, vectors: np.ndarray, ids: np.ndarray, train: bool) -> faiss.Index:
        """A new index holding ``vectors`` under ``ids``, trained on them when ``train`` (or
        when the current index is trained) and they are enough; left untrained otherwise."""
        index = self.new_index()
        wanted = train or self.index.is_trained
        if not index.is_trained and wanted and len(ids) >= self.min_train_size:
            index.train(np.ascontiguousarray(vectors))
        if index.is_trained and len(ids):
            index.add_with_ids(np.ascontiguousarray(vectors), ids)
        self.apply_search_params(index)
        return index

    def sync(
        self,
        vectors: np.ndarray,
        ids: np.ndarray,
        removed_ids: np.ndarray,
        added: np.ndarray,
        previous: tuple[np.ndarray, np.ndarray],
    ) -> None:
        """Bring the index in line with the prototypes ``vectors`` / ``ids``, which differ
        from ``previous`` (vectors, ids) by ``removed_ids`` and the ``added`` rows (last).

        Trains an untrained index once enough prototypes exist (a failure is kept in
        ``training_error`` and retried at twice the size), rebuilds indexes that cannot
        remove ids, and otherwise removes and adds in place.  If FAISS fails in place the
        index is rebuilt from ``previous`` and the error raised.
        """
        index, held = self.index, len(ids)
        if not index.is_trained:
            if held >= self.next_training_attempt:
                try:
                    index = self.filled(vectors, ids, train=True)
                    self.training_error = None
                except RuntimeError as error:
                    self.training_error = str(error)
                    self.next_training_attempt = 2 * held
        elif len(removed_ids) and not self.removable:
            index = self.filled(vectors, ids, train=False)
        else:
            try:
                if len(removed_ids):
                    index.remove_ids(np.ascontiguousarray(removed_ids))
                if len(added):
                    index.add_with_ids(added, ids[held - len(added) :])
            except RuntimeError:
                self.index, self._nbytes = self.filled(*previous, train=False), None
                raise
        self.index, self._nbytes = index, None

    def train(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """Train (or retrain) on ``vectors`` and refill; ValueError when they are too few.
        A ready-made index that came trained keeps its training and is refilled."""
        if len(ids) < self.min_train_size:
            raise ValueError(
                f"index {self.name} needs at least {self.min_train_size} vectors to "
                f"train; the store holds {len(ids)} prototypes"
            )
        try:
            index = self.filled(vectors, ids, train=True)
        except RuntimeError as error:
            raise ValueError(f"FAISS could not train index {self.name}: {error}") from None
        self.index, self._nbytes, self.training_error = index, None, None

    def nearest(
        self, q: np.ndarray, k: int, vectors: np.ndarray, ids: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Scores and row positions (into ``vectors`` / ``ids``) of the k nearest prototypes;
        exact while the index is untrained and for queries the index finds too few for."""
        metric = METRICS[self.metric]
        if not self.index.is_trained:
            return faiss.knn(q, vectors, k, metric)
        scores, found = self.index.search(q, k)
        missing = np.any(found < 0, axis=1)
        rows = np.searchsorted(ids, found)
        if missing.any():
            scores[missing], rows[missing] = faiss.knn(q[missing], vectors, k, metric)
        return scores, rows

    def install(self, index: faiss.Index, nbytes: int) -> None:
        """Make a loaded ``index`` (already checked against the prototypes) the live one."""
        self.apply_search_params(index)
        self.index, self.removable, self._nbytes = index, _removes_ids_safely(index), nbytes

    def to_state(self) -> dict[str, Any]:
        """Everything this holds, the indexes serialised: what a pickled store keeps."""
        state = dict(self.__dict__)
        state["index"] = faiss.serialize_index(self.index)
        if self.template is not None:
            state["template"] = faiss.serialize_index(self.template)
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> FaissIndex:
        """The index :meth:`to_state` described."""
        restored = cls.__new__(cls)
        restored.__dict__.update(state, index=faiss.deserialize_index(state["index"]))
        if restored.template is not None:
            restored.template = faiss.deserialize_index(restored.template)
        restored.apply_search_params(restored.index)
        return restored


# ---------------------------------------------------------------------- the index given
def _checked_spec(spec: str) -> str:
    if spec.strip().upper().startswith("IDMAP"):
        raise ValueError(
            f"index {spec!r}: give the index without 'IDMap', the store adds its own id map"
        )
    return spec


def _ready_made(index: faiss.Index, dim: int, metric: str) -> faiss.Index:
    """A private copy of a caller's index, once it is known to fit the store: no id map of
    its own, the store's dimension and metric, empty (the store fills it)."""
    kind = type(faiss.downcast_index(index)).__name__
    if isinstance(faiss.downcast_index(index), faiss.IndexIDMap):
        problem = f"index {kind}: give the index without an id map, the store adds its own"
        raise ValueError(problem)  # noqa: TRY004 - a wrapped index is a bad value, not type
    if index.d != dim:
        raise ValueError(f"the given {kind} has dimension {index.d} but the store's dim is {dim}")
    if index.ntotal:
        raise ValueError(
            f"the given {kind} already holds {index.ntotal} vectors: give an empty index, "
            "the store fills it with its prototypes"
        )
    if index.metric_type != METRICS[metric]:
        given = _METRIC_NAMES.get(index.metric_type, f"metric type {index.metric_type}")
        raise ValueError(
            f"the given {kind} uses {given} but metric={metric!r} needs "
            f"{_METRIC_NAMES[METRICS[metric]]}: build the index with that metric"
        )
    try:
        return faiss.clone_index(index)
    except RuntimeError as error:
        reason = str(error).strip().splitlines()[-1]
        raise ValueError(f"FAISS cannot copy the given {kind}: {reason}") from None


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
