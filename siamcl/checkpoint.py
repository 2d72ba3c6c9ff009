"""Deprecated location of stream checkpoints: use :mod:`siamcl.persistence` (this module
re-exports it and will be removed in a later release)."""

from siamcl.data.fingerprint import task_fingerprint
from siamcl.persistence.checkpoint import (
    FORMAT_NAME,
    FORMAT_VERSION,
    StreamCheckpoint,
    fit_stream,
)

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "StreamCheckpoint", "fit_stream", "task_fingerprint"]
