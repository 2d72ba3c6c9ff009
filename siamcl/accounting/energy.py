"""Energy sources: hardware counters read through Zeus, and a CPU/memory estimate.

Counters are read by `Zeus <https://ml.energy/zeus>`_ (the ``zeus`` package, extra
``siamcl[energy]``): NVIDIA GPUs through NVML, AMD GPUs through AMD SMI, CPU sockets and
DRAM through Linux RAPL (directly, or through the ``zeusd`` daemon without root), and
Apple silicon and NVIDIA Jetson chips. Zeus follows RAPL wrap-arounds with its own polling
process and integrates power samples on GPUs that have no energy counter.
:class:`EnergyCounter` turns one Zeus measurement window into joules per component.

What is left here is what Zeus does not do: choosing the devices of one backend (RAPL
package zones only: a ``psys`` zone overlaps them; the meter's GPU only), saying in words
why a counter cannot be read, refusing a window in which a counter went backwards (Zeus
returns a negative figure after an NVML driver reload), and, where no counter can be read
or Zeus is not installed, estimating energy with the model of the Green Algorithms
calculator (Lannelongue, Grealey and Inouye, *Adv. Sci.* 2021): CPU-seconds times a
per-core power plus a memory power per GB.
"""

from __future__ import annotations

import contextlib
import itertools
import warnings
from collections.abc import Sequence
from typing import Any

#: Per-core power of an unknown CPU ("Any" in Green Algorithms' ``TDP_cpu.csv``), in watts.
CPU_WATTS_PER_CORE = 12.0
#: Power drawn per GB of memory (Green Algorithms' ``referenceValues.csv``), in W/GB.
MEMORY_WATTS_PER_GB = 0.3725
#: Bytes in the GB of ``MEMORY_WATTS_PER_GB`` (SI gigabyte).
BYTES_PER_GB = 1e9

#: What a Zeus window holds, by the name :class:`EnergyCounter` counts it under.
MEASUREMENT_PARTS = ("gpu", "cpu", "dram", "soc")
#: Fields of a Zeus SoC measurement (mJ) that add up without overlap; the first group with
#: a value is used (Jetson's total; Apple silicon's CPU, GPU, neural engine and DRAM;
#: Jetson's CPU and GPU rails when it has no total).
SOC_FIELD_GROUPS = (
    ("total_energy_mj",),
    ("cpu_total_mj", "gpu_mj", "gpu_sram_mj", "ane_mj", "dram_mj"),
    ("cpu_energy_mj", "gpu_energy_mj"),
)
_WINDOWS = itertools.count()


class CounterUnavailable(RuntimeError):
    """Raised when an energy counter cannot be found or read; the message is the reason."""


class EnergyCounter:
    """Joules spent between ``start`` and ``stop``, read as one Zeus measurement window.

    ``monitor`` is a ``zeus.monitor.ZeusMonitor`` or any object with its ``begin_window``
    and ``end_window`` (returning an object with ``gpu_energy``, ``cpu_energy``,
    ``dram_energy`` and ``soc_energy``); ``parts`` names which of these are counted (see
    :data:`MEASUREMENT_PARTS`); ``method`` labels the figure (``"rapl"``, ``"nvml"``...).
    """

    def __init__(
        self, method: str, monitor: Any, parts: Sequence[str], notes: Sequence[str] = ()
    ) -> None:
        unknown = sorted(set(parts) - set(MEASUREMENT_PARTS))
        if not parts or unknown:
            raise ValueError(f"parts must be some of {MEASUREMENT_PARTS}, got {list(parts)}")
        self.method = method
        self.monitor = monitor
        self.domains = list(parts)
        self._notes = list(notes)
        self._key = f"siamcl-energy-{next(_WINDOWS)}"
        self._open = False

    def start(self) -> None:
        """Begin the window; raises ``CounterUnavailable`` if the counters cannot be read."""
        if self._open:  # a second begin would replace the first window under the same key
            raise RuntimeError(
                "this counter's window is already open: a counter opener must return a new "
                "EnergyCounter on every call"
            )
        try:
            self.monitor.begin_window(self._key, sync_execution=False)
        except Exception as exc:  # an OS error, an NVML error, a Zeus error
            raise CounterUnavailable(f"cannot begin a Zeus window: {exc}") from exc
        self._open = True

    def stop(self) -> dict[str, float]:
        """End the window and return joules per component (``gpu0``, ``cpu0``, ``dram0``,
        ``soc/cpu_total``...); raises ``CounterUnavailable`` when they cannot be trusted."""
        if not self._open:
            raise RuntimeError("EnergyCounter.stop() called before start()")
        self._open = False
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                measurement = self.monitor.end_window(self._key, sync_execution=False)
            except Exception as exc:
                raise CounterUnavailable(f"cannot end the Zeus window: {exc}") from exc
        self._notes.extend(f"zeus: {str(w.message).split('. ')[0]}" for w in caught)
        joules = measurement_joules(measurement, self.domains)
        if not joules:
            raise CounterUnavailable(f"the Zeus window holds no {'/'.join(self.domains)} energy")
        backwards = sorted(name for name, value in joules.items() if value < 0)
        if backwards:
            raise CounterUnavailable(
                f"{', '.join(backwards)} went backwards during the block (a counter reset, "
                "such as a GPU driver reload): the block's energy is unknown"
            )
        return joules

    def notes(self) -> list[str]:
        """Caveats seen so far (power-sampled GPUs, Zeus's warnings), in words."""
        return list(self._notes)

    def close(self) -> None:
        """Cancel the window if it is still open (a block that raised before ``stop``)."""
        if self._open:
            self._open = False
            with contextlib.suppress(Exception):
                self.monitor.end_window(self._key, sync_execution=False, cancel=True)


def measurement_joules(measurement: Any, parts: Sequence[str]) -> dict[str, float]:
    """Joules per component of a Zeus ``Measurement``, for the ``parts`` asked for.

    Zeus gives GPU, CPU and DRAM energy in joules per device index, and an SoC's in
    millijoules per field (see :data:`SOC_FIELD_GROUPS`).
    """
    joules: dict[str, float] = {}
    for part in ("gpu", "cpu", "dram"):
        if part in parts:
            per_device = getattr(measurement, f"{part}_energy", None) or {}
            joules.update({f"{part}{index}": float(j) for index, j in per_device.items()})
    soc = getattr(measurement, "soc_energy", None)
    if "soc" in parts and soc is not None:
        for group in SOC_FIELD_GROUPS:
            values = {name: getattr(soc, name, None) for name in group}
            if any(value is not None for value in values.values()):
                joules.update(
                    {f"soc/{name[:-3]}": v / 1000.0 for name, v in values.items() if v is not None}
                )
                break
    return joules


def estimate_energy_j(
    cpu_s: float,
    wall_s: float,
    peak_rss_bytes: int,
    cpu_watts_per_core: float = CPU_WATTS_PER_CORE,
    memory_watts_per_gb: float = MEMORY_WATTS_PER_GB,
) -> dict[str, float]:
    """Estimated joules per component: ``{"cpu": ..., "memory": ...}``.

    cpu = CPU-seconds x watts per core (a fully busy core draws its share of the TDP);
    memory = watts per GB x resident GB (peak) x wall seconds. The total is their sum.
    """
    return {
        "cpu": cpu_s * cpu_watts_per_core,
        "memory": memory_watts_per_gb * (peak_rss_bytes / BYTES_PER_GB) * wall_s,
    }
