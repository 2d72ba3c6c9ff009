"""scikit-learn's estimator API for siamcl's incremental learners.

``fit`` (start over), ``partial_fit`` (the next task), ``n_features_in_``, input checks with
scikit-learn's own messages, and the estimator tags, on top of a learner's ``fit_task``;
``get_params``, ``set_params``, ``clone`` and ``repr`` come from ``BaseEstimator``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import check_array
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import column_or_1d

from siamcl.preprocess import as_array, as_labels

__all__ = ["ScikitLearnAPI"]


class ScikitLearnAPI(ClassifierMixin, BaseEstimator):
    """Mixin: scikit-learn's methods for a learner with ``fit_task``, ``is_fitted`` and
    ``preprocessor_``."""

    def fit(self, X: Any, y: Any) -> ScikitLearnAPI:
        """Forget everything learned, then learn ``(X, y)`` as one task; returns ``self``.

        On any error the classifier keeps what it had learned before the call.
        """
        fresh = type(self)(**self.get_params(deep=False))
        fresh.fit_task(_sklearn_array(X), _sklearn_labels(y))
        self.adopt(fresh)
        return self

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> ScikitLearnAPI:
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

    def adopt(self, other: ScikitLearnAPI) -> None:
        """Take everything ``other`` learned (its snapshot ``learned_``), dropping our own;
        a checkpointed stream resumes this way."""
        if "learned_" in other.__dict__:
            self.__dict__["learned_"] = other.__dict__["learned_"]
        else:
            self.__dict__.pop("learned_", None)


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
