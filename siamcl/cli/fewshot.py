"""``siamcl fewshot``: train a one-shot encoder, write N-way one-shot runs, evaluate on them.

The library (torch, the trainer) is imported only when a subcommand is configured or run, so
``siamcl fewshot --help`` answers at once.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from siamcl.reporting.records import add_threads_option, parse_one_seed

__all__ = [
    "configure_eval",
    "configure_make_runs",
    "configure_train",
    "run_eval",
    "run_make_runs",
    "run_train",
]


def configure_train(parser: argparse.ArgumentParser) -> None:
    """Options of ``siamcl fewshot train``; defaults are EpisodicTrainer's own."""
    from siamcl.fewshot import DEFAULT_TRAIN_ALPHABETS

    parser.description = "Train a one-shot encoder on Omniglot alphabets and save it."
    parser.add_argument("--data-root", required=True, help="folder holding Omniglot")
    parser.add_argument(
        "--alphabets",
        nargs="+",
        default=list(DEFAULT_TRAIN_ALPHABETS),
        help="training alphabets, or 'all'",
    )
    parser.add_argument("--out", required=True, help="folder to save the classifier in")
    parser.set_defaults(out_is_folder=True)
    _add_trainer_options(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_threads_option(parser, None, "torch decides")


def configure_make_runs(parser: argparse.ArgumentParser) -> None:
    """Options of ``siamcl fewshot make-runs``."""
    parser.description = "Write N-way one-shot runs (run01, run02, ...) from alphabets."
    parser.add_argument("--data-root", required=True, help="folder holding Omniglot")
    parser.add_argument("--alphabets", nargs="+", required=True, help="alphabets to draw from")
    parser.add_argument("--ways", type=int, default=20, help="classes per run")
    parser.add_argument("--runs", type=int, default=20, help="number of runs")
    parser.add_argument(
        "--seeds", "--seed", dest="seed", type=parse_one_seed, default=0, help="random seed"
    )
    parser.add_argument("--out", required=True, help="folder to write run01, run02, ... into")
    parser.set_defaults(out_is_folder=True)


def configure_eval(parser: argparse.ArgumentParser) -> None:
    """Options of ``siamcl fewshot eval``."""
    from siamcl.transductive import TRANSDUCTIONS  # numpy only: cheap to import

    parser.description = "Accuracy of a saved classifier on one-shot runs, per run and mean."
    parser.add_argument("--model", required=True, help="a saved IncrementalClassifier folder")
    parser.add_argument(
        "--trust-pickle",
        action="store_true",
        help="read Python objects pickled in the model folder (unpickling can run code: only for folders you trust)",
    )
    parser.add_argument("--runs", required=True, help="folder of runs (or one run folder)")
    parser.add_argument("--out", default=None, help="JSON file for the results (default: none)")
    parser.add_argument(
        "--embed-views",
        type=int,
        default=None,
        help="views averaged per image (default: the model's own setting)",
    )
    parser.add_argument(
        "--transduction",
        choices=TRANSDUCTIONS,
        default="none",
        help="let each run's test images refine its prototypes: 'soft' k-means, or "
        "'balanced' (assumes every class has as many test images); or 'matched': test images "
        "matched to classes jointly, each class taking its share (see docs/fewshot.md)",
    )
    add_threads_option(parser, 1, "runs are small batches")


def _add_trainer_options(parser: argparse.ArgumentParser) -> None:
    from siamcl.fewshot import EpisodicTrainer

    defaults = EpisodicTrainer()
    parser.add_argument("--steps", type=int, default=defaults.steps, help="training steps")
    parser.add_argument("--ways", type=int, default=defaults.ways, help="classes per step")
    parser.add_argument("--shots", type=int, default=defaults.shots, help="support per class")
    parser.add_argument("--queries", type=int, default=defaults.queries, help="queries per class")
    parser.add_argument("--loss", default=defaults.loss, help="'prototypical' or a metric loss")
    parser.add_argument("--encoder", default=defaults.encoder, help="encoder name")
    parser.add_argument(
        "--embedding-dim", type=int, default=defaults.embedding_dim, help="embedding size"
    )
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
    _add_distortion_options(parser)
    parser.add_argument(
        "--within-alphabet",
        type=float,
        default=defaults.within_group,
        metavar="FRACTION",
        help="share of episodes drawn from one alphabet, as runs are",
    )
    parser.add_argument(
        "--embed-views",
        type=int,
        default=defaults.embed_views,
        help="views averaged per image when classifying (1: the image alone)",
    )
    parser.add_argument(
        "--whitening",
        type=_shrinkage_or_none,
        default=defaults.whitening,
        metavar="SHRINKAGE",
        help="shrinkage in [0, 1] of the within-class whitening training ends with, or 'none' "
        f"(default {defaults.whitening})",
    )
    parser.add_argument(
        "--seeds",
        "--seed",
        dest="seed",
        type=parse_one_seed,
        default=defaults.seed,
        help="random seed (one: a command trains one model)",
    )


def _shrinkage_or_none(text: str) -> float | None:
    if text.lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1] or 'none', got {text!r}")
    return value


