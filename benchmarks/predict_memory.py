"""Peak memory of ``predict`` as the number of images grows (5,000 vs 150,000 by default).

Each size runs in a fresh process: a classifier is trained briefly on mnist5k, the images are
made (mnist5k test images repeated), then ``predict`` runs while a sampler thread records the
process's resident memory (psutil) every 10 ms. The result is how far the peak rose above the
memory held just before the call; with preprocessing in blocks of rows it should grow with
the outputs (embeddings and labels), not with the images.

    python benchmarks/predict_memory.py [--sizes 5000 150000] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from siamcl.reporting import markdown_table, run_record, write_results

CHILD = r"""
import json, sys, threading, time
import numpy as np, psutil, torch
from siamcl import IncrementalClassifier
from siamcl.data import load_dataset
n = int(sys.argv[1])
X, y, X_test, _ = load_dataset("mnist5k")
clf = IncrementalClassifier(epochs=1, flops="off", seed=0).fit(X[:1000], y[:1000])
images = np.resize(X_test, (n, *X_test.shape[1:]))
process = psutil.Process()
before = process.memory_info().rss
peak = [before]
done = threading.Event()
def sample():
    while not done.is_set():
        peak[0] = max(peak[0], process.memory_info().rss)
        time.sleep(0.01)
thread = threading.Thread(target=sample)
thread.start()
start = time.perf_counter()
labels = clf.predict(images)
seconds = time.perf_counter() - start
done.set()
thread.join()
peak[0] = max(peak[0], process.memory_info().rss)
print(json.dumps({"images": n, "rss_before_mb": before / 2**20, "peak_rise_mb": (peak[0] - before) / 2**20,
                  "input_mb": images.nbytes / 2**20, "seconds": seconds, "predicted": int(len(labels))}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 150000])
    parser.add_argument("--out", default="/tmp/siamcl-results/predict_memory")
    args = parser.parse_args()
    record = run_record(
        "predict_memory", [0], sizes=args.sizes
    )  # taken before the work: the commit and date it started at
    rows = []
    for size in args.sizes:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(size)], capture_output=True, text=True, check=True
        )
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(rows[-1])
    growth = rows[-1]["peak_rise_mb"] - rows[0]["peak_rise_mb"]
    results = {
        **record,
        "command": " ".join(["python", "benchmarks/predict_memory.py", *sys.argv[1:]]),
        "rows": rows,
        "peak_rise_growth_mb": growth,
    }
    table = markdown_table(
        ["images", "input MiB", "RSS before MiB", "peak rise in predict MiB", "seconds"],
        [
            [
                r["images"],
                f"{r['input_mb']:.0f}",
                f"{r['rss_before_mb']:.0f}",
                f"{r['peak_rise_mb']:.0f}",
                f"{r['seconds']:.1f}",
            ]
            for r in rows
        ],
    )
    command = (
        f"Command: `{results['command']}`; conv4 on mnist5k (28x28 images), one fresh process "
        "per size, resident memory sampled every 10 ms during the call."
    )
    verdict = (
        f"The peak rise grows by {growth:.0f} MiB from {rows[0]['images']:,} to "
        f"{rows[-1]['images']:,} images (the bar: within 150 MiB)."
    )
    markdown = f"# Peak memory of predict as the input grows\n\n{command}\n\n{table}\n\n{verdict}"
    print(markdown)
    write_results(args.out, "predict_memory", results, markdown)


if __name__ == "__main__":
    main()
