"""What one task of Siamese training is made of, for :class:`~siamcl.IncrementalClassifier`.

:func:`siamese_objective` composes the objective (metric loss, distillation toward the
previous encoder and toward an external teacher), :func:`train_task` runs the training loop
on balanced, distorted batches, :func:`consolidate` embeds the task once for its exemplars
and prototypes, :func:`task_ranks` checks a distributed job, and
:func:`embedder` embeds with the classifier's views. They read the classifier's public
parameters; they change nothing on it.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from siamcl._checks import Integer, check_params
from siamcl.accounting import ResourceMeter
from siamcl.augment import AffineViews, RandomAffine
from siamcl.compress import (
    POST_TRAINING,
    FloatTraining,
    FrozenTeacher,
    embedding_distillation_loss,
    embedding_teacher,
    float_phase,
    teacher_distillation,
    training_scheme,
)
from siamcl.compress.float_phase import calibration_rows
from siamcl.distributed import Ranks, distributed_objective_loss
from siamcl.learners.task_data import distorts
from siamcl.losses import MetricLoss, MetricTerm, Objective, distillation_term
from siamcl.preprocess import Preprocessor
from siamcl.replay import ExemplarMemory
from siamcl.store import PrototypeStore
from siamcl.training import (
    BalancedBatches,
    BatchPreparation,
    LoopResult,
    TrainingLoop,
    adam,
    embed_in_batches,
    forward_dtype,
    rebuild_prototypes,
)
from siamcl.training.freezing import check_float_training, check_frozen_layers, split_frozen
from siamcl.training.precision import POST_TRAINING_SUFFIX, precision_with_qat
from siamcl.whitening import fold_whitening, projection_of, whiten_rows, within_class_whitening

__all__ = [
    "check_encoder_options",
    "check_objective_weights",
    "check_views",
    "consolidate",
    "embedder",
    "shared_frozen_layers",
    "siamese_objective",
    "task_random_state",
    "task_ranks",
    "train_task",
    "whitened",
    "with_replay",
]


def siamese_objective(
    clf: Any,
    metric_loss: MetricLoss,
    preprocessor: Preprocessor,
    ranks: Ranks,
    inputs: torch.Tensor,
) -> Objective:
    """Metric loss, plus distillation toward the previous encoder and toward ``teacher``,
    whose targets are computed once per row of the training tensor ``inputs`` or on every
    step, as ``teacher_targets`` says (:func:`~siamcl.losses.distillation_term`)."""
    if ranks.active:
        metric_loss = distributed_objective_loss(metric_loss)
    terms = [("metric", clf.metric_weight, MetricTerm(metric_loss))]  # dropped at weight 0
    targets = (clf.teacher_targets, inputs, preprocessor.standardise, distorts(clf, preprocessor))
    dtype = forward_dtype(clf.precision, clf.qat, clf.device)  # teachers run as the student
    if clf.is_fitted and clf.distill_weight:
        previous_network, previous_targets = clf.encoder_, targets
        split = split_frozen(clf.encoder_, shared_frozen_layers(clf, ranks), dtype)
        if split is not None:  # batches arrive as the frozen layers' output (train_task)
            frozen, previous_network = split
            prepare = lambda x: frozen(preprocessor.standardise(x).to(clf.device))
            previous_targets = (targets[0], inputs, prepare, targets[3])
        previous = FrozenTeacher(previous_network, autocast_dtype=dtype)
        term = distillation_term(previous, embedding_distillation_loss, *previous_targets)
        terms.append(("previous", clf.distill_weight, term))
    if clf.teacher is not None:
        teacher = embedding_teacher(clf.teacher, preprocessor, dtype)  # checked even at weight 0
        if clf.teacher_weight:
            external = distillation_term(teacher, teacher_distillation(clf.teacher_loss), *targets)
            terms.append(("teacher", clf.teacher_weight, external))
    return Objective(terms).to(clf.device)


def shared_frozen_layers(clf: Any, ranks: Ranks) -> int:
    """How many frozen first layers one pass a batch serves the student and the previous
    encoder with (:func:`~siamcl.training.freezing.split_frozen`): ``frozen_layers`` from the
    second task on, in one process, unless an external teacher reads the images themselves."""
    if not clf.is_fitted or ranks.active or (clf.teacher is not None and clf.teacher_weight):
        return 0
    return clf.frozen_layers


def consolidate(
    clf: Any,
    trainable: nn.Module,
    preprocessor: Preprocessor,
    task: tuple[torch.Tensor, np.ndarray],
    memory: ExemplarMemory,
    ranks: Ranks,
    training_inputs: torch.Tensor,
) -> tuple[nn.Module, PrototypeStore]:
    """After training: the encoder to deploy (``trainable`` as it predicts) and the new store.

    The task's canonical inputs are embedded once; herding chooses the task's exemplars from
    those embeddings and the task's prototypes are their class means; the memory's exemplars
    of earlier classes are embedded once, for their prototypes. With ``whitening``, the
    embeddings' within-class whitening is folded into the encoder first (:func:`whitened`);
    a network quantized after training is calibrated again on rows of ``training_inputs``
    and embeds its task a second time. ``memory`` is updated in place."""
    canonical, y = task
    encoder = clf.deployed(trainable)
    embed = ranks.sharded(embedder(clf, encoder, preprocessor))
    embeddings = embed(canonical)
    memory.add(canonical.numpy().astype(np.float16), y, embed=embed, embeddings=embeddings)
    kept_transform = None
    if clf.whitening is not None:
        rows = calibration_rows(training_inputs, preprocessor.standardise) if clf.qat else None
        encoder, whitening = whitened(clf, trainable, (embeddings, y), rows)
        kept_transform = functools.partial(whiten_rows, whitening=whitening)
        if clf.qat is None and clf.embed_views == 1:
            # one view of a float encoder: its folded embeddings are these, whitened
            embeddings = kept_transform(embeddings)
        else:
            embed = ranks.sharded(embedder(clf, encoder, preprocessor))
            embeddings = embed(canonical)
    previous = clf.store_ if clf.is_fitted else None
    dim = previous.dim if previous is not None else embeddings.shape[1]
    store = clf._new_store(dim)
    # classes with no exemplars keep their prototypes, whitened as the encoder now is
    store = rebuild_prototypes(
        store, embed, embeddings, y, memory, previous, kept_transform=kept_transform
    )
    return encoder, store


def whitened(
    clf: Any,
    trainable: nn.Module,
    embedded: tuple[np.ndarray, np.ndarray],
    rows: torch.Tensor | None,
) -> tuple[nn.Module, np.ndarray]:
    """The encoder to deploy once the within-class whitening of the ``embedded`` rows (the
    deployed encoder's embeddings and their labels) is folded into ``trainable``'s
    projection, and the whitening matrix. A float encoder, folded in place, is itself; a
    network quantized after training has it folded into the float network its graph shares
    weights with, its ranges calibrated again on ``rows`` (standardised training inputs: the
    projection's outputs changed) and converted anew."""
    whitening = within_class_whitening(*embedded, clf.whitening)
    if clf.qat is None:
        fold_whitening(trainable, whitening)
        return trainable, whitening
    fold_whitening(float_phase.float_network(trainable), whitening)
    float_phase.calibrate(trainable, rows)
    return clf.deployed(trainable), whitening


def check_objective_weights(clf: Any) -> None:
    """Refuse ``metric_weight=0`` without a teacher to learn from: nothing would teach the
    encoder a new class."""
    if not clf.metric_weight and (clf.teacher is None or not clf.teacher_weight):
        raise ValueError(
            "metric_weight=0 trains on a teacher alone: pass teacher= (with teacher_weight "
            "above 0) or a metric_weight above 0"
        )


def check_views(clf: Any, preprocessor: Preprocessor) -> None:
    """Refuse ``embed_views`` that are not a positive count, or that would warp vectors."""
    check_params(clf, {"embed_views": [Integer(1)]})
    if clf.embed_views > 1 and preprocessor.kind != "image":
        raise ValueError(
            f"embed_views={clf.embed_views} warps images, but the inputs are vectors: "
            "use embed_views=1"
        )


def check_encoder_options(clf: Any, trainable: nn.Module) -> None:
    """Refuse, before training, ``whitening`` where it cannot be folded into the encoder and
    ``frozen_layers`` where the encoder has no such layers."""
    check_float_training(clf.frozen_layers, clf.qat)
    check_frozen_layers(trainable, clf.frozen_layers)
    if clf.whitening is None:
        return
    if clf.qat is None:
        projection_of(trainable)
    elif clf.qat in POST_TRAINING:
        projection_of(float_phase.float_network(trainable))
    else:
        after = f"{clf.qat}{POST_TRAINING_SUFFIX}"
        after = after if after in POST_TRAINING else POST_TRAINING[0]
        raise ValueError(
            "whitening folds into a float projection after training: use qat=None, or "
            f"quantize after training (qat={after!r}), with it"
        )


def train_task(
    clf: Any,
    encoder: nn.Module,
    objective: Objective,
    preprocessor: Preprocessor,
    inputs: torch.Tensor,
    labels: np.ndarray,
    task_index: int,
    meter: ResourceMeter,
    ranks: Ranks,
    scheme: FloatTraining,
    validation: Callable[[nn.Module], float] | None = None,
) -> LoopResult:
    """One task of the training loop: balanced batches, distorted images, cosine Adam; with
    frozen layers, batches pass them once and the loop trains the layers above.

    Batches and distortions are drawn from generators seeded with ``seed * 1000 + task``;
    under torch.distributed every rank draws the same batches, distortions differ per rank.
    """
    device = torch.device(clf.device)
    generator = torch.Generator().manual_seed(clf.seed * 1000 + task_index)
    distort_generator = (
        torch.Generator().manual_seed(clf.seed * 1000 + task_index + 7919 * ranks.rank)
        if ranks.active
        else generator
    )
    augment = RandomAffine() if distorts(clf, preprocessor) else None
    dtype = forward_dtype(clf.precision, clf.qat, clf.device)
    split = split_frozen(encoder, shared_frozen_layers(clf, ranks), dtype)
    frozen, model = split if split is not None else (None, encoder)  # the model trained
    source = BalancedBatches(
        inputs,
        labels,
        clf.batch_size,
        clf.balance,
        min_size=2,
        share=ranks.batch_share if ranks.active else None,
    )
    loop = TrainingLoop(
        stopping=tuple(clf.stopping or ()),
        validate=validation,
        checks_per_epoch=clf.checks_per_epoch,
        epochs=clf.epochs,
        optimizer=clf.optimizer or adam(clf.lr, clf.weight_decay),
        prepare=BatchPreparation(
            preprocessor.standardise, augment, distort_generator, device, features=frozen
        ),
        callbacks=[scheme, ranks.callback(), *(clf.callbacks or ())],
        meter=meter,
        progress=clf.progress,
        description=f"task {task_index}",
        precision=precision_with_qat(clf.precision, clf.qat),
    )
    encoder.to(device)
    result = loop.run(ranks.wrap(model, device), objective, source, generator, trained=encoder)
    scheme.settle(encoder, inputs, preprocessor.standardise)
    return result


def task_ranks(clf: Any, device: torch.device, X: np.ndarray, y: np.ndarray) -> Ranks:
    """The distributed job this task runs in (one process: ``Ranks()``), checked."""
    ranks = Ranks.current(device)
    if not ranks.active:
        return ranks
    if training_scheme(clf.qat).scheme is not None:
        raise ValueError("qat is not supported under torch.distributed; train it on one process")
    if clf.prototypes_per_class != 1:
        raise ValueError(
            "prototypes_per_class > 1 is not supported under torch.distributed: k-means "
            "prototypes need every embedding on one process"
        )
    from siamcl.data.fingerprint import task_fingerprint

    ranks.check_same_data(task_fingerprint(X, y))
    return ranks


def embedder(
    clf: Any, encoder: nn.Module, preprocessor: Preprocessor
) -> Callable[[torch.Tensor | np.ndarray], np.ndarray]:
    """A function mapping canonical inputs (tensor or float16 array) to embeddings under
    ``clf``'s settings: each the mean of ``embed_views`` views
    (:class:`~siamcl.augment.AffineViews`) when above 1, in ``clf``'s precision."""
    views = AffineViews(clf.embed_views, clf.seed) if clf.embed_views > 1 else None
    device, dtype = clf.device, forward_dtype(clf.precision, clf.qat, clf.device)

    def embed(canonical: torch.Tensor | np.ndarray) -> np.ndarray:
        if isinstance(canonical, np.ndarray):
            canonical = torch.from_numpy(canonical.astype(np.float32))
        standardise = preprocessor.standardise
        return embed_in_batches(encoder, canonical, standardise, device, views, dtype)

    return embed


def with_replay(
    canonical: torch.Tensor, y: np.ndarray, memory: ExemplarMemory
) -> tuple[torch.Tensor, np.ndarray]:
    """A task's inputs and labels followed by the memory's exemplars; refused when the two
    together hold fewer than two classes (a metric loss compares classes)."""
    memory_X, memory_y = memory.arrays()
    if len(set(np.unique(y).tolist()) | set(memory_y.tolist())) < 2:
        raise ValueError(
            f"a metric loss needs at least two classes to compare, but this task has one "
            f"class ({int(y[0])}) and the exemplar memory holds no other class"
        )
    if memory_X is None:
        return canonical, y
    inputs = torch.cat([canonical, torch.from_numpy(memory_X.astype(np.float32))])
    return inputs, np.concatenate([y, memory_y])


@contextlib.contextmanager
def task_random_state(seed: int) -> Iterator[None]:
    """Torch's global generators seeded for one task and restored after it, so anything drawing
    from them (dropout in a user's encoder, a random miner) repeats exactly when a stream is
    resumed from a checkpoint."""
    with torch.random.fork_rng(devices=range(torch.cuda.device_count())):
        torch.manual_seed(seed)
        yield
