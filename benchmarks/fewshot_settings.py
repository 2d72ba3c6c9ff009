"""One-shot accuracy of EpisodicTrainer settings, over several seeds, with and without views.

Each setting trains an encoder on the default training alphabets (Balinese, Early Aramaic,
Korean) once per seed, then scores it on the same N-way one-shot runs from held-out alphabets
(written once with ``make_runs``) embedding each image alone and as the mean of 8 views. A
seed changes the encoder's initialisation and the episodes, not the runs, so the settings are
compared on identical problems; the spread across seeds is what one training run can vary by.

Settings:
  previous  2000 steps, RandomAffine's default distortion ranges (the defaults two recipes ago)
  default   EpisodicTrainer() as it ships (since issue 19: 3000 steps, channels-last,
            EPISODIC_DISTORTION with its elastic wobble; fewshot_settings.md was measured
            with the 4000-step affine-only default before it)

Usage: python benchmarks/fewshot_settings.py --data-root ../shared/data/omniglot
       [--seeds 0,1,2] [--runs 100] [--runs-seed 0] [--settings previous,default]
       [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from siamcl.allocator import retain_unless_disabled
from siamcl.augment import RandomAffine
from siamcl.cli.help import HelpFormatter
from siamcl.data import load_omniglot
from siamcl.fewshot import (
    DEFAULT_TRAIN_ALPHABETS,
    EpisodicTrainer,
    evaluate_runs,
    make_runs,
)
from siamcl.reporting import (
    DEFAULT_OUT,
    markdown_table,
    parse_seeds,
    record_markdown,
    run_record,
    write_results,
)
from siamcl.threads import cpu_threads

HELD_OUT = ["Greek", "Japanese_(katakana)", "Latin", "Sanskrit"]
SETTINGS: dict[str, dict[str, Any]] = {
    "previous": {"steps": 2000, "augment": RandomAffine()},
    "default": {},
}
VIEWS = (1, 8)


def score(trainer: EpisodicTrainer, train, runs) -> dict[str, Any]:
    """Train with ``trainer``; one-shot accuracy with each number of views, and the cost."""
    classifier = trainer.fit(train.images, train.labels, groups=train.alphabets)
    report = classifier.reports[0]
    result: dict[str, Any] = {"train_wall_s": report.wall_s, "train_energy_j": report.energy_j}
    for views in VIEWS:
        viewed = copy.copy(classifier).set_params(embed_views=views)
        start = time.perf_counter()
        with cpu_threads(1):
            result[f"accuracy_{views}_views"] = evaluate_runs(viewed, runs)["mean_accuracy"]
        result[f"eval_s_{views}_views"] = time.perf_counter() - start
    return result


def main(argv: list[str] | None = None) -> dict:
    retain_unless_disabled()  # freed memory kept for reuse, as the siamcl command starts
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--data-root", required=True, help="folder holding Omniglot")
    parser.add_argument("--seeds", type=parse_seeds, default="0,1,2", help="training seeds")
    parser.add_argument("--runs", type=int, default=100, help="20-way one-shot runs")
    parser.add_argument("--runs-seed", type=int, default=0, help="seed of make_runs")
    parser.add_argument("--settings", default=",".join(SETTINGS), help="settings to compare")
    parser.add_argument("--out", default=DEFAULT_OUT, help="result folder")
    args = parser.parse_args(argv)
    seeds, names = args.seeds, args.settings.split(",")
    unknown = sorted(set(names) - set(SETTINGS))
    if unknown:
        parser.error(f"unknown settings {unknown}; known: {sorted(SETTINGS)}")
    record = run_record(  # taken before the work: the commit and date it started at
        "fewshot_settings",
        seeds,
        train_alphabets=list(DEFAULT_TRAIN_ALPHABETS),
        held_out=HELD_OUT,
        ways=20,
        runs=args.runs,
        runs_seed=args.runs_seed,
        settings={name: {k: repr(v) for k, v in SETTINGS[name].items()} for name in names},
    )
    train = load_omniglot(args.data_root, list(DEFAULT_TRAIN_ALPHABETS), progress=False)
    held_out = load_omniglot(args.data_root, HELD_OUT, progress=False)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as folder:
        runs = make_runs(held_out, folder, ways=20, runs=args.runs, seed=args.runs_seed)
        for name in names:
            for seed in seeds:
                trainer = EpisodicTrainer(seed=seed, **SETTINGS[name])
                rows.append({"setting": name, "seed": seed, **score(trainer, train, runs)})
                last = rows[-1]
                print(
                    f"{name} seed {seed}: "
                    + ", ".join(f"{v} views {last[f'accuracy_{v}_views']:.3f}" for v in VIEWS)
                    + f" ({last['train_wall_s']:.0f} s training)",
                    flush=True,
                )
    results = {
        **record,
        "rows": rows,
        "summary": _summary(rows, names),
    }
    markdown = _markdown(results, names)
    write_results(Path(args.out), "fewshot_settings", results, markdown)
    print(markdown)
    return results


def _summary(rows: list[dict[str, Any]], names: list[str]) -> dict[str, dict[str, float]]:
    """Per setting: mean training time and accuracies over seeds, and their spread."""
    summary = {}
    for name in names:
        mine = [r for r in rows if r["setting"] == name]
        summary[name] = {
            key: statistics.mean(r[key] for r in mine)
            for key in ("train_wall_s", *(f"accuracy_{v}_views" for v in VIEWS))
        }
        for views in VIEWS:
            values = [r[f"accuracy_{views}_views"] for r in mine]
            summary[name][f"accuracy_{views}_views_sd"] = (
                statistics.stdev(values) if len(values) > 1 else 0.0
            )
    return summary


def _markdown(results: dict[str, Any], names: list[str]) -> str:
    summary, settings = results["summary"], results["settings"]
    table = [
        [
            name,
            f"{summary[name]['accuracy_1_views']:.3f} ± {summary[name]['accuracy_1_views_sd']:.3f}",
            f"{summary[name]['accuracy_8_views']:.3f} ± {summary[name]['accuracy_8_views_sd']:.3f}",
            f"{summary[name]['train_wall_s']:.0f}",
        ]
        for name in names
    ]
    per_seed = [
        [
            r["setting"],
            r["seed"],
            r["accuracy_1_views"],
            r["accuracy_8_views"],
            f"{r['train_wall_s']:.0f}",
        ]
        for r in results["rows"]
    ]
    return "\n".join(
        [
            "# One-shot settings: training recipe and views, over seeds",
            "",
            record_markdown(results) + "  ",
            (
                f"Trained on: {', '.join(settings['train_alphabets'])}; "
                f"tested on {settings['runs']} 20-way one-shot runs from "
                f"{', '.join(settings['held_out'])} (runs seed {settings.get('runs_seed', 0)}; "
                "the same runs for every row)."
            ),
            "",
            markdown_table(
                ["setting", "accuracy, 1 view", "accuracy, 8 views", "training s"], table
            ),
            "",
            "Mean ± standard deviation over seeds. Settings: "
            + "; ".join(f"{n}: {settings['settings'][n] or 'EpisodicTrainer()'}" for n in names),
            "",
            markdown_table(["setting", "seed", "1 view", "8 views", "training s"], per_seed),
        ]
    )


if __name__ == "__main__":
    main()
