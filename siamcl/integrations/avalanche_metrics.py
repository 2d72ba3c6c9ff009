"""Energy, time, FLOPs, memory and retained bytes of any Avalanche strategy, as Avalanche metrics.

:func:`energy_metrics` returns :class:`TrainingCost`, a ``PluginMetric`` that measures every
training experience with a siamcl :class:`~siamcl.accounting.ResourceMeter` (opened when the
experience's dataset adaptation starts, closed when its ``after_training_exp`` callbacks have
run, so replay-buffer updates, importance estimates and prototype rebuilds are included) and
emits the figures through the ``EvaluationPlugin`` to every logger:

``Energy_J_Exp/train_phase/train_stream/Task000/Exp003``, ``EnergyMethod_Exp/...``,
``CPU_s_Exp``, ``Wall_s_Exp``, ``FLOPs_Exp``, ``PeakRSS_MB_Exp``, ``Retained_B_Exp``,
``Samples_Exp``; and after each ``train`` call the same names ending in ``_Stream`` for the
stream learned so far (the sum over experiences; the peak memory is the highest peak).

The :class:`~siamcl.accounting.TaskReport` of every experience stays in ``metric.reports``.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from siamcl._extras import needs_extra
from siamcl.accounting import ResourceMeter, TaskReport, sum_reports
from siamcl.accounting.meter import ENERGY_BACKENDS, FLOP_MODES

with needs_extra("the Avalanche plugin"):
    from avalanche.benchmarks.utils import AvalancheDataset
    from avalanche.evaluation import PluginMetric
    from avalanche.evaluation.metric_results import MetricValue
    from avalanche.evaluation.metric_utils import get_metric_name
    from avalanche.training.plugins import EvaluationPlugin
    from avalanche.training.templates import BaseTemplate
    from avalanche.training.utils import ParamData

__all__ = ["TrainingCost", "energy_metrics", "retained_bytes"]

_TEMPLATE_STATE = {"loss", "mb_output", "mbatch"}
_MAX_DEPTH = 4


class TrainingCost(PluginMetric[dict]):
    """Resource cost of each training experience, and of the stream so far.

    Parameters are those of :class:`~siamcl.accounting.ResourceMeter`; ``device=None``
    takes the strategy's device. ``flops="sample"`` and ``"all"`` mark every training
    iteration as a batch; ``"block"`` counts every operation of the experience.
    Periodic evaluation run inside training is counted as training.
    """

    def __init__(
        self,
        experience: bool = True,
        stream: bool = True,
        energy: str = "auto",
        flops: str = "sample",
        device: str | torch.device | None = None,
        cpu_watts_per_core: float | None = None,
        memory_watts_per_gb: float | None = None,
    ):
        super().__init__()
        if energy not in ENERGY_BACKENDS:
            raise ValueError(f"energy must be one of {ENERGY_BACKENDS}, got {energy!r}")
        if flops not in FLOP_MODES:
            raise ValueError(f"flops must be one of {FLOP_MODES}, got {flops!r}")
        if not (experience or stream):
            raise ValueError("nothing to report: set experience=True, stream=True or both")
        self.experience = experience
        self.stream = stream
        self.energy = energy
        self.flops = flops
        self.device = device
        self.cpu_watts_per_core = cpu_watts_per_core
        self.memory_watts_per_gb = memory_watts_per_gb
        self.reports: list[TaskReport] = []
        self._meter: ResourceMeter | None = None
        self._batch: Any = None

    # -- Metric protocol --------------------------------------------------------------
    def result(self) -> dict[str, Any] | None:
        """The last experience's report as a dict (``None`` before the first one)."""
        return self.reports[-1].to_dict() if self.reports else None

    def reset(self) -> None:
        """Forget every report (a running measurement is abandoned)."""
        self._abandon()
        self.reports = []

    def total(self) -> TaskReport | None:
        """Sum of the experience reports so far."""
        return sum_reports(self.reports) if self.reports else None

    # -- training callbacks -----------------------------------------------------------
    def before_train_dataset_adaptation(self, strategy: Any) -> None:
        self._abandon()  # a previous experience that raised leaves its meter open
        device = self.device if self.device is not None else strategy.device
        self._meter = ResourceMeter(
            energy=self.energy,
            flops=self.flops,
            device=device,
            cpu_watts_per_core=self.cpu_watts_per_core,
            memory_watts_per_gb=self.memory_watts_per_gb,
        ).__enter__()

    def before_training_iteration(self, strategy: Any) -> None:
        if self._meter is None or self.flops not in ("sample", "all"):
            return
        n_samples = len(strategy.mbatch[0])
        if n_samples > 0:
            self._batch = self._meter.batch(n_samples)
            self._batch.__enter__()

    def after_training_iteration(self, strategy: Any) -> None:
        if self._batch is not None:
            batch, self._batch = self._batch, None
            batch.__exit__(None, None, None)

    def after_training_exp(self, strategy: Any) -> list[MetricValue] | None:
        if self._meter is None:
            return None
        meter, self._meter = self._meter, None
        meter.__exit__(None, None, None)
        experience = strategy.experience.current_experience
        report = meter.report(
            task=experience,
            method=type(strategy).__name__,
            retained_bytes=retained_bytes(strategy),
        )
        self.reports.append(report)
        if not self.experience:
            return None
        return self._values(strategy, report, "Exp", add_experience=True)

    def after_training(self, strategy: Any) -> list[MetricValue] | None:
        if not self.stream or not self.reports:
            return None
        total = self.total()
        total.retained_bytes = dict(self.reports[-1].retained_bytes)  # held now, not summed
        return self._values(strategy, total, "Stream", add_experience=False)

    # -- helpers ----------------------------------------------------------------------
    def _values(
        self, strategy: Any, report: TaskReport, level: str, add_experience: bool
    ) -> list[MetricValue]:
        figures: dict[str, Any] = {
            "Energy_J": report.energy_j,
            "EnergyMethod": report.energy_method,
            "CPU_s": report.cpu_s,
            "Wall_s": report.wall_s,
            "PeakRSS_MB": report.peak_rss_bytes / 2**20,
            "Retained_B": report.retained_total,
            "Samples": report.samples_seen,
        }
        if report.flops is not None:
            figures["FLOPs"] = report.flops
        x_position = strategy.clock.train_iterations
        return [
            MetricValue(
                self,
                get_metric_name(
                    f"{name}_{level}", strategy, add_experience=add_experience, add_task=True
                ),
                value,
                x_position,
            )
            for name, value in figures.items()
        ]

    def _abandon(self) -> None:
        """Close a batch or meter left open by an experience that raised."""
        if self._batch is not None:
            batch, self._batch = self._batch, None
            try:
                batch.__exit__(RuntimeError, RuntimeError("abandoned"), None)
            except RuntimeError:
                pass
        if self._meter is not None:
            meter, self._meter = self._meter, None
            meter.__exit__(RuntimeError, RuntimeError("abandoned"), None)

    def __str__(self) -> str:
        return "TrainingCost"


