"""TaskReport: what one block of work cost, with how each figure was obtained.

Reports export to dicts, JSON and CSV (dict fields flattened to ``field.key`` columns so
a spreadsheet or pandas reads them directly), add up across tasks, and compare as ratios
across methods.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENERGY_METHODS = ("rapl", "nvml", "amdsmi", "soc", "estimate", "mixed")
_DICT_FIELDS = ("energy_constants", "energy_components", "retained_bytes", "extra")
_INT_FIELDS = ("samples_seen", "flops", "peak_rss_bytes", "peak_accel_bytes")
_FLOAT_FIELDS = ("wall_s", "cpu_s", "energy_j")
# ``extra`` entries that are costs (their names end so) add up over reports (sum_reports)
ADDITIVE_EXTRAS = ("_energy_j", "_cpu_s", "_wall_s")


@dataclass
class TaskReport:
    """The cost of one task (or any metered block) and the method behind each figure.

    ``energy_method`` is a counter read through Zeus (``"rapl"``, ``"nvml"``, ``"amdsmi"``,
    ``"soc"``), ``"estimate"`` or ``"mixed"`` (a sum of reports whose methods differ); ``energy_measured`` is true only when every joule came
    from a hardware counter, and an ``"estimate"`` report can never claim it.
    ``retained_bytes`` holds what the method keeps between tasks (replay memory, prototype
    store), by name. ``flops`` is ``None`` when FLOPs were not counted. ``stopped_by`` says
    why training ended (a fixed number of epochs, a target, patience, a budget); validation
    figures, kept apart from training's, are in ``extra``.
    """

    task: int | str | None = None
    method: str = ""
    wall_s: float = 0.0
    cpu_s: float = 0.0
    samples_seen: int = 0
    flops: int | None = None
    flops_method: str = "off"
    peak_rss_bytes: int = 0
    peak_accel_bytes: int | None = None
    energy_j: float = 0.0
    energy_method: str = "estimate"
    energy_measured: bool = False
    energy_constants: dict[str, float] = field(default_factory=dict)
    energy_components: dict[str, float] = field(default_factory=dict)
    energy_note: str = ""
    retained_bytes: dict[str, int] = field(default_factory=dict)
    device: str = "cpu"
    stopped_by: str = ""
    extra: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.energy_method not in ENERGY_METHODS:
            raise ValueError(
                f"energy_method must be one of {ENERGY_METHODS}, got {self.energy_method!r}"
            )
        if self.energy_method == "estimate" and self.energy_measured:
            raise ValueError("an energy estimate cannot be marked as measured")
        for name in ("wall_s", "cpu_s", "energy_j", "samples_seen", "peak_rss_bytes"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise TypeError(f"{name} must be a number, got {type(value).__name__}")
            if not value >= 0:
                raise ValueError(f"{name} must be a non-negative number, got {value}")
        for name, value in self.retained_bytes.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(
                    f"retained_bytes[{name!r}] must be a non-negative integer, got {value!r}"
                )

    @property
    def retained_total(self) -> int:
        """Bytes of retained data across all stores."""
        return sum(self.retained_bytes.values())

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field (dicts copied), ready for JSON."""
        return dataclasses.asdict(self)

    def to_json(self, **dumps_kwargs: Any) -> str:
        """This report as a JSON object."""
        return json.dumps(self.to_dict(), **dumps_kwargs)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TaskReport:
        """Rebuild a report from ``to_dict`` output; unknown keys raise ``ValueError``."""
        if not isinstance(data, Mapping):
            raise TypeError(f"a TaskReport is built from a mapping, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known - {"retained_total"})
        if unknown:
            raise ValueError(f"unknown TaskReport fields: {unknown}")
        values = {key: value for key, value in data.items() if key in known}
        for name in _DICT_FIELDS:
            if name in values:
                values[name] = dict(values[name])
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> TaskReport:
        """Rebuild a report from ``to_json`` output."""
        return cls.from_dict(json.loads(text))

    def __add__(self, other: TaskReport) -> TaskReport:
        if not isinstance(other, TaskReport):
            return NotImplemented
        return sum_reports([self, other])

    @staticmethod
    def write_json(reports: Iterable[TaskReport], path: str | Path) -> Path:
        """Write reports as a JSON list; returns the path."""
        path = Path(path)
        path.write_text(json.dumps([r.to_dict() for r in _as_reports(reports)], indent=2))
        return path

    @staticmethod
    def read_json(path: str | Path) -> list[TaskReport]:
        """Read reports written by ``write_json``."""
        data = json.loads(_read_text(path))
        if not isinstance(data, list):
            raise TypeError(f"{path} does not hold a JSON list of reports")
        return [TaskReport.from_dict(item) for item in data]

    @staticmethod
    def write_csv(reports: Iterable[TaskReport], path: str | Path) -> Path:
        """Write reports as CSV, one row each; dict fields become ``field.key`` columns.

        A ``retained_total`` column is added. Empty cells stand for ``None`` or for a key
        that report lacks.
        """
        rows = [_flatten(r) for r in _as_reports(reports)]
        columns = [f.name for f in dataclasses.fields(TaskReport) if f.name not in _DICT_FIELDS]
        columns.append("retained_total")
        for name in _DICT_FIELDS:
            keys = sorted({key for row in rows for key in row if key.startswith(name + ".")})
            columns.extend(keys)
        path = Path(path)
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        return path

    @staticmethod
    def read_csv(path: str | Path) -> list[TaskReport]:
        """Read reports written by ``write_csv``."""
        with Path(_existing(path)).open(newline="") as handle:
            return [_unflatten(row) for row in csv.DictReader(handle)]


write_json = TaskReport.write_json
read_json = TaskReport.read_json
write_csv = TaskReport.write_csv
read_csv = TaskReport.read_csv


def sum_reports(reports: Iterable[TaskReport]) -> TaskReport:
    """One report for several: times, energy, FLOPs and samples add; peaks take the max.

    Retained bytes are a holding, not a cost, so each store keeps its largest value.
    Labels (task, method, device, flops_method, energy_method) stay when all reports
    agree and become ``None``/``"mixed"`` otherwise; ``energy_measured`` holds only if
    it holds for every report. In ``extra``, a cost (a name ending in one of
    :data:`ADDITIVE_EXTRAS`: a validation's or readout's share of the work) adds up where every
    report has it; any other entry stays only if it is equal in every report.
    """
    reports = _as_reports(reports)
    if not reports:
        raise ValueError("sum_reports needs at least one report")
    flops = [r.flops for r in reports]
    accel = [r.peak_accel_bytes for r in reports if r.peak_accel_bytes is not None]
    retained: dict[str, int] = {}
    components: dict[str, float] = {}
    for report in reports:
        for name, value in report.retained_bytes.items():
            retained[name] = max(retained.get(name, 0), value)
        for name, value in report.energy_components.items():
            components[name] = components.get(name, 0.0) + value
    notes = list(dict.fromkeys(r.energy_note for r in reports if r.energy_note))
    return TaskReport(
        task=_agreed([r.task for r in reports], None),
        method=_agreed([r.method for r in reports], "mixed"),
        wall_s=math.fsum(r.wall_s for r in reports),
        cpu_s=math.fsum(r.cpu_s for r in reports),
        samples_seen=sum(r.samples_seen for r in reports),
        flops=None if None in flops else sum(flops),
        flops_method=_agreed([r.flops_method for r in reports], "mixed"),
        peak_rss_bytes=max(r.peak_rss_bytes for r in reports),
        peak_accel_bytes=max(accel) if accel else None,
        energy_j=math.fsum(r.energy_j for r in reports),
        energy_method=_agreed([r.energy_method for r in reports], "mixed"),
        energy_measured=all(r.energy_measured for r in reports),
        energy_constants=_agreed([r.energy_constants for r in reports], {}),
        energy_components=components,
        energy_note="; ".join(notes),
        retained_bytes=retained,
        device=_agreed([r.device for r in reports], "mixed"),
        extra=_summed_extra([r.extra for r in reports]),
    )


def _summed_extra(extras: list[dict[str, Any]]) -> dict[str, Any]:
    """Costs every report holds, added up; other entries every report agrees on."""
    summed = {}
    for key, value in extras[0].items():
        values = [extra.get(key) for extra in extras]
        if key.endswith(ADDITIVE_EXTRAS) and all(_is_number(v) for v in values):
            summed[key] = math.fsum(values)
        elif all(key in extra and extra[key] == value for extra in extras[1:]):
            summed[key] = value
    return summed


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def compare_reports(a: TaskReport, b: TaskReport) -> dict[str, float | None]:
    """Ratios ``a / b`` of energy, wall and CPU time, FLOPs, peak memory and retained bytes.

    A ratio is ``None`` where either figure is missing or ``b``'s is zero. Energy ratios
    are only meaningful between reports whose ``energy_method`` agrees.
    """
    for report in (a, b):
        if not isinstance(report, TaskReport):
            raise TypeError(f"compare_reports takes TaskReports, got {type(report).__name__}")
    pairs = {
        "energy_j": (a.energy_j, b.energy_j),
        "wall_s": (a.wall_s, b.wall_s),
        "cpu_s": (a.cpu_s, b.cpu_s),
        "flops": (a.flops, b.flops),
        "peak_rss_bytes": (a.peak_rss_bytes, b.peak_rss_bytes),
        "peak_accel_bytes": (a.peak_accel_bytes, b.peak_accel_bytes),
        "retained_total": (a.retained_total, b.retained_total),
    }
    return {name: _ratio(x, y) for name, (x, y) in pairs.items()}


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def _agreed(values: list[Any], otherwise: Any) -> Any:
    first = values[0]
    return first if all(value == first for value in values[1:]) else otherwise


def _as_reports(reports: Iterable[TaskReport]) -> list[TaskReport]:
    if isinstance(reports, TaskReport):
        raise TypeError("expected an iterable of TaskReports, got a single TaskReport")
    reports = list(reports)
    for report in reports:
        if not isinstance(report, TaskReport):
            raise TypeError(f"expected TaskReports, got {type(report).__name__}")
    return reports


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no report file at {path}")
    return path


def _read_text(path: str | Path) -> str:
    return _existing(path).read_text()


def _flatten(report: TaskReport) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for name, value in report.to_dict().items():
        if name in _DICT_FIELDS:
            row.update({f"{name}.{key}": item for key, item in value.items()})
        else:
            row[name] = "" if value is None else value
    row["retained_total"] = report.retained_total
    return row


def _unflatten(row: dict[str, str]) -> TaskReport:
    values: dict[str, Any] = {name: {} for name in _DICT_FIELDS}
    for column, cell in row.items():
        if column == "retained_total" or cell == "":
            continue
        name, dot, key = column.partition(".")
        if dot and name in _DICT_FIELDS:
            values[name][key] = int(cell) if name == "retained_bytes" else float(cell)
        elif column == "task":
            values[column] = int(cell) if cell.lstrip("-").isdigit() else cell
        elif column in _INT_FIELDS:
            values[column] = int(cell)
        elif column in _FLOAT_FIELDS:
            values[column] = float(cell)
        elif column == "energy_measured":
            values[column] = cell == "True"
        else:
            values[column] = cell
    return TaskReport.from_dict(values)
