"""What a fitted prototype classifier answers: embeddings, labels, probabilities, scores.

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
from siamcl.preprocess import as_array, as_labels

__all__ = ["NotFittedError", "PrototypePredictions"]


class NotFittedError(_SklearnNotFittedError, RuntimeError):
    """A method that needs a trained classifier was called before any training.

    It is scikit-learn's ``NotFittedError`` (so ``check_is_fitted`` idioms work) and also a
    ``RuntimeError``.
    """


class PrototypePredictions(ScikitLearnAPI):
    """Mixin: prediction methods of a classifier whose classes live in a prototype store."""

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

    def _embed_for_prediction(self, X: Any) -> np.ndarray:
        self._require_fitted("predict")
        if len(self.store_) == 0:
            raise ValueError("no classes are known: call fit_task or add_classes first")
        return self.embed(self._checked_input(X))

    def _require_fitted(self, method: str) -> None:
        if not self.is_fitted:
            raise NotFittedError(
                f"IncrementalClassifier is not fitted: call fit_task before {method} "
                f"(or IncrementalClassifier.load a trained one)"
            )
