"""``siamcl report DIR``: every benchmark result in a folder as one markdown report.

Each ``*.json`` result becomes a section (its command, seeds, machine, its own markdown
table when a ``.md`` of the same name sits beside it, and its plots: PNGs whose names start
with the result's name). Across all results, every row holding an accuracy and an energy
figure becomes a point of a Pareto chart of accuracy against energy; rows repeated over
seeds are averaged. Files that cannot be read are listed with the reason, not fatal.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "ParetoPoint",
    "ResultFile",
    "configure",
    "find_points",
    "pareto_front",
    "plot_pareto",
    "read_results",
    "render_report",
    "run",
]

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
_IMAGE_LINK = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^(#+) ", flags=re.MULTILINE)


@dataclass
class ParetoPoint:
    """One method's accuracy and energy, from one result file (averaged over seeds)."""

    source: str
    label: str
    accuracy: float
    energy_j: float
    energy_method: str = ""
    count: int = 1


@dataclass
class ResultFile:
    """A result JSON read from disk, or the reason it could not be read."""

    path: Path
    data: Any = None
    error: str = ""
    points: list[ParetoPoint] = field(default_factory=list)


def configure(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``report`` command to the ``siamcl`` command's subparsers."""
    parser = subparsers.add_parser(
        "report",
        help="render a folder of benchmark results into one markdown report",
        description=__doc__,
    )
    parser.add_argument("directory", help="folder of result JSON files (e.g. benchmarks/results)")
    parser.add_argument(
        "--out", default=None, help="markdown file to write (default DIR/REPORT.md)"
    )
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Read every result in ``args.directory``; write the report and its Pareto chart."""
    directory = Path(args.directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"no such result folder: {directory}")
    out = Path(args.out) if args.out else directory / "REPORT.md"
    results = read_results(directory)
    if not results:
        raise FileNotFoundError(f"no result files (*.json) in {directory}")
    points = [point for result in results for point in result.points]
    chart = None
    if points:
        chart = plot_pareto(points, out.with_name(f"{out.stem}_pareto.png"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_report(results, out, chart))
    if not getattr(args, "quiet", False):
        skipped = sum(1 for r in results if r.error)
        print(f"wrote {out} ({len(results) - skipped} results, {len(points)} Pareto points)")
    return {
        "report": str(out),
        "pareto_plot": str(chart) if chart else None,
        "files": [str(r.path) for r in results],
        "skipped": {str(r.path): r.error for r in results if r.error},
        "points": len(points),
    }


# ---------------------------------------------------------------------- reading


def read_results(directory: str | Path) -> list[ResultFile]:
    """Every ``*.json`` directly under ``directory``, parsed, with its Pareto points."""
    results = []
    for path in sorted(Path(directory).glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            results.append(ResultFile(path, error=f"not readable as JSON ({error})"))
            continue
        result = ResultFile(path, data)
        result.points = find_points(data, source=_source_name(path, data))
        results.append(result)
    return results


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


def _source_name(path: Path, data: Any) -> str:
    if not isinstance(data, dict) or not data.get("suite"):
        return path.stem
    settings = data.get("settings")
    dataset = settings.get("dataset") if isinstance(settings, dict) else None
    return f"{data['suite']} ({dataset})" if dataset else str(data["suite"])


# ---------------------------------------------------------------------- analysis and plot


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
    """Accuracy against energy, one colour per result with its own Pareto front, and the
    front of all points dashed (energies from different runs compare only roughly)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not points:
        raise ValueError("a Pareto chart needs at least one point")
    figure, axis = plt.subplots(figsize=(10, 7))
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
        for point in front:
            axis.annotate(
                point.label,
                (point.energy_j, point.accuracy),
                fontsize=6,
                xytext=(3, -9),
                textcoords="offset points",
                color=colour,
            )
    overall = pareto_front(points)
    axis.step(
        [p.energy_j for p in overall],
        [p.accuracy for p in overall],
        where="post",
        color="black",
        linewidth=1.5,
        linestyle="--",
        alpha=0.5,
        label="Pareto front of all points",
    )
    if all(p.energy_j > 0 for p in points):
        axis.set_xscale("log")
    methods = sorted({p.energy_method for p in points if p.energy_method})
    suffix = f" ({', '.join(methods)})" if methods else ""
    axis.set(xlabel=f"energy, J{suffix}", ylabel="accuracy", title="Accuracy against energy")
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


# ---------------------------------------------------------------------- markdown


def render_report(results: list[ResultFile], out: Path, chart: Path | None) -> str:
    """The whole report: Pareto section first, then one section per result file."""
    from siamcl.bench.common import markdown_table

    out = Path(out)
    lines = ["# siamcl benchmark report", ""]
    readable = [r for r in results if not r.error]
    lines.append(
        f"{len(readable)} result file(s) from `{results[0].path.parent}`"
        + (
            f", {len(results) - len(readable)} skipped (see the end)."
            if len(readable) < len(results)
            else "."
        )
    )
    lines.append("")
    points = [p for r in results for p in r.points]
    lines += ["## Accuracy against energy", ""]
    if chart is not None:
        overall = {id(p) for p in pareto_front(points)}
        own = {
            id(p)
            for source in dict.fromkeys(p.source for p in points)
            for p in pareto_front([q for q in points if q.source == source])
        }
        lines += [f"![Pareto chart of accuracy against energy]({_relative(chart, out)})", ""]
        rows = [
            [
                p.source,
                p.label,
                p.accuracy,
                f"{p.energy_j:.1f}",
                p.energy_method,
                p.count,
                "yes" if id(p) in own else "",
                "yes" if id(p) in overall else "",
            ]
            for p in sorted(points, key=lambda p: (p.source, p.energy_j))
        ]
        headers = [
            "result",
            "method",
            "accuracy",
            "energy J",
            "energy method",
            "runs",
            "front of its result",
            "front of all",
        ]
        lines += [markdown_table(headers, rows), ""]
        lines += [
            (
                "Points average rows that differ only by seed (runs: how many). A point is "
                "on a front when no other point is both more accurate and cheaper. Energies "
                "marked `estimate` are CPU-time estimates, not measurements (see "
                "docs/energy.md); compare them within one result, where machine, load and "
                "task were shared, and across results only roughly."
            ),
            "",
        ]
    else:
        lines += ["No result holds rows with both an accuracy and an energy figure.", ""]
    for result in readable:
        lines += _section(result, out)
    skipped = [r for r in results if r.error]
    if skipped:
        lines += ["## Skipped files", ""]
        lines += [f"- `{r.path.name}`: {r.error}" for r in skipped]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _section(result: ResultFile, out: Path) -> list[str]:
    data = result.data if isinstance(result.data, dict) else {}
    title = data.get("suite") or result.path.stem
    lines = [f"## {title}: `{result.path.name}`", ""]
    markdown = result.path.with_suffix(".md")
    own_text = markdown.read_text() if markdown.is_file() else None
    for key, name in (("command", "Command"), ("seeds", "Seeds"), ("date", "Date")):
        if own_text is not None and "Command:" in own_text:
            break  # the result's own markdown states its run record
        if data.get(key) not in (None, "", []):
            value = data[key]
            lines.append(f"{name}: `{value}`  " if key == "command" else f"{name}: {value}  ")
    machine = data.get("machine")
    if isinstance(machine, dict) and not (own_text and "Machine:" in own_text):
        lines.append(
            f"Machine: {machine.get('processor', '?')}, {machine.get('cpu_count', '?')} CPUs, "
            f"torch {machine.get('torch', '?')}  "
        )
    lines.append("")
    shown: set[str] = set()
    if own_text is not None:
        body, shown = _embed_markdown(own_text, result.path.parent, out)
        lines += [body, ""]
    elif result.points:
        from siamcl.bench.common import markdown_table

        rows = [[p.label, p.accuracy, p.energy_j, p.energy_method, p.count] for p in result.points]
        lines += [
            markdown_table(["method", "accuracy", "energy J", "energy method", "rows"], rows),
            "",
        ]
    else:
        lines += ["(no table: neither a markdown file beside it nor accuracy/energy rows)", ""]
    for image in sorted(result.path.parent.glob(f"{result.path.stem}*.png")):
        if image.name not in shown:
            lines += [f"![{image.stem}]({_relative(image, out)})", ""]
    return lines


def _embed_markdown(text: str, folder: Path, out: Path) -> tuple[str, set[str]]:
    """A result's own markdown, headings demoted below the section, image links re-rooted."""
    shown: set[str] = set()

    def relink(match: re.Match[str]) -> str:
        target = match.group(2)
        if "://" in target or os.path.isabs(target):
            return match.group(0)
        shown.add(Path(target).name)
        return f"![{match.group(1)}]({_relative(folder / target, out)})"

    demoted = _HEADING.sub(lambda m: "#" * min(6, len(m.group(1)) + 2) + " ", text)
    return _IMAGE_LINK.sub(relink, demoted).strip(), shown


def _relative(target: Path, out: Path) -> str:
    return Path(os.path.relpath(Path(target).resolve(), Path(out).resolve().parent)).as_posix()
