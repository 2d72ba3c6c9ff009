"""Every benchmark result in a folder as one markdown report.

Each ``*.json`` result becomes a section (its command, seeds, machine, its own markdown
table when a ``.md`` of the same name sits beside it, and its plots: PNGs whose names start
with the result's name). Across all results, every row holding an accuracy and an energy
figure becomes a point of a Pareto chart of accuracy against energy (see
:mod:`siamcl.reporting.pareto`). Files that cannot be read are listed with the reason, not
fatal.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from siamcl.reporting.figures import draw_or_skip
from siamcl.reporting.pareto import ParetoPoint, find_points, pareto_front, plot_pareto
from siamcl.reporting.tables import markdown_table

__all__ = ["ResultFile", "read_results", "render_report", "write_report"]

_IMAGE_LINK = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^(#+) ", flags=re.MULTILINE)


@dataclass
class ResultFile:
    """A result JSON read from disk, or the reason it could not be read."""

    path: Path
    data: Any = None
    error: str = ""
    points: list[ParetoPoint] = field(default_factory=list)


def write_report(directory: str | Path, out: str | Path | None = None) -> dict[str, Any]:
    """Read every result in ``directory``; write the report (default ``DIR/REPORT.md``) and
    its Pareto chart beside it. Returns what was written and what was skipped."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"no such result folder: {directory}")
    out = Path(out) if out else directory / "REPORT.md"
    results = read_results(directory)
    if not results:
        raise FileNotFoundError(f"no result files (*.json) in {directory}")
    points = [point for result in results for point in result.points]
    chart = None
    if points:
        chart = draw_or_skip(plot_pareto, points, out.with_name(f"{out.stem}_pareto.png"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_report(results, out, chart))
    return {
        "report": str(out),
        "pareto_plot": str(chart) if chart else None,
        "files": [str(r.path) for r in results],
        "skipped": {str(r.path): r.error for r in results if r.error},
        "points": len(points),
    }


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


def _source_name(path: Path, data: Any) -> str:
    if not isinstance(data, dict) or not data.get("suite"):
        return path.stem
    settings = data.get("settings")
    dataset = settings.get("dataset") if isinstance(settings, dict) else None
    return f"{data['suite']} ({dataset})" if dataset else str(data["suite"])


def render_report(results: list[ResultFile], out: Path, chart: Path | None) -> str:
    """The whole report: Pareto section first, then one section per result file."""
    out = Path(out)
    readable = [r for r in results if not r.error]
    skipped = [r for r in results if r.error]
    lines = ["# siamcl benchmark report", ""]
    lines.append(
        f"{len(readable)} result file(s) from `{results[0].path.parent}`"
        + (f", {len(skipped)} skipped (see the end)." if skipped else ".")
    )
    lines += ["", "## Accuracy against energy", ""]
    points = [p for r in results for p in r.points]
    if chart is not None:
        lines += [f"![Pareto chart of accuracy against energy]({_relative(chart, out)})", ""]
    if points:  # the table stands without the chart (matplotlib is an extra)
        lines += [_pareto_table(points), "", _PARETO_NOTE, ""]
    else:
        lines += ["No result holds rows with both an accuracy and an energy figure.", ""]
    for result in readable:
        lines += _section(result, out)
    if skipped:
        lines += ["## Skipped files", ""]
        lines += [f"- `{r.path.name}`: {r.error}" for r in skipped]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


_PARETO_NOTE = (
    "Points average rows that differ only by seed (runs: how many). A point is "
    "on a front when no other point is both more accurate and cheaper. Energies "
    "marked `estimate` are CPU-time estimates, not measurements (see "
    "docs/energy.md). Fronts are drawn within one result, where machine, load and "
    "task were shared; energies of different results are not compared."
)


def _pareto_table(points: list[ParetoPoint]) -> str:
    """Every point, marked when it is on its own result's front. No front is drawn across
    results: their energies come from different runs (machine, load, task) and are not
    comparable."""
    own = {
        id(p)
        for source in dict.fromkeys(p.source for p in points)
        for p in pareto_front([q for q in points if q.source == source])
    }
    rows = [
        [
            p.source,
            p.label,
            p.accuracy,
            f"{p.energy_j:.1f}",
            p.energy_method,
            p.count,
            "yes" if id(p) in own else "",
        ]
        for p in sorted(points, key=lambda p: (p.source, p.energy_j))
    ]
    headers = ["result", "method", "accuracy", "energy J", "energy method", "runs"]
    return markdown_table([*headers, "on its result's front"], rows)


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
