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
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import NotFittedError as _SklearnNotFittedError
from sklearn.utils import check_array
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import column_or_1d
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from siamcl.accounting import ResourceMeter, TaskReport
from siamcl.augment import AffineViews, RandomAffine
from siamcl.compress import (
    EmbeddingDistillation,
    check_scheme,
    convert_qat,
    embedding_teacher,
    prepare_qat,
    schedule_qat,
)
from siamcl.distributed import Ranks, distributed_objective_loss
from siamcl.encoders import build_encoder
from siamcl.losses import build_loss
from siamcl.preprocess import Preprocessor, as_array, as_labels
from siamcl.replay import ExemplarMemory
from siamcl.store import PrototypeStore
from siamcl.training import (
    SiameseObjective,
    balanced_epoch,
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
    teacher, teacher_weight: a fitted IncrementalClassifier or an encoder module whose
        embeddings the encoder is distilled toward, weighted by ``teacher_weight`` (see
        :class:`siamcl.compress.EmbeddingDistillation`); a teacher is not saved with the model,
        and scikit-learn's ``clone`` unfits a classifier teacher (pass ``teacher.encoder_``
        to keep it).
    """

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
        preprocessor = (
            self.preprocessor_
            if self.is_fitted
            else Preprocessor(self.input_size, self.invert).fit(X)
        )
        self._check_views(preprocessor)
        canonical = preprocessor.canonical(X)
        memory = copy.deepcopy(self.memory_) if self.is_fitted else self._new_memory()
        memory_X, memory_y = memory.arrays()
        classes = set(np.unique(y).tolist()) | set(memory_y.tolist())
        if len(classes) < 2:
            raise ValueError(
                f"a metric loss needs at least two classes to compare, but this task has one "
                f"class ({int(y[0])}) and the exemplar memory holds no other class"
            )
        task_index = len([r for r in self.reports if r.method == "fit_task"])
        device = torch.device(self.device)
        ranks = self._ranks(device, X, y)
        teacher = self.encoder_ if self.is_fitted and self.distill_weight > 0 else None
        external = None if self.teacher is None else embedding_teacher(self.teacher, preprocessor)
        encoder = (
            copy.deepcopy(self.qat_encoder_ if self.qat else self.encoder_)
            if self.is_fitted
            else self._new_encoder(preprocessor.input_shape)
        )
        if memory_X is not None:
            inputs = torch.cat([canonical, torch.from_numpy(memory_X.astype(np.float32))])
            labels = np.concatenate([y, memory_y])
        else:
            inputs, labels = canonical, y

        with self._meter(device) as meter:
            with _task_random_state(self.seed * 1000 + task_index):
                self._train(
                    encoder,
                    teacher,
                    preprocessor,
                    inputs,
                    labels,
                    task_index,
                    meter,
                    external,
                    ranks,
                )
            trained = encoder
            if self.qat:
                encoder = convert_qat(trained, self.qat)
            embed = self._embedder(encoder, preprocessor)
            memory.add(canonical.numpy().astype(np.float16), y, embed=ranks.sharded(embed))
            dim = self.store_.dim if self.is_fitted else embed(canonical[:2]).shape[1]
            store = rebuild_prototypes(
                self._new_store(dim),
                embed,
                canonical,
                y,
                memory,
                self.store_ if self.is_fitted else None,
                ranks,
            )
        report = ranks.combine(
            meter.report(
                task=task_index,
                method="fit_task",
                retained_bytes={"replay": memory.nbytes, "store": store.nbytes},
            )
        )
        self.preprocessor_, self.encoder_, self.memory_, self.store_ = (
            preprocessor,
            encoder,
            memory,
            store,
        )
        self.reports_ = [*self.reports, report]
        if self.qat:
            self.qat_encoder_ = trained
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
        from siamcl.persist import load_classifier

        return load_classifier(directory)

    # ------------------------------------------------------------------ scikit-learn API
    # get_params, set_params, clone and repr come from BaseEstimator; these follow its idiom.

    def fit(self, X: Any, y: Any) -> IncrementalClassifier:
        """Forget everything learned, then learn ``(X, y)`` as one task; returns ``self``.

        On any error the classifier keeps what it had learned before the call.
        """
        fresh = type(self)(**self.get_params(deep=False))
        fresh.fit_task(_sklearn_array(X), _sklearn_labels(y))
        self._adopt_state(fresh)
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

    def _adopt_state(self, other: IncrementalClassifier) -> None:
        """Take everything ``other`` learned (attributes ending in ``_``), dropping our own."""
        learned = {k: v for k, v in vars(other).items() if k.endswith("_") and k[0] != "_"}
        for name, value in learned.items():
            setattr(self, name, value)
        for name in [k for k in vars(self) if k.endswith("_") and k[0] != "_"]:
            if name not in learned:
                delattr(self, name)

    # ------------------------------------------------------------------ training

    def _train(
        self,
        encoder: nn.Module,
        teacher: nn.Module | None,
        preprocessor: Preprocessor,
        inputs: torch.Tensor,
        labels: np.ndarray,
        task_index: int,
        meter: ResourceMeter,
        external: nn.Module | None = None,
        ranks: Ranks | None = None,
    ) -> None:
        ranks = ranks or Ranks()
        device = torch.device(self.device)
        distillation = EmbeddingDistillation()
        generator = torch.Generator().manual_seed(self.seed * 1000 + task_index)
        # Every rank draws the same batches from `generator`; distortions differ per rank.
        distort_generator = (
            torch.Generator().manual_seed(self.seed * 1000 + task_index + 7919 * ranks.rank)
            if ranks.active
            else generator
        )
        metric_loss = build_loss(self.loss, self.miner)
        if ranks.active:
            metric_loss = distributed_objective_loss(metric_loss)
        objective = SiameseObjective(metric_loss, self.distill_weight)
        optimizer = torch.optim.Adam(
            encoder.parameters(), lr=self.lr, weight_decay=self.weight_decay
        )
        steps_per_epoch = max(1, int(np.ceil(len(inputs) / self.batch_size)))
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=self.epochs * steps_per_epoch
        )
        augment = RandomAffine() if self.augment and preprocessor.kind == "image" else None
        label_tensor = torch.from_numpy(labels)
        encoder.to(device).train()
        model = encoder
        if ranks.active:
            model = DistributedDataParallel(
                encoder,
                device_ids=(
                    [device.index if device.index is not None else torch.cuda.current_device()]
                    if device.type == "cuda"
                    else None
                ),
            )
        if teacher is not None:
            teacher.to(device).eval()
        bar = tqdm(
            total=self.epochs * steps_per_epoch,
            desc=f"task {task_index}",
            leave=False,
            disable=not self.progress,
        )
        for epoch in range(self.epochs):
            if self.qat:
                schedule_qat(encoder, epoch, self.epochs)
            order = balanced_epoch(labels, self.balance, generator)
            for start in range(0, len(order), self.batch_size):
                rows = ranks.batch_share(order[start : start + self.batch_size])
                if len(rows) < 2:
                    continue
                batch = inputs[rows]
                if augment is not None:
                    batch = augment(batch, distort_generator)
                batch = preprocessor.standardise(batch).to(device)
                batch_labels = label_tensor[rows].to(device)
                with meter.batch(n_samples=len(rows)):
                    target = None
                    if teacher is not None:
                        with torch.no_grad():
                            target = teacher(batch)
                    embeddings = model(batch)
                    loss = objective(embeddings, batch_labels, target)
                    if external is not None and self.teacher_weight > 0:
                        loss = loss + self.teacher_weight * distillation(
                            embeddings, external(batch)
                        )
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                scheduler.step()
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}")
        bar.close()
        ranks.share_module_state(encoder)  # BatchNorm statistics differ per rank
        encoder.eval()

    # ------------------------------------------------------------------ helpers

    def _ranks(self, device: torch.device, X: np.ndarray, y: np.ndarray) -> Ranks:
        """The distributed job this task runs in (one process: ``Ranks()``), checked."""
        ranks = Ranks.current(device)
        if not ranks.active:
            return ranks
        if self.qat:
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
        if not _is_integer(self.embed_views, minimum=1):
            raise ValueError(f"embed_views must be a positive integer, got {self.embed_views!r}")
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

    def _new_encoder(self, input_shape: tuple[int, ...]) -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            spec = (
                copy.deepcopy(self.encoder)
                if isinstance(self.encoder, nn.Module)
                else encoder_name(self.encoder, input_shape)
            )
            encoder = build_encoder(spec, input_shape, self.embedding_dim)
        if self.qat:
            encoder = prepare_qat(encoder, self.qat, torch.zeros((2, *input_shape)))
        return encoder

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

    def _require_fitted(self, method: str) -> None:
        if not self.is_fitted:
            raise NotFittedError(
                f"IncrementalClassifier is not fitted: call fit_task before {method} "
                f"(or IncrementalClassifier.load a trained one)"
            )

    def _check_params(self) -> None:
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if not _is_integer(value, minimum=1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.batch_size < 2:
            raise ValueError("batch_size must be at least 2: a metric loss compares pairs")
        if not self.is_fitted and not _is_integer(self.embedding_dim, minimum=1):
            raise ValueError(
                f"embedding_dim must be a positive integer, got {self.embedding_dim!r}"
            )
        for name in ("lr", "temperature", "distill_weight", "weight_decay", "balance"):
            _check_real(getattr(self, name), name)
        if not 0 <= self.balance <= 1:
            raise ValueError(f"balance must be between 0 and 1, got {self.balance!r}")
        for name in ("lr", "temperature"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        check_scheme(self.qat)
        if self.qat and torch.device(self.device).type != "cpu":
            raise ValueError(
                f"quantized models run on the CPU: use device='cpu' with qat={self.qat!r}"
            )
        if self.is_fitted and bool(self.qat) != hasattr(self, "qat_encoder_"):
            raise ValueError("qat cannot be switched on or off after the first task")
        for name in ("distill_weight", "weight_decay", "balance", "teacher_weight"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be non-negative, got {getattr(self, name)!r}")
        # unknown names fail before any work, not after training
        build_loss(self.loss, self.miner)
        self._new_memory()
        self._new_store(dim=self.store_.dim if self.is_fitted else int(self.embedding_dim))


def _is_integer(value: Any, minimum: int) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= minimum


def _check_real(value: Any, name: str) -> None:
    """A finite real number that torch can hold (not a bool, a string or a 70-bit integer)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    if not np.isfinite(float(value)) or abs(value) >= 2**63:
        raise ValueError(f"{name} must be a finite number below 2**63, got {value!r}")


@contextlib.contextmanager
def _task_random_state(seed: int) -> Iterator[None]:
    """Torch's global generators seeded for one task and restored after it, so anything drawing
    from them (dropout in a user's encoder, a random miner) repeats exactly when a stream is
    resumed from a checkpoint."""
    with torch.random.fork_rng(devices=range(torch.cuda.device_count())):
        torch.manual_seed(seed)
        yield


def encoder_name(spec: Any, input_shape: tuple[int, ...]) -> Any:
    """The encoder ``"auto"`` stands for (``conv4`` for images, ``mlp`` for vectors)."""
    if isinstance(spec, str) and spec == "auto":
        return "mlp" if len(input_shape) == 1 else "conv4"
    return spec


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
