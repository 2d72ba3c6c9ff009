"""The methods ``siamcl bench store`` compares and how each is measured.

A plain PyTorch brute force (matmul + ``topk`` in chunks) is the reference; each FAISS index
runs inside a :class:`~siamcl.store.PrototypeStore` holding every vector as an exemplar
prototype. Approximate indexes are swept over ``nprobe`` / ``efSearch`` and the reported
setting is the smallest one reaching the target recall@1 against exact search.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import faiss
import numpy as np
import torch

from siamcl.bench.store_data import clustered_embeddings, index_specs
from siamcl.store import PrototypeStore

__all__ = [
    "BRUTE_FORCE",
    "TARGET_RECALL",
    "TorchBruteForce",
    "build_store",
    "compare_indexes",
    "rows_of_ids",
]

TARGET_RECALL = 0.95
BRUTE_FORCE = "torch-brute-force"
NPROBE_GRID = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
EF_SEARCH_GRID = (16, 32, 64, 128, 256, 512, 1024)
SWEEP_STOP_RECALL = 0.99  # a sweep goes past the target to draw the curve, up to here
SINGLE_QUERY_BUDGET_S = 2.0  # time spent measuring batch-1 queries per method
SINGLE_QUERY_MAX = 200
SCORE_TOLERANCE = 1e-5  # a returned vector this close to the best score counts as a hit


# ---------------------------------------------------------------------- methods
class TorchBruteForce:
    """Exact nearest neighbours by matmul and ``topk`` over the stored vectors, in chunks."""

    def __init__(self, vectors: np.ndarray, labels: np.ndarray, device: str = "cpu") -> None:
        self.device = torch.device(device)
        self.vectors = torch.nn.functional.normalize(torch.from_numpy(vectors), dim=1).to(
            self.device
        )
        self.labels = torch.from_numpy(labels).to(self.device)

    @property
    def nbytes(self) -> int:
        return self.vectors.nbytes + self.labels.nbytes

    def nearest(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Best cosine score and row of each query's nearest stored vector."""
        q = torch.nn.functional.normalize(torch.from_numpy(queries).to(self.device), dim=1)
        best = torch.full((len(q),), -math.inf, device=self.device)
        rows = torch.zeros(len(q), dtype=torch.long, device=self.device)
        step = max(1024, (1 << 24) // max(1, len(q)))  # at most 64 MiB of scores at once
        for begin in range(0, len(self.vectors), step):
            scores, found = (q @ self.vectors[begin : begin + step].T).topk(1, dim=1)
            better = scores[:, 0] > best
            best = torch.where(better, scores[:, 0], best)
            rows = torch.where(better, found[:, 0] + begin, rows)
        return best.cpu().numpy(), rows.cpu().numpy()

    def classify(self, queries: np.ndarray) -> np.ndarray:
        _, rows = self.nearest(queries)
        return self.labels.cpu().numpy()[rows]


def build_store(
    spec: str, X: np.ndarray, y: np.ndarray, train_size: int
) -> tuple[PrototypeStore, int]:
    """A store holding every row of ``X`` as an exemplar prototype of its class.

    A trainable index is trained on a class-balanced sample of ``train_size`` rows (the
    first ``add``) and receives the rest in a second ``add``; the store then lists its
    prototypes in the order of ``X``.  Returns the store and the number of training rows.
    """
    per_class = int(np.bincount(y).max())
    trainable = not faiss.index_factory(X.shape[1], spec).is_trained
    sample = _balanced_first_rows(y, train_size) if trainable else np.ones(len(y), bool)
    store = PrototypeStore(
        X.shape[1],
        metric="cosine",
        index=spec,
        prototypes_per_class=per_class,
        min_train_size=int(sample.sum()) if trainable else None,
    )
    store.add(X[sample], y[sample])
    trained_on = int(sample.sum()) if store.trained else len(y)
    if not sample.all():
        store.add(X[~sample], y[~sample])
    if not store.trained:
        raise RuntimeError(f"index {spec!r} was not trained: {store.training_error}")
    return store, trained_on if trainable else 0


def _balanced_first_rows(y: np.ndarray, count: int) -> np.ndarray:
    """Mask of the first ``count / n_classes`` rows of each class of class-sorted ``y``."""
    starts = np.searchsorted(y, y)  # first row of each row's class
    per_class = -(-count // (int(y.max()) + 1))
    return (np.arange(len(y)) - starts) < per_class


def rows_of_ids(store: PrototypeStore) -> Callable[[np.ndarray], np.ndarray]:
    """Map the FAISS ids the store's index returns to rows of ``store.prototypes()``, which
    the store keeps in increasing id order."""
    index = faiss.downcast_index(store.faiss_index)
    if isinstance(index, faiss.IndexIDMap):
        ids = faiss.vector_to_array(index.id_map)
    else:
        lists = faiss.extract_index_ivf(index).invlists
        ids = np.concatenate(
            [
                faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
                for i in range(lists.nlist)
            ]
        )
    ids = np.sort(ids)
    if len(ids) != store.n_prototypes:
        raise RuntimeError(f"index holds {len(ids)} ids for {store.n_prototypes} prototypes")
    return lambda found: np.searchsorted(ids, found)


# ---------------------------------------------------------------------- measurements
def compare_indexes(
    size: int, dim: int, seed: int, settings: dict[str, Any], quiet: bool = True
) -> list[dict[str, Any]]:
    """One row per method for one store size and dimension: the brute force, then each index."""
    X, y, Q, q_y = clustered_embeddings(size, dim, settings["classes"], settings["queries"], seed)
    common = {"seed": seed, "size": size, "dim": dim}
    base, best_scores = _measure_brute_force(X, y, Q, q_y, settings)
    base = {**common, **base}
    _say(quiet, base)
    rows = [base]
    for kind, spec in index_specs(size, dim, settings["indexes"]).items():
        start = time.perf_counter()
        store, trained_on = build_store(spec, X, y, settings["train_size"])
        build_s = time.perf_counter() - start
        _check_layout(store, X, y)
        recall_of = _recall_meter(store, X, Q, best_scores)
        sweep = _tune(store, kind, Q, q_y, recall_of, settings)
        chosen = _chosen(sweep, settings["target_recall"])
        _set_search_param(store, kind, chosen["value"])
        row = {
            **common,
            "method": kind,
            "index": spec,
            "setting": None if chosen["param"] is None else {chosen["param"]: chosen["value"]},
            "build_s": build_s,
            "trained_on": trained_on,
            "qps_1": _single_query_rate(store.classify, Q),
            "qps_batch": chosen["qps_batch"],
            "recall_at_1": chosen["recall_at_1"],
            "accuracy": chosen["accuracy"],
            "index_bytes_per_vector": store.index_nbytes / size,
            "store_bytes_per_vector": store.nbytes / size,
            "sweep": sweep,
        }
        del store
        _say(quiet, row)
        rows.append(row)
    return _with_ratios(rows)


def _measure_brute_force(
    X: np.ndarray, y: np.ndarray, Q: np.ndarray, q_y: np.ndarray, settings: dict[str, Any]
) -> tuple[dict[str, Any], np.ndarray]:
    """The brute-force row and the exact best score of each query (the recall reference)."""
    start = time.perf_counter()
    brute = TorchBruteForce(X, y, settings["device"])
    build_s = time.perf_counter() - start
    best_scores, _ = brute.nearest(Q)
    labels, batch_s = _timed(lambda: brute.classify(Q), settings["repeats"])
    row = {
        "method": BRUTE_FORCE,
        "index": "matmul + topk",
        "setting": None,
        "build_s": build_s,
        "trained_on": 0,
        "qps_1": _single_query_rate(brute.classify, Q),
        "qps_batch": len(Q) / batch_s,
        "recall_at_1": 1.0,
        "accuracy": float(np.mean(labels == q_y)),
        "index_bytes_per_vector": brute.nbytes / len(X),
        "store_bytes_per_vector": brute.nbytes / len(X),
        "sweep": [],
    }
    return row, best_scores


def _check_layout(store: PrototypeStore, X: np.ndarray, y: np.ndarray) -> None:
    """The store must list the exemplars in the order of ``X`` (recall relies on it)."""
    step = max(1, len(X) // 1000)
    if not np.array_equal(store.prototype_labels, y) or not np.allclose(
        store.prototypes()[::step], X[::step], atol=1e-6
    ):
        raise RuntimeError(f"store {store.index!r} does not hold the exemplars in input order")


def _recall_meter(
    store: PrototypeStore, X: np.ndarray, Q: np.ndarray, best_scores: np.ndarray
) -> Callable[[], float]:
    """Recall@1 of the store's index at its current search setting: the share of queries
    whose returned vector scores as well as the exact nearest one (ties count as hits)."""
    row_of = rows_of_ids(store)

    def recall() -> float:
        _, ids = store.faiss_index.search(Q, 1)
        rows = row_of(ids[:, 0])
        scores = np.einsum("ij,ij->i", Q, X[rows])
        return float(np.mean((ids[:, 0] >= 0) & (scores >= best_scores - SCORE_TOLERANCE)))

    return recall


def _tune(
    store: PrototypeStore,
    kind: str,
    Q: np.ndarray,
    q_y: np.ndarray,
    recall_of: Callable[[], float],
    settings: dict[str, Any],
) -> list[dict[str, Any]]:
    """Recall@1, batch throughput and accuracy along the ``nprobe`` / ``efSearch`` grid, from
    the smallest setting up to ``SWEEP_STOP_RECALL`` (or until recall stops improving)."""
    if kind == "Flat":
        grid, param = [None], None
    elif kind == "HNSW32":
        grid, param = EF_SEARCH_GRID, "efSearch"
    else:
        nlist = faiss.extract_index_ivf(store.faiss_index).nlist
        grid, param = [v for v in NPROBE_GRID if v < nlist] + [nlist], "nprobe"
    sweep: list[dict[str, Any]] = []
    for value in grid:
        if value is not None:
            _set_search_param(store, kind, value)
        labels, batch_s = _timed(lambda: store.classify(Q), settings["repeats"])
        point = {
            "param": param,
            "value": value,
            "recall_at_1": recall_of(),
            "qps_batch": len(Q) / batch_s,
            "accuracy": float(np.mean(labels == q_y)),
        }
        sweep.append(point)
        recalls = [p["recall_at_1"] for p in sweep]
        stalled = len(recalls) >= 3 and recalls[-1] - recalls[-3] < 0.002
        if point["recall_at_1"] >= SWEEP_STOP_RECALL or stalled:
            break
    return sweep


def _chosen(sweep: list[dict[str, Any]], target: float) -> dict[str, Any]:
    """The first (cheapest) sweep point reaching the target, else the best recall."""
    for point in sweep:
        if point["recall_at_1"] >= target:
            return point
    return max(sweep, key=lambda p: p["recall_at_1"])


def _set_search_param(store: PrototypeStore, kind: str, value: int | None) -> None:
    if value is None:
        return
    if kind == "HNSW32":
        store.ef_search = value
    else:
        store.nprobe = value


def _timed(work: Callable[[], Any], repeats: int) -> tuple[Any, float]:
    """The result of ``work`` and its fastest wall time over ``repeats`` runs."""
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        result = work()
        best = min(best, time.perf_counter() - start)
    return result, best


def _single_query_rate(classify: Callable[[np.ndarray], Any], Q: np.ndarray) -> float:
    """Queries per second answering one query at a time (time-boxed)."""
    done, start = 0, time.perf_counter()
    while done < min(SINGLE_QUERY_MAX, len(Q)):
        classify(Q[done : done + 1])
        done += 1
        if done >= 5 and time.perf_counter() - start > SINGLE_QUERY_BUDGET_S:
            break
    return done / (time.perf_counter() - start)


def _with_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add ratios to the brute force (times) and to the Flat index (bytes) of the same run."""
    base = rows[0]
    flat = next((r for r in rows if r["method"] == "Flat"), None)
    for row in rows:
        row["build_vs_brute"] = row["build_s"] / base["build_s"]
        row["qps_1_vs_brute"] = row["qps_1"] / base["qps_1"]
        row["qps_batch_vs_brute"] = row["qps_batch"] / base["qps_batch"]
        row["index_bytes_vs_flat"] = (
            row["index_bytes_per_vector"] / flat["index_bytes_per_vector"] if flat else None
        )
    return rows


def _say(quiet: bool, row: dict[str, Any]) -> None:
    """One progress line per measured method."""
    if not quiet:
        print(
            f"{row['size']:>9,} x {row['dim']:<4} {row['method']:<18} {row['index']:<18} "
            f"build {row['build_s']:7.2f}s  batch {row['qps_batch']:9.0f} q/s  "
            f"recall {row['recall_at_1']:.3f}  accuracy {row['accuracy']:.3f}",
            flush=True,
        )
