"""Energy counters read through Zeus, and the labelled estimate where none can be read.

No test needs a real counter: ``FakeMonitor`` stands in for ``zeus.monitor.ZeusMonitor``
(begin_window / end_window over totals the test moves by hand), and the device lookup is
tested on fake Zeus device managers.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import warnings
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from siamcl.accounting import (
    CounterUnavailable,
    EnergyCounter,
    ResourceMeter,
    open_zeus_counter,
)
from siamcl.accounting.energy import measurement_joules

HAS_ZEUS = importlib.util.find_spec("zeus") is not None


class FakeMonitor:
    """Stands in for ZeusMonitor: energy totals in joules per device that tests move."""

    def __init__(
        self,
        gpu: dict[int, float] | None = None,
        cpu: dict[int, float] | None = None,
        dram: dict[int, float] | None = None,
    ) -> None:
        self.totals = {"gpu": dict(gpu or {}), "cpu": dict(cpu or {}), "dram": dict(dram or {})}
        self.windows: dict[str, dict[str, dict[int, float]]] = {}
        self.cancelled: list[str] = []
        self.fail_at_end: Exception | None = None
        self.warn_at_end = ""

    def begin_window(self, key: str, sync_execution: bool = True) -> None:
        assert sync_execution is False  # the meter synchronises CUDA itself
        self.windows[key] = {part: dict(totals) for part, totals in self.totals.items()}

    def end_window(self, key: str, sync_execution: bool = True, cancel: bool = False) -> Any:
        start = self.windows.pop(key)
        if cancel:
            self.cancelled.append(key)
            return None
        if self.fail_at_end is not None:
            raise self.fail_at_end
        if self.warn_at_end:
            warnings.warn(self.warn_at_end, stacklevel=1)
        spent = {
            part: {i: total - start[part][i] for i, total in totals.items()} or None
            for part, totals in self.totals.items()
        }
        return SimpleNamespace(
            gpu_energy=spent["gpu"] or {},
            cpu_energy=spent["cpu"],
            dram_energy=spent["dram"],
            soc_energy=None,
        )


def opener_for(**counters: EnergyCounter | str) -> Any:
    """An opener giving the named backends' counters; a string is the reason a backend fails."""
    calls: list[tuple[str, int]] = []

    def opener(backend: str, gpu_index: int) -> EnergyCounter:
        calls.append((backend, gpu_index))
        counter = counters.get(backend, f"no {backend} here")
        if isinstance(counter, str):
            raise CounterUnavailable(counter)
        return counter

    opener.calls = calls  # type: ignore[attr-defined]
    return opener


# -- the meter over a counter -------------------------------------------------------------


def test_rapl_counter_is_measured_with_package_and_dram() -> None:
    monitor = FakeMonitor(cpu={0: 100.0}, dram={0: 10.0})
    counter = EnergyCounter("rapl", monitor, ["cpu", "dram"])
    meter = ResourceMeter(energy="rapl", flops="off", counter_opener=opener_for(rapl=counter))
    with meter:
        monitor.totals["cpu"][0] += 3.0
        monitor.totals["dram"][0] += 0.5
    report = meter.report()
    assert report.energy_method == "rapl" and report.energy_measured is True
    assert report.energy_components == pytest.approx({"cpu0": 3.0, "dram0": 0.5})
    assert report.energy_j == pytest.approx(3.5)
    assert report.energy_constants == {}
    assert "whole sockets" in report.energy_note
    assert not monitor.windows


@pytest.mark.skipif(
    torch.cuda.is_available() and torch.cuda.device_count() < 2, reason="cuda:1 must exist"
)
def test_gpu_counter_reads_the_meters_gpu_only() -> None:
    monitor = FakeMonitor(gpu={1: 5_000.0}, cpu={0: 1.0})
    opener = opener_for(gpu=EnergyCounter("nvml", monitor, ["gpu"]))
    meter = ResourceMeter(energy="nvml", flops="off", device="cuda:1", counter_opener=opener)
    with meter:
        monitor.totals["gpu"][1] += 12.5
        monitor.totals["cpu"][0] += 99.0  # in the window, but not a part this counter counts
    report = meter.report()
    assert opener.calls == [("gpu", 1)]
    assert report.energy_method == "nvml" and report.energy_measured is True
    assert report.energy_components == {"gpu1": pytest.approx(12.5)}
    assert "GPU energy only" in report.energy_note


