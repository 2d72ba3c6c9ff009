"""IncrementalClassifier: a Siamese embedding learner whose classes live in a prototype store.

Each task trains the encoder with a metric loss on the task's data plus replayed exemplars,
with a distillation term that keeps old embeddings where the previous encoder put them; then
every known class gets its prototype recomputed with the new encoder. New classes can also be
added from a few examples with no gradient step at all (:meth:`add_classes`). There is no
softmax head, so nothing about old classes is overwritten when new ones arrive.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import NotFittedError as _SklearnNotFittedError
from sklearn.utils import check_array
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import column_or_1d
from torch import nn

from siamcl._checks import Integer, Real, Satisfies, check_params
from siamcl.accounting import ResourceMeter, TaskReport
from siamcl.augment import AffineViews, RandomAffine
from siamcl.compress import (
    EmbeddingDistillation,
    FloatTraining,
    FrozenTeacher,
    embedding_teacher,
    training_scheme,
)
from siamcl.distributed import Ranks, distributed_objective_loss
from siamcl.encoders import auto_encoder_name, build_encoder
from siamcl.losses import DistillationTerm, MetricLoss, MetricTerm, Objective, build_loss
from siamcl.preprocess import Preprocessor, as_array, as_labels
from siamcl.replay import ExemplarMemory
from siamcl.store import PrototypeStore
from siamcl.training import (
    BalancedBatches,
    BatchPreparation,
    TrainingLoop,
    adam,
    embed_in_batches,
    rebuild_prototypes,
)

__all__ = ["IncrementalClassifier", "NotFittedError"]


class NotFittedError(_SklearnNotFittedError, RuntimeError):
    """A method that needs a trained classifier was called before any training.

    It is scikit-learn's ``NotFittedError`` (so ``check_is_fitted`` idioms work) and also a
    ``RuntimeError``.
    """


class IncrementalClassifier(ClassifierMixin, BaseEstimator):
    """Class-incremental classifier: metric-learned encoder + FAISS prototype store + replay.

    Parameters follow scikit-learn's habit: the constructor only stores them; everything
    learned lives in attributes ending in ``_`` (``preprocessor_``, ``encoder_``, ``store_``,
    ``memory_``, ``reports_``).

    encoder, embedding_dim: a name from :data:`siamcl.encoders.ENCODERS`, an ``nn.Module``, or
        ``"auto"``: ``conv4`` for images, ``mlp`` for vectors.
    loss, miner: a name from :data:`siamcl.losses.LOSSES` or a pytorch-metric-learning loss.
    epochs, batch_size, lr, weight_decay: the optimiser's budget per task (Adam).
    memory_per_class / memory_total: exemplar budget (set one; ``memory_total`` wins if set).
    selection: ``"herding"`` or ``"random"`` exemplar selection.
    distill_weight: weight of the embedding distillation term against the previous encoder.
    balance: batches draw each class with weight ``count ** -balance`` (0: as the data comes,
        1: classes equally often), so a few exemplars of old classes are not drowned out.
    index, metric, prototypes_per_class, vote_k: passed to :class:`PrototypeStore`.
    augment: random affine distortions of training images.
    embed_views: embeddings (for prototypes and predictions alike) average the image and
        ``embed_views - 1`` fixed affine warps of it (:class:`siamcl.augment.AffineViews`);
        more views steady one-shot comparisons at that many times the embedding cost. Images
        only; 1 embeds the image alone.
    input_size, invert: preprocessing (see :class:`siamcl.preprocess.Preprocessor`).
    temperature: softmax temperature of :meth:`predict_proba` over prototype similarities.
    energy, flops: accounting options passed to :class:`ResourceMeter`.
    qat: ``"int8"`` or ``"int4"`` trains the encoder quantization-aware and predicts with the
        converted quantized encoder (see :mod:`siamcl.compress.qat`); None trains in float.
    optimizer: a factory called with the parameter groups to train (the encoder's, then the
        loss's own, such as pml proxies), e.g. ``functools.partial(torch.optim.SGD, lr=0.01)``;
        None: Adam with ``lr`` and ``weight_decay``. Learning rates follow a cosine over each
        task.
    teacher, teacher_weight: a fitted IncrementalClassifier or an encoder module whose
        embeddings the encoder is distilled toward, weighted by ``teacher_weight`` (see
        :class:`siamcl.compress.EmbeddingDistillation`); a teacher is not saved with the model,
        and scikit-learn's ``clone`` unfits a classifier teacher (pass ``teacher.encoder_``
        to keep it).
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
        "balance": [Real(0, 1)],
        "optimizer": [None, Satisfies(callable, "a callable building an optimizer")],
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
        input_size: tuple[int, int] | None = None,
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
    ):
        self.encoder = encoder
        self.embedding_dim = embedding_dim
        self.loss = loss
        self.miner = miner
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.memory_per_class = memory_per_class
        self.memory_total = memory_total
        self.selection = selection
        self.distill_weight = distill_weight
        self.balance = balance
        self.index = index
        self.metric = metric
        self.prototypes_per_class = prototypes_per_class
        self.vote_k = vote_k
        self.augment = augment
        self.embed_views = embed_views
        self.input_size = input_size
        self.invert = invert
        self.temperature = temperature
        self.device = device
        self.seed = seed
        self.progress = progress
        self.energy = energy
        self.flops = flops
        self.qat = qat
        self.teacher = teacher
        self.teacher_weight = teacher_weight
        self.optimizer = optimizer

    # ------------------------------------------------------------------ public API

    @property
    def reports(self) -> list[TaskReport]:
        """One :class:`TaskReport` per call of :meth:`fit_task` and :meth:`add_classes`."""
        return getattr(self, "reports_", [])

    @property
    def classes_(self) -> np.ndarray:
        """Labels of the classes the store holds, sorted."""
        store = getattr(self, "store_", None)
        return np.asarray(store.classes if store is not None else [], dtype=np.int64)

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "encoder_")

    def fit_task(self, X: Any, y: Any) -> TaskReport:
        """Learn one task: train the encoder on it (plus replay), then refresh all prototypes.

        Returns the task's :class:`TaskReport`. On any error the classifier is unchanged.
        """
        X = as_array(X)
        y = as_labels(y, len(X))
        self._check_params()
        scheme = training_scheme(self.qat, self.device)
        preprocessor = (
            self.preprocessor_
            if self.is_fitted
            else Preprocessor(self.input_size, self.invert).fit(X)
        )
        self._check_views(preprocessor)
        canonical = preprocessor.canonical(X)
        memory = copy.deepcopy(self.memory_) if self.is_fitted else self._new_memory()
        memory_X, memory_y = memory.arrays()
        _require_two_classes(y, memory_y)
        task_index = len([r for r in self.reports if r.method == "fit_task"])
        device = torch.device(self.device)
        ranks = self._ranks(device, X, y)
        trainable = (
            copy.deepcopy(self.trainable_encoder_)
            if self.is_fitted
            else scheme.prepare(
                self.new_encoder(preprocessor.input_shape),
                torch.zeros((2, *preprocessor.input_shape)),
            )
        )
        metric_loss = copy.deepcopy(self.metric_loss_) if self.is_fitted else self._new_loss()
        inputs, labels = canonical, y
        if memory_X is not None:
            inputs = torch.cat([canonical, torch.from_numpy(memory_X.astype(np.float32))])
            labels = np.concatenate([y, memory_y])

        with self._meter(device) as meter:
            with _task_random_state(self.seed * 1000 + task_index):
                objective = self._objective(metric_loss, preprocessor, ranks)
                self._train(
                    trainable,
                    objective,
                    preprocessor,
                    inputs,
                    labels,
                    task_index,
                    meter,
                    ranks,
                    scheme,
                )
            encoder = scheme.convert(trainable)
            embed = self._embedder(encoder, preprocessor)
            memory.add(canonical.numpy().astype(np.float16), y, embed=ranks.sharded(embed))
            dim = self.store_.dim if self.is_fitted else embed(canonical[:2]).shape[1]
            previous = self.store_ if self.is_fitted else None
            store = rebuild_prototypes(
                self._new_store(dim), embed, canonical, y, memory, previous, ranks
            )
        report = ranks.combine(
            meter.report(
                task=task_index,
                method="fit_task",
                retained_bytes={"replay": memory.nbytes, "store": store.nbytes},
            )
        )
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

    def fit_stream(
        self, tasks: Any, checkpoint_dir: Any = None, after_task: Any = None
    ) -> list[TaskReport]:
        """Learn each task of a stream in turn (objects with ``.X`` and ``.y``).

        With ``checkpoint_dir`` the classifier is saved there atomically after every task, and
        a run given the same directory resumes after the last finished task, ending with the
        same model as an uninterrupted run (see :mod:`siamcl.checkpoint`). Returns the
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
        from siamcl.checkpoint import fit_stream

        return fit_stream(self, tasks, checkpoint_dir, after_task)

    def add_classes(self, X: Any, y: Any) -> TaskReport:
        """Add classes (or more examples of known ones) from a few examples, no gradient step.

        The examples are embedded with the current encoder, their class means become (or
        update) prototypes, and they enter the exemplar memory for later tasks. Other threads
        may call :meth:`predict`, :meth:`predict_proba` or :meth:`embed` meanwhile: the prototype
        store is locked and the memory is replaced, not changed in place. Calls that learn
        (this one, ``fit_task``, ``fit``, ``partial_fit``) must come from one thread at a time.
        """
        self._require_fitted("add_classes")
        X = as_array(X)
        y = as_labels(y, len(X))
        canonical = self.preprocessor_.canonical(X)
        embed = self._embedder(self.encoder_, self.preprocessor_)
        memory = copy.deepcopy(self.memory_)
        with self._meter(torch.device(self.device)) as meter:
            embeddings = embed(canonical)
            memory.add(canonical.numpy().astype(np.float16), y, embed=embed)
            self.store_.add(embeddings, y)
        self.memory_ = memory
        report = meter.report(
            task=None,
            method="add_classes",
            retained_bytes={"replay": memory.nbytes, "store": self.store_.nbytes},
        )
        report.samples_seen = len(X)
        self.reports_ = [*self.reports, report]
        return report

    def reset_classes(self) -> None:
        """Forget every class (prototypes and exemplars) but keep the trained encoder."""
        self._require_fitted("reset_classes")
        self.store_ = self._new_store(self.store_.dim)
        self.memory_ = self._new_memory()

    def embed(self, X: Any) -> np.ndarray:
        """L2-normalised embeddings ``[N, D]`` of raw inputs."""
        self._require_fitted("embed")
        canonical = self.preprocessor_.canonical(X)
        return self._embedder(self.encoder_, self.preprocessor_)(canonical)

    def predict(self, X: Any) -> np.ndarray:
        """Label of the nearest prototype (or the k-NN vote) for each input."""
        embeddings = self._embed_for_prediction(X)
        return self.store_.classify(embeddings)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Softmax over prototype similarities, columns in the order of :attr:`classes_`."""
        embeddings = self._embed_for_prediction(X)
        _, scores = self.store_.class_scores(embeddings)
        logits = torch.from_numpy(np.asarray(scores, dtype=np.float32)) / self.temperature
        return torch.softmax(logits, dim=1).numpy()

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Mean accuracy of :meth:`predict` on ``X`` against ``y`` (weighted if given)."""
        X = as_array(self._checked_input(X))
        y = as_labels(y, len(X))
        correct = self.predict(X) == y
        if sample_weight is None:
            return float(correct.mean())
        weights = np.asarray(sample_weight, dtype=np.float64)
        if weights.shape != correct.shape:
            raise ValueError(f"sample_weight has shape {weights.shape}; expected ({len(y)},)")
        return float(np.average(correct, weights=weights))

    def save(self, directory: Any) -> None:
        """Write the whole classifier to ``directory`` atomically (see :mod:`siamcl.persist`)."""
        from siamcl.persist import save_classifier

        self._require_fitted("save")
        save_classifier(self, directory)

    @classmethod
    def load(cls, directory: Any) -> IncrementalClassifier:
        """Read a classifier written by :meth:`save`; raw inputs work as before saving."""
        from siamcl.persist import read_classifier

        params, state = read_classifier(directory)
        return cls.from_state(params, **state)

    @classmethod
    def from_state(
        cls,
        params: dict[str, Any],
        *,
        preprocessor: Preprocessor,
        trainable_encoder: nn.Module,
        store: PrototypeStore | None = None,
        memory: ExemplarMemory | None = None,
        reports: Sequence[TaskReport] = (),
    ) -> IncrementalClassifier:
        """A fitted classifier from its parameters and what it learned (as persistence reads
        them, or as another trainer built it): ``trainable_encoder`` is the encoder as
        trained, converted here for prediction as ``qat`` says; without ``store`` and
        ``memory`` the classifier knows no class yet (:meth:`add_classes` adds them)."""
        clf = cls(**params)
        trainable_encoder.to(torch.device(clf.device)).eval()
        if store is None:
            probe = preprocessor.standardise(torch.zeros((2, *preprocessor.input_shape)))
            with torch.no_grad():
                dim = trainable_encoder(probe.to(torch.device(clf.device))).shape[1]
            store = clf._new_store(dim)
        memory = clf._new_memory() if memory is None else memory
        clf._set_learned(
            preprocessor=preprocessor,
            encoder=training_scheme(clf.qat).convert(trainable_encoder),
            trainable_encoder=trainable_encoder,
            metric_loss=clf._new_loss(),
            memory=memory,
            store=store,
            reports=list(reports),
        )
        return clf

    # ------------------------------------------------------------------ scikit-learn API
    # get_params, set_params, clone and repr come from BaseEstimator; these follow its idiom.

    def fit(self, X: Any, y: Any) -> IncrementalClassifier:
        """Forget everything learned, then learn ``(X, y)`` as one task; returns ``self``.

        On any error the classifier keeps what it had learned before the call.
        """
        fresh = type(self)(**self.get_params(deep=False))
        fresh.fit_task(_sklearn_array(X), _sklearn_labels(y))
        self.adopt(fresh)
        return self

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> IncrementalClassifier:
        """Learn ``(X, y)`` as the next task of the stream; returns ``self``.

        ``classes`` may list every label the stream will use, as scikit-learn's incremental
        estimators take it; labels outside it are refused. It is optional here: new classes
        may appear in any task.
        """
        X = as_array(self._checked_input(X))
        y = as_labels(_sklearn_labels(y), len(X))
        if classes is not None:
            allowed = as_labels(classes, np.size(classes), "classes")
            unknown = np.setdiff1d(y, allowed)
            if len(unknown):
                raise ValueError(
                    f"y holds labels {unknown[:10].tolist()} that are not in classes={allowed!r}"
                )
        self.fit_task(X, y)
        return self

    @property
    def n_features_in_(self) -> int:
        """Number of features of vector inputs ``[N, D]`` (scikit-learn's convention)."""
        preprocessor = getattr(self, "preprocessor_", None)
        if preprocessor is None or preprocessor.kind != "vector":
            raise AttributeError("n_features_in_ is defined once fitted on vectors [N, D]")
        return int(preprocessor.features)

    def _checked_input(self, X: Any) -> Any:
        """``X`` as scikit-learn's methods accept it, with its feature count checked."""
        X = _sklearn_array(X)
        preprocessor = getattr(self, "preprocessor_", None)
        vectors = preprocessor is not None and preprocessor.kind == "vector" and X.ndim == 2
        if vectors and X.shape[1] != preprocessor.features:
            raise ValueError(
                f"X has {X.shape[1]} features, but IncrementalClassifier is expecting "
                f"{preprocessor.features} features as input"
            )
        return X

    def __sklearn_is_fitted__(self) -> bool:
        return self.is_fitted

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True  # images [N, H, W] and [N, C, H, W]
        return tags

    def adopt(self, other: IncrementalClassifier) -> None:
        """Take everything ``other`` learned (attributes ending in ``_``), dropping our own;
        a checkpointed stream resumes this way."""
        learned = {k: v for k, v in vars(other).items() if k.endswith("_") and k[0] != "_"}
        for name, value in learned.items():
            setattr(self, name, value)
        for name in [k for k in vars(self) if k.endswith("_") and k[0] != "_"]:
            if name not in learned:
                delattr(self, name)

    # ------------------------------------------------------------------ training

    def _objective(
        self, metric_loss: MetricLoss, preprocessor: Preprocessor, ranks: Ranks
    ) -> Objective:
        """Metric loss, plus distillation toward the previous encoder and toward ``teacher``."""
        if ranks.active:
            metric_loss = distributed_objective_loss(metric_loss)
        terms = [("metric", 1.0, MetricTerm(metric_loss))]
        if self.is_fitted:
            previous = DistillationTerm(FrozenTeacher(self.encoder_))
            terms.append(("previous", self.distill_weight, previous))
        if self.teacher is not None:
            teacher = embedding_teacher(self.teacher, preprocessor)
            terms.append(
                ("teacher", self.teacher_weight, DistillationTerm(teacher, EmbeddingDistillation()))
            )
        return Objective(terms).to(self.device)

    def _train(
        self,
        encoder: nn.Module,
        objective: Objective,
        preprocessor: Preprocessor,
        inputs: torch.Tensor,
        labels: np.ndarray,
        task_index: int,
        meter: ResourceMeter,
        ranks: Ranks,
        scheme: FloatTraining,
    ) -> None:
        """One task of the training loop: balanced batches, distorted images, cosine Adam."""
        device = torch.device(self.device)
        generator = torch.Generator().manual_seed(self.seed * 1000 + task_index)
        # Every rank draws the same batches from `generator`; distortions differ per rank.
        distort_generator = (
            torch.Generator().manual_seed(self.seed * 1000 + task_index + 7919 * ranks.rank)
            if ranks.active
            else generator
        )
        augment = RandomAffine() if self.augment and preprocessor.kind == "image" else None
        source = BalancedBatches(
            inputs,
            labels,
            self.batch_size,
            self.balance,
            min_size=2,
            share=ranks.batch_share if ranks.active else None,
        )
        loop = TrainingLoop(
            epochs=self.epochs,
            optimizer=self.optimizer or adam(self.lr, self.weight_decay),
            prepare=BatchPreparation(preprocessor.standardise, augment, distort_generator, device),
            callbacks=[scheme, ranks.callback()],
            meter=meter,
            progress=self.progress,
            description=f"task {task_index}",
        )
        encoder.to(device)
        loop.run(ranks.wrap(encoder, device), objective, source, generator, trained=encoder)

    # ------------------------------------------------------------------ helpers

    def _ranks(self, device: torch.device, X: np.ndarray, y: np.ndarray) -> Ranks:
        """The distributed job this task runs in (one process: ``Ranks()``), checked."""
        ranks = Ranks.current(device)
        if not ranks.active:
            return ranks
        if training_scheme(self.qat).scheme is not None:
            raise ValueError(
                "qat is not supported under torch.distributed; train it on one process"
            )
        if self.prototypes_per_class != 1:
            raise ValueError(
                "prototypes_per_class > 1 is not supported under torch.distributed: k-means "
                "prototypes need every embedding on one process"
            )
        from siamcl.checkpoint import task_fingerprint

        ranks.check_same_data(task_fingerprint(X, y))
        return ranks

    def _embedder(self, encoder: nn.Module, preprocessor: Preprocessor):
        """A function mapping canonical inputs (tensor or float16 array) to embeddings."""
        self._check_views(preprocessor)
        views = AffineViews(self.embed_views, self.seed) if self.embed_views > 1 else None

        def embed(canonical: torch.Tensor | np.ndarray) -> np.ndarray:
            if isinstance(canonical, np.ndarray):
                canonical = torch.from_numpy(canonical.astype(np.float32))
            return embed_in_batches(
                encoder, canonical, preprocessor.standardise, self.device, views
            )

        return embed

    def _check_views(self, preprocessor: Preprocessor) -> None:
        check_params(self, {"embed_views": [Integer(1)]})
        if self.embed_views > 1 and preprocessor.kind != "image":
            raise ValueError(
                f"embed_views={self.embed_views} warps images, but the inputs are vectors: "
                "use embed_views=1"
            )

    def _embed_for_prediction(self, X: Any) -> np.ndarray:
        self._require_fitted("predict")
        if len(self.store_) == 0:
            raise ValueError("no classes are known: call fit_task or add_classes first")
        return self.embed(self._checked_input(X))

    def _meter(self, device: torch.device) -> ResourceMeter:
        return ResourceMeter(energy=self.energy, flops=self.flops, device=str(device))

    def new_encoder(self, input_shape: tuple[int, ...]) -> nn.Module:
        """A fresh encoder for inputs of ``input_shape``, its weights drawn from ``seed``."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            spec = (
                copy.deepcopy(self.encoder)
                if isinstance(self.encoder, nn.Module)
                else encoder_name(self.encoder, input_shape)
            )
            return build_encoder(spec, input_shape, self.embedding_dim)

    def _new_store(self, dim: int) -> PrototypeStore:
        return PrototypeStore(
            dim=dim,
            metric=self.metric,
            index=self.index,
            prototypes_per_class=self.prototypes_per_class,
            vote_k=self.vote_k,
            seed=self.seed,
        )

    def _new_memory(self) -> ExemplarMemory:
        if self.memory_total is not None:
            return ExemplarMemory(None, self.memory_total, self.selection, self.seed)
        return ExemplarMemory(self.memory_per_class, None, self.selection, self.seed)

    def _new_loss(self) -> MetricLoss:
        """The metric loss to train, a copy of ``loss``/``miner`` (a pml loss with proxies
        is trained in the copy, which is kept from task to task)."""
        return build_loss(copy.deepcopy(self.loss), copy.deepcopy(self.miner))

    def _set_learned(self, **learned: Any) -> None:
        """Replace what was learned at once (attributes ending in ``_``)."""
        learned["qat"] = training_scheme(self.qat).scheme
        for name, value in learned.items():
            setattr(self, f"{name}_", value)

    def _require_fitted(self, method: str) -> None:
        if not self.is_fitted:
            raise NotFittedError(
                f"IncrementalClassifier is not fitted: call fit_task before {method} "
                f"(or IncrementalClassifier.load a trained one)"
            )

    def _check_params(self) -> None:
        check_params(self, self._parameter_constraints)
        if self.is_fitted and training_scheme(self.qat).scheme != self.qat_:
            raise ValueError("qat cannot be switched on or off after the first task")
        training_scheme(self.qat, self.device)
        # unknown names fail before any work, not after training
        build_loss(self.loss, self.miner)
        self._new_memory()
        self._new_store(dim=self.store_.dim if self.is_fitted else int(self.embedding_dim))


def _require_two_classes(y: np.ndarray, memory_y: np.ndarray) -> None:
    if len(set(np.unique(y).tolist()) | set(memory_y.tolist())) < 2:
        raise ValueError(
            f"a metric loss needs at least two classes to compare, but this task has one "
            f"class ({int(y[0])}) and the exemplar memory holds no other class"
        )


@contextlib.contextmanager
def _task_random_state(seed: int) -> Iterator[None]:
    """Torch's global generators seeded for one task and restored after it, so anything drawing
    from them (dropout in a user's encoder, a random miner) repeats exactly when a stream is
    resumed from a checkpoint."""
    with torch.random.fork_rng(devices=range(torch.cuda.device_count())):
        torch.manual_seed(seed)
        yield


encoder_name = auto_encoder_name  # the old name, kept for code that imports it


def _sklearn_array(X: Any) -> Any:
    """Any array-like (list, data frame) as a numpy array, checked as scikit-learn checks it.

    Sparse, complex, object-typed, one-dimensional and featureless inputs fail here with
    scikit-learn's own messages; tensors pass through to :func:`siamcl.preprocess.as_array`.
    """
    if isinstance(X, torch.Tensor):
        return X
    return check_array(X, accept_sparse=False, allow_nd=True, dtype="numeric")


def _sklearn_labels(y: Any) -> np.ndarray:
    """Labels given to ``fit``/``partial_fit``: a column vector is read as ``[N]`` (with
    scikit-learn's warning) and continuous targets are refused."""
    if y is None:
        raise ValueError("IncrementalClassifier requires y to be passed, but the target y is None")
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    y = column_or_1d(y, warn=True)
    check_classification_targets(y)
    return y
