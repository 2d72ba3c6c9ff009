"""One-shot learning: episodic encoder training, N-way one-shot runs, and their evaluation.

:class:`EpisodicTrainer` trains an embedding network on batches of ``ways`` classes with
``shots + queries`` images each, the setting it will be used in: a class is learned from one
example. Images are distorted at random and, optionally, each class rotated by 90, 180 and 270
degrees becomes a new class, which multiplies the classes a small data set offers by four.
The result is an ordinary :class:`~siamcl.IncrementalClassifier`, so one-shot use is
``reset_classes``, ``add_classes`` (one image per class) and ``predict``.

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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from siamcl.accounting import ResourceMeter
from siamcl.augment import RandomAffine
from siamcl.data import OmniglotData, load_images
from siamcl.data.images import check_size
from siamcl.learner import IncrementalClassifier
from siamcl.losses import LOSSES, build_loss
from siamcl.preprocess import Preprocessor, as_array, as_labels
from siamcl.training import rebuild_prototypes

__all__ = [
    "DEFAULT_TRAIN_ALPHABETS",
    "EPISODIC_DISTORTION",
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
# Wider than RandomAffine's defaults: with few characters to learn from, harder distortions
# over more steps carry further to unseen alphabets (docs/fewshot.md, "What was tried").
EPISODIC_DISTORTION = RandomAffine().scaled(1.5)
LABELS_FILE = "class_labels.txt"


# ---------------------------------------------------------------------------- training


def with_symmetries(
    images: torch.Tensor, labels: np.ndarray, rotations: bool = True, mirrors: bool = True
) -> tuple[torch.Tensor, np.ndarray]:
    """Add turned (90, 180, 270 degrees) and mirrored copies of each image as new classes.

    A character turned on its side or mirrored is a different character, so symmetries
    multiply the classes (not just the samples) a small alphabet offers: by 4 with
    ``rotations``, by 2 with ``mirrors``, by 8 with both. Variant ``v`` of class ``c`` gets
    label ``c + v * (max label + 1)``; variant 0 is the image as given.
    """
    offset = int(labels.max()) + 1
    variants = [images]
    if mirrors:
        variants.append(torch.flip(images, dims=(-1,)))
    if rotations:
        variants += [torch.rot90(v, k, dims=(-2, -1)) for v in variants for k in (1, 2, 3)]
    new_labels = [labels + v * offset for v in range(len(variants))]
    return torch.cat(variants), np.concatenate(new_labels)


def prototypical_loss(
    embeddings: torch.Tensor, shots: int, temperature: float = 0.1
) -> torch.Tensor:
    """Cross-entropy of each query against the class means of the support images.

    ``embeddings`` is ``[ways, shots + queries, D]`` (L2-normalised); the first ``shots`` of
    each class are its support. Similarities are cosines divided by ``temperature``: the
    prototypical-network objective, on the sphere the prototype store searches.
    """
    ways = embeddings.shape[0]
    prototypes = F.normalize(embeddings[:, :shots].mean(dim=1), dim=1)
    queries = embeddings[:, shots:].reshape(-1, embeddings.shape[-1])
    logits = queries @ prototypes.T / temperature
    targets = torch.arange(ways, device=embeddings.device)
    return F.cross_entropy(logits, targets.repeat_interleave(embeddings.shape[1] - shots))


class EpisodicTrainer:
    """Trains an encoder for one-shot classification and returns it as a classifier.

    Each step draws ``ways`` classes and ``shots + queries`` images of each, distorts them
    (``augment``: True for :data:`EPISODIC_DISTORTION`, a :class:`~siamcl.augment.RandomAffine`
    of your own, or False) and minimises ``loss``: ``"prototypical"`` (queries against the support
    means, :func:`prototypical_loss`) or a metric-loss name from :data:`siamcl.losses.LOSSES`
    applied to the whole batch. ``rotations`` adds 90/180/270-degree turns and ``mirrors``
    mirror images of every character as new classes (:func:`with_symmetries`).
    Images are resized to ``input_size`` (small sizes keep CPU training quick). The Adam
    learning rate ``lr`` decays along a cosine over ``steps``. The returned classifier embeds
    every image as the mean of ``embed_views`` views (the image and fixed affine warps of it,
    see :class:`~siamcl.augment.AffineViews`), the test-time twin of the training distortions.

    :meth:`fit` returns a fitted :class:`~siamcl.IncrementalClassifier` whose store holds
    the training classes (unrotated) and whose ``reports`` hold the training's TaskReport.
    """

    def __init__(
        self,
        encoder: str = "conv4",
        embedding_dim: int = 64,
        input_size: int | tuple[int, int] = 28,
        loss: str = "supcon",
        ways: int = 20,
        shots: int = 1,
        queries: int = 5,
        steps: int = 4000,
        lr: float = 3e-3,
        weight_decay: float = 0.0,
        temperature: float = 0.1,
        rotations: bool = True,
        mirrors: bool = True,
        augment: bool | RandomAffine = True,
        within_group: float = 0.5,
        embed_views: int = 8,
        memory_per_class: int = 20,
        seed: int = 0,
        progress: bool = False,
        energy: str = "auto",
        flops: str = "sample",
    ):
        self.encoder = encoder
        self.embedding_dim = embedding_dim
        self.input_size = input_size
        self.loss = loss
        self.ways = ways
        self.shots = shots
        self.queries = queries
        self.steps = steps
        self.lr = lr
        self.weight_decay = weight_decay
        self.temperature = temperature
        self.rotations = rotations
        self.mirrors = mirrors
        self.augment = augment
        self.within_group = within_group
        self.embed_views = embed_views
        self.memory_per_class = memory_per_class
        self.seed = seed
        self.progress = progress
        self.energy = energy
        self.flops = flops

    def fit(self, X: Any, y: Any, groups: Any = None) -> IncrementalClassifier:
        """Train on images ``X`` ([N, H, W] or [N, C, H, W]) of classes ``y``.

        ``groups`` (optional, one per image, e.g. the alphabet) lets ``within_group`` of the
        episodes draw all their classes from one group, the way one-shot runs are drawn.
        """
        X = as_array(X)
        y = as_labels(y, len(X))
        group_of_class = self._group_of_class(y, groups)
        if X.ndim == 2:
            raise ValueError(f"EpisodicTrainer needs images [N, H, W], got vectors {X.shape}")
        self._check_params()
        classifier = IncrementalClassifier(
            encoder=self.encoder,
            embedding_dim=self.embedding_dim,
            loss=self.loss if self.loss in LOSSES else "multisimilarity",
            memory_per_class=self.memory_per_class,
            augment=self.augment is not False,
            embed_views=self.embed_views,
            input_size=check_size(self.input_size),
            seed=self.seed,
            progress=self.progress,
            energy=self.energy,
            flops=self.flops,
        )
        preprocessor = Preprocessor(classifier.input_size, classifier.invert).fit(X)
        canonical = preprocessor.canonical(X)
        images, labels = with_symmetries(canonical, y, self.rotations, self.mirrors)
        by_class = self._rows_by_class(labels)
        episode_groups = self._groups_with_symmetries(labels, y, group_of_class)
        encoder = classifier._new_encoder(preprocessor.input_shape)
        with ResourceMeter(energy=self.energy, flops=self.flops) as meter:
            self._train(encoder, preprocessor, images, by_class, episode_groups, meter)
            embed = classifier._embedder(encoder, preprocessor)
            memory = classifier._new_memory()
            memory.add(canonical.numpy().astype(np.float16), y, embed=embed)
            dim = embed(canonical[:2]).shape[1]
            store = rebuild_prototypes(
                classifier._new_store(dim), embed, canonical, y, memory, None
            )
        report = meter.report(
            task=0,
            method="episodic",
            retained_bytes={"replay": memory.nbytes, "store": store.nbytes},
        )
        classifier.preprocessor_ = preprocessor
        classifier.encoder_ = encoder
        classifier.memory_ = memory
        classifier.store_ = store
        classifier.reports_ = [report]
        return classifier

    def _train(
        self,
        encoder: nn.Module,
        preprocessor: Preprocessor,
        images: torch.Tensor,
        by_class: list[np.ndarray],
        groups: list[np.ndarray],
        meter: ResourceMeter,
    ) -> None:
        """Episodic training; ``groups`` lists the class positions of each group that
        within-group episodes draw from (empty: every episode mixes groups)."""
        rng = np.random.default_rng(self.seed)
        generator = torch.Generator().manual_seed(self.seed)
        metric_loss = None if self.loss == "prototypical" else build_loss(self.loss)
        distort = EPISODIC_DISTORTION if self.augment is True else (self.augment or None)
        optimizer = torch.optim.Adam(
            encoder.parameters(), lr=self.lr, weight_decay=self.weight_decay
        )
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.steps)
        per_class = self.shots + self.queries
        batch_labels = torch.arange(self.ways).repeat_interleave(per_class)
        encoder.train()
        bar = tqdm(total=self.steps, desc="episodic training", disable=not self.progress)
        for _ in range(self.steps):
            if groups and rng.random() < self.within_group:
                chosen = rng.choice(groups[rng.integers(len(groups))], self.ways, replace=False)
            else:
                chosen = rng.choice(len(by_class), self.ways, replace=False)
            rows = np.concatenate([rng.choice(by_class[c], per_class, False) for c in chosen])
            batch = images[rows]
            if distort is not None:
                batch = distort(batch, generator)
            with meter.batch(n_samples=len(rows)):
                embeddings = encoder(preprocessor.standardise(batch))
                if metric_loss is None:
                    grouped = embeddings.view(self.ways, per_class, -1)
                    loss = prototypical_loss(grouped, self.shots, self.temperature)
                else:
                    loss = metric_loss(embeddings, batch_labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            scheduler.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
        bar.close()
        encoder.eval()

    @staticmethod
    def _group_of_class(y: np.ndarray, groups: Any) -> dict[int, Any] | None:
        """Each class's group, checked: every image of a class must share one group."""
        if groups is None:
            return None
        groups = np.asarray(groups)
        if groups.shape != y.shape:
            raise ValueError(f"groups must give one group per image: {groups.shape} vs {y.shape}")
        mapping: dict[int, Any] = {}
        for label, group in zip(y.tolist(), groups.tolist()):
            if mapping.setdefault(label, group) != group:
                raise ValueError(
                    f"class {label} has images in groups {mapping[label]!r} and {group!r}"
                )
        return mapping

    def _groups_with_symmetries(
        self, labels: np.ndarray, base_labels: np.ndarray, group_of_class: dict[int, Any] | None
    ) -> list[np.ndarray]:
        """Positions (in ``np.unique(labels)``) of the classes of each group that can fill an
        episode; a turned or mirrored copy of a group is a group of its own."""
        if group_of_class is None or self.within_group <= 0:
            return []
        classes = np.unique(labels)
        offset = int(base_labels.max()) + 1
        keys = [(group_of_class[int(c) % offset], int(c) // offset) for c in classes]
        members: dict[Any, list[int]] = {}
        for position, key in enumerate(keys):
            members.setdefault(key, []).append(position)
        return [np.array(m) for m in members.values() if len(m) >= self.ways]

    def _rows_by_class(self, labels: np.ndarray) -> list[np.ndarray]:
        classes, counts = np.unique(labels, return_counts=True)
        needed = self.shots + self.queries
        if len(classes) < self.ways:
            raise ValueError(
                f"ways={self.ways} classes per step, but the training data has only "
                f"{len(classes)} classes{' with symmetries' if self.rotations or self.mirrors else ''}"
            )
        short = classes[counts < needed]
        if len(short):
            raise ValueError(
                f"every class needs shots + queries = {needed} images; {len(short)} classes "
                f"have fewer (for example class {int(short[0])})"
            )
        return [np.flatnonzero(labels == c) for c in classes]

    def _check_params(self) -> None:
        for name in ("ways", "shots", "queries", "steps", "embedding_dim", "embed_views"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.ways < 2:
            raise ValueError("ways must be at least 2: one class alone teaches nothing")
        if not isinstance(self.augment, (bool, RandomAffine)):
            raise TypeError(f"augment must be True, False or a RandomAffine, got {self.augment!r}")
        if not 0 <= self.within_group <= 1:
            raise ValueError(f"within_group must be in [0, 1], got {self.within_group!r}")
        for name in ("lr", "temperature"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be non-negative, got {self.weight_decay!r}")
        if self.loss != "prototypical" and self.loss not in LOSSES:
            raise ValueError(
                f"unknown loss {self.loss!r}; use 'prototypical' or one of {sorted(LOSSES)}"
            )
        check_size(self.input_size)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        import inspect

        names = inspect.signature(type(self).__init__).parameters
        return {name: getattr(self, name) for name in names if name != "self"}

    def __repr__(self) -> str:
        defaults = EpisodicTrainer().get_params()
        changed = {k: v for k, v in self.get_params().items() if v != defaults[k]}
        return f"EpisodicTrainer({', '.join(f'{k}={v!r}' for k, v in changed.items())})"


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


def one_shot_predict(classifier: IncrementalClassifier, support: Any, queries: Any) -> np.ndarray:
    """Positions in ``support`` predicted for ``queries``, one support image per class.

    Uses the classifier's public API on a copy: ``reset_classes``, ``add_classes`` with
    labels ``0 .. len(support) - 1``, then ``predict``. The given classifier is unchanged.
    """
    learner = copy.copy(classifier)
    learner.reset_classes()
    learner.add_classes(support, np.arange(len(support)))
    return learner.predict(queries)


def evaluate_runs(classifier: IncrementalClassifier, runs: Sequence[OneShotRun]) -> dict[str, Any]:
    """Accuracy of ``classifier`` on each run and their mean.

    Returns ``{"runs": [{"run", "ways", "queries", "correct", "accuracy", "predicted"}],
    "mean_accuracy"}``; ``predicted`` lists the class image chosen for each test image.
    """
    if not runs:
        raise ValueError("no runs to evaluate")
    results = []
    for run in runs:
        predicted = one_shot_predict(classifier, load_images(run.support), load_images(run.queries))
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


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block on ``threads`` torch CPU threads (None: unchanged), then restore them.

    One-shot runs embed a few dozen images at a time; on a busy machine one thread does that
    several times faster than two that wait for each other.
    """
    if threads is not None and (isinstance(threads, bool) or threads < 1):
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
