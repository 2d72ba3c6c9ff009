"""Deprecated location of the softmax baseline: import it from :mod:`siamcl.learners.softmax`
(this module re-exports it and will be removed in a later release)."""

from siamcl.learners.head import HeadClassifier
from siamcl.learners.softmax import SoftmaxClassifier

__all__ = ["HeadClassifier", "SoftmaxClassifier"]