def energy_metrics(
    *,
    experience: bool = True,
    stream: bool = True,
    energy: str = "auto",
    flops: str = "sample",
    device: str | torch.device | None = None,
    cpu_watts_per_core: float | None = None,
    memory_watts_per_gb: float | None = None,
) -> list[PluginMetric]:
    """Plugin metrics reporting training joules (with method), CPU seconds, FLOPs, peak
    memory and retained bytes per experience and per stream, for any Avalanche strategy.

    Use them like Avalanche's own helpers::

        EvaluationPlugin(accuracy_metrics(stream=True), *energy_metrics(), loggers=[...])
    """
    return [
        TrainingCost(
            experience=experience,
            stream=stream,
            energy=energy,
            flops=flops,
            device=device,
            cpu_watts_per_core=cpu_watts_per_core,
            memory_watts_per_gb=memory_watts_per_gb,
        )
    ]


def retained_bytes(strategy: Any) -> dict[str, int]:
    """Bytes a strategy keeps between experiences besides its model, by where they live.

    A strategy with its own ``retained_bytes()`` method answers for itself. Otherwise every
    plugin's state is walked: exemplar buffers (Avalanche datasets, counted as their samples
    are stored, before transforms), tensors (importances, saved parameters, class means,
    exemplar tensors) and model copies (previous or initial models); tensors held directly
    by the strategy (e.g. StreamingLDA's statistics) are counted too.
    """
    own = getattr(strategy, "retained_bytes", None)
    if callable(own):
        return {str(name): int(size) for name, size in own().items()}
    sizes: dict[str, int] = {}
    seen: set[int] = {id(strategy.model)}
    for plugin in strategy.plugins:
        if isinstance(plugin, EvaluationPlugin) or type(plugin).__module__.endswith(
            ("clock", "base_sgd")
        ):
            continue
        for name, value in vars(plugin).items():
            size = _nbytes(value, seen, 0)
            if size:
                key = f"{type(plugin).__name__.lstrip('_')}.{name}"
                sizes[key] = sizes.get(key, 0) + size
    for name, value in vars(strategy).items():
        if name not in _TEMPLATE_STATE and isinstance(value, torch.Tensor):
            size = _nbytes(value, seen, 0)
            if size:
                sizes[f"{type(strategy).__name__}.{name}"] = size
    return sizes


def _nbytes(value: Any, seen: set[int], depth: int) -> int:
    """Bytes of tensors, arrays, modules and datasets reachable from ``value``."""
    if value is None or isinstance(value, (str, bytes, numbers.Number)) or depth > _MAX_DEPTH:
        return 0
    if id(value) in seen:
        return 0
    seen.add(id(value))
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, nn.Module):
        return sum(_nbytes(t, seen, depth + 1) for t in (*value.parameters(), *value.buffers()))
    if isinstance(value, AvalancheDataset):
        return _dataset_nbytes(value)
    if isinstance(value, ParamData):
        return _nbytes(value.data, seen, depth + 1)
    if isinstance(value, Mapping):
        return sum(_nbytes(v, seen, depth + 1) for v in value.values())
    if isinstance(value, (list, tuple, set, frozenset)):
        return sum(_nbytes(v, seen, depth + 1) for v in value)
    if isinstance(value, BaseTemplate) or not type(value).__module__.startswith("avalanche."):
        return 0
    return sum(_nbytes(v, seen, depth + 1) for v in vars(value).values())


def _dataset_nbytes(dataset: AvalancheDataset) -> int:
    """Bytes of a dataset's samples as stored (first element of each item, no transforms)."""
    if len(dataset) == 0:
        return 0
    raw = dataset.replace_current_transform_group((None, None))
    total = 0
    for index in range(len(raw)):
        sample = raw[index][0]
        if isinstance(sample, torch.Tensor):
            total += sample.numel() * sample.element_size()
        else:
            total += int(np.asarray(sample).nbytes)
    return total
