"""One-shot Omniglot recipes over alphabet splits and seeds, with training energy relative to
a reference recipe measured in the same run.

For every split, seed and recipe, EpisodicTrainer trains an encoder on the split's training
alphabets; the classifier (8 views per image) is scored on the same 20-way one-shot runs
from the held-out alphabets, inductively, with balanced transduction and with queries matched
to classes jointly (:mod:`siamcl.transductive`), and on the one-shot class-incremental stream: every character
of the held-out alphabets added one alphabet at a time through ``add_classes`` from one
drawing, then tested on the other drawings. Training energy comes from each training's
TaskReport (CPU seconds x watts per core on a machine without RAPL); the ratio compares a
recipe with the reference recipe on the same split and seed, trained in this process.

Recipes:
  previous  the default before: conv4 (last map averaged, 64-d), 4000 steps, NCHW layout,
            affine distortion only, no whitening (PREVIOUS_DISTORTION; `siamcl fewshot train
            --encoder conv4 --embedding-dim 64 --steps 4000 --no-channels-last --elastic 0
            --whitening none`)
  avg-pool  conv4 (last map averaged, 64-d) instead of the default's encoder (128-d), no
            whitening
  flat      conv4-flat (the blocks normalise before they pool), no whitening: the default
            until conv4-flat-pool-first
  unwhitened
            the default without the within-class whitening training ends with (the default
            until whitening, ``whitening=None``)
  default   EpisodicTrainer() as it ships
  ways40    40 classes of 3 images per episode instead of 20 of 6
  within-alphabet
            every episode drawn within one alphabet (``within_group=1.0``)

Usage: python benchmarks/fewshot_recipes.py --data-root ../shared/data/omniglot
       [--splits default,five,balinese] [--seeds 0,1,2] [--recipes previous,default]
       [--reference previous] [--runs 100] [--threads 1] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from siamcl.allocator import retain_unless_disabled
from siamcl.cli.help import HelpFormatter
from siamcl.data import OmniglotData, load_omniglot
from siamcl.fewshot import EpisodicTrainer, evaluate_runs, make_runs
from siamcl.learners.episodic import PREVIOUS_DISTORTION
from siamcl.reporting import (
    DEFAULT_OUT,
    markdown_table,
    parse_seeds,
    run_record,
    titled_markdown,
    write_results,
)
from siamcl.reporting.records import choice_list
from siamcl.threads import cpu_threads

# split name -> training alphabets (docs/fewshot.md); every other alphabet is held out.
SPLITS: dict[str, list[str]] = {
    "default": ["Balinese", "Early_Aramaic", "Korean"],
    "five": ["Balinese", "Early_Aramaic", "Korean", "Japanese_(katakana)", "Tagalog"],
    "balinese": ["Greek", "Latin", "Sanskrit", "Tagalog", "Early_Aramaic"],
}
RECIPES: dict[str, dict[str, Any]] = {
    "previous": {
        "encoder": "conv4",
        "embedding_dim": 64,
        "steps": 4000,
        "channels_last": False,
        "augment": PREVIOUS_DISTORTION,
        "whitening": None,
    },
    # the default until conv4-flat
    "avg-pool": {"encoder": "conv4", "embedding_dim": 64, "whitening": None},
    # the default until conv4-flat-pool-first
    "flat": {"encoder": "conv4-flat", "whitening": None},
    "unwhitened": {"whitening": None},  # the default until within-class whitening
    "default": {},
    "ways40": {"ways": 40, "queries": 2},  # twice the classes per episode, same batch size
    "within-alphabet": {"within_group": 1.0},  # every episode from one alphabet
}


def score(trainer: EpisodicTrainer, train: OmniglotData, held: OmniglotData, runs) -> dict:
    """Train; one-shot accuracy on the runs (inductive, transductive), the one-shot
    class-incremental accuracy over all held-out characters, and the training's cost."""
    classifier = trainer.fit(train.images, train.labels, groups=train.alphabets)
    report = classifier.reports[0]
    with cpu_threads(1):
        return {
            "inductive": evaluate_runs(classifier, runs)["mean_accuracy"],
            "transductive": evaluate_runs(classifier, runs, "balanced")["mean_accuracy"],
            "matched": evaluate_runs(classifier, runs, "matched")["mean_accuracy"],
            "incremental_1shot": incremental_accuracy(classifier, held, trainer.seed),
            "train_cpu_s": report.cpu_s,
            "train_wall_s": report.wall_s,
            "train_energy_j": report.energy_j,
        }


def incremental_accuracy(classifier, held: OmniglotData, seed: int, reserve: int = 5) -> float:
    """Accuracy over every held-out character after adding the alphabets one at a time, one
    drawing each (as ``siamcl bench fewshot``'s 1-shot stream; ``reserve`` drawings per
    character are kept out of the test, as its 1,5-shot default does)."""
    learner = copy.copy(classifier)
    learner.reset_classes()
    rng = np.random.default_rng(seed)
    support, test = [], []
    for label in np.unique(held.labels):
        rows = rng.permutation(np.flatnonzero(held.labels == label))
        support.append(rows[:1])
        test.append(rows[reserve:])
    support, test = np.concatenate(support), np.concatenate(test)
    for alphabet in held.alphabet_names:
        rows = support[held.alphabets[support] == alphabet]
        learner.add_classes(held.images[rows], held.labels[rows])
    return float((learner.predict(held.images[test]) == held.labels[test]).mean())


