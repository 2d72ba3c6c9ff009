"""How ``siamcl bench store`` results are shown: the markdown report and the recall/speed plot.

The report groups the rows of one run by seed, store size and dimension (one table each),
then lists the targets; the plot draws each index's sweep of queries/s against recall@1.
"""

from __future__ import annotations

from typing import Any

import faiss

from siamcl.bench.store_data import CLASS_SPREAD, FAMILY_SIZE, SAMPLE_SPREAD
from siamcl.bench.store_indexes import BRUTE_FORCE, TARGET_RECALL
from siamcl.reporting import markdown_table
from siamcl.reporting.figures import pyplot
from siamcl.reporting.records import machine_line

__all__ = ["plot_recall_speed", "render_markdown"]

MARKERS = {BRUTE_FORCE: "s", "Flat": "D", "HNSW32": "o", "IVF-Flat": "^", "IVF-PQ": "v"}


def render_markdown(results: dict[str, Any]) -> str:
    """The result file's markdown: run record, data note, one table per run, targets."""
    s = results["settings"]
    lines = [*_header(results), "", data_note(s)]
    headers = _table_headers(s["queries"])
    for (seed, size, dim), rows in _groups(results["rows"]).items():
        lines += ["", f"## {size:,} vectors, dimension {dim} (seed {seed})", ""]
        table = [_table_row(r, s["target_recall"]) for r in rows]
        lines.append(markdown_table(headers, table))
    lines += ["", "## Targets", "", *_target_lines(results["bars"])]
    return "\n".join(lines)


def _header(results: dict[str, Any]) -> list[str]:
    """Title and run record: command, seeds, machine, threads, date, time and memory."""
    machine = results["machine"]
    return [
        "# Prototype store: FAISS indexes against a PyTorch brute force",
        "",
        f"Command: `{results['command']}`  ",
        f"Seeds: {results['seeds']}  ",
        f"Machine: {machine_line(machine, 'FAISS ' + faiss.__version__)}  ",
        f"Threads (FAISS and torch, every method): {results['settings']['threads']}  ",
        f"Date: {results['date']}  ",
        (
            f"Run time: {results['wall_s'] / 60:.1f} min; peak resident memory: "
            f"{results['peak_rss_bytes'] / 2**20:.0f} MiB"
        ),
    ]


def data_note(s: dict[str, Any]) -> str:
    """One paragraph on the data, the tuning rule and what the ratios compare."""
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


def _table_headers(queries: int) -> list[str]:
    return [
        "method",
        "index",
        "setting",
        "build s",
        "queries/s batch 1",
        "x brute",
        f"queries/s batch {queries}",
        "x brute",
        "recall@1",
        "accuracy",
        "index B/vector",
        "x Flat",
        "store B/vector",
    ]


def _groups(rows: list[dict[str, Any]]) -> dict[tuple[int, int, int], list[dict[str, Any]]]:
    """Rows by (seed, size, dim), in the order they were run."""
    groups: dict[tuple[int, int, int], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["seed"], row["size"], row["dim"]), []).append(row)
    return groups


def _table_row(r: dict[str, Any], target_recall: float) -> list[Any]:
    """One method's cells; a setting that misses the target recall is marked ``*``."""
    missed = r["recall_at_1"] < target_recall
    setting = ", ".join(f"{k}={v}" for k, v in (r["setting"] or {}).items()) or "-"
    return [
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


def _target_lines(bars: dict[str, Any]) -> list[str]:
    """One bullet per target with its verdict and figures."""
    lines = []
    for name, bar in bars.items():
        verdict = "met" if bar["met"] else "NOT met"
        detail = {k: v for k, v in bar.items() if k not in ("goal", "met")}
        lines.append(f"- **{name}** ({bar['goal']}): {verdict}; {detail}")
    if not bars:
        lines.append("- none of the target settings was part of this run")
    return lines


def plot_recall_speed(
    rows: list[dict[str, Any]], path: str, target_recall: float = TARGET_RECALL
) -> None:
    """Queries/s at batch size against recall@1 for each index, one panel per size x dim."""
    plt = pyplot()
    panels = sorted({(r["dim"], r["size"]) for r in rows})
    dims = sorted({d for d, _ in panels})
    sizes = sorted({n for _, n in panels})
    fig, axes = plt.subplots(
        len(dims), len(sizes), figsize=(4.2 * len(sizes), 3.4 * len(dims)), squeeze=False
    )
    for i, dim in enumerate(dims):
        for j, size in enumerate(sizes):
            panel = [r for r in rows if r["dim"] == dim and r["size"] == size]
            _draw_panel(axes[i][j], panel, f"{size:,} x {dim}", target_recall)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _draw_panel(ax: Any, rows: list[dict[str, Any]], title: str, target_recall: float) -> None:
    """Each method's sweep (or single point) in one panel, with the target as a line."""
    for r in rows:
        points = r["sweep"] or [r]
        ax.plot(
            [p["recall_at_1"] for p in points],
            [p["qps_batch"] for p in points],
            marker=MARKERS.get(r["method"], "."),
            label=r["method"],
        )
    ax.axvline(target_recall, color="grey", linestyle=":", linewidth=1)
    ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("recall@1")
    ax.set_ylabel("queries/s (batch)")
    ax.grid(alpha=0.3)
