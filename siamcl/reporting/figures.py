"""matplotlib for figures, imported when one is drawn; benchmarks skip a figure without it.

matplotlib comes with the ``plots`` extra. A benchmark's results are its JSON and markdown,
so :func:`draw_or_skip` leaves the figure out with a one-line note when matplotlib is absent.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from siamcl._extras import MissingExtra, require

__all__ = ["draw_or_skip", "label_point", "pyplot", "separate_labels"]

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


#: Placement directions around a point, tried in this order (right-above first).
_DIRECTIONS = ((1, 1), (1, -1), (-1, 1), (-1, -1), (0, 1), (0, -1), (1, 0), (-1, 0))
_Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in display pixels


def label_point(axis: Any, text: str, xy: tuple[float, float], **style: Any) -> Any:
    """An annotation of the data point ``xy`` that :func:`separate_labels` can move, with a
    faint leader line that shows only when the label has been moved away from its point."""
    leader = {"arrowstyle": "-", "lw": 0.5, "alpha": 0.5, "shrinkA": 0, "shrinkB": 3}
    leader["color"] = style.get("color", "grey")
    return axis.annotate(
        text, xy, xytext=(3, 3), textcoords="offset points", arrowprops=leader, **style
    )


def separate_labels(
    axis: Any,
    labels: Sequence[Any],
    points: Sequence[tuple[float, float]] = (),
    pad_px: float = 2.0,
) -> None:
    """Place point labels (annotations in offset points) so that no two overlap.

    Call it once the layout is final (after ``tight_layout``; save at the figure's own dpi).
    Each label, in order of its point's x then y, goes to the first free spot on rings of
    growing distance around its point: to the right and above first, then the seven other
    directions. A spot is free when its box (the renderer's window extent of the text, ``pad_px``
    wider) meets no placed label, no labelled point, none of the other data ``points`` and
    not the legend. Spots
    inside the axes are preferred; the layout is deterministic.
    """
    labels = [label for label in labels if label.get_text()]
    if not labels:
        return
    from matplotlib.text import Text

    figure = axis.figure
    renderer = figure.canvas.get_renderer()
    anchors = [tuple(axis.transData.transform(label.xy)) for label in labels]
    others = [tuple(axis.transData.transform(point)) for point in points]
    marker = 3.5 * figure.dpi / 72  # half a marker, in pixels
    taken: list[_Box] = [
        (x - marker, y - marker, x + marker, y + marker) for x, y in anchors + others
    ]
    legend = axis.get_legend()
    if legend is not None:
        taken.append(tuple(legend.get_window_extent(renderer).extents))
    inside = tuple(axis.get_window_extent(renderer).extents)
    for index in sorted(range(len(labels)), key=lambda i: anchors[i]):
        label = labels[index]
        label.set_horizontalalignment("left")
        label.set_verticalalignment("bottom")
        extent = Text.get_window_extent(label, renderer)  # the text, not its leader line
        size = (extent.width + 2 * pad_px, extent.height + 2 * pad_px)
        box = _free_box(anchors[index], size, marker, taken, inside)
        taken.append(box)
        x, y = anchors[index]
        label.set_position(
            ((box[0] + pad_px - x) * 72 / figure.dpi, (box[1] + pad_px - y) * 72 / figure.dpi)
        )


def _free_box(
    anchor: tuple[float, float],
    size: tuple[float, float],
    gap: float,
    taken: list[_Box],
    inside: _Box,
    rings: int = 80,
) -> _Box:
    """The first free box of ``size`` around ``anchor``: inside ``inside`` if any ring up to
    ``rings`` has one, else anywhere; the least covered candidate if none is free."""
    candidates = [
        _box_at(anchor, size, gap + ring * size[1] / 2, direction)
        for ring in range(rings)
        for direction in _DIRECTIONS
    ]
    free = [box for box in candidates if not any(_meets(box, other) for other in taken)]
    within = [box for box in free if _contains(inside, box)]
    if within or free:
        return (within or free)[0]
    return min(candidates, key=lambda box: sum(_overlap(box, other) for other in taken))


def _box_at(
    anchor: tuple[float, float],
    size: tuple[float, float],
    distance: float,
    direction: tuple[int, int],
) -> _Box:
    (x, y), (width, height), (dx, dy) = anchor, size, direction
    x0 = x + distance if dx > 0 else x - distance - width if dx < 0 else x - width / 2
    y0 = y + distance if dy > 0 else y - distance - height if dy < 0 else y - height / 2
    return (x0, y0, x0 + width, y0 + height)


def _meets(a: _Box, b: _Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _overlap(a: _Box, b: _Box) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def _contains(outer: _Box, box: _Box) -> bool:
    return outer[0] <= box[0] and outer[1] <= box[1] and box[2] <= outer[2] and box[3] <= outer[3]
