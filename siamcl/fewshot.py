"""One-shot learning: N-way one-shot runs, and their evaluation.

The encoder for one-shot use is trained by :class:`~siamcl.learners.episodic.EpisodicTrainer`
(re-exported here with :func:`with_symmetries` and :data:`EPISODIC_DISTORTION`).

Runs on disk follow the standard one-shot format of Omniglot's authors::

    RUNS_DIR/run01/training/class01.png ... classNN.png   one image per class
    RUNS_DIR/run01/test/item01.png ...                    the images to classify
    RUNS_DIR/run01/class_labels.txt                       "run01/test/item01.png run01/training/class07.png"

:func:`make_runs` writes such runs from Omniglot data (all classes of a run from one
alphabet, support and test images from two different drawers), :func:`read_runs` reads and
checks them, and :func:`evaluate_runs` scores a classifier on them through its public API.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from siamcl.data import OmniglotData, load_images
from siamcl.learners.episodic import EPISODIC_DISTORTION, EpisodicTrainer, with_symmetries
from siamcl.learners.incremental import IncrementalClassifier
from siamcl.losses import prototypical_loss
from siamcl.threads import cpu_threads
from siamcl.transductive import TRANSDUCTIONS, transductive_predict

__all__ = [
    "DEFAULT_TRAIN_ALPHABETS",
    "EPISODIC_DISTORTION",
    "TRANSDUCTIONS",
    "EpisodicTrainer",
    "OneShotRun",
    "evaluate_runs",
    "make_runs",
    "one_shot_predict",
    "prototypical_loss",
    "read_runs",
    "torch_threads",
    "with_symmetries",
]

# The "background small 1" alphabets that are not also in "background small 2".
DEFAULT_TRAIN_ALPHABETS = ("Balinese", "Early_Aramaic", "Korean")
LABELS_FILE = "class_labels.txt"


# ---------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class OneShotRun:
    """One N-way one-shot problem: a support image per class and test images to classify.

    ``targets[i]`` is the position in ``support`` of the true class of ``queries[i]``;
    ``alphabet`` is known for runs :func:`make_runs` just wrote, ``None`` for runs read.
    """

    name: str
    support: tuple[Path, ...]
    queries: tuple[Path, ...]
    targets: tuple[int, ...]
    alphabet: str | None = None

    @property
    def ways(self) -> int:
        return len(self.support)


def make_runs(
    data: OmniglotData,
    out: str | os.PathLike,
    ways: int = 20,
    runs: int = 20,
    seed: int = 0,
) -> list[OneShotRun]:
    """Write ``runs`` N-way one-shot runs drawn from ``data`` under ``out``, in the standard format.

    Each run takes ``ways`` characters of one alphabet (alphabets with enough characters
    take turns), one drawer for all support images and another for all test images, and
    lists the test images in random order. Returns the runs written.
    """
    for name, value in (("ways", ways), ("runs", runs)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if ways < 2:
        raise ValueError("ways must be at least 2")
    sizes = {a: len(np.unique(data.labels[data.alphabets == a])) for a in data.alphabet_names}
    usable = [a for a, n in sizes.items() if n >= ways]
    if not usable:
        raise ValueError(f"no alphabet has {ways} characters for {ways}-way runs: {sizes}")
    rng = np.random.default_rng(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for number in range(1, runs + 1):
        alphabet = usable[(number - 1) % len(usable)]
        run_dir = _write_run(data, alphabet, ways, out, f"run{number:02d}", rng)
        written.append(replace(_read_run(run_dir, out), alphabet=alphabet))
    return written


def _write_run(
    data: OmniglotData,
    alphabet: str,
    ways: int,
    out: Path,
    name: str,
    rng: np.random.Generator,
) -> Path:
    in_alphabet = np.flatnonzero(data.alphabets == alphabet)
    characters = rng.choice(np.unique(data.labels[in_alphabet]), ways, replace=False)
    drawer_sets = [
        set(data.drawers[in_alphabet][data.labels[in_alphabet] == c]) for c in characters
    ]
    common = sorted(set.intersection(*drawer_sets))
    if len(common) < 2:
        raise ValueError(
            f"alphabet {alphabet}: fewer than two drawers drew all of {ways} characters"
        )
    support_drawer, test_drawer = rng.choice(common, 2, replace=False)
    run_dir = out / name
    for sub in ("training", "test"):
        (run_dir / sub).mkdir(parents=True, exist_ok=True)
    order = rng.permutation(ways)
    lines = []
    for position, character in enumerate(characters):
        of_character = in_alphabet[data.labels[in_alphabet] == character]
        support = of_character[data.drawers[of_character] == support_drawer][0]
        _write_png(data.images[support], run_dir / "training" / f"class{position + 1:02d}.png")
    for item, position in enumerate(order):
        of_character = in_alphabet[data.labels[in_alphabet] == characters[position]]
        test = of_character[data.drawers[of_character] == test_drawer][0]
        _write_png(data.images[test], run_dir / "test" / f"item{item + 1:02d}.png")
        lines.append(
            f"{name}/test/item{item + 1:02d}.png {name}/training/class{position + 1:02d}.png"
        )
    (run_dir / LABELS_FILE).write_text("\n".join(lines) + "\n")
    return run_dir


def _write_png(pixels: np.ndarray, path: Path) -> None:
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(path)


def read_runs(runs_dir: str | os.PathLike) -> list[OneShotRun]:
    """Read the runs under ``runs_dir`` (or the single run ``runs_dir`` itself), checking files.

    The support set of a run is every PNG in its ``training`` folder; ``class_labels.txt``
    names each test image and its true class image, as paths relative to ``runs_dir``.
    A missing folder or file raises FileNotFoundError and a malformed line ValueError,
    each naming the file.
    """
    root = Path(runs_dir)
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise FileNotFoundError(f"runs folder {root} {what}")
    if (root / LABELS_FILE).is_file():
        return [_read_run(root, root.parent)]
    run_dirs = sorted(p for p in root.iterdir() if p.is_dir() and (p / LABELS_FILE).exists())
    if not run_dirs:
        raise FileNotFoundError(
            f"no runs in {root}: expected run folders holding {LABELS_FILE}, "
            "training/classNN.png and test/itemNN.png"
        )
    return [_read_run(run_dir, root) for run_dir in run_dirs]


def _read_run(run_dir: Path, root: Path) -> OneShotRun:
    labels_file = run_dir / LABELS_FILE
    training = run_dir / "training"
    if not training.is_dir():
        raise FileNotFoundError(f"run {run_dir} has no training folder {training}")
    support = tuple(sorted(training.glob("*.png")))
    if len(support) < 2:
        raise ValueError(f"run {run_dir} needs at least two class images in {training}")
    position = {path.resolve(): i for i, path in enumerate(support)}
    queries, targets = [], []
    for number, line in enumerate(labels_file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2:
            raise ValueError(
                f"{labels_file} line {number}: expected '<test image> <class image>', "
                f"got {line.strip()!r}"
            )
        query, truth = (root / field for field in fields)
        for path in (query, truth):
            if not path.is_file():
                raise FileNotFoundError(f"{labels_file} line {number}: image {path} is missing")
        if truth.resolve() not in position:
            raise ValueError(
                f"{labels_file} line {number}: {truth} is not a class image in {training}"
            )
        queries.append(query)
        targets.append(position[truth.resolve()])
    if not queries:
        raise ValueError(f"{labels_file} lists no test images")
    return OneShotRun(run_dir.name, support, tuple(queries), tuple(targets))


# ---------------------------------------------------------------------------- evaluation


def one_shot_predict(
    classifier: IncrementalClassifier,
    support: Any,
    queries: Any,
    transduction: str = "none",
) -> np.ndarray:
    """Positions in ``support`` predicted for ``queries``, one support image per class.

    With ``transduction="none"`` it uses the classifier's public API on a copy:
    ``reset_classes``, ``add_classes`` with labels ``0 .. len(support) - 1``, then
    ``predict``. ``"soft"`` or ``"balanced"`` embed support and queries (``embed``) and let
    the queries refine the prototypes first (:mod:`siamcl.transductive`). The given
    classifier is unchanged.
    """
    if transduction not in TRANSDUCTIONS:
        raise ValueError(f"unknown transduction {transduction!r}; use one of {list(TRANSDUCTIONS)}")
    if transduction != "none":
        return transductive_predict(
            classifier.embed(support), classifier.embed(queries), transduction
        )
    learner = copy.copy(classifier)
    learner.reset_classes()
    learner.add_classes(support, np.arange(len(support)))
    return learner.predict(queries)


def evaluate_runs(
    classifier: IncrementalClassifier,
    runs: Sequence[OneShotRun],
    transduction: str = "none",
) -> dict[str, Any]:
    """Accuracy of ``classifier`` on each run and their mean (``transduction``: see
    :func:`one_shot_predict`).

    Returns ``{"runs": [{"run", "ways", "queries", "correct", "accuracy", "predicted"}],
    "mean_accuracy"}``; ``predicted`` lists the class image chosen for each test image.
    """
    if not runs:
        raise ValueError("no runs to evaluate")
    results = []
    for run in runs:
        support, queries = load_images(run.support), load_images(run.queries)
        predicted = one_shot_predict(classifier, support, queries, transduction)
        correct = int((predicted == np.asarray(run.targets)).sum())
        results.append(
            {
                "run": run.name,
                "ways": run.ways,
                "queries": len(run.queries),
                "correct": correct,
                "accuracy": correct / len(run.queries),
                "predicted": [run.support[int(i)].name for i in predicted],
            }
        )
    return {
        "runs": results,
        "mean_accuracy": float(np.mean([r["accuracy"] for r in results])),
    }


torch_threads = cpu_threads  # its former name: torch's threads, and BLAS / OpenMP pools'
