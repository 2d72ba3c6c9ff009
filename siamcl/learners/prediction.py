"""What a fitted prototype classifier answers: embeddings, labels, probabilities, scores.

Each answer reads one snapshot of what was learned (:mod:`siamcl.learners.state`), so it
comes from one model even while another thread learns.

:class:`PrototypePredictions` holds the methods of :class:`~siamcl.IncrementalClassifier`
that use what was learned (``encoder_``, ``preprocessor_``, ``store_``) without changing
it, so reading and training live in separate modules.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.exceptions import NotFittedError as _SklearnNotFittedError

from siamcl.accounting import TaskReport
from siamcl.learners._sklearn import ScikitLearnAPI
from siamcl.learners.state import Learned, learned_attribute
from siamcl.preprocess import CHUNK_ROWS, as_array, as_labels

__all__ = ["NotFittedError", "PrototypePredictions"]


class NotFittedError(_SklearnNotFittedError, RuntimeError):
    """A method that needs a trained classifier was called before any training.

    It is scikit-learn's ``NotFittedError`` (so ``check_is_fitted`` idioms work) and also a
    ``RuntimeError``.
    """


class PrototypePredictions(ScikitLearnAPI):
    """Mixin: prediction methods of a classifier whose classes live in a prototype store."""

    preprocessor_ = learned_attribute("preprocessor", "The fitted input preprocessing.")
    encoder_ = learned_attribute("encoder", "The encoder that embeds (quantized under qat).")
    trainable_encoder_ = learned_attribute(
        "trainable_encoder", "The encoder as trained (fake-quantised under qat)."
    )
    metric_loss_ = learned_attribute("metric_loss", "The metric loss as trained (proxies).")
    memory_ = learned_attribute("memory", "The exemplar memory replayed in later tasks.")
    store_ = learned_attribute("store", "The prototype store the classes live in.")
    reports_ = learned_attribute("reports", "The TaskReports so far.")
    qat_ = learned_attribute("qat", "The quantization scheme the encoder was trained with.")

    @property
    def reports(self) -> list[TaskReport]:
        """One :class:`TaskReport` per call of :meth:`fit_task` and :meth:`add_classes`."""
        state = self.__dict__.get("learned_")
        return list(state.reports) if state is not None else []

    @property
    def classes_(self) -> np.ndarray:
        """Labels of the classes the store holds, sorted."""
        state = self.__dict__.get("learned_")
        return np.asarray(state.store.classes if state is not None else [], dtype=np.int64)

    @property
    def is_fitted(self) -> bool:
        return "learned_" in self.__dict__

    def embed(self, X: Any) -> np.ndarray:
        """L2-normalised embeddings ``[N, D]`` of raw inputs."""
        self._require_fitted("embed")
        return self._embed_with(self.learned_, X)

    def predict(self, X: Any) -> np.ndarray:
        """Label of the nearest prototype (or the k-NN vote) for each input."""
        state = self._serving()
        return state.store.classify(self._embed_with(state, self._checked_input(X)))

    def predict_proba(self, X: Any) -> np.ndarray:
        """Softmax over prototype similarities, columns in the order of :attr:`classes_`."""
        state = self._serving()
        embeddings = self._embed_with(state, self._checked_input(X))
        _, scores = state.store.class_scores(embeddings)
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

    def _serving(self) -> Learned:
        """The one snapshot a prediction uses, checked to know some class."""
        self._require_fitted("predict")
        state = self.learned_
        if len(state.store) == 0:
            raise ValueError("no classes are known: call fit_task or add_classes first")
        return state

    def _embed_with(self, state: Learned, X: Any) -> np.ndarray:
        """Embeddings of raw ``X``, preprocessed a block of rows at a time, so that memory
        grows with the embeddings returned, not with the images."""
        X = as_array(X)
        embed = self._embedder(state.encoder, state.preprocessor)
        parts = [
            embed(state.preprocessor.canonical(X[start : start + CHUNK_ROWS]))
            for start in range(0, len(X), CHUNK_ROWS)
        ]
        return np.concatenate(parts)

    def _require_fitted(self, method: str) -> None:
        if not self.is_fitted:
            raise NotFittedError(
                f"IncrementalClassifier is not fitted: call fit_task before {method} "
                f"(or IncrementalClassifier.load a trained one)"
            )
