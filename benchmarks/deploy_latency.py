"""The deployed model: size, prediction time and agreement of fp32 and int8 ONNX exports.

Trains the learner ``siamcl learn`` trains (conv4, the library's defaults) on mnist5k, once in
float32 and once quantization-aware (``qat="int8"``), with the same epochs and seed, exports
both to ONNX and classifies the 1,000 test images three ways: siamcl's own ``predict``
(torch), and the export read by ``siamcl.export.deploy`` (onnxruntime and faiss, no siamcl).
Prediction times are medians of interleaved repeats of the whole test split (after one
warm-up call), wall and CPU seconds, on this machine's threads.

    python benchmarks/deploy_latency.py [--epochs 4] [--repeats 7] [--out DIR]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from siamcl import IncrementalClassifier
from siamcl.allocator import retain_freed_memory
from siamcl.data import load_dataset
from siamcl.export import ExportedClassifier
from siamcl.reporting import markdown_table, run_record, write_results
from siamcl.reporting.records import DEFAULT_OUT, record_markdown

PRECISIONS = {"fp32": None, "int8": "int8"}


def timed(predict: Any, X: np.ndarray) -> tuple[np.ndarray, float, float]:
    """``predict(X)`` with its wall and CPU seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    labels = predict(X)
    return labels, time.perf_counter() - wall, time.process_time() - cpu


def measure(
    models: dict[str, tuple[Any, Any]], X: np.ndarray, repeats: int
) -> dict[str, dict[str, list[float]]]:
    """Wall and CPU seconds of every (precision, path), in interleaved rounds."""
    seconds: dict[str, dict[str, list[float]]] = {}
    for name, (clf, exported) in models.items():  # warm-up: first-call allocations
        clf.predict(X[:256])
        exported.predict(X[:256])
        seconds[f"{name} siamcl"] = {"wall": [], "cpu": []}
        seconds[f"{name} onnx"] = {"wall": [], "cpu": []}
    for _ in range(repeats):
        for name, (clf, exported) in models.items():
            for path, predict in (("siamcl", clf.predict), ("onnx", exported.predict)):
                _, wall, cpu = timed(predict, X)
                seconds[f"{name} {path}"]["wall"].append(wall)
                seconds[f"{name} {path}"]["cpu"].append(cpu)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=f"{DEFAULT_OUT}/deploy_latency")
    args = parser.parse_args()
    retain_freed_memory()  # as the siamcl command does (siamcl.allocator)
    record = run_record("deploy_latency", [args.seed], epochs=args.epochs, repeats=args.repeats)
    X, y, X_test, y_test = load_dataset("mnist5k")
    models, rows = {}, []
    with tempfile.TemporaryDirectory() as scratch:
        for name, qat in PRECISIONS.items():
            clf = IncrementalClassifier(epochs=args.epochs, qat=qat, seed=args.seed)
            clf.fit_task(X, y)
            folder = clf.export(Path(scratch) / name)
            exported = ExportedClassifier(folder)
            models[name] = (clf, exported)
            by_siamcl, by_export = clf.predict(X_test), exported.predict(X_test)
            rows.append(
                {
                    "precision": name,
                    "onnx_bytes": (folder / "encoder.onnx").stat().st_size,
                    "siamcl_accuracy": float(np.mean(by_siamcl == y_test)),
                    "onnx_accuracy": float(np.mean(by_export == y_test)),
                    "agreement": float(np.mean(by_export == by_siamcl)),
                }
            )
            print(rows[-1], flush=True)
        seconds = measure(models, X_test, args.repeats)
    for row in rows:
        for path in ("siamcl", "onnx"):
            times = seconds[f"{row['precision']} {path}"]
            row[f"{path}_wall_s"] = statistics.median(times["wall"])
            row[f"{path}_cpu_s"] = statistics.median(times["cpu"])
    fp32 = rows[0]
    results = {
        **record,
        "test_images": len(X_test),
        "rows": rows,
        "seconds": seconds,
    }
    table = markdown_table(
        [
            "encoder",
            "encoder.onnx KB",
            "accuracy (siamcl / ONNX)",
            "agreement",
            "siamcl predict ms",
            "ONNX predict ms",
            "ONNX CPU ms",
            "ONNX time vs fp32 ONNX",
        ],
        [
            [
                r["precision"],
                f"{r['onnx_bytes'] / 1024:,.0f}",
                f"{r['siamcl_accuracy']:.3f} / {r['onnx_accuracy']:.3f}",
                f"{r['agreement']:.1%}",
                f"{r['siamcl_wall_s'] * 1e3:.0f}",
                f"{r['onnx_wall_s'] * 1e3:.0f}",
                f"{r['onnx_cpu_s'] * 1e3:.0f}",
                f"{r['onnx_wall_s'] / fp32['onnx_wall_s']:.2f}x",
            ]
            for r in rows
        ],
    )
    markdown = "\n\n".join(
        [
            "# The deployed model: fp32 and int8 ONNX exports",
            record_markdown(results),
            (
                "conv4 with the library's defaults, trained on "
                f"the 4,000 mnist5k training images for {args.epochs} epochs (seed {args.seed}), "
                "float32 and quantization-aware int8, each exported to ONNX. Times classify the "
                f"{len(X_test):,} test images, medians of {args.repeats} interleaved repeats after "
                "a warm-up; siamcl predict runs the torch model, ONNX the export through "
                "`siamcl.export.deploy` (onnxruntime and faiss). Agreement: share of test images "
                "the export labels as siamcl does."
            ),
            table,
        ]
    )
    print(markdown)
    write_results(args.out, "deploy_latency", results, markdown)


if __name__ == "__main__":
    main()
