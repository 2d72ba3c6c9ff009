"""Deprecated location of :class:`IncrementalClassifier`: import it from ``siamcl`` or
:mod:`siamcl.learners` (this module re-exports it and will be removed in a later release)."""

from siamcl.encoders import auto_encoder_name as encoder_name
from siamcl.learners.incremental import IncrementalClassifier, NotFittedError

__all__ = ["IncrementalClassifier", "NotFittedError", "encoder_name"]
