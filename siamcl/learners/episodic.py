"""Episodic training for one-shot use: an encoder trained on few-shot episodes.

:class:`EpisodicTrainer` trains an embedding network on batches of ``ways`` classes with
``shots + queries`` images each, the setting it will be used in: a class is learned from one
example. Images are distorted at random and, optionally, each class turned by 90, 180 and 270
degrees or mirrored becomes a new class (:func:`with_symmetries`), which multiplies the
classes a small data set offers. The result is an ordinary
:class:`~siamcl.IncrementalClassifier`, so one-shot use is ``reset_classes``, ``add_classes``
(one image per class) and ``predict``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from siamcl._checks import (
    OPTIMIZER_FACTORY,
    Integer,
    Options,
    Real,
    Satisfies,
    check_params,
    check_size,
)
from siamcl.accounting import ResourceMeter
from siamcl.augment import RandomAffine
from siamcl.learners.incremental import IncrementalClassifier
from siamcl.losses import LOSSES, MetricTerm, Objective, PrototypicalTerm, build_loss
from siamcl.preprocess import Preprocessor, as_array, as_labels
from siamcl.training import PRECISIONS, Batch, BatchPreparation, EpisodeBatches, TrainingLoop, adam
from siamcl.whitening import projection_of, whiten_encoder

__all__ = ["EPISODIC_DISTORTION", "PREVIOUS_DISTORTION", "EpisodicTrainer", "with_symmetries"]

# Wider than RandomAffine's defaults, with an elastic wobble of the strokes: with few
# characters to learn from, harder distortions carry further to unseen alphabets
# (docs/fewshot.md, "What was tried"). PREVIOUS_DISTORTION is the default before the wobble.
DISTORTION_SCALE = 1.5
ELASTIC = 0.05
PREVIOUS_DISTORTION = RandomAffine().scaled(DISTORTION_SCALE)
EPISODIC_DISTORTION = RandomAffine(elastic=ELASTIC).scaled(DISTORTION_SCALE)
# Shrinkage of the within-class covariance that training ends by whitening with, chosen on
# the default split's held-out alphabets (docs/fewshot.md, "Within-class whitening").
WHITENING_SHRINKAGE = 0.3


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


class _ChannelsLast:
    """A batch preparation whose image batches come out in channels-last memory layout.

    With the encoder's weights channels-last too, oneDNN's convolutions, pooling and batch
    norm skip the layout conversions they make for NCHW tensors (a conv4 training step in
    0.62-0.79x the CPU time on one machine: ``benchmarks/results/channels_last``).
    """

    def __init__(self, prepare: Any):
        self.prepare = prepare

    def __call__(self, batch: Batch) -> Batch:
        batch = self.prepare(batch)
        inputs = batch.inputs
        if inputs.ndim == 4:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        return Batch(inputs, batch.labels, batch.rows)


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
    ``channels_last`` trains in channels-last memory layout, which CPUs run faster (the
    same training otherwise). ``whitening`` (a shrinkage in [0, 1], or None for none) ends
    training by whitening the embeddings with the training classes' within-class
    covariance, folded into the encoder's last projection (:mod:`siamcl.whitening`); the
    encoder must end in a linear layer. ``precision`` (``"fp32"``, ``"bf16"``, ``"auto"``)
    runs training's forward passes mixed-precision (:mod:`siamcl.training.precision`), and
    so does the returned classifier's embedding (the whitening estimate stays float32).

    :meth:`fit` returns a fitted :class:`~siamcl.IncrementalClassifier` whose store holds
    the training classes (unrotated) and whose ``reports`` hold the training's TaskReport.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "ways": [Integer(2)],
        "shots": [Integer(1)],
        "queries": [Integer(1)],
        "steps": [Integer(1)],
        "embedding_dim": [Integer(1)],
        "embed_views": [Integer(1)],
        "augment": [
            Satisfies(
                lambda a: isinstance(a, (bool, RandomAffine)),
                "True, False or a RandomAffine",
                TypeError,
            )
        ],
        "within_group": [Real(0, 1)],
        "lr": [Real(0, closed="neither")],
        "temperature": [Real(0, closed="neither")],
        "weight_decay": [Real(0)],
        "optimizer": OPTIMIZER_FACTORY,
        "channels_last": [Satisfies(lambda v: isinstance(v, bool), "True or False", TypeError)],
        "whitening": [None, Real(0, 1)],
        "precision": [Options(PRECISIONS)],
    }

    def __init__(
        self,
        encoder: str = "conv4-flat-pool-first",
        embedding_dim: int = 128,
        input_size: int | tuple[int, int] = 28,
        loss: str = "supcon",
        ways: int = 20,
        shots: int = 1,
        queries: int = 5,
        steps: int = 3000,
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
        optimizer: Any = None,
        channels_last: bool = True,
        whitening: float | None = WHITENING_SHRINKAGE,
        precision: str = "fp32",
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
        self.optimizer = optimizer
        self.channels_last = channels_last
        self.whitening = whitening
        self.precision = precision

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
        params = self._classifier_params()
        preprocessor = Preprocessor(params["input_size"], "auto").fit(X)
        canonical = preprocessor.canonical(X)
        images, labels = with_symmetries(canonical, y, self.rotations, self.mirrors)
        source = EpisodeBatches(
            images,
            self._rows_by_class(labels),
            self.ways,
            self.shots + self.queries,
            self.steps,
            self.seed,
            self._groups_with_symmetries(labels, y, group_of_class),
            self.within_group,
        )
        encoder = IncrementalClassifier(**params).new_encoder(preprocessor.input_shape)
        if self.whitening is not None:
            projection_of(encoder)  # refused before training, not after
        with ResourceMeter(energy=self.energy, flops=self.flops) as meter:
            self._loop(preprocessor, meter).run(
                encoder, self._objective(), source, torch.Generator().manual_seed(self.seed)
            )
            self._whiten(encoder, canonical, y, preprocessor)
            classifier = IncrementalClassifier.from_state(
                params, preprocessor=preprocessor, trainable_encoder=encoder
            )
            classifier.add_classes(X, y)
        report = meter.report(
            task=0,
            method="episodic",
            retained_bytes={
                "replay": classifier.memory_.nbytes,
                "store": classifier.store_.nbytes,
            },
        )
        return IncrementalClassifier.from_state(
            params,
            preprocessor=preprocessor,
            trainable_encoder=encoder,
            store=classifier.store_,
            memory=classifier.memory_,
            reports=[report],
        )

    def _classifier_params(self) -> dict[str, Any]:
        """The parameters of the classifier :meth:`fit` returns."""
        return {
            "encoder": self.encoder,
            "embedding_dim": self.embedding_dim,
            "loss": self.loss if self.loss in LOSSES else "multisimilarity",
            "memory_per_class": self.memory_per_class,
            "augment": self.augment is not False,
            "embed_views": self.embed_views,
            "input_size": check_size(self.input_size),
            "seed": self.seed,
            "progress": self.progress,
            "energy": self.energy,
            "flops": self.flops,
            "precision": self.precision,
        }

    def _objective(self) -> Objective:
        if self.loss == "prototypical":
            term = PrototypicalTerm(self.ways, self.shots, self.temperature)
        else:
            term = MetricTerm(build_loss(self.loss))
        return Objective([(self.loss, 1.0, term)])

    def _loop(self, preprocessor: Preprocessor, meter: ResourceMeter) -> TrainingLoop:
        """Cosine-decayed Adam over ``steps`` episodes (one epoch), distorted as asked."""
        generator = torch.Generator().manual_seed(self.seed)
        prepare = BatchPreparation(preprocessor.standardise, self._distortion(), generator)
        return TrainingLoop(
            epochs=1,
            optimizer=self.optimizer or adam(self.lr, self.weight_decay),
            prepare=_ChannelsLast(prepare) if self.channels_last else prepare,
            channels_last=self.channels_last,
            meter=meter,
            progress=self.progress,
            description="episodic training",
            precision=self.precision,
        )

    def _whiten(
        self, encoder: torch.nn.Module, canonical: torch.Tensor, y: np.ndarray, preprocessor: Any
    ) -> None:
        """Fold the training classes' within-class whitening into the encoder (if asked),
        each image seen under 4 distortions drawn from ``seed + 1``."""
        if self.whitening is None:
            return
        generator = torch.Generator().manual_seed(self.seed + 1)
        distort, standardise = self._distortion(), preprocessor.standardise
        whiten_encoder(encoder, canonical, y, standardise, distort, generator, self.whitening)

    def _distortion(self) -> RandomAffine | None:
        return EPISODIC_DISTORTION if self.augment is True else (self.augment or None)

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
        check_params(self, self._parameter_constraints)
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
