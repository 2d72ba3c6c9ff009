"""Optional dependencies: which extra installs each, and one clear error when one is missing.

The core (learners, store, persistence, data, training, accounting, the CLI) needs none of
them. The Avalanche plugin, figures, ONNX export and energy counters (Zeus; without it the
meter estimates energy) import theirs where they are used, through
:func:`require` or :func:`needs_extra`, so a missing package reads as
``the Avalanche plugin needs avalanche-lib: pip install 'siamcl[avalanche]'``.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
from collections.abc import Iterator
from types import ModuleType

__all__ = ["EXTRAS", "MissingExtra", "ensure_installed", "missing_extra", "needs_extra", "require"]

# top-level module -> (distribution that provides it, siamcl extra that installs it)
EXTRAS = {
    "avalanche": ("avalanche-lib", "avalanche"),
    "matplotlib": ("matplotlib", "plots"),
    "onnx": ("onnx", "export"),
    "onnxruntime": ("onnxruntime", "export"),
    "onnxscript": ("onnxscript", "export"),
    "zeus": ("zeus", "energy"),
}


class MissingExtra(ImportError):
    """An optional dependency of a feature is not installed; the message names the extra."""

    def __init__(self, module: str, feature: str) -> None:
        distribution, extra = EXTRAS[module]
        super().__init__(
            f"{feature} needs {distribution}: pip install 'siamcl[{extra}]'", name=module
        )
        self.module, self.extra, self.feature = module, extra, feature


def missing_extra(error: ImportError, feature: str | None = None) -> MissingExtra | None:
    """The :class:`MissingExtra` that ``error`` stands for, or ``None`` when it is not about
    an optional dependency being absent (a broken install keeps its own error)."""
    if isinstance(error, MissingExtra):
        return error
    if not isinstance(error, ModuleNotFoundError) or not error.name:
        return None
    module = error.name.partition(".")[0]
    if module not in EXTRAS:
        return None
    return MissingExtra(module, feature or f"this command ({module})")


@contextlib.contextmanager
def needs_extra(feature: str) -> Iterator[None]:
    """Imports inside the block raise :class:`MissingExtra` when an optional package is absent."""
    try:
        yield
    except ModuleNotFoundError as error:
        missing = missing_extra(error, feature)
        if missing is None:
            raise
        raise missing from error


def require(module: str, feature: str) -> ModuleType:
    """Import the optional ``module`` (a key of :data:`EXTRAS`) for ``feature``."""
    with needs_extra(feature):
        return importlib.import_module(module)


def ensure_installed(module: str, feature: str) -> None:
    """Raise :class:`MissingExtra` unless ``module`` can be imported, without importing it."""
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise MissingExtra(module, feature)
