"""``siamcl fewshot``: train a one-shot encoder, write N-way one-shot runs, evaluate on them.

siamcl fewshot train --data-root DIR [--alphabets A B ...] --out MODEL_DIR
siamcl fewshot make-runs --data-root DIR --alphabets A B ... [--ways 20] [--runs 20] --out RUNS_DIR
siamcl fewshot eval --model MODEL_DIR --runs RUNS_DIR [--out RESULT.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from siamcl.augment import RandomAffine
from siamcl.data import load_omniglot
from siamcl.fewshot import (
    DEFAULT_TRAIN_ALPHABETS,
    EpisodicTrainer,
    evaluate_runs,
    make_runs,
    read_runs,
    torch_threads,
)
from siamcl.learner import IncrementalClassifier

__all__ = ["configure", "run_eval", "run_make_runs", "run_train"]

_TRAINER = EpisodicTrainer()


def configure(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``fewshot`` command and its ``train``, ``make-runs`` and ``eval`` subcommands."""
    parser = subparsers.add_parser(
        "fewshot", help="one-shot learning: train, make runs, evaluate", description=__doc__
    )
    commands = parser.add_subparsers(dest="fewshot_command", metavar="SUBCOMMAND")
    commands.required = True

    train = commands.add_parser("train", help="train a one-shot encoder on Omniglot alphabets")
    train.add_argument("--data-root", required=True, help="folder holding Omniglot")
    train.add_argument(
        "--alphabets",
        nargs="+",
        default=list(DEFAULT_TRAIN_ALPHABETS),
        help=f"training alphabets, or 'all' (default: {' '.join(DEFAULT_TRAIN_ALPHABETS)})",
    )
    train.add_argument("--out", required=True, help="folder to save the classifier in")
    _add_trainer_options(train)
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_threads_option(train, None, "torch's default")
    train.set_defaults(run=run_train)

    runs = commands.add_parser("make-runs", help="write N-way one-shot runs from alphabets")
    runs.add_argument("--data-root", required=True, help="folder holding Omniglot")
    runs.add_argument("--alphabets", nargs="+", required=True, help="alphabets to draw from")
    runs.add_argument("--ways", type=int, default=20, help="classes per run (default 20)")
    runs.add_argument("--runs", type=int, default=20, help="number of runs (default 20)")
    runs.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    runs.add_argument("--out", required=True, help="folder to write run01, run02, ... into")
    runs.set_defaults(run=run_make_runs)

    evaluate = commands.add_parser("eval", help="accuracy of a saved classifier on one-shot runs")
    evaluate.add_argument("--model", required=True, help="a saved IncrementalClassifier folder")
    evaluate.add_argument("--runs", required=True, help="folder of runs (or one run folder)")
    evaluate.add_argument("--out", default=None, help="JSON file for the results")
    evaluate.add_argument(
        "--embed-views",
        type=int,
        default=None,
        help="views averaged per image (default: the model's own setting)",
    )
    _add_threads_option(evaluate, 1, "1: runs are small batches")
    evaluate.set_defaults(run=run_eval)


def _add_threads_option(parser: argparse.ArgumentParser, default: int | None, note: str) -> None:
    parser.add_argument(
        "--threads", type=int, default=default, help=f"torch CPU threads (default {note})"
    )


