"""``siamcl bench store`` end to end on a tiny store, and its pieces."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from siamcl.bench.store import (
    build_store,
    check_bars,
    clustered_embeddings,
    index_specs,
    rows_of_ids,
)
from siamcl.bench.store_indexes import _balanced_first_rows
from siamcl.cli import main

TINY = ["--sizes", "2000", "--dims", "16", "--classes", "20", "--queries", "100"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("store")
    argv = ["bench", "store", *TINY, "--train-size", "1000", "--repeats", "1"]
    assert main([*argv, "--out", str(out), "--quiet"]) == 0
    return out, json.loads((out / "store.json").read_text())


def test_writes_json_markdown_and_plot(tiny_run: tuple[Path, dict]) -> None:
    out, results = tiny_run
    for name in ("store.json", "store.md", "store.png"):
        assert (out / name).stat().st_size > 0
    assert (out / "store.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert results["settings"]["threads"] == 1
    assert results["peak_rss_bytes"] > 0
    assert "| Flat |" in (out / "store.md").read_text()


def test_flat_is_exact_and_agrees_with_brute_force(tiny_run: tuple[Path, dict]) -> None:
    rows = {row["method"]: row for row in tiny_run[1]["rows"]}
    assert set(rows) == {"torch-brute-force", "Flat", "HNSW32", "IVF-Flat", "IVF-PQ"}
    assert rows["Flat"]["recall_at_1"] == 1.0
    assert rows["Flat"]["accuracy"] == rows["torch-brute-force"]["accuracy"]
    assert rows["Flat"]["qps_batch_vs_brute"] == pytest.approx(
        rows["Flat"]["qps_batch"] / rows["torch-brute-force"]["qps_batch"]
    )
    for row in rows.values():
        assert 0 <= row["recall_at_1"] <= 1 and 0 <= row["accuracy"] <= 1


def test_approximate_indexes_are_tuned_and_trained_on_the_sample(
    tiny_run: tuple[Path, dict],
) -> None:
    rows = {row["method"]: row for row in tiny_run[1]["rows"]}
    assert rows["IVF-Flat"]["index"] == "IVF179,Flat" and rows["IVF-Flat"]["trained_on"] == 1000
    assert list(rows["HNSW32"]["setting"]) == ["efSearch"]
    assert list(rows["IVF-Flat"]["setting"]) == ["nprobe"]
    for kind in ("HNSW32", "IVF-Flat"):
        recalls = [point["recall_at_1"] for point in rows[kind]["sweep"]]
        assert rows[kind]["recall_at_1"] >= 0.95 or max(recalls) < 0.95
    # 2 one-byte PQ codes + an 8-byte id per vector, against 16 floats + an id for Flat
    assert rows["IVF-PQ"]["index_bytes_per_vector"] < 0.5 * rows["Flat"]["index_bytes_per_vector"]


def test_clustered_embeddings_are_unit_length_sorted_and_seeded() -> None:
    X, y, Q, q_y = clustered_embeddings(500, 16, n_classes=10, n_queries=30, seed=3)
    assert X.shape == (500, 16) and X.dtype == np.float32 and Q.shape == (30, 16)
    assert np.allclose(np.linalg.norm(X, axis=1), 1, atol=1e-5)
    assert np.all(np.diff(y) >= 0) and np.bincount(y).tolist() == [50] * 10
    assert np.array_equal(clustered_embeddings(500, 16, 10, 30, seed=3)[0], X)
    assert not np.array_equal(clustered_embeddings(500, 16, 10, 30, seed=4)[0], X)
    assert set(q_y) <= set(range(10))


def test_store_trained_on_a_sample_keeps_input_order_and_maps_ids() -> None:
    X, y, Q, _ = clustered_embeddings(1200, 16, n_classes=12, n_queries=20, seed=0)
    sample = _balanced_first_rows(y, 600)
    assert sample.sum() == 600 and np.bincount(y[sample]).tolist() == [50] * 12
    store, trained_on = build_store(index_specs(1200, 16)["IVF-Flat"], X, y, train_size=600)
    assert trained_on == 600 and store.n_prototypes == 1200
    assert np.array_equal(store.prototype_labels, y)
    np.testing.assert_allclose(store.prototypes(), X, atol=1e-6)
    store.nprobe = store.faiss_index.nlist  # every list: exact
    _, ids = store.faiss_index.search(Q, 1)
    assert np.array_equal(rows_of_ids(store)(ids[:, 0]), np.argmax(Q @ X.T, axis=1))


def test_bad_options_exit_with_status_2(tmp_path: Path) -> None:
    assert main(["bench", "store", *TINY, "--dims", "12", "--out", str(tmp_path)]) == 2
    assert main(["bench", "store", "--indexes", "Flat,LSH", "--out", str(tmp_path)]) == 2
    assert main(["bench", "store", "--dataset", "mnist5k", "--out", str(tmp_path)]) == 2
    assert not (tmp_path / "store.json").exists()


def test_store_guide_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The python blocks of docs/store.md run as written, in order, in one namespace."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "store.md").read_text()
    blocks = re.findall(r"^```python[ \t]*\n(.*?)^```[ \t]*$", text, re.DOTALL | re.MULTILINE)
    assert blocks
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__docs__"}
    for number, source in enumerate(blocks, start=1):
        exec(compile(source, f"docs/store.md python block {number}", "exec"), namespace)  # noqa: S102


def test_bars_are_judged_at_one_million_by_64() -> None:
    def row(method: str, size: int = 1_000_000, **figures: float) -> dict:
        return {
            "method": method,
            "size": size,
            "dim": 64,
            "index": method,
            "setting": None,
            "accuracy": 0.9,
            **figures,
        }

    settings = {"target_recall": 0.95, "queries": 1000, "quick": False}
    rows = [
        row("Flat", recall_at_1=1.0, qps_batch_vs_brute=0.5, index_bytes_vs_flat=1.0),
        row("HNSW32", recall_at_1=0.97, qps_batch_vs_brute=9.0, index_bytes_vs_flat=2.0),
        row("IVF-Flat", recall_at_1=0.94, qps_batch_vs_brute=50.0, index_bytes_vs_flat=1.0),
        row("IVF-PQ", recall_at_1=0.2, qps_batch_vs_brute=80.0, index_bytes_vs_flat=0.07),
        row("IVF-PQ", size=10_000, recall_at_1=0.3, qps_batch_vs_brute=9, index_bytes_vs_flat=0.2),
    ]
    bars = check_bars(rows, peak_rss_bytes=3 * 2**30, settings=settings)
    assert not bars["speed"]["met"] and bars["speed"]["best"]["method"] == "HNSW32"
    assert bars["pq_bytes"]["met"] and bars["pq_bytes"]["ratio"] == 0.07
    assert "quick_peak_memory" not in bars
    rows[1]["qps_batch_vs_brute"] = 10.0
    quick = check_bars(rows, peak_rss_bytes=3 * 2**30, settings={**settings, "quick": True})
    assert quick["speed"]["met"] and not quick["quick_peak_memory"]["met"]
