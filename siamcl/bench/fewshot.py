"""Few-shot learning on Omniglot: 20-way one-shot runs and few-shot class-incremental learning.

A one-shot encoder (trained here with :class:`~siamcl.fewshot.EpisodicTrainer`, or loaded
with ``--model``) meets alphabets it never saw. First, N-way one-shot runs within each
held-out alphabet (``siamcl fewshot make-runs`` + ``eval``). Then the held-out alphabets
arrive one after another with 1 or 5 images per character: the Siamese classifier adds them
through ``add_classes`` (no gradient step); the baseline is the same pretrained backbone with
a softmax head that grows and is fine-tuned on each alphabet's images, replaying all earlier
ones. After each alphabet both are tested on every character seen so far.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from siamcl.accounting import sum_reports
from siamcl.data import OmniglotData, load_omniglot
from siamcl.evaluation import accuracy_matrix_metrics
from siamcl.fewshot import (
    DEFAULT_TRAIN_ALPHABETS,
    EpisodicTrainer,
    OneShotRun,
    evaluate_runs,
    make_runs,
)
from siamcl.learners.incremental import IncrementalClassifier
from siamcl.learners.softmax import SoftmaxClassifier
from siamcl.reporting import run_record, write_results
from siamcl.reporting.fewshot import plot_curves, render_markdown
from siamcl.reporting.figures import draw_or_skip
from siamcl.threads import cpu_threads

DEFAULT_DATASET = "omniglot"
RESULT_NAME = "fewshot_omniglot"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="a trained classifier (default: train one)")
    parser.add_argument(
        "--trust-pickle",
        action="store_true",
        help="read Python objects pickled in the model folder (unpickling can run code: only for folders you trust)",
    )
    parser.add_argument(
        "--train-alphabets",
        nargs="+",
        default=list(DEFAULT_TRAIN_ALPHABETS),
        help="alphabets the encoder is (or was) trained on",
    )
    parser.add_argument(
        "--alphabets",
        nargs="+",
        default=None,
        help="held-out alphabets, in arrival order (default: all others, sorted)",
    )
    parser.add_argument("--shots", default="1,5", help="images per character (default 1,5)")
    parser.add_argument("--steps", type=int, default=None, help="training steps when training")
    parser.add_argument("--ways", type=int, default=20, help="classes per one-shot run")
    parser.add_argument("--runs", type=int, default=20, help="number of one-shot runs")
    parser.add_argument(
        "--softmax-epochs", type=int, default=30, help="fine-tuning epochs per alphabet"
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.dataset != "omniglot":
        raise ValueError(f"the fewshot suite runs on omniglot only, not {args.dataset!r}")
    if args.data_root is None:
        raise ValueError("the fewshot suite needs --data-root, a folder holding Omniglot")
    seeds = args.seeds or [0]
    shots = _shot_counts(args.shots)
    progress = not args.quiet
    data = load_omniglot(args.data_root, progress=progress)
    held_out = args.alphabets or [
        a for a in data.alphabet_names if a not in set(args.train_alphabets)
    ]
    overlap = sorted(set(held_out) & set(args.train_alphabets))
    if overlap:
        raise ValueError(f"alphabets {overlap} are both trained on and held out")
    record = run_record(  # before the work: the commit it started at
        "fewshot",
        seeds,
        dataset="omniglot",
        model=args.model,
        train_alphabets=args.train_alphabets,
        held_out=held_out,
        shots=shots,
        ways=args.ways,
        runs=args.runs,
        softmax_epochs=args.softmax_epochs,
    )
    classifier, training = _encoder(args, progress)
    test_data = _subset(data, held_out)

    with cpu_threads(1):
        one_shot = _one_shot(classifier, test_data, args.ways, args.runs, seeds[0])

    rows = []
    for seed in seeds:
        for k in shots:
            support, test = _split(test_data, k, max(shots), seed)
            siamese = _siamese_stream(classifier, test_data, held_out, support, test)
            rows.append({"method": "siamese", "shots": k, "seed": seed, **siamese})
            softmax = _softmax_stream(
                classifier, test_data, held_out, support, test, args, seed, progress
            )
            rows.append({"method": "softmax-finetune", "shots": k, "seed": seed, **softmax})

    results = {
        **record,
        "training": training,
        "one_shot": one_shot,
        "incremental": rows,
    }
    out = Path(args.out)
    plot = draw_or_skip(plot_curves, rows, out / f"{RESULT_NAME}.png")
    markdown = render_markdown(results, plot)
    write_results(out, RESULT_NAME, results, markdown)
    print(markdown)
    return results


# ---------------------------------------------------------------------------- pieces


def _shot_counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"--shots must be integers separated by commas, got {text!r}") from None
    if not counts or min(counts) < 1:
        raise ValueError(f"--shots must be positive integers, got {text!r}")
    return counts


def _encoder(args: argparse.Namespace, progress: bool) -> tuple[IncrementalClassifier, dict]:
    """The classifier to test, and what its training cost (from its saved reports)."""
    if args.model is not None:
        classifier = IncrementalClassifier.load(args.model, trust_pickle=args.trust_pickle)
    else:
        train = load_omniglot(args.data_root, args.train_alphabets, progress=progress)
        trainer = EpisodicTrainer(progress=progress, seed=(args.seeds or [0])[0])
        if args.quick:
            trainer.steps = 200
        if args.steps is not None:
            trainer.steps = args.steps
        classifier = trainer.fit(train.images, train.labels, groups=train.alphabets)
    reports = [r.to_dict() for r in classifier.reports if r.method == "episodic"]
    return classifier, {"reports": reports, "params": classifier.get_params()}


def _subset(data: OmniglotData, alphabets: list[str]) -> OmniglotData:
    keep = np.isin(data.alphabets, alphabets)
    missing = sorted(set(alphabets) - set(data.alphabet_names))
    if missing:
        raise ValueError(f"unknown alphabets {missing}; available: {list(data.alphabet_names)}")
    return OmniglotData(
        images=data.images[keep],
        labels=data.labels[keep],
        alphabets=data.alphabets[keep],
        characters=data.characters[keep],
        drawers=data.drawers[keep],
        paths=data.paths[keep],
        class_names=data.class_names,
    )


def _one_shot(
    classifier: IncrementalClassifier, data: OmniglotData, ways: int, runs: int, seed: int
) -> dict[str, Any]:
    """N-way one-shot accuracy on runs written from the held-out alphabets, per alphabet too.

    ``seconds`` covers writing and scoring the runs. A classifier that averages views is also
    scored with one view on the same runs (``single_view``): what the views add; and every
    classifier with balanced transduction (``transductive``: each run's test images refine
    its prototypes) and with the test images matched to classes jointly (``matched``), both
    from :mod:`siamcl.transductive`.
    """
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        written = make_runs(data, folder, ways=ways, runs=runs, seed=seed)
        result = _scores(classifier, written)
        result.update(ways=ways, seconds=time.perf_counter() - start)
        result["embed_views"] = classifier.embed_views
        if classifier.embed_views > 1:
            single = _scores(copy.copy(classifier).set_params(embed_views=1), written)
            result["single_view"] = {k: single[k] for k in ("mean_accuracy", "by_alphabet")}
        for key, transduction in (("transductive", "balanced"), ("matched", "matched")):
            scores = _scores(classifier, written, transduction)
            result[key] = {k: scores[k] for k in ("mean_accuracy", "by_alphabet")}
    return result


def _scores(
    classifier: IncrementalClassifier, runs: list[OneShotRun], transduction: str = "none"
) -> dict[str, Any]:
    """Mean accuracy, accuracy per alphabet, and the per-run rows (without predictions)."""
    scores = evaluate_runs(classifier, runs, transduction)
    alphabet_of = {run.name: run.alphabet for run in runs}
    by_alphabet: dict[str, list[float]] = {}
    for row in scores["runs"]:
        row.pop("predicted")
        row["alphabet"] = alphabet_of[row["run"]]
        by_alphabet.setdefault(row["alphabet"], []).append(row["accuracy"])
    return {
        "mean_accuracy": scores["mean_accuracy"],
        "by_alphabet": {a: float(np.mean(v)) for a, v in by_alphabet.items()},
        "runs": scores["runs"],
    }


def _split(
    data: OmniglotData, shots: int, reserve: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Support rows (``shots`` per character) and test rows (all but ``reserve`` per character).

    The test rows do not depend on ``shots``, so 1-shot and 5-shot streams are tested alike.
    """
    rng = np.random.default_rng(seed)
    support, test = [], []
    for label in np.unique(data.labels):
        rows = rng.permutation(np.flatnonzero(data.labels == label))
        if len(rows) <= reserve:
            raise ValueError(
                f"character {data.class_names[label]} has {len(rows)} images: too few for "
                f"{reserve} support images and a test image"
            )
        support.append(rows[:shots])
        test.append(rows[reserve:])
    return np.concatenate(support), np.concatenate(test)


