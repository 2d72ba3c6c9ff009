"""Training time and results of this tree against an earlier commit, in one run.

Each repeat trains the same 5-task class-incremental mnist5k stream (a 20% sample, 2 epochs a
task) with IncrementalClassifier and SoftmaxClassifier, and an EpisodicTrainer for 150
episodes, once in this tree and once in a git
worktree of ``--baseline`` (alternating, each in a fresh process with one torch thread), and
records per-task CPU seconds, final accuracy and a hash of the Siamese test embeddings (equal
hashes: the two trees compute the same model). Reports the CPU-time ratio this/baseline.

    python benchmarks/engine_timing.py --baseline f7625a0 [--repeats 3] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from siamcl.reporting import markdown_table, run_record, write_results

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import hashlib, json, time, numpy as np, torch
torch.set_num_threads(1)
from siamcl import IncrementalClassifier
from siamcl.baselines import SoftmaxClassifier
from siamcl.data import class_incremental, load_dataset, subsample
X, y, X_test, y_test = load_dataset("mnist5k")
X, y = subsample(X, y, 0.2, seed=0)
out = {}
for name, learner in (("siamese", IncrementalClassifier), ("softmax", SoftmaxClassifier)):
    clf = learner(epochs=2, seed=0, flops="off")
    cpu = []
    for task in class_incremental(X, y, n_tasks=5, seed=0):
        start = time.process_time()
        clf.fit_task(task.X, task.y)
        cpu.append(time.process_time() - start)
    out[name] = {"cpu_s": cpu, "accuracy": float((clf.predict(X_test) == y_test).mean())}
    if name == "siamese":
        digest = hashlib.sha256(np.ascontiguousarray(clf.embed(X_test[:500])).tobytes())
        out[name]["embedding_sha256"] = digest.hexdigest()[:16]
from siamcl.fewshot import EpisodicTrainer
trainer = EpisodicTrainer(steps=150, ways=5, queries=3, input_size=20, embed_views=1, seed=0, flops="off")
start = time.process_time()
episodic = trainer.fit(X[:1000], y[:1000])
out["episodic"] = {"cpu_s": [time.process_time() - start],
                   "accuracy": float((episodic.predict(X_test) == y_test).mean())}
print(json.dumps(out))
"""


def run_tree(tree: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", CHILD], cwd=tree, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="git commit to compare against")
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of each tree")
    parser.add_argument("--out", default="/tmp/siamcl-bench/engine_timing", help="result folder")
    args = parser.parse_args()
    record = run_record(
        "engine_timing", [0], baseline=args.baseline, repeats=args.repeats
    )  # taken before the work: the commit and date it started at
    runs: dict[str, list[dict]] = {"this": [], "baseline": []}
    with tempfile.TemporaryDirectory() as scratch:
        baseline_tree = Path(scratch) / "baseline"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(baseline_tree), args.baseline],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        try:
            for _ in range(args.repeats):
                runs["baseline"].append(run_tree(baseline_tree))
                runs["this"].append(run_tree(ROOT))
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(baseline_tree)], cwd=ROOT, check=False
            )
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    rows, summary = [], {}
    for learner in ("siamese", "softmax", "episodic"):
        totals = {tree: [sum(r[learner]["cpu_s"]) for r in runs[tree]] for tree in runs}
        ratio = statistics.median(totals["this"]) / statistics.median(totals["baseline"])
        accuracy = {tree: [r[learner]["accuracy"] for r in runs[tree]] for tree in runs}
        summary[learner] = {"cpu_ratio_this_over_baseline": ratio, "accuracy": accuracy}
        rows.append(
            [
                learner,
                f"{statistics.median(totals['baseline']):.1f}",
                f"{statistics.median(totals['this']):.1f}",
                f"{ratio:.3f}",
                ", ".join(f"{a:.4f}" for a in accuracy["baseline"]),
                ", ".join(f"{a:.4f}" for a in accuracy["this"]),
            ]
        )
    hashes = {tree: sorted({r["siamese"]["embedding_sha256"] for r in runs[tree]}) for tree in runs}
    results = {
        **record,
        "command": " ".join(["python", "benchmarks/engine_timing.py", *sys.argv[1:]]),
        "commit": commit,
        "runs": runs,
        "summary": summary,
        "siamese_embedding_hashes": hashes,
    }
    headers = [
        "learner",
        f"CPU s {args.baseline}",
        f"CPU s {commit}",
        "ratio",
        f"accuracy {args.baseline}",
        f"accuracy {commit}",
    ]
    markdown = "\n".join(
        [
            "# Training time against an earlier commit (same run)",
            "",
            (
                f"Command: `{results['command']}`; 5 tasks of a 20% mnist5k sample, 2 epochs "
                f"a task, one torch thread, medians of {args.repeats} alternating runs; "
                f"commit {commit}."
            ),
            f"Machine: {results['machine']['processor']}, {results['machine']['cpu_count']} cores.",
            "",
            markdown_table(headers, rows),
            "",
            (
                f"Siamese test-embedding hashes: baseline {hashes['baseline']}, this "
                f"{hashes['this']} ("
                f"{'identical models' if hashes['baseline'] == hashes['this'] else 'differ'})."
            ),
        ]
    )
    print(markdown)
    write_results(args.out, "engine_timing", results, markdown)


if __name__ == "__main__":
    main()
