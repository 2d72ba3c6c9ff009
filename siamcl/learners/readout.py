"""The prototype readout for a softmax-trained backbone.

siamcl's benchmarks found that most of what makes an early Siamese model cheap is how it
classifies, not how it was trained: the standard network's backbone features, read out by
whitened class means in a FAISS store, are about as accurate after a quarter epoch as the
Siamese learner's (docs/energy.md, "the standard network read out by the Siamese learner's
rule"). This module gives a user that readout for any :class:`SoftmaxClassifier`:

- :func:`prototype_readout` turns a fitted one into a fitted
  :class:`~siamcl.IncrementalClassifier`: the backbone, L2-normalised, becomes its encoder
  (the within-class whitening of the features folded into its last projection) and every
  class a prototype of its rows, so it predicts, adds classes from a few examples, saves,
  exports and trains on like any other;
- :class:`PrototypeReadout` is a learner that trains the softmax network task after task
  and reads it out after each, so a class-incremental stream can be run and scored with it.

Only the readout is new here: the store, the whitening and the exemplar memory are the
Siamese learner's own.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from siamcl.accounting import TaskReport, sum_reports
from siamcl.encoders import EmbeddingNetwork
from siamcl.learners.incremental import IncrementalClassifier
from siamcl.learners.prediction import NotFittedError
from siamcl.learners.siamese_task import check_encoder_options, embedder
from siamcl.learners.softmax import SoftmaxClassifier
from siamcl.preprocess import as_array, as_labels
from siamcl.whitening import fold_whitening, whiten_rows, within_class_whitening

__all__ = [
    "READOUT_PARAMS",
    "READOUT_WHITENING",
    "PrototypeReadout",
    "prototype_readout",
    "split_readout",
]

READOUT_WHITENING = 0.1  # the within-class whitening's shrinkage, also the benchmarks' "-whitened"
# the prototype classifier's parameters that say how classes are read out; a benchmark row
# of the standard network setting one of them is read out by prototypes
READOUT_PARAMS = ("whitening", "prototypes_per_class")
# parameters the prototype classifier takes over from the softmax network, so that it
# preprocesses, embeds, remembers and (if trained on) trains as the network did
SHARED_PARAMS = (
    "encoder",
    "epochs",
    "batch_size",
    "lr",
    "weight_decay",
    "memory_per_class",
    "memory_total",
    "balance",
    "augment",
    "input_size",
    "invert",
    "device",
    "seed",
    "progress",
    "energy",
    "flops",
    "precision",
)


def prototype_readout(
    model: SoftmaxClassifier, X: Any, y: Any, **params: Any
) -> IncrementalClassifier:
    """A fitted :class:`~siamcl.IncrementalClassifier` classifying by prototypes of
    ``model``'s backbone features (a copy; ``model`` is unchanged).

    The classes of ``y`` get prototypes of their rows in ``X``; every other class
    ``model``'s exemplar memory holds gets prototypes of its exemplars, as the Siamese
    learner keeps earlier classes. ``params`` are the classifier's own (``whitening``,
    ``prototypes_per_class``, ``index``, ``memory_per_class``...); the rest are taken from
    ``model`` (its encoder name, ``features`` as ``embedding_dim``, seed, device,
    precision). ``whitening`` defaults to :data:`READOUT_WHITENING`; None reads out the
    plain normalised features. The readout's cost is the classifier's last report, after
    ``model``'s training reports.
    """
    X = as_array(X)
    y = as_labels(y, len(X))
    clf, encoder = _readout_classifier(model, params)
    preprocessor, device = clf.preprocessor_, torch.device(clf.device)
    canonical = preprocessor.canonical(X)
    earlier_X, earlier_y = _earlier_exemplars(model, y)
    labels = y if earlier_X is None else np.concatenate([y, earlier_y])
    stored = canonical.numpy().astype(np.float16)  # as every learner keeps exemplars
    stored = stored if earlier_X is None else np.concatenate([stored, earlier_X])
    embed = embedder(clf, encoder, preprocessor)
    memory = clf._new_memory()
    with clf._meter(device) as meter:
        embeddings = _embed_rows(embed, canonical, earlier_X)
        memory.add(stored, labels, embed=embed, embeddings=embeddings)
        if clf.whitening is not None:
            whitening = within_class_whitening(embeddings, labels, clf.whitening)
            fold_whitening(encoder, whitening)
            embeddings = whiten_rows(embeddings, whitening)
            if clf.embed_views > 1:  # an average of views is not the views' average whitened
                embeddings = _embed_rows(embed, canonical, earlier_X)
        store = clf._new_store(embeddings.shape[1])
        store.add(embeddings, labels)
    retained = {"replay": memory.nbytes, "store": store.nbytes}
    report = meter.report(task=None, method="prototype_readout", retained_bytes=retained)
    report.samples_seen = len(labels)
    clf._set_learned(
        preprocessor=preprocessor,
        encoder=encoder,
        trainable_encoder=encoder,
        metric_loss=clf._new_loss(),
        memory=memory,
        store=store,
        reports=[*model.reports, report],
    )
    return clf


def _readout_classifier(
    model: SoftmaxClassifier, params: dict[str, Any]
) -> tuple[IncrementalClassifier, nn.Module]:
    """A classifier knowing no class yet whose encoder is a copy of ``model``'s backbone,
    L2-normalised, and that encoder; what cannot be read out is refused here."""
    if not hasattr(model, "model_"):
        raise RuntimeError("SoftmaxClassifier is not fitted: call fit_task before reading it out")
    if model.qat is not None:
        raise ValueError(
            f"a backbone trained with qat={model.qat!r} cannot be read out by prototypes: "
            "train the softmax network with qat=None"
        )
    taken = {name: getattr(model, name) for name in SHARED_PARAMS}
    params = {**taken, "embedding_dim": model.features, "whitening": READOUT_WHITENING, **params}
    encoder = EmbeddingNetwork(copy.deepcopy(model.model_.backbone))
    encoder.to(torch.device(params["device"])).eval()
    clf = IncrementalClassifier.from_state(
        params, preprocessor=model.preprocessor_, trainable_encoder=encoder
    )
    clf._check_params()
    check_encoder_options(clf, encoder)
    return clf, encoder


def _earlier_exemplars(
    model: SoftmaxClassifier, y: np.ndarray
) -> tuple[np.ndarray | None, np.ndarray]:
    """``model``'s exemplars of the classes not in ``y`` (None when it holds none)."""
    earlier = copy.deepcopy(model.memory_)
    for label in np.unique(y).tolist():
        earlier.remove_class(label)  # the task's rows stand for their classes
    earlier_X, earlier_y = earlier.arrays()
    return (earlier_X if len(earlier_y) else None), earlier_y  # a zero budget: empty classes


