"""Open an :class:`~siamcl.accounting.energy.EnergyCounter` on the devices Zeus can read.

One function per backend finds the devices through ``zeus.device`` (whose errors say why a
counter cannot be read: no NVML or AMD SMI, no RAPL folder, RAPL readable by root only, no
SoC) and builds a ``zeus.monitor.ZeusMonitor`` over exactly those devices.
"""

from __future__ import annotations

import functools
import importlib
from types import ModuleType
from typing import Any

from siamcl._extras import MissingExtra, needs_extra
from siamcl.accounting.energy import CounterUnavailable, EnergyCounter

__all__ = ["ZEUS_BACKENDS", "open_zeus_counter"]

#: Backends Zeus reads: a GPU (NVML on NVIDIA, AMD SMI on AMD), CPU sockets and DRAM
#: (RAPL), or a system on a chip (Apple silicon, NVIDIA Jetson).
ZEUS_BACKENDS = ("gpu", "rapl", "soc")

_Target = tuple[str, dict[str, list[int]], tuple[str, ...], list[str]]


def open_zeus_counter(backend: str, gpu_index: int = 0) -> EnergyCounter:
    """An unstarted counter for ``backend`` (one of :data:`ZEUS_BACKENDS`).

    ``gpu_index`` is the CUDA index of the GPU to read (Zeus, like torch, counts GPUs after
    ``CUDA_VISIBLE_DEVICES``). Raises ``CounterUnavailable`` with the reason when Zeus is not
    installed or cannot read the backend's devices here.
    """
    if backend not in ZEUS_BACKENDS:
        raise ValueError(f"backend must be one of {ZEUS_BACKENDS}, got {backend!r}")
    device, monitor_module = _import_zeus()
    find = {"gpu": _gpu_target, "rapl": _rapl_target, "soc": _soc_target}[backend]
    method, indices, parts, notes = find(device, gpu_index)
    try:
        monitor = _monitor(
            monitor_module.ZeusMonitor, tuple(indices["gpu_indices"]), tuple(indices["cpu_indices"])
        )
    except Exception as exc:  # ZeusMonitor raises plain RuntimeErrors as well as Zeus errors
        raise CounterUnavailable(f"Zeus cannot monitor {backend}: {exc}") from exc
    return EnergyCounter(method, monitor, parts, notes)


@functools.cache
def _monitor(
    monitor_class: type, gpu_indices: tuple[int, ...], cpu_indices: tuple[int, ...]
) -> Any:
    """One ZeusMonitor per set of devices, shared by every meter: its windows have their own
    keys, and a monitor of an older GPU runs a power-polling process (a failure is not
    cached)."""
    return monitor_class(gpu_indices=list(gpu_indices), cpu_indices=list(cpu_indices))


def _import_zeus() -> tuple[ModuleType, ModuleType]:
    try:
        with needs_extra("reading energy counters"):
            device = importlib.import_module("zeus.device")
            monitor = importlib.import_module("zeus.monitor")
    except MissingExtra as exc:
        raise CounterUnavailable(str(exc)) from exc
    except ImportError as exc:  # zeus is there but one of its own imports fails
        raise CounterUnavailable(f"zeus cannot be imported: {exc}") from exc
    return device, monitor


def _gpu_target(device: ModuleType, gpu_index: int) -> _Target:
    try:
        gpus = device.get_gpus()
    except Exception as exc:
        raise CounterUnavailable(f"Zeus finds no GPU: {exc}") from exc
    if not 0 <= gpu_index < len(gpus):
        raise CounterUnavailable(f"Zeus sees {len(gpus)} GPU(s), none with index {gpu_index}")
    method = "amdsmi" if type(gpus).__name__.startswith("AMD") else "nvml"
    notes = []
    if not gpus.supports_get_total_energy_consumption(gpu_index):
        notes.append(f"GPU {gpu_index} has no energy counter: Zeus integrates its power samples")
    return method, {"gpu_indices": [gpu_index], "cpu_indices": []}, ("gpu",), notes


def _rapl_target(device: ModuleType, gpu_index: int) -> _Target:
    try:
        cpus = device.get_cpus()
    except Exception as exc:
        raise CounterUnavailable(
            f"Zeus cannot read RAPL (/sys/class/powercap/intel-rapl): {exc}"
        ) from exc
    packages = [index for index, cpu in enumerate(cpus.cpus) if _is_package(cpu)]
    if not packages:
        raise CounterUnavailable("RAPL has no package zone")
    notes = [] if len(packages) == len(cpus.cpus) else ["RAPL zones other than packages left out"]
    return "rapl", {"gpu_indices": [], "cpu_indices": packages}, ("cpu", "dram"), notes


def _is_package(cpu: Any) -> bool:
    """Whether a Zeus RAPL zone is a CPU package; a ``psys`` zone covers the packages and
    more. Zones read through zeusd carry no name and are packages."""
    name = getattr(getattr(cpu, "rapl_file", None), "name", "package")
    return str(name).startswith("package")


def _soc_target(device: ModuleType, gpu_index: int) -> _Target:
    try:
        soc = device.get_soc()
    except Exception as exc:
        raise CounterUnavailable(f"Zeus finds no SoC: {exc}") from exc
    notes = [f"{type(soc).__name__} read whole: every process on the chip is included"]
    return "soc", {"gpu_indices": [], "cpu_indices": []}, ("soc",), notes