def test_auto_on_cuda_tries_the_gpu_then_rapl() -> None:
    monitor = FakeMonitor(cpu={0: 0.0})
    opener = opener_for(
        gpu="NVML and AMDSMI unavailable", rapl=EnergyCounter("rapl", monitor, ["cpu"])
    )
    meter = ResourceMeter(flops="off", device="cuda", counter_opener=opener)
    with meter:
        monitor.totals["cpu"][0] += 2.0
    report = meter.report()
    assert [backend for backend, _ in opener.calls] == ["gpu", "rapl"]
    assert report.energy_method == "rapl" and report.energy_j == pytest.approx(2.0)
    assert report.energy_note.startswith("gpu unavailable: NVML and AMDSMI unavailable")
    assert "GPU energy not included" in report.energy_note


def test_auto_on_cpu_tries_rapl_then_an_soc() -> None:
    opener = opener_for()
    meter = ResourceMeter(flops="off", counter_opener=opener)
    with meter:
        pass
    assert [backend for backend, _ in opener.calls] == ["rapl", "soc"]
    assert meter.report().energy_method == "estimate"


@pytest.mark.parametrize("energy", ["rapl", "gpu", "soc"])
def test_unreadable_counter_falls_back_to_the_labelled_estimate(energy: str) -> None:
    opener = opener_for(**{energy: "permission denied"})
    meter = ResourceMeter(energy=energy, flops="off", device="cuda", counter_opener=opener)
    with meter:
        sum(i * i for i in range(100_000))
    report = meter.report()
    assert report.energy_method == "estimate" and report.energy_measured is False
    assert report.energy_note.startswith(f"{energy} unavailable: permission denied")
    assert "estimated: cpu_s x cpu_watts_per_core" in report.energy_note
    assert set(report.energy_components) == {"cpu", "memory"} and report.energy_j > 0
    assert report.energy_constants["cpu_watts_per_core"] == 12.0


def test_gpu_counter_needs_a_cuda_device() -> None:
    opener = opener_for(gpu=EnergyCounter("nvml", FakeMonitor(gpu={0: 0.0}), ["gpu"]))
    meter = ResourceMeter(energy="gpu", flops="off", counter_opener=opener)
    with meter:
        pass
    assert opener.calls == []
    assert "a GPU counter needs a cuda device, the meter's is 'cpu'" in meter.report().energy_note
    assert meter.report().energy_method == "estimate"


def test_counter_going_backwards_falls_back() -> None:
    monitor = FakeMonitor(gpu={0: 5_000.0})
    opener = opener_for(gpu=EnergyCounter("nvml", monitor, ["gpu"]))
    meter = ResourceMeter(energy="gpu", flops="off", device="cuda", counter_opener=opener)
    with meter:
        monitor.totals["gpu"][0] = 3.0  # driver reloaded: the total restarted
    report = meter.report()
    assert report.energy_method == "estimate"
    assert "nvml counter failed during the block: gpu0 went backwards" in report.energy_note


def test_counter_failing_at_the_end_falls_back() -> None:
    monitor = FakeMonitor(cpu={0: 0.0})
    monitor.fail_at_end = FileNotFoundError("energy_uj vanished")
    meter = ResourceMeter(
        energy="rapl",
        flops="off",
        counter_opener=opener_for(rapl=EnergyCounter("rapl", monitor, ["cpu"])),
    )
    with meter:
        pass
    note = meter.report().energy_note
    assert "rapl counter failed during the block: cannot end the Zeus window" in note
    assert "energy_uj vanished" in note and meter.report().energy_method == "estimate"


def test_counter_failing_at_the_start_falls_back() -> None:
    class NoStart(FakeMonitor):
        def begin_window(self, key: str, sync_execution: bool = True) -> None:
            raise PermissionError("root only")

    counter = EnergyCounter("rapl", NoStart(cpu={0: 0.0}), ["cpu"])
    meter = ResourceMeter(energy="rapl", flops="off", counter_opener=opener_for(rapl=counter))
    with meter:
        pass
    assert "rapl unavailable: cannot begin a Zeus window: root only" in meter.report().energy_note


