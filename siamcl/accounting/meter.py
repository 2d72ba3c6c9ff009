"""ResourceMeter: measure the time, memory, FLOPs and energy of any block of Python code."""

from __future__ import annotations

import collections
import functools
import numbers
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import torch

from siamcl.accounting.energy import EnergyCounter
from siamcl.accounting.energy_source import (
    ENERGY_BACKENDS,
    CounterOpener,
    energy_figures,
    open_energy_counter,
    read_counter,
)
from siamcl.accounting.flops import FLOP_MODES, FlopTally
from siamcl.accounting.memory import PeakRssSampler, os_peak_rss_bytes
from siamcl.accounting.report import TaskReport

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["ENERGY_BACKENDS", "FLOP_MODES", "ResourceMeter"]

_F = TypeVar("_F", bound=Callable[..., Any])
#: The backend that opens a counter of each method (:func:`ResourceMeter.part_meter`).
_BACKEND_OF_METHOD = {"nvml": "gpu", "amdsmi": "gpu", "rapl": "rapl", "soc": "soc"}
#: Meters measuring each CUDA device (by index) now: only the outermost resets its peak memory.
_ACTIVE_ON_CUDA: collections.Counter[int] = collections.Counter()


def cuda_index(device: torch.device) -> int:
    """The index of CUDA ``device``: "cuda" means the current device, so that "cuda" and
    "cuda:0" count as one device when it is device 0."""
    return device.index if device.index is not None else torch.cuda.current_device()


@dataclass
class _Measurement:
    """Figures of one finished block, before labels are attached by ``report``."""

    wall_s: float
    cpu_s: float
    samples_seen: int
    flops: int | None
    flops_method: str
    peak_rss_bytes: int
    peak_accel_bytes: int | None
    energy_j: float
    energy_method: str
    energy_constants: dict[str, float]
    energy_components: dict[str, float]
    energy_notes: list[str] = field(default_factory=list)