def _stream(
    learn, predict, data: OmniglotData, alphabets: list[str], support, test
) -> dict[str, Any]:
    """Learn the alphabets in turn; test on all seen characters and on each alphabet."""
    n = len(alphabets)
    matrix = np.zeros((n, n))
    curve, reports = [], []
    for t, alphabet in enumerate(alphabets):
        rows = support[data.alphabets[support] == alphabet]
        reports.append(learn(data.images[rows], data.labels[rows]))
        seen = test[np.isin(data.alphabets[test], alphabets[: t + 1])]
        predicted = predict(data.images[seen])
        for j, earlier in enumerate(alphabets[: t + 1]):
            mask = data.alphabets[seen] == earlier
            matrix[t, j] = float((predicted[mask] == data.labels[seen][mask]).mean())
        curve.append(
            {
                "alphabet": alphabet,
                "classes_seen": len(np.unique(data.labels[seen])),
                "accuracy": float((predicted == data.labels[seen]).mean()),
            }
        )
    metrics = accuracy_matrix_metrics(matrix)
    total = sum_reports(reports)
    return {
        "accuracy": curve[-1]["accuracy"],
        "forgetting": metrics["forgetting"],
        "classes": curve[-1]["classes_seen"],
        "energy_j": total.energy_j,
        "wall_s": total.wall_s,
        "curve": curve,
        "accuracy_matrix": matrix.tolist(),
        "report": total.to_dict(),
    }