def _add_distortion_options(parser: argparse.ArgumentParser) -> None:
    """How training images are distorted, and the memory layout they are trained in."""
    parser.add_argument("--no-augment", action="store_true", help="no random affine distortion")
    parser.add_argument(
        "--no-channels-last",
        action="store_true",
        help="train in PyTorch's default NCHW layout (slower on CPUs; the result is the same)",
    )
    parser.add_argument(
        "--distortion",
        type=float,
        default=None,
        metavar="SCALE",
        help="scale of RandomAffine's default ranges (default: EPISODIC_DISTORTION, 1.5)",
    )
    parser.add_argument(
        "--elastic",
        type=float,
        default=None,
        metavar="AMOUNT",
        help="elastic wobble before --distortion's scaling, a fraction of the image size "
        "(default 0.05, as EPISODIC_DISTORTION; 0: affine only, the default before)",
    )


def run_train(args: argparse.Namespace) -> dict[str, Any]:
    """Train on the chosen alphabets, save the classifier and print its TaskReport."""
    from siamcl.threads import cpu_threads

    with cpu_threads(args.threads):
        return _train(args)


def _train(args: argparse.Namespace) -> dict[str, Any]:
    from siamcl.data import load_omniglot
    from siamcl.fewshot import EpisodicTrainer

    alphabets = None if args.alphabets == ["all"] else args.alphabets
    data = load_omniglot(args.data_root, alphabets, progress=not args.quiet)
    trainer = EpisodicTrainer(
        encoder=args.encoder,
        embedding_dim=args.embedding_dim,
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
        channels_last=not args.no_channels_last,
        whitening=args.whitening,
    )
    classifier = trainer.fit(data.images, data.labels, groups=data.alphabets)
    classifier.save(args.out)
    report = classifier.reports[-1]
    print(
        f"trained on {len(data.class_names)} characters of {', '.join(data.alphabet_names)} "
        f"({len(data)} images) in {report.wall_s:.0f} s wall, {report.cpu_s:.0f} s CPU, "
        f"{report.energy_j:.0f} J ({report.energy_method}); saved to {args.out}"
    )
    throughput = _throughput(trainer, report)
    print(
        f"throughput: {throughput['steps_per_s']:.2f} steps/s, "
        f"{throughput['images_per_s']:.0f} images/s "
        f"({throughput['cpu_ms_per_step']:.0f} ms CPU per step)"
    )
    return {"trainer": trainer.get_params(), "report": report.to_dict(), **throughput}


def _throughput(trainer: Any, report: Any) -> dict[str, float]:
    """Training steps and images per second of wall time, and CPU milliseconds per step
    (the timed block also embeds the training images for the store, once)."""
    images = trainer.steps * trainer.ways * (trainer.shots + trainer.queries)
    wall = max(report.wall_s, 1e-9)
    return {
        "steps_per_s": trainer.steps / wall,
        "images_per_s": images / wall,
        "cpu_ms_per_step": 1000 * report.cpu_s / trainer.steps,
    }


def _distortion(args: argparse.Namespace) -> Any:
    """False, True (the trainer's default distortion) or RandomAffine with --elastic's
    wobble, scaled by --distortion."""
    from siamcl.augment import RandomAffine
    from siamcl.learners.episodic import DISTORTION_SCALE, ELASTIC

    if args.no_augment:
        return False
    if args.distortion is None and args.elastic is None:
        return True
    scale = DISTORTION_SCALE if args.distortion is None else args.distortion
    elastic = ELASTIC if args.elastic is None else args.elastic
    if not elastic >= 0:
        raise ValueError(f"--elastic must be non-negative, got {elastic!r}")
    return RandomAffine(elastic=elastic).scaled(scale)


def run_make_runs(args: argparse.Namespace) -> dict[str, Any]:
    """Write the runs and print where they went."""
    from siamcl.data import load_omniglot
    from siamcl.fewshot import make_runs

    data = load_omniglot(args.data_root, args.alphabets, progress=False)
    runs = make_runs(data, args.out, ways=args.ways, runs=args.runs, seed=args.seed)
    print(f"wrote {len(runs)} {args.ways}-way one-shot runs to {args.out}")
    return {"runs": [run.name for run in runs]}


def run_eval(args: argparse.Namespace) -> dict[str, Any]:
    """Evaluate a saved classifier on the runs; print per-run and mean accuracy."""
    from siamcl.threads import cpu_threads

    with cpu_threads(args.threads):
        return _evaluate(args)


def _evaluate(args: argparse.Namespace) -> dict[str, Any]:
    from siamcl.fewshot import evaluate_runs, read_runs
    from siamcl.learners.incremental import IncrementalClassifier

    classifier = IncrementalClassifier.load(args.model, trust_pickle=args.trust_pickle)
    runs = read_runs(args.runs)
    if args.embed_views is not None:
        classifier.set_params(embed_views=args.embed_views)
    start = time.perf_counter()
    results = evaluate_runs(classifier, runs, args.transduction)
    results = {
        "model": str(args.model),
        "runs_dir": str(args.runs),
        "embed_views": classifier.embed_views,
        "transduction": args.transduction,
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
