"""Accounting: what a block of work cost in time, memory, FLOPs, energy and retained data.

``ResourceMeter`` measures a block of code and ``TaskReport`` holds the result, saying for
every figure how it was obtained (an energy estimate is never presented as a measurement).
"""

from siamcl.accounting.energy import (
    BYTES_PER_GB,
    CPU_WATTS_PER_CORE,
    MEMORY_WATTS_PER_GB,
    CounterUnavailable,
    EnergyCounter,
    estimate_energy_j,
)
from siamcl.accounting.meter import ResourceMeter
from siamcl.accounting.report import (
    TaskReport,
    compare_reports,
    read_csv,
    read_json,
    sum_reports,
    write_csv,
    write_json,
)
from siamcl.accounting.zeus_counters import open_zeus_counter

__all__ = [
    "BYTES_PER_GB",
    "CPU_WATTS_PER_CORE",
    "MEMORY_WATTS_PER_GB",
    "CounterUnavailable",
    "EnergyCounter",
    "ResourceMeter",
    "TaskReport",
    "compare_reports",
    "estimate_energy_j",
    "open_zeus_counter",
    "read_csv",
    "read_json",
    "sum_reports",
    "write_csv",
    "write_json",
]
