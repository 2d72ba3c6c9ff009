"""IncrementalClassifier: a Siamese embedding learner whose classes live in a prototype store.

Each task trains the encoder with a metric loss on the task's data plus replayed exemplars,
with a distillation term that keeps old embeddings where the previous encoder put them; then
every known class gets its prototype recomputed with the new encoder. New classes can also be
added from a few examples with no gradient step at all (:meth:`add_classes`). There is no
softmax head, so nothing about old classes is overwritten when new ones arrive.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from siamcl._checks import OPTIMIZER_FACTORY, Integer, Options, Real, check_params
from siamcl.accounting import TaskReport
from siamcl.compress import TEACHER_LOSSES, FloatTraining, training_scheme
from siamcl.learners.components import ComponentFactories
from siamcl.learners.prediction import NotFittedError, PrototypePredictions
from siamcl.learners.siamese_task import (
    check_encoder_options,
    check_objective_weights,
    check_views,
    consolidate,
    embedder,
    siamese_objective,
    task_random_state,
    task_ranks,
    train_task,
    with_replay,
)
from siamcl.learners.state import Learned
from siamcl.learners.task_data import DATA_CONSTRAINTS, row_figures, task_rows, training_figures
from siamcl.learners.validation import task_validation
from siamcl.losses import Objective, build_loss
from siamcl.preprocess import Preprocessor, as_array, as_labels
from siamcl.replay import ExemplarMemory
from siamcl.store import PrototypeStore
from siamcl.training import PRECISIONS, LoopResult, check_stopping, precision_with_qat
from siamcl.training.freezing import freeze_leading_layers

__all__ = ["IncrementalClassifier", "NotFittedError"]


class IncrementalClassifier(PrototypePredictions, ComponentFactories):
    """Class-incremental classifier: metric-learned encoder + FAISS prototype store + replay.

    The constructor only stores its parameters (scikit-learn's habit); everything learned
    lives in attributes ending in ``_`` (``encoder_``, ``store_``, ``memory_``, ``reports_``).

    encoder, embedding_dim: a name from :data:`siamcl.encoders.ENCODERS`, an ``nn.Module``, or
        ``"auto"``: ``conv4`` for images, ``mlp`` for vectors.
    loss, miner: a name from :data:`siamcl.losses.LOSSES` or a pytorch-metric-learning loss.
    epochs, batch_size, lr, weight_decay: the optimiser's budget per task (Adam).
    memory_per_class / memory_total: exemplar budget (set one; ``memory_total`` wins if set).
    selection, distill_weight: ``"herding"`` or ``"random"``; distillation toward the last encoder.
    balance: batches draw each class with weight ``count ** -balance`` (0: as the data comes,
        1: classes equally often), so a few exemplars of old classes are not drowned out.
    index, metric, prototypes_per_class, vote_k: passed to :class:`PrototypeStore`.
    augment: random affine distortions of training images.
    embed_views: embeddings (of prototypes and queries) average the image and ``embed_views
        - 1`` fixed affine warps of it (:class:`siamcl.augment.AffineViews`): steadier one-shot
        comparisons at that many times the embedding cost; images only.
    input_size, invert: preprocessing (see :class:`siamcl.preprocess.Preprocessor`).
    temperature: softmax temperature of :meth:`predict_proba` over prototype similarities.
    energy, flops: accounting options passed to :class:`ResourceMeter`.
    qat: ``"int8"`` / ``"int4"`` trains the encoder quantization-aware, ``"int8-ptq"`` in
        float, quantized after each task (:mod:`siamcl.compress.qat`); None: float.
    optimizer: a factory of the parameter groups to train (the encoder's, then the loss's
        own, such as pml proxies), e.g. ``functools.partial(torch.optim.SGD, lr=0.01)``; None:
        Adam with ``lr`` and ``weight_decay``. Learning rates follow a cosine over each task.
    stopping, validation_fraction: policies that may end a task's training early
        (:mod:`siamcl.training.stopping`: step or energy budget, target validation score,
        patience), and the share of each class held out to score the encoder (prototypes
        cross-validated in it: :mod:`siamcl.learners.validation`; its cost in ``extra``).
    checks_per_epoch: validations and stopping checks an epoch, evenly spaced, so training
        can stop inside one (1: at epoch ends; ``Patience`` still counts epochs).
    callbacks: :class:`siamcl.training.Callback` objects called between epochs (not metered).
    teacher, teacher_weight, metric_weight: a fitted IncrementalClassifier or an encoder
        module whose embeddings the encoder is distilled toward (not saved with the model;
        ``clone`` unfits a classifier teacher: pass ``teacher.encoder_``), weighted by
        ``teacher_weight`` against the metric loss's ``metric_weight`` (0: no pairs mined).
    teacher_loss: ``"match"`` (cosine distance to the teacher's embeddings), ``"relational"``
        (distances and angles; any size), both, or ``"auto"``: match where the sizes agree.
    teacher_targets: the previous encoder's and the teacher's outputs ``"cached"`` once per
        (undistorted) row, ``"per_step"`` on every batch, or ``"auto"``: cached unless distorted.
    data_fraction, data_selection: train each task on that fraction of each class, chosen
        ``"stratified"`` (at random) or ``"coreset"`` (k-center greedy in the current
        encoder's space); only those rows are trained on, kept and averaged into prototypes
        (:mod:`siamcl.training.selection`); ``extra`` holds ``rows_trained``, ``rows_offered``.
    whitening: None, or a shrinkage in [0, 1]: after each task, whiten embeddings by their
        within-class covariance, folded into the last projection (:mod:`siamcl.whitening`);
        it helped one many-class task and hurt two-class tasks in a stream (docs/energy.md).
    precision: ``"fp32"``, ``"bf16"`` (every forward pass, training's and embedding's, mixed)
        or ``"auto"`` (bf16 where native; fp32 with ``qat``): :mod:`siamcl.training.precision`.
    frozen_layers: from the second task on, the encoder's first layers (conv4: blocks) stay as
        they are; backward passes stop above them (:mod:`siamcl.training.freezing`); qat=None.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "epochs": [Integer(1)],
        "batch_size": [Integer(2)],
        "embedding_dim": [Integer(1)],
        "embed_views": [Integer(1)],
        "lr": [Real(0, closed="neither")],
        "temperature": [Real(0, closed="neither")],
        "weight_decay": [Real(0)],
        "distill_weight": [Real(0)],
        "teacher_weight": [Real(0)],
        "metric_weight": [Real(0)],
        "teacher_loss": [Options(tuple(TEACHER_LOSSES))],
        "balance": [Real(0, 1)],
        "optimizer": OPTIMIZER_FACTORY,
        "whitening": [None, Real(0, 1)],
        "precision": [Options(PRECISIONS)],
        "frozen_layers": [Integer(0)],
        **DATA_CONSTRAINTS,
    }

    def __init__(
        self,
        encoder: str | nn.Module = "auto",
        embedding_dim: int = 64,
        loss: Any = "multisimilarity",
        miner: Any = None,
        epochs: int = 8,
        batch_size: int = 128,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        memory_per_class: int | None = 20,
        memory_total: int | None = None,
        selection: str = "herding",
        distill_weight: float = 1.0,
        balance: float = 0.5,
        index: str = "Flat",
        metric: str = "cosine",
        prototypes_per_class: int = 1,
        vote_k: int = 1,
        augment: bool = True,
        embed_views: int = 1,
        input_size: int | tuple[int, int] | None = None,
        invert: bool | str = "auto",
        temperature: float = 0.1,
        device: str = "cpu",
        seed: int = 0,
        progress: bool = False,
        energy: str = "auto",
        flops: str = "sample",
        qat: str | None = None,
        teacher: Any = None,
        teacher_weight: float = 1.0,
        optimizer: Any = None,
        stopping: Any = None,
        validation_fraction: float = 0.0,
        callbacks: Sequence[Any] | None = None,
        teacher_targets: str = "auto",
        data_fraction: float = 1.0,
        data_selection: str = "stratified",
        teacher_loss: str = "auto",
        whitening: float | None = None,
        precision: str = "fp32",
        frozen_layers: int = 0,
        checks_per_epoch: int = 1,
        metric_weight: float = 1.0,
    ):
        # scikit-learn's habit: the constructor only stores its parameters, as given
        vars(self).update({k: v for k, v in locals().items() if k != "self"})

    # ------------------------------------------------------------------ public API

    def fit_task(self, X: Any, y: Any) -> TaskReport:
        """Learn one task: train the encoder on it (plus replay), then refresh all prototypes.

        Returns the task's :class:`TaskReport`. On any error the classifier is unchanged.
        """
        X = as_array(X)
        y = as_labels(y, len(X))
        self._check_params()
        scheme = training_scheme(self.qat, self.device)
        fitted = self.is_fitted
        preprocessor = (
            self.preprocessor_ if fitted else Preprocessor(self.input_size, self.invert).fit(X)
        )
        check_views(self, preprocessor)
        canonical = preprocessor.canonical(X)
        memory = copy.deepcopy(self.memory_) if fitted else self._new_memory()
        task_index = len([r for r in self.reports if r.method == "fit_task"])
        device = torch.device(self.device)
        ranks = task_ranks(self, device, X, y)
        trainable = self._trainable_encoder(scheme, preprocessor)
        metric_loss = copy.deepcopy(self.metric_loss_) if fitted else self._new_loss()
        with self._meter(device) as meter:
            current = ranks.sharded(self._embedder(self.encoder_, preprocessor)) if fitted else None
            rows = task_rows(self, canonical, y, task_index, current)  # selection is metered
            canonical, y = (canonical, y) if len(rows) == len(y) else (canonical[rows], y[rows])
            train_rows, validation = task_validation(self, preprocessor, canonical, y, task_index)
            inputs, labels = with_replay(canonical[train_rows], y[train_rows], memory)
            with task_random_state(self.seed * 1000 + task_index):
                objective = siamese_objective(self, metric_loss, preprocessor, ranks, inputs)
                args = (preprocessor, inputs, labels, task_index, meter, ranks, scheme, validation)
                result = self._train(trainable, objective, *args)
            task = (canonical, y)
            encoder, store = consolidate(self, trainable, preprocessor, task, memory, ranks, inputs)
        figures = {**training_figures(result), **row_figures(len(y[train_rows]), len(X))}
        retained = {"replay": memory.nbytes, "store": store.nbytes}
        report = ranks.combine(meter.report(task_index, "fit_task", retained, extra=figures))
        report.stopped_by = result.stopped_by
        self._set_learned(
            preprocessor=preprocessor,
            encoder=encoder,
            trainable_encoder=trainable,
            metric_loss=metric_loss,
            memory=memory,
            store=store,
            reports=[*self.reports, report],
        )
        return report

    def _trainable_encoder(self, scheme: FloatTraining, preprocessor: Preprocessor) -> nn.Module:
        """A copy of the encoder as trained so far, its first ``frozen_layers`` frozen, or a
        new one prepared as ``qat`` says; options the encoder cannot take are refused first."""
        shape, fitted = preprocessor.input_shape, self.is_fitted
        encoder = (
            copy.deepcopy(self.trainable_encoder_)
            if fitted
            else scheme.prepare(self.new_encoder(shape), torch.zeros((2, *shape)))
        )
        check_encoder_options(self, encoder)
        return freeze_leading_layers(encoder, self.frozen_layers) if fitted else encoder

    def fit_stream(
        self, tasks: Any, checkpoint_dir: Any = None, after_task: Any = None
    ) -> list[TaskReport]:
        """Learn each task of a stream in turn (objects with ``.X`` and ``.y``).

        With ``checkpoint_dir`` the classifier is saved there atomically after every task, and
        a run given the same directory resumes after the last finished task, ending with the
        same model as an uninterrupted run (see :mod:`siamcl.persistence.checkpoint`). Returns the
        stream's reports, those of tasks finished by an earlier run included.
        ``after_task(index, classifier)`` is called each time the classifier holds the state
        after task ``index`` (trained, or restored from the checkpoint).
        """
        if checkpoint_dir is None:
            reports = []
            for index, task in enumerate(tasks):
                reports.append(self.fit_task(task.X, task.y))
                if after_task is not None:
                    after_task(index, self)
            return reports
        from siamcl.persistence.checkpoint import fit_stream

        return fit_stream(self, tasks, checkpoint_dir, after_task)

    def add_classes(self, X: Any, y: Any) -> TaskReport:
        """Add classes (or more examples of known ones) from a few examples, no gradient step.

        The examples are embedded with the current encoder, their class means become (or
        update) prototypes, and they enter the exemplar memory for later tasks. Other threads
        may call :meth:`predict`, :meth:`predict_proba` or :meth:`embed` meanwhile: the prototype
        store is locked and the rest is replaced in one step. Calls that learn
        (this one, ``fit_task``, ``fit``, ``partial_fit``) must come from one thread at a time.
        """
        self._require_fitted("add_classes")
        X = as_array(X)
        y = as_labels(y, len(X))
        state = self.learned_
        canonical = state.preprocessor.canonical(X)
        embed = self._embedder(state.encoder, state.preprocessor)
        memory = copy.deepcopy(state.memory)
        with self._meter(torch.device(self.device)) as meter:
            embeddings = embed(canonical)
            memory.add(canonical.numpy().astype(np.float16), y, embed=embed)
            state.store.add(embeddings, y)  # under the store's lock: seen whole or not at all
        retained = {"replay": memory.nbytes, "store": state.store.nbytes}
        report = meter.report(task=None, method="add_classes", retained_bytes=retained)
        report.samples_seen = len(X)
        self.learned_ = dataclasses.replace(state, memory=memory, reports=(*state.reports, report))
        return report

    def reset_classes(self) -> None:
        """Forget every class (prototypes and exemplars) but keep the trained encoder."""
        self._require_fitted("reset_classes")
        state = self.learned_
        self.learned_ = dataclasses.replace(
            state, store=self._new_store(state.store.dim), memory=self._new_memory()
        )

    def save(self, directory: Any, key: str | bytes | None = None) -> None:
        """Write the whole classifier to ``directory`` atomically, as weights, arrays and JSON
        (see :mod:`siamcl.persistence.classifier`); with ``key``, sign it (HMAC-SHA256)."""
        from siamcl.persistence.classifier import save_classifier

        self._require_fitted("save")
        save_classifier(self, directory, key)

    def export(self, path: Any, format: str = "onnx", **options: Any) -> Any:
        """Write a folder a deployment reads with onnxruntime (or torch, for
        ``format="torch.export"``) and faiss, without siamcl: encoder graph, FAISS index,
        class map and preprocessing; ``options`` are :func:`siamcl.export.export_classifier`'s
        (``class_names``, ``image_files``). Returns its path."""
        from siamcl.export import export_classifier

        return export_classifier(self, path, format, **options)

    @classmethod
    def load(
        cls,
        directory: Any,
        *,
        trust_pickle: bool = False,
        key: str | bytes | None = None,
        **objects: Any,
    ) -> IncrementalClassifier:
        """Read a classifier written by :meth:`save`; raw inputs work as before saving.

        Loading reads data, never code. Parameters saved as Python objects (your own encoder
        module, a loss object) are passed here by name (``encoder=MyNet()``); only with
        ``trust_pickle=True`` are they unpickled from the directory, which can run code. With
        ``key``, the directory must be signed with it.
        """
        from siamcl.persistence.classifier import read_classifier

        params, state = read_classifier(directory, trust_pickle, key, objects)
        try:
            return cls.from_state(params, **state)
        except ValueError as error:
            raise ValueError(f"{directory}: {error}") from error

    @classmethod
    def from_state(
        cls,
        params: dict[str, Any],
        *,
        preprocessor: Preprocessor,
        trainable_encoder: nn.Module | None = None,
        encoder_weights: dict[str, torch.Tensor] | None = None,
        store: PrototypeStore | None = None,
        memory: ExemplarMemory | None = None,
        reports: Sequence[TaskReport] = (),
    ) -> IncrementalClassifier:
        """A fitted classifier from its parameters and what it learned (as persistence reads
        them, or as another trainer built it): ``trainable_encoder`` is the encoder as
        trained, or ``encoder_weights`` its weights (loaded into a new encoder prepared as
        ``qat`` says); it is converted here for prediction. Without ``store`` and ``memory``
        the classifier knows no class yet (:meth:`add_classes` adds them)."""
        clf = cls(**params)
        if trainable_encoder is None:
            trainable_encoder = clf._encoder_with(encoder_weights, preprocessor.input_shape)
        trainable_encoder.to(torch.device(clf.device)).eval()
        if store is None:
            probe = preprocessor.standardise(torch.zeros((2, *preprocessor.input_shape)))
            with torch.no_grad():
                dim = trainable_encoder(probe.to(torch.device(clf.device))).shape[1]
            store = clf._new_store(dim)
        memory = clf._new_memory() if memory is None else memory
        clf._set_learned(
            preprocessor=preprocessor,
            encoder=clf.deployed(trainable_encoder),
            trainable_encoder=trainable_encoder,
            metric_loss=clf._new_loss(),
            memory=memory,
            store=store,
            reports=list(reports),
        )
        return clf

    # ------------------------------------------------------------------ training

    def _train(self, encoder: nn.Module, objective: Objective, *args: Any) -> LoopResult:
        """Train ``encoder`` on one task (:func:`~siamcl.learners.siamese_task.train_task`)."""
        return train_task(self, encoder, objective, *args)

    def _embedder(self, encoder: nn.Module, preprocessor: Preprocessor):
        """A function mapping canonical inputs (tensor or float16 array) to embeddings."""
        check_views(self, preprocessor)
        return embedder(self, encoder, preprocessor)

    def _set_learned(self, **learned: Any) -> None:
        """Replace everything learned in one assignment (see :mod:`siamcl.learners.state`)."""
        learned["qat"] = training_scheme(self.qat).scheme
        learned["reports"] = tuple(learned["reports"])
        self.learned_ = Learned(**learned)

    def _check_params(self) -> None:
        check_params(self, self._parameter_constraints)
        if self.is_fitted and training_scheme(self.qat).scheme != self.qat_:
            raise ValueError("qat cannot be switched on or off after the first task")
        training_scheme(self.qat, self.device)
        precision_with_qat(self.precision, self.qat)
        check_stopping(self.stopping, self.validation_fraction)
        check_objective_weights(self)
        build_loss(self.loss, self.miner)  # unknown names fail before any work, not after it
        self._new_memory()
        self._new_store(dim=self.store_.dim if self.is_fitted else int(self.embedding_dim))
