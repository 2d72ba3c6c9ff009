"""Deprecated location of classifier saving: use :mod:`siamcl.persistence` (this module
re-exports it and will be removed in a later release)."""

from siamcl.persistence.classifier import (
    FORMAT_NAME,
    FORMAT_VERSION,
    MANIFEST,
    read_classifier,
    save_classifier,
)

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "MANIFEST", "read_classifier", "save_classifier"]