def main(argv: list[str] | None = None) -> dict:
    retain_unless_disabled()  # freed memory kept for reuse, as the siamcl command starts
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=HelpFormatter
    )
    parser.add_argument("--data-root", required=True, help="folder holding Omniglot")
    parser.add_argument(
        "--splits", type=choice_list(tuple(SPLITS)), default=",".join(SPLITS), help="splits"
    )
    parser.add_argument("--seeds", type=parse_seeds, default="0,1,2", help="training seeds")
    parser.add_argument(
        "--recipes", type=choice_list(tuple(RECIPES)), default=",".join(RECIPES), help="recipes"
    )
    parser.add_argument("--reference", default="previous", help="recipe energy is relative to")
    parser.add_argument("--runs", type=int, default=100, help="one-shot runs per split")
    parser.add_argument("--ways", type=int, default=20, help="classes per one-shot run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads when training")
    parser.add_argument("--out", default=DEFAULT_OUT, help="result folder")
    args = parser.parse_args(argv)
    splits, names = args.splits, args.recipes
    record = run_record(  # taken before the work: the commit and date it started at
        "fewshot_recipes",
        args.seeds,
        splits={s: SPLITS[s] for s in splits},
        recipes={n: {k: repr(v) for k, v in RECIPES[n].items()} for n in names},
        reference=args.reference,
        runs=args.runs,
        ways=args.ways,
        embed_views=EpisodicTrainer().embed_views,
    )
    data = load_omniglot(args.data_root, progress=False)
    rows = []
    with cpu_threads(args.threads):
        for split in splits:
            rows += _split_rows(data, split, names, args)
    results = {**record, "rows": _with_ratios(rows, args.reference)}
    markdown = _markdown(results, splits, names)
    write_results(Path(args.out), "fewshot_recipes", results, markdown)
    print(markdown)
    return results


def _split_rows(data: OmniglotData, split: str, names: list[str], args) -> list[dict]:
    train = _subset(data, SPLITS[split])
    held = _subset(data, [a for a in data.alphabet_names if a not in SPLITS[split]])
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        runs = make_runs(held, folder, ways=args.ways, runs=args.runs, seed=0)
        for seed in args.seeds:
            for name in names:
                trainer = EpisodicTrainer(seed=seed, **RECIPES[name])
                row = {"split": split, "recipe": name, "seed": seed}
                row.update(score(trainer, train, held, runs))
                rows.append(row)
                print(
                    ", ".join(
                        f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                        for k, v in row.items()
                    ),
                    flush=True,
                )
    return rows


def _subset(data: OmniglotData, alphabets: list[str]) -> OmniglotData:
    keep = np.isin(data.alphabets, alphabets)
    fields = ("images", "labels", "alphabets", "characters", "drawers", "paths")
    return OmniglotData(**{f: getattr(data, f)[keep] for f in fields}, class_names=data.class_names)


def _with_ratios(rows: list[dict], reference: str) -> list[dict]:
    """Each row's training energy over the reference recipe's on the same split and seed."""
    base = {(r["split"], r["seed"]): r["train_energy_j"] for r in rows if r["recipe"] == reference}
    for row in rows:
        ref = base.get((row["split"], row["seed"]))
        row["energy_ratio"] = row["train_energy_j"] / ref if ref else None
    return rows


def _markdown(results: dict[str, Any], splits: list[str], names: list[str]) -> str:
    rows, table = results["rows"], []
    for split in splits:
        for name in names:
            mine = [r for r in rows if r["split"] == split and r["recipe"] == name]
            cells = [split, name, len(mine)]
            for key in ("inductive", "transductive", "matched", "incremental_1shot"):
                values = [r[key] for r in mine]
                spread = statistics.stdev(values) if len(values) > 1 else 0.0
                cells.append(f"{statistics.mean(values):.3f} ± {spread:.3f}")
            ratios = [r["energy_ratio"] for r in mine if r["energy_ratio"] is not None]
            cells.append(f"{statistics.mean(ratios):.2f}" if ratios else "-")
            cells.append(f"{statistics.mean(r['train_cpu_s'] for r in mine):.0f}")
            table.append(cells)
    ways = results["settings"]["ways"]
    headers = [
        "split",
        "recipe",
        "seeds",
        f"{ways}-way, inductive",
        f"{ways}-way, transductive",
        f"{ways}-way, matched",
        "1-shot incremental",
        "energy vs reference",
        "training CPU s",
    ]
    settings = results["settings"]
    caption = (
        f"{settings['runs']} {settings['ways']}-way one-shot runs per split from its "
        f"held-out alphabets, {settings['embed_views']} views per image; energy relative "
        f"to `{settings['reference']}` on the same split and seed, trained in this run. "
        "Mean ± standard deviation over seeds."
    )
    recipes = "; ".join(f"{n}: {settings['recipes'][n] or 'EpisodicTrainer()'}" for n in names)
    return titled_markdown(
        "One-shot Omniglot recipes: splits, seeds, energy",
        results,
        caption,
        markdown_table(headers, table),
        "",
        "Recipes: " + recipes,
    )


if __name__ == "__main__":
    main()
