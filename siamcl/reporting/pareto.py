"""Accuracy against energy across results: the points, their Pareto front and its chart.

Every result row holding an accuracy and an energy figure is a point; rows that differ only
by seed are averaged. A point is on the front when no other point is both more accurate and
cheaper.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from siamcl.reporting.figures import label_point, pyplot, separate_labels

__all__ = ["ParetoPoint", "find_points", "pareto_figure", "pareto_front", "plot_pareto"]

#: Dots per inch of the chart, drawn and saved alike so labels stay where they were placed.
DPI = 110

ACCURACY_KEYS = ("accuracy", "final_accuracy", "mean_accuracy", "test_accuracy", "acc")
ENERGY_KEYS = ("energy_j", "energy_joules", "energy")
DESCRIPTOR_KEYS = (
    "method",
    "strategy",
    "model",
    "variant",
    "name",
    "setting",
    "encoder",
    "index",
    "student",
    "fraction",
    "ways",
    "shots",
)
_BARE_KEYS = ("method", "strategy", "model", "variant", "name", "setting")


@dataclass
class ParetoPoint:
    """One method's accuracy and energy, from one result file (averaged over seeds)."""

    source: str
    label: str
    accuracy: float
    energy_j: float
    energy_method: str = ""
    count: int = 1


def find_points(data: Any, source: str = "") -> list[ParetoPoint]:
    """Rows holding an accuracy and an energy figure, averaged over rows with one label.

    A row is any JSON object with a numeric accuracy (``accuracy``, ``final_accuracy``, ...)
    and energy in joules (``energy_j`` or ``*_energy_j`` at its top level or in a nested
    ``report``). When the data has a ``summary`` list with such rows, only those count
    (they already average the per-seed ``runs``).
    """
    if isinstance(data, dict) and isinstance(data.get("summary"), list):
        rows = [row for row in _walk(data["summary"]) if _accuracy_energy(row)]
        if rows:
            return _average(rows, source)
    return _average([row for row in _walk(data) if _accuracy_energy(row)], source)


def _walk(data: Any) -> Iterator[dict[str, Any]]:
    if isinstance(data, dict):
        yield data
        for value in data.values():
            yield from _walk(value)
    elif isinstance(data, list):
        for item in data:
            yield from _walk(item)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _accuracy_energy(row: dict[str, Any]) -> tuple[float, float, str] | None:
    accuracy = next((v for k in ACCURACY_KEYS if (v := _number(row.get(k))) is not None), None)
    if accuracy is None:
        return None
    holders = [row, row.get("report")] if isinstance(row.get("report"), dict) else [row]
    for holder in holders:
        keys = [*ENERGY_KEYS, *(k for k in holder if str(k).endswith("_energy_j"))]
        for key in keys:
            energy = _number(holder.get(key))
            if energy is not None:
                return accuracy, energy, str(holder.get("energy_method", ""))
    return None


def _label(row: dict[str, Any]) -> str:
    parts = []
    for key in DESCRIPTOR_KEYS:
        value = row.get(key)
        if key == "fraction" and _number(value) is not None:
            parts.append(f"{100 * value:g}%")
        elif isinstance(value, (str, int)) and not isinstance(value, bool):
            parts.append(str(value) if key in _BARE_KEYS else f"{key} {value}")
    return ", ".join(parts) or "all runs"


def _average(rows: list[dict[str, Any]], source: str) -> list[ParetoPoint]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(_label(row), []).append(row)
    points = []
    for label, members in groups.items():
        values = [_accuracy_energy(row) for row in members]
        methods = {method for _, _, method in values}
        # a summary row says how many seeds it averages; a per-seed row counts once
        runs = sum(
            row["seeds"] if isinstance(row.get("seeds"), int) and row["seeds"] > 0 else 1
            for row in members
        )
        points.append(
            ParetoPoint(
                source=source,
                label=label,
                accuracy=sum(a for a, _, _ in values) / len(values),
                energy_j=sum(e for _, e, _ in values) / len(values),
                energy_method=methods.pop() if len(methods) == 1 else "mixed",
                count=runs,
            )
        )
    return points


def pareto_front(points: list[ParetoPoint]) -> list[ParetoPoint]:
    """Points no other point beats on both accuracy (higher) and energy (lower)."""
    front = []
    best = -math.inf
    for point in sorted(points, key=lambda p: (p.energy_j, -p.accuracy)):
        if point.accuracy > best:
            front.append(point)
            best = point.accuracy
    return front


def plot_pareto(points: list[ParetoPoint], path: str | Path) -> Path:
    """Accuracy against energy, one colour per result with its own Pareto front; no front
    joins points of different results, whose energies come from different runs."""
    figure = pareto_figure(points)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI)
    pyplot().close(figure)
    return path


def pareto_figure(points: list[ParetoPoint]) -> Any:
    """The figure of :func:`plot_pareto`, laid out, its front labels apart."""
    if not points:
        raise ValueError("a Pareto chart needs at least one point")
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(10, 7), dpi=DPI)
    labels = []
    sources = list(dict.fromkeys(p.source for p in points))
    for source in sources:
        mine = [p for p in points if p.source == source]
        dots = axis.scatter(
            [p.energy_j for p in mine], [p.accuracy for p in mine], label=source, s=24
        )
        colour = dots.get_facecolor()[0]
        front = pareto_front(mine)
        axis.step(
            [p.energy_j for p in front],
            [p.accuracy for p in front],
            where="post",
            color=colour,
            linewidth=1,
            alpha=0.7,
        )
        labels += [
            label_point(axis, p.label, (p.energy_j, p.accuracy), fontsize=6, color=colour)
            for p in front
        ]
    if all(p.energy_j > 0 for p in points):
        axis.set_xscale("log")
    methods = sorted({p.energy_method for p in points if p.energy_method})
    suffix = f" ({', '.join(methods)})" if methods else ""
    axis.set(xlabel=f"energy, J{suffix}", ylabel="accuracy", title="Accuracy against energy")
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    separate_labels(axis, labels, points=[(p.energy_j, p.accuracy) for p in points])
    return figure