def test_an_exception_in_the_block_cancels_the_window() -> None:
    monitor = FakeMonitor(cpu={0: 0.0})
    counter = EnergyCounter("rapl", monitor, ["cpu"])
    meter = ResourceMeter(energy="rapl", flops="off", counter_opener=opener_for(rapl=counter))
    with pytest.raises(KeyError), meter:
        raise KeyError("boom")
    assert not monitor.windows
    counter.close()  # closing twice does nothing
    assert len(monitor.cancelled) == 0  # the meter stopped the window before closing it


def test_close_before_stop_cancels_the_window() -> None:
    monitor = FakeMonitor(cpu={0: 0.0})
    counter = EnergyCounter("rapl", monitor, ["cpu"])
    counter.start()
    counter.close()
    assert len(monitor.cancelled) == 1 and not monitor.windows
    with pytest.raises(RuntimeError, match="before start"):
        counter.stop()


# -- parts of a block: the training loop's epochs ------------------------------------------


def fresh_counters(method: str, monitor: FakeMonitor, parts: list[str]) -> Any:
    """An opener giving a new counter (a window of its own) over ``monitor`` on every call,
    as Zeus's opener does."""
    calls: list[tuple[str, int]] = []

    def opener(backend: str, gpu_index: int) -> EnergyCounter:
        calls.append((backend, gpu_index))
        return EnergyCounter(method, monitor, parts)

    opener.calls = calls  # type: ignore[attr-defined]
    return opener


def test_an_energy_budget_stops_on_the_counters_joules_validation_left_out() -> None:
    from siamcl.losses import CrossEntropyTerm, Objective
    from siamcl.training import EnergyBudget, ShuffledBatches, TrainingLoop

    monitor = FakeMonitor(cpu={0: 0.0}, dram={0: 0.0})

    class Burn:  # 100 J in each epoch, as a counter would see them
        def on_epoch_start(self, model: Any, epoch: int, epochs: int) -> None:
            monitor.totals["cpu"][0] += 100.0

    def validate(model: Any) -> float:
        monitor.totals["cpu"][0] += 1000.0  # between the epochs: not training
        return 0.5

    opener = fresh_counters("rapl", monitor, ["cpu", "dram"])
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(32, 5, generator=generator)
    labels = (inputs[:, 0] > 0).long().numpy()
    loop_options = {"epochs": 10, "callbacks": [Burn()], "validate": validate}
    objective = Objective([("cross_entropy", 1.0, CrossEntropyTerm())])
    with ResourceMeter(energy="rapl", flops="off", counter_opener=opener) as meter:
        loop = TrainingLoop(stopping=[EnergyBudget(250.0)], meter=meter, **loop_options)
        result = loop.run(
            torch.nn.Linear(5, 2), objective, ShuffledBatches(inputs, labels, 16), generator
        )
        monitor.totals["cpu"][0] += 5.0  # after training, inside the task
    assert result.stopped_by == "energy budget (250 J)" and result.progress.epochs == 3
    assert result.progress.energy_j == pytest.approx(300.0)
    assert result.progress.energy_method == "rapl"
    assert meter.report().energy_j == pytest.approx(3305.0)  # the task: validation included
    assert [backend for backend, _ in opener.calls] == ["rapl"] * 4  # the task, 3 epochs
    assert not monitor.windows


def test_a_part_meter_reads_the_source_its_meter_found() -> None:
    opener = opener_for()  # nothing readable: the meter falls back to the estimate
    with ResourceMeter(flops="off", counter_opener=opener) as meter:
        part = meter.part_meter()
        with part:
            sum(range(10_000))
    assert part.energy == "estimate" and part.flops == "off"
    assert part.report().energy_method == "estimate"
    assert len(opener.calls) == 2  # rapl and soc tried once, by the meter
    monitor = FakeMonitor(gpu={1: 0.0})
    gpu = ResourceMeter(
        flops="off", device="cuda:1", counter_opener=fresh_counters("nvml", monitor, ["gpu"])
    )
    with gpu:
        assert gpu.part_meter().energy == "gpu" and gpu.part_meter().device == "cuda:1"
    with pytest.raises(RuntimeError, match="needs the meter entered"):
        gpu.part_meter()


