"""Energy sources: hardware counters (Linux RAPL, NVIDIA NVML) and a CPU/memory estimate.

Hardware counters are monotonic totals that wrap (RAPL) or restart (a GPU driver reload).
``EnergyCounter`` turns successive readings of such totals into joules spent between
``start`` and ``stop``; polling it more often than the counter can wrap keeps the total
right however long the measured block runs.  Where no counter can be read, energy is
estimated with the model of the Green Algorithms calculator (Lannelongue, Grealey and
Inouye, *Adv. Sci.* 2021): CPU-seconds times a per-core power plus a memory power per GB.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_RAPL_ROOT = Path("/sys/class/powercap")

#: Per-core power of an unknown CPU ("Any" in Green Algorithms' ``TDP_cpu.csv``), in watts.
CPU_WATTS_PER_CORE = 12.0
#: Power drawn per GB of memory (Green Algorithms' ``referenceValues.csv``), in W/GB.
MEMORY_WATTS_PER_GB = 0.3725
#: Bytes in the GB of ``MEMORY_WATTS_PER_GB`` (SI gigabyte).
BYTES_PER_GB = 1e9


class CounterUnavailable(RuntimeError):
    """Raised when an energy counter cannot be found or read; the message is the reason."""


@dataclass(frozen=True)
class CounterDomain:
    """One hardware energy total: how to read it, its unit, and where it wraps.

    ``max_range`` is the largest value before the counter wraps to zero; ``None`` means the
    range is unknown, so a reading below the previous one is taken as a counter reset.
    """

    name: str
    read: Callable[[], int]
    joules_per_unit: float
    max_range: int | None = None


class EnergyCounter:
    """Joules spent across a set of hardware counter domains between ``start`` and ``stop``.

    A reading below the previous one is a wrap-around when the domain has a known range
    (the distance to the top of the range is added), and a reset otherwise (the new
    reading, energy since the reset, is added; energy between the last poll and the reset
    is lost, and a note says so).
    """

    def __init__(
        self, method: str, domains: list[CounterDomain], on_close: Callable[[], None] | None = None
    ) -> None:
        if not domains:
            raise CounterUnavailable(f"no {method} energy domains to read")
        self.method = method
        self.domains = list(domains)
        self._on_close = on_close
        self._last: list[int] = []
        self._units: list[int] = []
        self._wraps: list[int] = []
        self._resets: list[int] = []

    def start(self) -> None:
        """Take the first reading of every domain; raises ``CounterUnavailable`` if any fails."""
        self._last = [_read_domain(domain) for domain in self.domains]
        self._units = [0] * len(self.domains)
        self._wraps = [0] * len(self.domains)
        self._resets = [0] * len(self.domains)

    def poll(self) -> None:
        """Read every domain and add what was spent since the previous reading."""
        if not self._last:
            raise RuntimeError("EnergyCounter.poll() called before start()")
        for index, domain in enumerate(self.domains):
            current = _read_domain(domain)
            previous = self._last[index]
            if current >= previous:
                spent = current - previous
            elif domain.max_range is not None and previous <= domain.max_range:
                spent = domain.max_range - previous + current
                self._wraps[index] += 1
            else:
                spent = current
                self._resets[index] += 1
            self._units[index] += spent
            self._last[index] = current

    def stop(self) -> dict[str, float]:
        """Take a last reading and return joules spent per domain since ``start``."""
        self.poll()
        return {
            domain.name: units * domain.joules_per_unit
            for domain, units in zip(self.domains, self._units)
        }

    def notes(self) -> list[str]:
        """Wrap-arounds and resets seen so far, in words."""
        notes = []
        for domain, wraps, resets in zip(self.domains, self._wraps, self._resets):
            if wraps:
                notes.append(f"{self.method} counter {domain.name} wrapped {wraps} time(s)")
            if resets:
                notes.append(
                    f"{self.method} counter {domain.name} went backwards {resets} time(s) "
                    "(counter reset); energy between the last poll and each reset is missing"
                )
        return notes

    def close(self) -> None:
        """Release what opening the counter acquired (the NVML library)."""
        if self._on_close is not None:
            on_close, self._on_close = self._on_close, None
            on_close()


def _read_domain(domain: CounterDomain) -> int:
    try:
        return int(domain.read())
    except CounterUnavailable:
        raise
    except Exception as exc:  # an OS error, a malformed file, an NVML error
        raise CounterUnavailable(f"cannot read {domain.name}: {exc}") from exc


def open_rapl_counter(root: str | Path = DEFAULT_RAPL_ROOT) -> EnergyCounter:
    """An ``EnergyCounter`` over every RAPL package and DRAM zone under a powercap root.

    Zones are the ``intel-rapl:*`` folders of ``root`` whose ``name`` is ``package-N`` or
    ``dram`` (core, uncore and psys zones overlap the package and are left out). Their
    ``energy_uj`` files are whole-socket totals in microjoules, wrapping at
    ``max_energy_range_uj``. Raises ``CounterUnavailable`` with the reason when there is
    no such zone or one cannot be read (``energy_uj`` is readable by root only since
    Linux 5.10).
    """
    root = Path(root)
    if not root.is_dir():
        raise CounterUnavailable(f"no powercap folder at {root}")
    domains = []
    seen: set[Path] = set()
    for zone in sorted(root.glob("intel-rapl:*")):
        resolved = zone.resolve()
        if resolved in seen or not zone.is_dir():
            continue
        seen.add(resolved)
        try:
            name = (zone / "name").read_text().strip()
        except OSError as exc:
            raise CounterUnavailable(f"cannot read {zone / 'name'}: {exc}") from exc
        if not (name.startswith("package") or name == "dram"):
            continue
        domains.append(
            CounterDomain(
                name=f"{zone.name}/{name}",
                read=_file_reader(zone / "energy_uj"),
                joules_per_unit=1e-6,
                max_range=_read_optional_int(zone / "max_energy_range_uj"),
            )
        )
    if not domains:
        raise CounterUnavailable(f"no RAPL package or dram zones under {root}")
    counter = EnergyCounter("rapl", domains)
    for domain in domains:  # fail now, with the file named, rather than at the first poll
        _read_domain(domain)
    return counter


def _file_reader(path: Path) -> Callable[[], int]:
    def read() -> int:
        try:
            text = path.read_text()
        except PermissionError as exc:
            raise CounterUnavailable(
                f"permission denied reading {path} (RAPL energy is root-only since Linux 5.10)"
            ) from exc
        except OSError as exc:
            raise CounterUnavailable(f"cannot read {path}: {exc.strerror or exc}") from exc
        try:
            return int(text.strip())
        except ValueError as exc:
            raise CounterUnavailable(f"{path} does not hold an integer: {text!r}") from exc

    return read


def _read_optional_int(path: Path) -> int | None:
    try:
        value = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return value if value > 0 else None


def open_nvml_counter(device_index: int = 0, handle: Any = None, nvml: Any = None) -> EnergyCounter:
    """An ``EnergyCounter`` over one GPU's total energy (millijoules since driver load).

    ``nvml`` is the ``pynvml`` module from nvidia-ml-py, imported when not given; ``handle``
    is an NVML device handle, looked up by ``device_index`` when not given (NVML numbers
    GPUs in PCI order, which ``CUDA_VISIBLE_DEVICES`` can change: pass the handle to be
    sure). Raises ``CounterUnavailable`` when the library, the GPU or the counter (GPUs
    older than Volta) is missing.
    """
    initialised = False
    if nvml is None:
        try:
            import pynvml as nvml
        except ImportError as exc:
            raise CounterUnavailable("pynvml (package nvidia-ml-py) is not installed") from exc
    if handle is None:
        try:
            nvml.nvmlInit()
            initialised = True
            handle = nvml.nvmlDeviceGetHandleByIndex(device_index)
        except Exception as exc:
            if initialised:
                nvml.nvmlShutdown()
            raise CounterUnavailable(f"NVML has no GPU {device_index}: {exc}") from exc

    def read() -> int:
        return nvml.nvmlDeviceGetTotalEnergyConsumption(handle)

    domain = CounterDomain(name=f"gpu{device_index}", read=read, joules_per_unit=1e-3)
    counter = EnergyCounter("nvml", [domain], on_close=nvml.nvmlShutdown if initialised else None)
    try:
        _read_domain(domain)
    except CounterUnavailable:
        counter.close()
        raise
    return counter


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
