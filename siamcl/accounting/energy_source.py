"""Where :class:`~siamcl.accounting.ResourceMeter` gets its energy figure.

A hardware counter (NVML for a CUDA device, RAPL for the CPU sockets) when one can be read,
otherwise the documented estimate from CPU time and memory; every fallback and caveat is
kept as a note for the report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from siamcl.accounting.energy import (
    BYTES_PER_GB,
    CPU_WATTS_PER_CORE,
    MEMORY_WATTS_PER_GB,
    CounterUnavailable,
    EnergyCounter,
    estimate_energy_j,
    open_nvml_counter,
    open_rapl_counter,
)

__all__ = ["ENERGY_BACKENDS", "energy_figures", "open_energy_counter", "read_counter"]

ENERGY_BACKENDS = ("auto", "rapl", "nvml", "estimate")


def open_energy_counter(
    energy: str,
    device: torch.device,
    rapl_root: str | Path,
    nvml: tuple[Any, Any] = (None, None),
    device_spec: Any = None,
) -> tuple[EnergyCounter | None, list[str]]:
    """The first energy counter that can be read (started), and why the others could not.

    ``energy`` is one of :data:`ENERGY_BACKENDS`: "auto" tries NVML on a CUDA ``device``,
    then RAPL; "estimate" opens nothing. ``nvml`` is an NVML handle and module (``None``:
    looked up); ``device_spec`` is the device as the caller named it, for messages.
    """
    if energy == "estimate":
        return None, ["estimate requested"]
    wants_nvml = energy == "nvml" or (energy == "auto" and device.type == "cuda")
    candidates = (["nvml"] if wants_nvml else []) + (["rapl"] if energy in ("auto", "rapl") else [])
    notes = []
    for backend in candidates:
        counter = None
        try:
            counter = _open_backend(backend, device, rapl_root, nvml, device_spec)
            counter.start()
            return counter, notes
        except CounterUnavailable as exc:
            if counter is not None:
                counter.close()
            notes.append(f"{backend} unavailable: {exc}")
    return None, notes


def _open_backend(
    backend: str,
    device: torch.device,
    rapl_root: str | Path,
    nvml: tuple[Any, Any],
    device_spec: Any,
) -> EnergyCounter:
    if backend == "rapl":
        return open_rapl_counter(rapl_root)
    if device.type != "cuda":
        raise CounterUnavailable(f"NVML needs a cuda device, the meter's is {device_spec!r}")
    index = device.index
    if index is None:
        index = torch.cuda.current_device() if torch.cuda.is_available() else 0
    return open_nvml_counter(index, handle=nvml[0], nvml=nvml[1])


def read_counter(
    counter: EnergyCounter | None, failure: BaseException | None, notes: list[str]
) -> dict[str, float] | None:
    """Joules per domain from a stopped ``counter``, or ``None`` (with a note in ``notes``)
    when there is none or it failed, during the block (``failure``) or now."""
    if counter is None:
        return None
    if failure is None:
        try:
            components = counter.stop()
        except CounterUnavailable as exc:
            failure = exc
    if failure is not None:
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
        if counter_method == "nvml":
            notes.append("GPU energy only: CPU and host memory not included")
        elif on_gpu:
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
