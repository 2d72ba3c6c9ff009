"""Point labels in the Pareto chart and the data-efficiency energy panels never overlap.

Each test draws a figure with many labelled points packed close together, renders it, and
checks the renderer's window extents of every pair of labels.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("matplotlib")

from matplotlib.text import Text

from siamcl.reporting.data_efficiency import plot_results, results_figure
from siamcl.reporting.figures import label_point, pyplot, separate_labels
from siamcl.reporting.pareto import ParetoPoint, pareto_figure, plot_pareto


def label_boxes(figure: Any) -> list[Any]:
    """Window extents of the text of every non-empty point label (annotation) of ``figure``
    (an annotation's own extent also holds its leader line)."""
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    return [
        Text.get_window_extent(text, renderer)
        for axis in figure.axes
        for text in axis.texts
        if text.get_text()
    ]


def overlapping(boxes: list[Any]) -> list[tuple[int, int]]:
    return [
        (i, j)
        for (i, a), (j, b) in itertools.combinations(enumerate(boxes), 2)
        if a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1
    ]


def crowded_front(source: str, n: int) -> list[ParetoPoint]:
    """``n`` points all on one Pareto front, a hair apart in energy and accuracy beside the
    scale of one far point (also on the front)."""
    crowd = [
        ParetoPoint(source, f"{source} method {i}, 25%", 0.80 + 0.0004 * i, 100.0 + 0.5 * i)
        for i in range(n - 1)
    ]
    return [*crowd, ParetoPoint(source, f"{source} far", 0.99, 10_000.0)]


def labelled_crowd(n: int) -> tuple[Any, Any, list[Any]]:
    """A log-energy scatter of :func:`crowded_front` with every point labelled where it is:
    (figure, axis, labels)."""
    figure, axis = pyplot().subplots(figsize=(6, 4))
    points = crowded_front("a", n)
    axis.scatter([p.energy_j for p in points], [p.accuracy for p in points])
    axis.set_xscale("log")
    labels = [label_point(axis, p.label, (p.energy_j, p.accuracy), fontsize=6) for p in points]
    return figure, axis, labels


def test_unplaced_labels_of_close_points_do_overlap() -> None:
    """The check below can fail: the same points labelled without placement overlap."""
    figure, _, _ = labelled_crowd(12)
    assert overlapping(label_boxes(figure))
    pyplot().close(figure)


def test_separate_labels_moves_them_apart() -> None:
    figure, axis, labels = labelled_crowd(12)
    figure.tight_layout()
    separate_labels(axis, labels)
    boxes = label_boxes(figure)
    assert len(boxes) == 12 and not overlapping(boxes)
    pyplot().close(figure)


def test_pareto_labels_do_not_overlap(tmp_path: Path) -> None:
    points = crowded_front("core", 15) + crowded_front("cl", 15)
    figure = pareto_figure(points)
    boxes = label_boxes(figure)
    assert len(boxes) == 30 and not overlapping(boxes)
    pyplot().close(figure)
    assert plot_pareto(points, tmp_path / "pareto.png").stat().st_size > 0


def test_data_efficiency_energy_labels_do_not_overlap(tmp_path: Path) -> None:
    fractions = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]
    summary = [
        {
            "setting": setting,
            "method": method,
            "fraction": fraction,
            "accuracy": (0.9 + 0.001 * i if fraction < 1 else 0.99)
            + (0.002 if method == "softmax" else 0.0),
            "accuracy_std": 0.01,
            "energy_j": (50.0 + i if fraction < 1 else 5000.0)
            + (0.5 if method == "softmax" else 0.0),
            "energy_method": "estimate",
        }
        for setting in ("joint", "incremental")
        for method in ("siamese", "softmax")
        for i, fraction in enumerate(fractions)
    ]
    figure = results_figure(summary, "mnist5k")
    boxes = label_boxes(figure)
    assert len(boxes) == 2 * 2 * len(fractions) and not overlapping(boxes)
    pyplot().close(figure)
    assert plot_results(summary, tmp_path / "de.png", "mnist5k").stat().st_size > 0
