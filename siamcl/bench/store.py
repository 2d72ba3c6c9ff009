"""FAISS index choices for the prototype store, measured on clustered embeddings of known class.

For each store size and embedding dimension, the same synthetic embeddings are put into a
:class:`~siamcl.store.PrototypeStore` with each FAISS index (``Flat``, ``HNSW32``,
``IVF{n},Flat``, ``IVF{n},PQ{m}np``) and into a plain PyTorch brute force (matmul + ``topk``
in chunks), and each is measured on build time, queries per second at batch 1 and at batch
1,000 (``store.classify``), recall@1 against exact search, bytes per vector and accuracy of
nearest-prototype classification.  Approximate indexes are swept over ``nprobe`` /
``efSearch``; the reported setting is the smallest one reaching the target recall.  Times
are also given as ratios to the brute force of the same run.  Writes ``store.json``,
``store.md`` and ``store.png`` (queries/s against recall, per size); ``store_quick.*`` with
``--quick`` (100,000 vectors only, one timing per batch).

Data: ``n_classes`` classes in families of ten (sibling class centres share a family
direction, so some classes overlap), samples are Gaussian around their class centre and
everything lies on the unit sphere; the store uses cosine similarity.  Every stored vector is
an exemplar prototype carrying its class label (``prototypes_per_class`` is the largest class
size, so the store keeps each exemplar as it is), which makes nearest-prototype
classification 1-nearest-neighbour classification over the exemplars.  Queries are fresh
samples from the same classes.

Trainable indexes are trained on a class-balanced sample of ``--train-size`` vectors (the
first ``add``); the rest is added afterwards without retraining.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import faiss
import numpy as np
import torch

from siamcl.accounting import ResourceMeter
from siamcl.reporting import markdown_table, run_record, write_results
from siamcl.store import PrototypeStore

DEFAULT_DATASET = "synthetic"
SIZES = (10_000, 100_000, 1_000_000)
QUICK_SIZES = (100_000,)
DIMS = (64, 128)
N_CLASSES = 1000
FAMILY_SIZE = 10  # classes whose centres share a family direction (the confusable ones)
CLASS_SPREAD = 0.5  # spread of class centres around their family direction
SAMPLE_SPREAD = 0.8  # spread of samples around their class centre
TRAIN_SIZE = 100_000
TARGET_RECALL = 0.95
BRUTE_FORCE = "torch-brute-force"
INDEX_KINDS = ("Flat", "HNSW32", "IVF-Flat", "IVF-PQ")
NPROBE_GRID = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
EF_SEARCH_GRID = (16, 32, 64, 128, 256, 512, 1024)
SWEEP_STOP_RECALL = 0.99  # a sweep goes past the target to draw the curve, up to here
SINGLE_QUERY_BUDGET_S = 2.0  # time spent measuring batch-1 queries per method
SINGLE_QUERY_MAX = 200
SCORE_TOLERANCE = 1e-5  # a returned vector this close to the best score counts as a hit
PEAK_MEMORY_LIMIT = 2 * 2**30
SPEEDUP_BAR = 10.0
PQ_BYTES_BAR = 1 / 8
BAR_SIZE, BAR_DIM = 1_000_000, 64


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sizes", type=_int_list, default=None, help="store sizes (default 10000,100000,1000000)"
    )
    parser.add_argument("--dims", type=_int_list, default=None, help="dimensions (default 64,128)")
    parser.add_argument(
        "--indexes",
        type=_index_list,
        default=list(INDEX_KINDS),
        help=f"indexes to compare with the brute force (default {','.join(INDEX_KINDS)})",
    )
    parser.add_argument("--classes", type=int, default=N_CLASSES, help="classes (1000)")
    parser.add_argument("--queries", type=int, default=1000, help="queries, one batch (1000)")
    parser.add_argument(
        "--train-size", type=int, default=TRAIN_SIZE, help="IVF/PQ training sample (100000)"
    )
    parser.add_argument(
        "--target-recall", type=float, default=TARGET_RECALL, help="recall@1 to tune for (0.95)"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="FAISS and torch threads, for every method (1)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timings of each batch (3)")


def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = _settings(args)
    seeds = args.seeds or [0]
    saved_threads = faiss.omp_get_max_threads(), torch.get_num_threads()
    faiss.omp_set_num_threads(settings["threads"])
    torch.set_num_threads(settings["threads"])
    meter = ResourceMeter(energy="estimate", flops="off")
    rows = []
    try:
        with meter:
            for seed in seeds:
                for size in settings["sizes"]:
                    for dim in settings["dims"]:
                        rows += compare_indexes(size, dim, seed, settings, quiet=args.quiet)
    finally:
        faiss.omp_set_num_threads(saved_threads[0])
        torch.set_num_threads(saved_threads[1])
    report = meter.report(method="bench store")
    peak = report.peak_rss_bytes
    results = {
        **run_record("store", seeds, **settings),
        "wall_s": report.wall_s,
        "peak_rss_bytes": peak,
        "rows": rows,
        "bars": check_bars(rows, peak, settings),
    }
    name = "store_quick" if args.quick else "store"
    table = _markdown(results)
    write_results(args.out, name, results, table)
    plot_recall_speed(rows, os.path.join(args.out, f"{name}.png"), settings["target_recall"])
    if not args.quiet:
        print(table)
    return results


# ---------------------------------------------------------------------- data
def clustered_embeddings(
    size: int, dim: int, n_classes: int, n_queries: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Unit-length embeddings of ``n_classes`` overlapping Gaussian classes, and queries.

    Returns ``(X [size, dim], y [size], Q [n_queries, dim], q_y [n_queries])``; ``X`` is
    sorted by class (class sizes differ by at most one) and float32.
    """
    rng = np.random.default_rng([seed, size, dim])
    families = _unit(rng.standard_normal((-(-n_classes // FAMILY_SIZE), dim)))
    noise = rng.standard_normal((n_classes, dim)) * CLASS_SPREAD / math.sqrt(dim)
    centres = _unit(families[np.arange(n_classes) // FAMILY_SIZE] + noise)
    y = np.sort(np.arange(size) % n_classes)
    q_y = rng.integers(0, n_classes, n_queries)
    return _samples(centres, y, rng), y, _samples(centres, q_y, rng), q_y


def _samples(centres: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    dim = centres.shape[1]
    out = np.empty((len(labels), dim), np.float32)
    for begin in range(0, len(labels), 1 << 16):  # bounded float32 blocks, no float64 copy
        part = labels[begin : begin + (1 << 16)]
        noise = rng.standard_normal((len(part), dim), dtype=np.float32)
        out[begin : begin + len(part)] = centres[part] + noise * (SAMPLE_SPREAD / math.sqrt(dim))
    faiss.normalize_L2(out)
    return out


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    faiss.normalize_L2(vectors)
    return vectors


def index_specs(size: int, dim: int, kinds: Sequence[str] = INDEX_KINDS) -> dict[str, str]:
    """FAISS factory string of each index kind for a store of ``size`` vectors of ``dim``:
    ``nlist = 4 sqrt(size)`` IVF lists and ``dim / 8`` one-byte PQ codes (``np``: no
    polysemous training, which only serves Hamming-filtered search and triples training)."""
    nlist = max(1, round(4 * math.sqrt(size)))
    specs = {
        "Flat": "Flat",
        "HNSW32": "HNSW32",
        "IVF-Flat": f"IVF{nlist},Flat",
        "IVF-PQ": f"IVF{nlist},PQ{dim // 8}np",
    }
    return {kind: specs[kind] for kind in kinds}


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


def check_bars(
    rows: list[dict[str, Any]], peak_rss_bytes: int, settings: dict[str, Any]
) -> dict[str, Any]:
    """The three targets: speed at 1M x 64, PQ bytes, peak memory of the quick run."""
    bars: dict[str, Any] = {}
    target = settings["target_recall"]
    at_bar = [r for r in rows if r["size"] == BAR_SIZE and r["dim"] == BAR_DIM]
    fast = [
        r for r in at_bar if r["method"] not in (BRUTE_FORCE, "Flat") and r["recall_at_1"] >= target
    ]
    if at_bar:
        best = max(fast, key=lambda r: r["qps_batch_vs_brute"], default=None)
        bars["speed"] = {
            "goal": f"an approximate index at recall@1 >= {target} answers {settings['queries']}"
            f"-query batches >= {SPEEDUP_BAR:g}x faster than the brute force at "
            f"{BAR_SIZE} x {BAR_DIM}",
            "best": None if best is None else _bar_row(best),
            "met": best is not None and best["qps_batch_vs_brute"] >= SPEEDUP_BAR,
        }
    pq = [r for r in at_bar if r["method"] == "IVF-PQ" and r["index_bytes_vs_flat"] is not None]
    if pq:
        bars["pq_bytes"] = {
            "goal": f"IVF-PQ index bytes <= {PQ_BYTES_BAR:g} of the Flat index's at "
            f"{BAR_SIZE} x {BAR_DIM}",
            "ratio": max(r["index_bytes_vs_flat"] for r in pq),
            "met": all(r["index_bytes_vs_flat"] <= PQ_BYTES_BAR for r in pq),
        }
    if settings["quick"]:
        bars["quick_peak_memory"] = {
            "goal": f"peak RSS of bench store --quick under {PEAK_MEMORY_LIMIT / 2**30:g} GiB",
            "peak_rss_bytes": peak_rss_bytes,
            "met": peak_rss_bytes < PEAK_MEMORY_LIMIT,
        }
    return bars


def _bar_row(row: dict[str, Any]) -> dict[str, Any]:
    keys = ("method", "index", "setting", "recall_at_1", "qps_batch_vs_brute", "accuracy")
    return {key: row[key] for key in keys}


# ---------------------------------------------------------------------- output
def _markdown(results: dict[str, Any]) -> str:
    s = results["settings"]
    lines = [
        "# Prototype store: FAISS indexes against a PyTorch brute force",
        "",
        f"Command: `{results['command']}`  ",
        f"Seeds: {results['seeds']}  ",
        (
            f"Machine: {results['machine']['processor']}, {results['machine']['cpu_count']} "
            f"CPUs, torch {results['machine']['torch']}, FAISS {faiss.__version__}  "
        ),
        f"Threads (FAISS and torch, every method): {s['threads']}  ",
        f"Date: {results['date']}  ",
        (
            f"Run time: {results['wall_s'] / 60:.1f} min; peak resident memory: "
            f"{results['peak_rss_bytes'] / 2**20:.0f} MiB"
        ),
        "",
        _data_note(s),
    ]
    headers = [
        "method",
        "index",
        "setting",
        "build s",
        "queries/s batch 1",
        "x brute",
        f"queries/s batch {s['queries']}",
        "x brute",
        "recall@1",
        "accuracy",
        "index B/vector",
        "x Flat",
        "store B/vector",
    ]
    groups: dict[tuple[int, int, int], list[dict[str, Any]]] = {}
    for row in results["rows"]:
        groups.setdefault((row["seed"], row["size"], row["dim"]), []).append(row)
    for (seed, size, dim), rows in groups.items():
        lines += ["", f"## {size:,} vectors, dimension {dim} (seed {seed})", ""]
        table = []
        for r in rows:
            missed = r["recall_at_1"] < s["target_recall"]
            setting = ", ".join(f"{k}={v}" for k, v in (r["setting"] or {}).items()) or "-"
            table.append(
                [
                    r["method"],
                    f"`{r['index']}`",
                    setting + (" *" if missed else ""),
                    f"{r['build_s']:.2f}",
                    f"{r['qps_1']:.0f}",
                    f"{r['qps_1_vs_brute']:.2f}",
                    f"{r['qps_batch']:.0f}",
                    f"{r['qps_batch_vs_brute']:.2f}",
                    r["recall_at_1"],
                    r["accuracy"],
                    f"{r['index_bytes_per_vector']:.1f}",
                    "-" if r["index_bytes_vs_flat"] is None else f"{r['index_bytes_vs_flat']:.3f}",
                    f"{r['store_bytes_per_vector']:.1f}",
                ]
            )
        lines.append(markdown_table(headers, table))
    lines += ["", "## Targets", ""]
    for name, bar in results["bars"].items():
        verdict = "met" if bar["met"] else "NOT met"
        detail = {k: v for k, v in bar.items() if k not in ("goal", "met")}
        lines.append(f"- **{name}** ({bar['goal']}): {verdict}; {detail}")
    if not results["bars"]:
        lines.append("- none of the target settings was part of this run")
    return "\n".join(lines)


def _data_note(s: dict[str, Any]) -> str:
    return (
        f"Data: {s['classes']} classes in families of {FAMILY_SIZE}, unit-length Gaussian "
        f"clusters (class spread {CLASS_SPREAD}, sample spread {SAMPLE_SPREAD}); every stored "
        "vector is an exemplar prototype with its class label; "
        f"{s['queries']} queries from the same classes, cosine similarity. Trainable indexes "
        f"are trained on a class-balanced sample of up to {s['train_size']} vectors and get "
        "the rest by incremental `add`. Approximate indexes use the smallest nprobe / "
        f"efSearch reaching recall@1 >= {s['target_recall']} (or their best recall, marked *). "
        f"Queries/s through `PrototypeStore.classify`; batch = {s['queries']} queries; times "
        f"are the fastest of {s['repeats']}. Ratios are to the brute force (speed) and to "
        "Flat (index bytes) of the same run; store bytes add the store's float32 copy of "
        "every prototype and its label map."
    )


def plot_recall_speed(
    rows: list[dict[str, Any]], path: str, target_recall: float = TARGET_RECALL
) -> None:
    """Queries/s at batch size against recall@1 for each index, one panel per size x dim."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(r["dim"], r["size"]) for r in rows})
    dims = sorted({d for d, _ in panels})
    sizes = sorted({n for _, n in panels})
    fig, axes = plt.subplots(
        len(dims), len(sizes), figsize=(4.2 * len(sizes), 3.4 * len(dims)), squeeze=False
    )
    markers = {BRUTE_FORCE: "s", "Flat": "D", "HNSW32": "o", "IVF-Flat": "^", "IVF-PQ": "v"}
    for i, dim in enumerate(dims):
        for j, size in enumerate(sizes):
            ax = axes[i][j]
            for r in (r for r in rows if r["dim"] == dim and r["size"] == size):
                points = r["sweep"] or [r]
                ax.plot(
                    [p["recall_at_1"] for p in points],
                    [p["qps_batch"] for p in points],
                    marker=markers.get(r["method"], "."),
                    label=r["method"],
                )
            ax.axvline(target_recall, color="grey", linestyle=":", linewidth=1)
            ax.set_yscale("log")
            ax.set_title(f"{size:,} x {dim}", fontsize=10)
            ax.set_xlabel("recall@1")
            ax.set_ylabel("queries/s (batch)")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _say(quiet: bool, row: dict[str, Any]) -> None:
    if not quiet:
        print(
            f"{row['size']:>9,} x {row['dim']:<4} {row['method']:<18} {row['index']:<18} "
            f"build {row['build_s']:7.2f}s  batch {row['qps_batch']:9.0f} q/s  "
            f"recall {row['recall_at_1']:.3f}  accuracy {row['accuracy']:.3f}",
            flush=True,
        )


# ---------------------------------------------------------------------- options
def _settings(args: argparse.Namespace) -> dict[str, Any]:
    if args.dataset != DEFAULT_DATASET:
        raise ValueError(
            f"bench store runs on synthetic clustered embeddings; --dataset must be "
            f"{DEFAULT_DATASET!r}, got {args.dataset!r}"
        )
    sizes = args.sizes or list(QUICK_SIZES if args.quick else SIZES)
    dims = args.dims or list(DIMS)
    for name, value in (
        ("--classes", args.classes),
        ("--queries", args.queries),
        ("--train-size", args.train_size),
        ("--threads", args.threads),
        ("--repeats", args.repeats),
    ):
        if value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value}")
    if not 0 < args.target_recall <= 1:
        raise ValueError(f"--target-recall must be in (0, 1], got {args.target_recall}")
    if min(sizes) < args.classes:
        raise ValueError(f"every size must hold each of the {args.classes} classes: {sizes}")
    if any(dim % 8 for dim in dims):
        raise ValueError(f"--dims must be multiples of 8 (PQ uses dim / 8 bytes): {dims}")
    return {
        "sizes": sizes,
        "dims": dims,
        "indexes": list(args.indexes),
        "classes": args.classes,
        "queries": args.queries,
        "train_size": args.train_size,
        "target_recall": args.target_recall,
        "threads": args.threads,
        "repeats": 1 if args.quick else args.repeats,
        "device": args.device,
        "quick": bool(args.quick),
        "data": {
            "family_size": FAMILY_SIZE,
            "class_spread": CLASS_SPREAD,
            "sample_spread": SAMPLE_SPREAD,
        },
    }


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas: {text!r}")
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers: {text!r}")
    return values


def _index_list(text: str) -> list[str]:
    kinds = [part.strip() for part in text.split(",") if part.strip()]
    unknown = sorted(set(kinds) - set(INDEX_KINDS))
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(
            f"unknown index kind(s) {unknown or text!r}; choose from {','.join(INDEX_KINDS)}"
        )
    return kinds