class ResourceMeter:
    """Context manager (and decorator) measuring a block of work.

    It records wall and process CPU seconds (user + system, reaped children included),
    the peak resident memory of the process during the block (psutil on a background
    thread every ``sample_interval`` seconds, raised to the OS peak ``ru_maxrss`` when
    that lifetime peak rose during the block), peak accelerator memory (CUDA; a meter
    inside another on the same device gives the peak since the outer one began, which it
    must not reset), FLOPs (``torch.utils.flop_counter``) and energy.

    Parameters
    ----------
    energy : "auto", "gpu", "nvml", "rapl", "soc" or "estimate"
        Energy source. Counters are read through Zeus (``siamcl[energy]``): "gpu" (alias
        "nvml") the ``device``'s GPU (NVML, or AMD SMI), "rapl" the CPU sockets and DRAM,
        "soc" Apple silicon or a Jetson. "auto" tries the GPU when ``device`` is CUDA, then
        RAPL, then an SoC, and falls back to the estimate; an unreadable counter (or no
        Zeus) always falls back to the estimate with the reason in ``energy_note``.
    flops : "all", "sample", "block" or "off"
        "all" counts forward and backward FLOPs of every ``meter.batch`` block, "sample"
        only the first ``flop_sample_batches`` of them and extrapolates per sample,
        "block" counts everything inside the meter (no batch markers needed), "off"
        counts nothing and costs nothing.
    flop_sample_batches : int
        Batches counted when ``flops="sample"`` (1: a network's FLOPs per sample do not
        change between batches, and counting slows a batch down).
    sample_interval : float
        Seconds between background RSS samples.
    device : str or torch.device
        Torch device the work runs on; CUDA enables peak accelerator memory and NVML.
    cpu_watts_per_core, memory_watts_per_gb : float or None
        Constants of the estimate; ``None`` uses the documented defaults
        (``CPU_WATTS_PER_CORE``, ``MEMORY_WATTS_PER_GB``).
    counter_opener : callable or None
        ``(backend, gpu_index) -> EnergyCounter``, a new unstarted one on every call (a
        training loop opens one per epoch), raising ``CounterUnavailable`` when it cannot
        read; ``None`` opens counters through Zeus.
        Pass one to read a ``ZeusMonitor`` you already hold
        (``lambda backend, index: EnergyCounter("nvml", monitor, ["gpu"])``) or a fake.

    Examples
    --------
    >>> meter = ResourceMeter(flops="off")
    >>> with meter:
    ...     total = sum(range(1000))
    >>> meter.report(task=0, method="demo").energy_method in ("rapl", "soc", "estimate")
    True
    """

    def __init__(
        self,
        energy: str = "auto",
        flops: str = "sample",
        flop_sample_batches: int = 1,
        sample_interval: float = 0.05,
        device: str | torch.device = "cpu",
        cpu_watts_per_core: float | None = None,
        memory_watts_per_gb: float | None = None,
        counter_opener: CounterOpener | None = None,
    ) -> None:
        if energy not in ENERGY_BACKENDS:
            raise ValueError(f"energy must be one of {ENERGY_BACKENDS}, got {energy!r}")
        if flops not in FLOP_MODES:
            raise ValueError(f"flops must be one of {FLOP_MODES}, got {flops!r}")
        _check_positive_int("flop_sample_batches", flop_sample_batches)
        _check_positive_number("sample_interval", sample_interval)
        for name, value in (
            ("cpu_watts_per_core", cpu_watts_per_core),
            ("memory_watts_per_gb", memory_watts_per_gb),
        ):
            if value is not None:
                _check_positive_number(name, value, allow_zero=True)
        try:
            torch.device(device)
        except (RuntimeError, TypeError) as exc:
            raise ValueError(f"device {device!r} is not a torch device: {exc}") from exc
        self.energy = energy
        self.flops = flops
        self.flop_sample_batches = flop_sample_batches
        self.sample_interval = sample_interval
        self.device = device
        self.cpu_watts_per_core = cpu_watts_per_core
        self.memory_watts_per_gb = memory_watts_per_gb
        self.counter_opener = counter_opener
        self._active = False
        self._measurement: _Measurement | None = None

    # -- context manager -------------------------------------------------------------
    def __enter__(self) -> Self:
        if self._active:
            raise RuntimeError(
                "ResourceMeter is already entered; a meter measures one block at a time "
                "(use a second meter for a nested block)"
            )
        self._torch_device = torch.device(self.device)
        self._measurement = None
        if self._uses_cuda():
            self._cuda_index = cuda_index(self._torch_device)
            torch.cuda.synchronize(self._torch_device)
            if not _ACTIVE_ON_CUDA[self._cuda_index]:  # resetting would cut an outer meter's peak
                torch.cuda.reset_peak_memory_stats(self._torch_device)
        self._counter, self._energy_notes = self._open_counter()
        self._sampler = PeakRssSampler(self.sample_interval)
        self._os_peak_start = os_peak_rss_bytes()
        self._flops = FlopTally(self.flops, self.flop_sample_batches)
        try:
            self._sampler.run_every()
            self._flops.enter_block()
        except BaseException:
            self._sampler.stop()
            if self._counter is not None:
                self._counter.close()
            raise
        self._active = True
        if self._uses_cuda():
            _ACTIVE_ON_CUDA[self._cuda_index] += 1
        self._cpu_start = _process_cpu_seconds()
        self._wall_start = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if not self._active:
            raise RuntimeError("ResourceMeter exited without being entered")
        try:
            self._flops.exit_block(exc_type, exc, tb)
            if self._uses_cuda():
                torch.cuda.synchronize(self._torch_device)
            wall_s = time.perf_counter() - self._wall_start
            cpu_s = _process_cpu_seconds() - self._cpu_start
        finally:
            self._active = False
            if self._uses_cuda():
                _ACTIVE_ON_CUDA[self._cuda_index] -= 1
            self._sampler.stop()
        try:
            components = self._stop_counter()
        finally:
            if self._counter is not None:
                self._counter.close()
        self._measurement = self._finish(wall_s, cpu_s, components)
        return False

    def __call__(self, func: _F) -> _F:
        """Use the meter as a decorator: every call of ``func`` is one metered block."""

        @functools.wraps(func)
        def metered(*args: Any, **kwargs: Any) -> Any:
            with self:
                return func(*args, **kwargs)

        metered.meter = self  # type: ignore[attr-defined]
        return metered  # type: ignore[return-value]

    # -- batches ---------------------------------------------------------------------
    @contextmanager
    def batch(self, n_samples: int) -> Iterator[None]:
        """Mark one batch of ``n_samples`` samples; counts its FLOPs when due.

        Run forward and backward inside the block so both are counted. Samples and FLOPs
        are recorded when the block finishes without an exception.
        """
        if not self._active:
            raise RuntimeError("meter.batch() must be used inside an entered ResourceMeter")
        _check_positive_int("n_samples", n_samples)
        with self._flops.batch(int(n_samples)):
            yield

    # -- results ---------------------------------------------------------------------
    def report(
        self,
        task: int | str | None = None,
        method: str = "",
        retained_bytes: Mapping[str, int] | None = None,
        extra: Mapping[str, float] | None = None,
    ) -> TaskReport:
        """The ``TaskReport`` of the last finished block, labelled with task and method.

        ``retained_bytes`` names the bytes the method keeps between tasks (e.g.
        ``{"replay": ..., "store": ...}``); ``extra`` holds free-form numbers (accuracy).
        """
        if self._active:
            raise RuntimeError("the metered block is still running; call report() after it")
        if self._measurement is None:
            raise RuntimeError("no finished measurement: call report() after a metered block")
        m = self._measurement
        return TaskReport(
            task=task,
            method=method,
            wall_s=m.wall_s,
            cpu_s=m.cpu_s,
            samples_seen=m.samples_seen,
            flops=m.flops,
            flops_method=m.flops_method,
            peak_rss_bytes=m.peak_rss_bytes,
            peak_accel_bytes=m.peak_accel_bytes,
            energy_j=m.energy_j,
            energy_method=m.energy_method,
            energy_measured=m.energy_method != "estimate",
            energy_constants=dict(m.energy_constants),
            energy_components=dict(m.energy_components),
            energy_note="; ".join(m.energy_notes),
            retained_bytes=dict(retained_bytes or {}),
            device=str(self._torch_device),
            extra=dict(extra or {}),
        )

    def part_meter(self) -> ResourceMeter:
        """An unentered meter for a part of this meter's running block (one epoch of it),
        reading energy from the source this meter found (its counter's backend, or the
        estimate when it found none) with the same device and constants, FLOPs not counted.
        The parts' joules then add up to what this meter reads over them."""
        if not self._active:
            raise RuntimeError(
                "part_meter() needs the meter entered: its energy source is known then"
            )
        energy = "estimate"
        if self._counter is not None:
            energy = _BACKEND_OF_METHOD.get(self._counter.method, self.energy)
        return ResourceMeter(
            energy=energy,
            flops="off",
            sample_interval=self.sample_interval,
            device=self.device,
            cpu_watts_per_core=self.cpu_watts_per_core,
            memory_watts_per_gb=self.memory_watts_per_gb,
            counter_opener=self.counter_opener,
        )

    @property
    def active(self) -> bool:
        """Whether a block is being measured now."""
        return self._active

    # -- internals -------------------------------------------------------------------
    def _uses_cuda(self) -> bool:
        return self._torch_device.type == "cuda" and torch.cuda.is_available()

    def _open_counter(self) -> tuple[EnergyCounter | None, list[str]]:
        """The first energy counter that can be read, and why the others could not."""
        return open_energy_counter(
            self.energy, self._torch_device, device_spec=self.device, opener=self.counter_opener
        )

    def _stop_counter(self) -> dict[str, float] | None:
        """Joules per domain from the counter, or ``None`` (with a note) if it failed."""
        return read_counter(self._counter, self._energy_notes)

    def _finish(
        self, wall_s: float, cpu_s: float, components: dict[str, float] | None
    ) -> _Measurement:
        peak_rss = self._sampler.peak_bytes
        os_peak_end = os_peak_rss_bytes()
        start = self._os_peak_start
        if os_peak_end is not None and start is not None and os_peak_end > start:
            peak_rss = max(peak_rss, os_peak_end)  # the lifetime peak was reached in the block
        peak_accel = None
        if self._uses_cuda():
            peak_accel = int(torch.cuda.max_memory_allocated(self._torch_device))
        flops, flops_method = self._flops.result()
        method, constants, components = energy_figures(
            self._counter.method if components is not None else None,
            components,
            {"cpu_s": cpu_s, "wall_s": wall_s, "peak_rss": peak_rss},
            on_gpu=self._torch_device.type == "cuda",
            watts=(self.cpu_watts_per_core, self.memory_watts_per_gb),
            notes=self._energy_notes,
        )
        return _Measurement(
            wall_s=wall_s,
            cpu_s=cpu_s,
            samples_seen=self._flops.samples,
            flops=flops,
            flops_method=flops_method,
            peak_rss_bytes=int(peak_rss),
            peak_accel_bytes=peak_accel,
            energy_j=sum(components.values()),
            energy_method=method,
            energy_constants=constants,
            energy_components=components,
            energy_notes=self._energy_notes,
        )


def _process_cpu_seconds() -> float:
    """CPU seconds of every thread of this process, plus those of children it has waited for.

    ``time.process_time`` reads the kernel's per-process CPU clock to the nanosecond; psutil's
    ``cpu_times`` reads /proc's counters in 10 ms ticks on Linux, 2-13% of an 8x8 digits epoch
    (0.08-0.41 CPU s in the digits records), an error each short block would carry."""
    children = os.times()
    return time.process_time() + children.children_user + children.children_system


def _check_positive_int(name: str, value: Any) -> None:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")


def _check_positive_number(name: str, value: Any, allow_zero: bool = False) -> None:
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not (value >= 0 if allow_zero else value > 0):
        bound = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name} must be {bound}, got {value}")