class PrototypeReadout:
    """A :class:`SoftmaxClassifier` trained task after task that predicts by prototypes of
    its backbone's features: :func:`prototype_readout` after every task.

    ``model``: the softmax network (a new default one if None; a copy of it is trained, as
    ``model_``); ``readout``: parameters of the prototype classifier, as
    :func:`prototype_readout` takes them, checked before any training. Each ``fit_task``
    returns one report for the training and the readout together, the readout's share in
    its ``extra`` (``readout_energy_j``, ``readout_cpu_s``); its FLOPs are the training
    steps', as every learner's are.
    """

    def __init__(
        self, model: SoftmaxClassifier | None = None, readout: dict[str, Any] | None = None
    ):
        self.model = model
        self.readout = readout

    @property
    def reports(self) -> list[TaskReport]:
        """The combined report of every :meth:`fit_task` so far."""
        return list(getattr(self, "reports_", []))

    @property
    def classes_(self) -> np.ndarray:
        return self._classifier("classes_").classes_

    def fit_task(self, X: Any, y: Any) -> TaskReport:
        """Train the softmax network on one task (plus its replay), then read it out."""
        X = as_array(X)
        y = as_labels(y, len(X))
        if not hasattr(self, "model_"):
            IncrementalClassifier(**(self.readout or {}))._check_params()  # fail before work
            self.model_ = SoftmaxClassifier() if self.model is None else copy.deepcopy(self.model)
        trained = self.model_.fit_task(X, y)
        self.classifier_ = prototype_readout(self.model_, X, y, **(self.readout or {}))
        readout = self.classifier_.reports[-1]
        report = sum_reports([trained, readout])
        report.task, report.method = trained.task, "fit_task"
        # FLOPs are counted on training steps only, as for every learner's prototype pass
        report.flops, report.flops_method = trained.flops, trained.flops_method
        report.extra = {
            **trained.extra,
            "readout_energy_j": readout.energy_j,
            "readout_cpu_s": readout.cpu_s,
        }
        self.reports_ = [*self.reports, report]
        return report

    def predict(self, X: Any) -> np.ndarray:
        """Label of the nearest prototype of the last readout."""
        return self._classifier("predict").predict(X)

    def score(self, X: Any, y: Any) -> float:
        return self._classifier("score").score(X, y)

    def _classifier(self, method: str) -> IncrementalClassifier:
        if not hasattr(self, "classifier_"):
            raise NotFittedError(f"PrototypeReadout is not fitted: call fit_task before {method}")
        return self.classifier_


def split_readout(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``options`` split into the softmax network's and the readout's (:data:`READOUT_PARAMS`)."""
    readout = {k: v for k, v in options.items() if k in READOUT_PARAMS}
    return {k: v for k, v in options.items() if k not in readout}, readout


def _embed_rows(
    embed: Callable[[torch.Tensor | np.ndarray], np.ndarray],
    canonical: torch.Tensor,
    earlier_X: np.ndarray | None,
) -> np.ndarray:
    """Embeddings of a task's canonical inputs followed by those of earlier exemplars."""
    parts = [embed(canonical)] + ([] if earlier_X is None else [embed(earlier_X)])
    return np.concatenate(parts)