def _siamese_stream(classifier, data, alphabets, support, test) -> dict[str, Any]:
    learner = copy.deepcopy(classifier)
    learner.reset_classes()
    return _stream(learner.add_classes, learner.predict, data, alphabets, support, test)


def _softmax_stream(
    classifier, data, alphabets, support, test, args, seed, progress
) -> dict[str, Any]:
    baseline = _pretrained_softmax(classifier, data, alphabets, support, args, seed, progress)
    return _stream(baseline.fit_task, baseline.predict, data, alphabets, support, test)


def _pretrained_softmax(
    classifier: IncrementalClassifier,
    data: OmniglotData,
    alphabets: list[str],
    support: np.ndarray,
    args: argparse.Namespace,
    seed: int,
    progress: bool,
) -> SoftmaxClassifier:
    """A softmax classifier on the Siamese encoder's backbone, ready to fine-tune.

    Its head starts with the first alphabet's classes and grows from there; its exemplar
    memory keeps every support image, so each fine-tune replays all earlier alphabets.
    """
    shots = int(np.max(np.unique(data.labels[support], return_counts=True)[1]))
    params = {
        "encoder": classifier.encoder,
        "features": classifier.embedding_dim,
        "epochs": args.softmax_epochs,
        "batch_size": 32,
        "memory_per_class": shots,
        "input_size": classifier.preprocessor_.input_size,
        "device": args.device,
        "seed": seed,
        "progress": progress,
        "flops": classifier.flops,
    }
    first = len(np.unique(data.labels[support][data.alphabets[support] == alphabets[0]]))
    return SoftmaxClassifier.from_backbone(
        params, classifier.preprocessor_, classifier.encoder_.body, first
    )