def test_an_opener_giving_one_counter_twice_is_refused() -> None:
    monitor = FakeMonitor(cpu={0: 0.0})
    opener = opener_for(rapl=EnergyCounter("rapl", monitor, ["cpu"]))  # the same one each call
    with ResourceMeter(energy="rapl", flops="off", counter_opener=opener) as meter:
        part = meter.part_meter()
        with pytest.raises(RuntimeError, match="must return a new EnergyCounter"):
            part.__enter__()
        monitor.totals["cpu"][0] += 2.0
    assert meter.report().energy_j == pytest.approx(2.0)  # its own window untouched


def test_a_meter_inside_another_keeps_the_outer_peak_memory(monkeypatch) -> None:
    resets: list[Any] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", resets.append)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 4096)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    with ResourceMeter(energy="estimate", flops="off", device="cuda") as outer:
        for _ in range(2):
            with outer.part_meter():
                pass
        with ResourceMeter(energy="estimate", flops="off", device="cuda:0"):
            pass  # "cuda" is device 0 here: the same device, so no reset either
    assert resets == [torch.device("cuda")]  # the outer meter's, once
    assert outer.report().peak_accel_bytes == 4096
    with ResourceMeter(energy="estimate", flops="off", device="cuda"):
        pass
    assert len(resets) == 2  # a meter alone resets again
    on_0 = ResourceMeter(energy="estimate", flops="off", device="cuda:0")
    with on_0, ResourceMeter(energy="estimate", flops="off", device="cuda:1"):
        pass  # another device: its own peak
    assert resets[2:] == [torch.device("cuda:0"), torch.device("cuda:1")]


def test_zeus_warnings_become_notes() -> None:
    monitor = FakeMonitor(gpu={0: 0.0})
    monitor.warn_at_end = "The energy consumption of one or more GPUs was measured as zero. More."
    counter = EnergyCounter("nvml", monitor, ["gpu"])
    counter.start()
    assert counter.stop() == {"gpu0": 0.0}
    assert counter.notes() == [
        "zeus: The energy consumption of one or more GPUs was measured as zero"
    ]


def test_counter_parts_must_be_known() -> None:
    with pytest.raises(ValueError, match="parts"):
        EnergyCounter("rapl", FakeMonitor(), ["package"])
    with pytest.raises(ValueError, match="parts"):
        EnergyCounter("rapl", FakeMonitor(), [])


def test_soc_measurements_count_parts_that_do_not_overlap() -> None:
    apple = SimpleNamespace(
        cpu_total_mj=4_000,
        efficiency_cores_mj=[1_000, 1_000],
        gpu_mj=500,
        gpu_sram_mj=None,
        ane_mj=0,
        dram_mj=250,
    )
    jetson = SimpleNamespace(cpu_energy_mj=1_000.0, gpu_energy_mj=2_000.0, total_energy_mj=5_000.0)
    rails = SimpleNamespace(cpu_energy_mj=1_000.0, gpu_energy_mj=2_000.0, total_energy_mj=None)
    joules = [
        measurement_joules(SimpleNamespace(soc_energy=soc), ["soc"])
        for soc in (apple, jetson, rails)
    ]
    assert joules[0] == {"soc/cpu_total": 4.0, "soc/gpu": 0.5, "soc/ane": 0.0, "soc/dram": 0.25}
    assert joules[1] == {"soc/total_energy": 5.0}
    assert joules[2] == {"soc/cpu_energy": 1.0, "soc/gpu_energy": 2.0}


# -- finding devices through Zeus ---------------------------------------------------------


