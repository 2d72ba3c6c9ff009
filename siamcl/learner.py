"""Deprecated location of :class:`IncrementalClassifier`: import it from ``siamcl`` or
:mod:`siamcl.learners` (this module re-exports it and will be removed in a later release)."""

from siamcl.learners.incremental import IncrementalClassifier, NotFittedError, encoder_name

__all__ = ["IncrementalClassifier", "NotFittedError", "encoder_name"]
