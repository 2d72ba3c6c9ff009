"""matplotlib for figures, imported when one is drawn; benchmarks skip a figure without it.

matplotlib comes with the ``plots`` extra. A benchmark's results are its JSON and markdown,
so :func:`draw_or_skip` leaves the figure out with a one-line note when matplotlib is absent.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

from siamcl._extras import MissingExtra, require

__all__ = ["draw_or_skip", "pyplot"]

T = TypeVar("T")


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the file-only Agg backend; MissingExtra when not installed."""
    matplotlib = require("matplotlib", "drawing figures")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def draw_or_skip(draw: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """``draw(*args, **kwargs)``, or ``None`` with a note on stderr when matplotlib is missing."""
    try:
        return draw(*args, **kwargs)
    except MissingExtra as error:
        if error.module != "matplotlib":
            raise
        print(f"siamcl: figure skipped: {error}", file=sys.stderr)
        return None