def _add_trainer_options(parser: argparse.ArgumentParser) -> None:
    defaults = _TRAINER
    parser.add_argument("--steps", type=int, default=defaults.steps, help="training steps")
    parser.add_argument("--ways", type=int, default=defaults.ways, help="classes per step")
    parser.add_argument("--shots", type=int, default=defaults.shots, help="support per class")
    parser.add_argument("--queries", type=int, default=defaults.queries, help="queries per class")
    parser.add_argument("--loss", default=defaults.loss, help="'prototypical' or a metric loss")
    parser.add_argument("--encoder", default=defaults.encoder, help="encoder name")
    parser.add_argument(
        "--input-size", type=int, default=defaults.input_size, help="image side in pixels"
    )
    parser.add_argument("--lr", type=float, default=defaults.lr, help="Adam learning rate")
    parser.add_argument(
        "--no-rotations", action="store_true", help="do not add rotated characters as classes"
    )
    parser.add_argument(
        "--no-mirrors", action="store_true", help="do not add mirrored characters as classes"
    )
    parser.add_argument("--no-augment", action="store_true", help="no random affine distortion")
    parser.add_argument(
        "--distortion",
        type=float,
        default=None,
        metavar="SCALE",
        help="scale of RandomAffine's default ranges (default: EPISODIC_DISTORTION, 1.5)",
    )
    parser.add_argument(
        "--within-alphabet",
        type=float,
        default=defaults.within_group,
        metavar="FRACTION",
        help=f"share of episodes drawn from one alphabet, as runs are ({defaults.within_group})",
    )
    parser.add_argument(
        "--embed-views",
        type=int,
        default=defaults.embed_views,
        help=f"views averaged per image when classifying ({defaults.embed_views}; 1: image only)",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed, help="random seed")


def run_train(args: argparse.Namespace) -> dict[str, Any]:
    """Train on the chosen alphabets, save the classifier and print its TaskReport."""
    with torch_threads(args.threads):
        return _train(args)


def _train(args: argparse.Namespace) -> dict[str, Any]:
    alphabets = None if args.alphabets == ["all"] else args.alphabets
    data = load_omniglot(args.data_root, alphabets, progress=not args.quiet)
    trainer = EpisodicTrainer(
        encoder=args.encoder,
        input_size=args.input_size,
        loss=args.loss,
        ways=args.ways,
        shots=args.shots,
        queries=args.queries,
        steps=args.steps,
        lr=args.lr,
        rotations=not args.no_rotations,
        mirrors=not args.no_mirrors,
        augment=_distortion(args),
        within_group=args.within_alphabet,
        embed_views=args.embed_views,
        seed=args.seed,
        progress=not args.quiet,
    )
    classifier = trainer.fit(data.images, data.labels, groups=data.alphabets)
    classifier.save(args.out)
    report = classifier.reports[-1]
    print(
        f"trained on {len(data.class_names)} characters of {', '.join(data.alphabet_names)} "
        f"({len(data)} images) in {report.wall_s:.0f} s wall, {report.cpu_s:.0f} s CPU, "
        f"{report.energy_j:.0f} J ({report.energy_method}); saved to {args.out}"
    )
    return {"trainer": trainer.get_params(), "report": report.to_dict()}


def _distortion(args: argparse.Namespace) -> bool | RandomAffine:
    if args.no_augment:
        return False
    return True if args.distortion is None else RandomAffine().scaled(args.distortion)


def run_make_runs(args: argparse.Namespace) -> dict[str, Any]:
    """Write the runs and print where they went."""
    data = load_omniglot(args.data_root, args.alphabets, progress=False)
    runs = make_runs(data, args.out, ways=args.ways, runs=args.runs, seed=args.seed)
    print(f"wrote {len(runs)} {args.ways}-way one-shot runs to {args.out}")
    return {"runs": [run.name for run in runs]}


def run_eval(args: argparse.Namespace) -> dict[str, Any]:
    """Evaluate a saved classifier on the runs; print per-run and mean accuracy."""
    with torch_threads(args.threads):
        return _evaluate(args)


def _evaluate(args: argparse.Namespace) -> dict[str, Any]:
    runs = read_runs(args.runs)
    classifier = IncrementalClassifier.load(args.model)
    if args.embed_views is not None:
        classifier.set_params(embed_views=args.embed_views)
    start = time.perf_counter()
    results = evaluate_runs(classifier, runs)
    results = {
        "model": str(args.model),
        "runs_dir": str(args.runs),
        "embed_views": classifier.embed_views,
        "seconds": time.perf_counter() - start,
        **results,
    }
    for row in results["runs"]:
        print(f"{row['run']}: {row['accuracy']:.3f} ({row['correct']}/{row['queries']})")
    print(f"mean accuracy over {len(runs)} runs: {results['mean_accuracy']:.4f}")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n")
    return results
