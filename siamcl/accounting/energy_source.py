"""Where :class:`~siamcl.accounting.ResourceMeter` gets its energy figure.

A hardware counter read through Zeus (a GPU for a CUDA device, RAPL for the CPU sockets, an
SoC) when one can be read, otherwise the documented estimate from CPU time and memory;
every fallback and caveat is kept as a note for the report.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from siamcl.accounting.energy import (
    BYTES_PER_GB,
    CPU_WATTS_PER_CORE,
    MEMORY_WATTS_PER_GB,
    CounterUnavailable,
    EnergyCounter,
    estimate_energy_j,
)
from siamcl.accounting.zeus_counters import open_zeus_counter

__all__ = [
    "ENERGY_BACKENDS",
    "CounterOpener",
    "energy_figures",
    "open_energy_counter",
    "read_counter",
]

#: "nvml" is the GPU backend's older name (it reads AMD GPUs too, as "amdsmi").
ENERGY_BACKENDS = ("auto", "gpu", "nvml", "rapl", "soc", "estimate")
#: Opens an unstarted counter for a backend ("gpu", "rapl", "soc") and a GPU index, or
#: raises ``CounterUnavailable``; :func:`open_zeus_counter` unless a caller passes its own.
CounterOpener = Callable[[str, int], EnergyCounter]
#: Labels of counters that read a GPU board only.
GPU_METHODS = ("nvml", "amdsmi")


def open_energy_counter(
    energy: str,
    device: torch.device,
    device_spec: Any = None,
    opener: CounterOpener | None = None,
) -> tuple[EnergyCounter | None, list[str]]:
    """The first energy counter that can be read (started), and why the others could not.

    ``energy`` is one of :data:`ENERGY_BACKENDS`: "auto" tries the GPU on a CUDA ``device``,
    then RAPL, then an SoC; "estimate" opens nothing. ``device_spec`` is the device as the
    caller named it, for messages; ``opener`` opens counters (Zeus when ``None``).
    """
    if energy == "estimate":
        return None, ["estimate requested"]
    opener = open_zeus_counter if opener is None else opener
    notes = []
    for backend in _candidates(energy, device):
        counter = None
        try:
            if backend == "gpu" and device.type != "cuda":
                raise CounterUnavailable(
                    f"a GPU counter needs a cuda device, the meter's is {device_spec!r}"
                )
            counter = opener(backend, _gpu_index(device))
            counter.start()
            return counter, notes
        except CounterUnavailable as exc:
            if counter is not None:
                counter.close()
            notes.append(f"{backend} unavailable: {exc}")
    return None, notes


def _candidates(energy: str, device: torch.device) -> list[str]:
    if energy == "auto":
        return (["gpu"] if device.type == "cuda" else []) + ["rapl", "soc"]
    return ["gpu" if energy == "nvml" else energy]


def _gpu_index(device: torch.device) -> int:
    if device.type != "cuda":
        return 0
    if device.index is not None:
        return device.index
    return torch.cuda.current_device() if torch.cuda.is_available() else 0


def read_counter(counter: EnergyCounter | None, notes: list[str]) -> dict[str, float] | None:
    """Joules per domain from ``counter``, stopped here, or ``None`` (with a note in
    ``notes``) when there is none or its readings over the block cannot be trusted."""
    if counter is None:
        return None
    try:
        components = counter.stop()
    except CounterUnavailable as failure:
        notes.append(f"{counter.method} counter failed during the block: {failure}")
        return None
    notes.extend(counter.notes())
    return components


def energy_figures(
    counter_method: str | None,
    components: dict[str, float] | None,
    usage: dict[str, float],
    on_gpu: bool,
    watts: tuple[float | None, float | None],
    notes: list[str],
) -> tuple[str, dict[str, float], dict[str, float]]:
    """The energy method, the estimate's constants and joules per component.

    ``components`` are the counter's (``counter_method``) when it was read; otherwise the
    estimate from ``usage`` (``cpu_s``, ``wall_s``, ``peak_rss``) with ``watts`` (per CPU
    core, per GB of memory; ``None`` for the defaults). Caveats are appended to ``notes``.
    """
    if components is not None:
        if counter_method == "rapl":
            notes.append("RAPL counters cover whole sockets: other processes' energy is included")
        if counter_method in GPU_METHODS:
            notes.append("GPU energy only: CPU and host memory not included")
        elif on_gpu and counter_method != "soc":
            notes.append("GPU energy not included")
        return str(counter_method), {}, components
    constants = {
        "cpu_watts_per_core": _default(watts[0], CPU_WATTS_PER_CORE),
        "memory_watts_per_gb": _default(watts[1], MEMORY_WATTS_PER_GB),
        "bytes_per_gb": BYTES_PER_GB,
    }
    components = estimate_energy_j(
        usage["cpu_s"],
        usage["wall_s"],
        usage["peak_rss"],
        cpu_watts_per_core=constants["cpu_watts_per_core"],
        memory_watts_per_gb=constants["memory_watts_per_gb"],
    )
    notes.append(
        "estimated: cpu_s x cpu_watts_per_core + memory_watts_per_gb x "
        "peak_rss_bytes / bytes_per_gb x wall_s" + ("; GPU energy not included" if on_gpu else "")
    )
    return "estimate", constants, components


def _default(value: float | None, default: float) -> float:
    return default if value is None else float(value)
