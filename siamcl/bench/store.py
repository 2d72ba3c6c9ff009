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
import os
from typing import Any

from siamcl.accounting import ResourceMeter
from siamcl.bench.store_data import (
    CLASS_SPREAD,
    FAMILY_SIZE,
    INDEX_KINDS,
    SAMPLE_SPREAD,
    clustered_embeddings,
    index_specs,
)
from siamcl.bench.store_indexes import (
    BRUTE_FORCE,
    TARGET_RECALL,
    TorchBruteForce,
    build_store,
    compare_indexes,
    rows_of_ids,
)
from siamcl.reporting import run_record, write_results
from siamcl.reporting.figures import draw_or_skip
from siamcl.reporting.records import add_threads_option, choice_list, positive_int_list
from siamcl.reporting.store import plot_recall_speed, render_markdown
from siamcl.threads import cpu_threads

__all__ = [
    "BRUTE_FORCE",
    "INDEX_KINDS",
    "TARGET_RECALL",
    "TorchBruteForce",
    "build_store",
    "check_bars",
    "clustered_embeddings",
    "compare_indexes",
    "configure",
    "index_specs",
    "rows_of_ids",
    "run",
]

DEFAULT_DATASET = "synthetic"
SIZES = (10_000, 100_000, 1_000_000)
QUICK_SIZES = (100_000,)
DIMS = (64, 128)
N_CLASSES = 1000
TRAIN_SIZE = 100_000
PEAK_MEMORY_LIMIT = 2 * 2**30
SPEEDUP_BAR = 10.0
PQ_BYTES_BAR = 1 / 8
BAR_SIZE, BAR_DIM = 1_000_000, 64


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the store suite's options to ``parser``."""
    parser.add_argument(
        "--sizes",
        type=positive_int_list,
        default=None,
        help="store sizes (default 10000,100000,1000000)",
    )
    parser.add_argument(
        "--dims", type=positive_int_list, default=None, help="dimensions (default 64,128)"
    )
    parser.add_argument(
        "--indexes",
        type=choice_list(INDEX_KINDS),
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
    add_threads_option(parser, 1, "FAISS's and torch's, for every method alike")
    parser.add_argument("--repeats", type=int, default=3, help="timings of each batch (3)")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Compare every method at every size and dimension; write JSON, markdown and plot."""
    settings = _settings(args)
    seeds = args.seeds or [0]
    record = run_record("store", seeds, **settings)  # before the work: the commit it started at
    meter = ResourceMeter(energy="estimate", flops="off")
    rows = []
    with cpu_threads(settings["threads"]), meter:  # FAISS's and torch's threads alike
        for seed in seeds:
            for size in settings["sizes"]:
                for dim in settings["dims"]:
                    rows += compare_indexes(size, dim, seed, settings, quiet=args.quiet)
    report = meter.report(method="bench store")
    peak = report.peak_rss_bytes
    results = {
        **record,
        "wall_s": report.wall_s,
        "peak_rss_bytes": peak,
        "rows": rows,
        "bars": check_bars(rows, peak, settings),
    }
    name = "store_quick" if args.quick else "store"
    table = render_markdown(results)
    write_results(args.out, name, results, table)
    figure = os.path.join(args.out, f"{name}.png")
    draw_or_skip(plot_recall_speed, rows, figure, settings["target_recall"])
    if not args.quiet:
        print(table)
    return results


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