def test_without_zeus_the_reason_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("zeus", "zeus.device", "zeus.monitor"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(CounterUnavailable, match=r"pip install 'siamcl\[energy\]'"):
        open_zeus_counter("rapl")
    meter = ResourceMeter(energy="rapl", flops="off")
    with meter:
        pass
    report = meter.report()
    assert report.energy_method == "estimate"
    assert "rapl unavailable: reading energy counters needs zeus" in report.energy_note


def test_unknown_zeus_backend_is_refused() -> None:
    with pytest.raises(ValueError, match="backend"):
        open_zeus_counter("battery")


@pytest.fixture
def fake_zeus(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Zeus's device lookups and ZeusMonitor replaced by fakes; the monitor's arguments kept."""
    pytest.importorskip("zeus")
    import zeus.device
    import zeus.monitor

    made: dict[str, Any] = {}

    class RecordingMonitor(FakeMonitor):
        def __init__(self, gpu_indices: list[int], cpu_indices: list[int]) -> None:
            super().__init__()
            made.update(gpu_indices=gpu_indices, cpu_indices=cpu_indices)

    monkeypatch.setattr(zeus.monitor, "ZeusMonitor", RecordingMonitor)
    devices: dict[str, Any] = {"made": made}

    def lookup(kind: str) -> Any:
        def get(*args: Any) -> Any:
            found = devices.get(kind)
            if isinstance(found, Exception):
                raise found
            return found

        return get

    for kind in ("gpus", "cpus", "soc"):
        monkeypatch.setattr(zeus.device, f"get_{kind}", lookup(kind))
    return devices


def zone(name: str) -> Any:
    return SimpleNamespace(rapl_file=SimpleNamespace(name=name))


def test_rapl_reads_package_zones_only(fake_zeus: dict[str, Any]) -> None:
    fake_zeus["cpus"] = SimpleNamespace(cpus=[zone("package-0"), zone("psys"), zone("package-1")])
    counter = open_zeus_counter("rapl")
    assert counter.method == "rapl" and counter.domains == ["cpu", "dram"]
    assert fake_zeus["made"] == {"gpu_indices": [], "cpu_indices": [0, 2]}
    assert counter.notes() == ["RAPL zones other than packages left out"]
    assert open_zeus_counter("rapl").monitor is counter.monitor  # one monitor, many windows


def test_rapl_errors_from_zeus_are_the_reason(fake_zeus: dict[str, Any]) -> None:
    fake_zeus["cpus"] = PermissionError("RAPL requires root privileges")
    with pytest.raises(CounterUnavailable, match="Zeus cannot read RAPL.*root privileges"):
        open_zeus_counter("rapl")
    fake_zeus["cpus"] = SimpleNamespace(cpus=[zone("psys")])
    with pytest.raises(CounterUnavailable, match="no package zone"):
        open_zeus_counter("rapl")


def test_gpu_lookup_labels_the_library(fake_zeus: dict[str, Any]) -> None:
    class AMDGPUs(list):
        def supports_get_total_energy_consumption(self, index: int) -> bool:
            return index != 1

    fake_zeus["gpus"] = AMDGPUs(["mi300", "mi250"])
    counter = open_zeus_counter("gpu", gpu_index=0)
    assert (counter.method, counter.domains, counter.notes()) == ("amdsmi", ["gpu"], [])
    assert fake_zeus["made"] == {"gpu_indices": [0], "cpu_indices": []}
    assert "integrates its power samples" in open_zeus_counter("gpu", gpu_index=1).notes()[0]
    with pytest.raises(CounterUnavailable, match="2 GPU\\(s\\), none with index 2"):
        open_zeus_counter("gpu", gpu_index=2)
    fake_zeus["gpus"] = RuntimeError("NVML and AMDSMI unavailable")
    with pytest.raises(CounterUnavailable, match="Zeus finds no GPU: NVML and AMDSMI"):
        open_zeus_counter("gpu")


def test_soc_lookup(fake_zeus: dict[str, Any]) -> None:
    class AppleSilicon:
        pass

    fake_zeus["soc"] = AppleSilicon()
    counter = open_zeus_counter("soc")
    assert counter.method == "soc" and counter.domains == ["soc"]
    assert "AppleSilicon read whole" in counter.notes()[0]


@pytest.mark.skipif(
    not HAS_ZEUS or os.path.exists("/sys/class/powercap/intel-rapl"),
    reason="needs zeus on a machine without RAPL",
)
def test_real_zeus_without_counters_gives_the_estimate() -> None:
    meter = ResourceMeter(energy="rapl", flops="off")
    with meter:
        pass
    report = meter.report()
    assert report.energy_method == "estimate"
    assert report.energy_note.startswith("rapl unavailable: Zeus cannot read RAPL")


@pytest.mark.skipif(
    not torch.cuda.is_available() or not HAS_ZEUS,
    reason="needs a CUDA GPU and zeus to read a real GPU energy counter",
)
def test_real_gpu_counter() -> None:
    meter = ResourceMeter(energy="gpu", flops="off", device="cuda")
    with meter:
        a = torch.randn(4096, 4096, device="cuda")
        for _ in range(50):
            a = a @ a
            a = a / a.norm()
    report = meter.report()
    assert report.energy_method in ("nvml", "amdsmi"), report.energy_note
    assert report.energy_j > 0
    assert report.peak_accel_bytes >= 4096 * 4096 * 4
