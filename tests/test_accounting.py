"""Tests of siamcl.accounting: the meter and reports (energy counters: test_energy.py)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from siamcl.accounting import (
    CPU_WATTS_PER_CORE,
    MEMORY_WATTS_PER_GB,
    ResourceMeter,
    TaskReport,
    compare_reports,
    sum_reports,
)
from siamcl.accounting.memory import SAMPLER_THREAD_NAME


def train_mlp(meter: ResourceMeter, n_batches: int = 8, batch_size: int = 16) -> None:
    """A small metered training loop: forward, backward and step inside meter.batch."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.ReLU(), torch.nn.Linear(64, 5))
    optimiser = torch.optim.SGD(net.parameters(), lr=0.1)
    data = torch.randn(n_batches, batch_size, 20)
    labels = torch.randint(0, 5, (n_batches, batch_size))
    with meter:
        for xb, yb in zip(data, labels):
            with meter.batch(n_samples=len(xb)):
                loss = torch.nn.functional.cross_entropy(net(xb), yb)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()


def sampler_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == SAMPLER_THREAD_NAME]


# -- FLOPs ---------------------------------------------------------------------------


def test_sampled_flops_extrapolate_to_the_counted_total() -> None:
    counted, sampled = ResourceMeter(flops="all"), ResourceMeter(flops="sample")
    train_mlp(counted)
    train_mlp(sampled)
    every, extrapolated = counted.report(), sampled.report()
    # forward 2*N*(20*64 + 64*5); backward: weight grads for both layers, input grad for
    # the second only (the data needs none) -> 3x the second layer, 2x the first
    per_sample = 2 * (2 * 20 * 64) + 3 * (2 * 64 * 5)
    assert every.flops == per_sample * 8 * 16
    assert every.flops_method == "counted"
    assert extrapolated.flops_method == "sampled 1 of 8 batches, extrapolated"
    assert extrapolated.flops == pytest.approx(every.flops, rel=0.02)
    assert every.samples_seen == extrapolated.samples_seen == 128


def test_flops_extrapolate_per_sample_when_batches_differ_in_size() -> None:
    layer = torch.nn.Linear(10, 10, bias=False)
    meter = ResourceMeter(flops="sample", flop_sample_batches=1)
    with meter:
        for size in (4, 8, 12):
            with meter.batch(size), torch.no_grad():
                layer(torch.randn(size, 10))
    report = meter.report()
    assert report.flops == 2 * 10 * 10 * (4 + 8 + 12)  # 800 FLOPs a sample, 24 samples
    assert report.flops_method == "sampled 1 of 3 batches, extrapolated"


def test_flops_off_counts_samples_but_no_flops() -> None:
    meter = ResourceMeter(flops="off")
    train_mlp(meter, n_batches=3)
    report = meter.report()
    assert report.flops is None and report.flops_method == "off"
    assert report.samples_seen == 48


def test_block_mode_counts_flops_without_batch_markers() -> None:
    layer = torch.nn.Linear(10, 10, bias=False)
    meter = ResourceMeter(flops="block")
    with meter, torch.no_grad():
        layer(torch.randn(3, 10))
    assert meter.report().flops == 2 * 3 * 10 * 10
    assert meter.report().flops_method == "counted (whole block)"


def test_no_batch_markers_leave_flops_unknown() -> None:
    meter = ResourceMeter(flops="sample")
    with meter:
        pass
    report = meter.report()
    assert report.flops is None and "no meter.batch()" in report.flops_method


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 16, 16)])
def test_flop_count_agrees_with_torchs_flop_counter_on_a_training_step(shape) -> None:
    """The meter's counter applies torch's formulas without FlopCounterMode's per-module
    bookkeeping: a conv4 step with a metric loss, backward and Adam counts the same total."""
    from torch.utils.flop_counter import FlopCounterMode

    from siamcl.accounting.flops import FlopCount
    from siamcl.encoders import build_encoder
    from siamcl.losses import build_loss

    torch.manual_seed(0)
    encoder = build_encoder("conv4", shape)
    loss_fn = build_loss("multisimilarity")
    optimiser = torch.optim.Adam(encoder.parameters())
    inputs, labels = torch.randn(32, *shape), torch.arange(32) % 4

    def step() -> None:
        loss = loss_fn(encoder(inputs), labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    with FlopCounterMode(display=False) as reference:
        step()
    with FlopCount() as counted:
        step()
    assert counted.total == reference.get_total_flops() > 0


# -- memory, time, estimate ---------------------------------------------------------


def test_peak_rss_sees_a_large_allocation() -> None:
    quiet, busy = (
        ResourceMeter(flops="off", sample_interval=0.01),
        ResourceMeter(flops="off", sample_interval=0.01),
    )
    with quiet:
        pass
    with busy:
        block = np.ones(25_000_000)  # 200 MB, every page touched
        block[::4096] += 1.0
    del block
    assert busy.report().peak_rss_bytes - quiet.report().peak_rss_bytes > 150_000_000


def test_estimate_is_reproducible_from_the_report_itself() -> None:
    meter = ResourceMeter(energy="estimate", flops="off", cpu_watts_per_core=7.5)
    with meter:
        sum(i * i for i in range(300_000))
    report = meter.report()
    constants = report.energy_constants
    assert report.energy_method == "estimate" and report.energy_measured is False
    assert constants["cpu_watts_per_core"] == 7.5
    assert constants["memory_watts_per_gb"] == MEMORY_WATTS_PER_GB == 0.3725
    expected = (
        report.cpu_s * 7.5
        + 0.3725 * (report.peak_rss_bytes / constants["bytes_per_gb"]) * report.wall_s
    )
    assert report.energy_j == pytest.approx(expected, rel=1e-12)
    assert report.energy_components["cpu"] == report.cpu_s * 7.5
    assert report.cpu_s > 0 and report.wall_s > 0 and report.energy_j > 0
    assert "estimate requested" in report.energy_note


def test_default_estimate_constants() -> None:
    meter = ResourceMeter(energy="estimate", flops="off")
    with meter:
        pass
    assert meter.report().energy_constants["cpu_watts_per_core"] == CPU_WATTS_PER_CORE == 12.0


def test_cpu_seconds_follow_busy_work() -> None:
    idle, busy = ResourceMeter(flops="off"), ResourceMeter(flops="off")
    with idle:
        threading.Event().wait(0.2)
    with busy:
        sum(i * i for i in range(2_000_000))
    assert idle.report().wall_s >= 0.2
    assert idle.report().cpu_s < 0.1
    assert busy.report().cpu_s > 0.05


def test_cpu_seconds_of_a_short_block_are_read_to_the_millisecond() -> None:
    # an 8x8 digits epoch takes 0.08-0.41 CPU s: a clock in 10 ms ticks would read this
    # 3 ms block as 0 or 10 ms
    meter = ResourceMeter(flops="off")
    with meter:
        start = time.process_time()
        while time.process_time() - start < 0.003:
            pass
    assert 0.003 <= meter.report().cpu_s < 0.008


# -- meter lifecycle -------------------------------------------------------------------


def test_entering_twice_raises() -> None:
    meter = ResourceMeter(flops="off")
    with meter, pytest.raises(RuntimeError, match="already entered"):
        meter.__enter__()
    assert not sampler_threads()


def test_exit_without_enter_raises() -> None:
    with pytest.raises(RuntimeError, match="without being entered"):
        ResourceMeter().__exit__(None, None, None)


def test_report_needs_a_finished_block() -> None:
    meter = ResourceMeter(flops="off")
    with pytest.raises(RuntimeError, match="no finished measurement"):
        meter.report()
    with meter:
        with pytest.raises(RuntimeError, match="still running"):
            meter.report()
        assert meter.active
    assert meter.report().wall_s >= 0


def test_batch_outside_the_block_raises() -> None:
    meter = ResourceMeter()
    with pytest.raises(RuntimeError, match="inside an entered"), meter.batch(4):
        pass


def test_exception_inside_the_block_stops_the_sampler_and_propagates() -> None:
    meter = ResourceMeter(flops="block", sample_interval=0.01)
    seen_running = []
    with pytest.raises(KeyError, match="boom"), meter:
        seen_running.append(len(sampler_threads()))
        raise KeyError("boom")
    assert seen_running == [1]
    assert not sampler_threads()
    assert not meter.active
    assert meter.report().wall_s >= 0  # the partial block is still reported
    with meter:  # and the meter can be used again
        pass


def test_decorator_meters_every_call() -> None:
    @ResourceMeter(flops="off")
    def work(n: int) -> int:
        return sum(range(n))

    assert work(10) == 45
    assert work.meter.report(task="t").task == "t"
    assert work(100) == 4950


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"energy": "joulemeter"}, ValueError),
        ({"flops": "some"}, ValueError),
        ({"flop_sample_batches": 0}, ValueError),
        ({"flop_sample_batches": 1.5}, TypeError),
        ({"sample_interval": 0}, ValueError),
        ({"device": "not-a-device"}, ValueError),
        ({"cpu_watts_per_core": -1.0}, ValueError),
    ],
)
def test_bad_constructor_arguments(kwargs: dict, error: type[Exception]) -> None:
    with pytest.raises(error):
        ResourceMeter(**kwargs)


def test_bad_batch_size() -> None:
    meter = ResourceMeter()
    with meter, pytest.raises(ValueError, match="n_samples"), meter.batch(0):
        pass


# -- reports ---------------------------------------------------------------------------


def make_report(**changes: object) -> TaskReport:
    values = {
        "task": 0,
        "method": "siamese",
        "wall_s": 2.0,
        "cpu_s": 3.0,
        "samples_seen": 100,
        "flops": 1_000,
        "flops_method": "counted",
        "peak_rss_bytes": 500,
        "peak_accel_bytes": None,
        "energy_j": 10.0,
        "energy_method": "estimate",
        "energy_constants": {"cpu_watts_per_core": 12.0},
        "energy_components": {"cpu": 9.0, "memory": 1.0},
        "energy_note": "estimate requested",
        "retained_bytes": {"replay": 1234, "store": 567},
        "extra": {"accuracy": 0.9},
    }
    values.update(changes)
    return TaskReport(**values)


def test_json_and_csv_round_trip(tmp_path: Path) -> None:
    reports = [
        make_report(),
        make_report(task=1, flops=None, flops_method="off", peak_accel_bytes=2048, extra={}),
        make_report(task="final", energy_method="rapl", energy_measured=True, energy_note=""),
    ]
    assert TaskReport.read_json(TaskReport.write_json(reports, tmp_path / "r.json")) == reports
    csv_path = TaskReport.write_csv(reports, tmp_path / "r.csv")
    assert TaskReport.read_csv(csv_path) == reports
    header = csv_path.read_text().splitlines()[0].split(",")
    assert {"retained_total", "retained_bytes.replay", "extra.accuracy"} <= set(header)
    assert TaskReport.from_json(reports[0].to_json()) == reports[0]
    assert reports[0].retained_total == 1801


def test_reading_a_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no report file"):
        TaskReport.read_csv(tmp_path / "absent.csv")


def test_sum_adds_costs_and_takes_peaks() -> None:
    a = make_report(peak_accel_bytes=10)
    b = make_report(
        task=1,
        peak_rss_bytes=900,
        retained_bytes={"replay": 100, "store": 2000},
        extra={"accuracy": 0.8},
    )
    total = a + b
    assert total == sum_reports([a, b])
    assert (total.wall_s, total.cpu_s, total.energy_j) == (4.0, 6.0, 20.0)
    assert (total.samples_seen, total.flops) == (200, 2000)
    assert (total.peak_rss_bytes, total.peak_accel_bytes) == (900, 10)
    assert total.retained_bytes == {"replay": 1234, "store": 2000}
    assert total.energy_components == {"cpu": 18.0, "memory": 2.0}
    assert total.task is None and total.method == "siamese"
    assert total.energy_method == "estimate" and total.extra == {}


def test_sum_adds_the_costs_every_report_holds_in_extra() -> None:
    first = {"validation_cpu_s": 0.5, "readout_energy_j": 2.0, "epochs_run": 3.0, "only": 1.0}
    second = {"validation_cpu_s": 0.25, "readout_energy_j": 1.5, "epochs_run": 3.0}
    total = sum_reports([make_report(extra=first), make_report(task=1, extra=second)])
    # costs add; a count both agree on stays; what one report lacks is dropped
    assert total.extra == {"validation_cpu_s": 0.75, "readout_energy_j": 3.5, "epochs_run": 3.0}
    partial = sum_reports([make_report(extra={"readout_cpu_s": 1.0}), make_report()])
    assert partial.extra == {}  # a cost not every report measured has no meaningful sum


def test_sum_of_different_energy_methods_is_mixed_and_not_measured() -> None:
    rapl = make_report(energy_method="rapl", energy_measured=True, energy_constants={})
    total = sum_reports([rapl, make_report(), make_report(flops=None)])
    assert total.energy_method == "mixed" and total.energy_measured is False
    assert total.flops is None
    assert sum_reports([rapl, rapl]).energy_measured is True
    with pytest.raises(ValueError, match="at least one"):
        sum_reports([])


def test_compare_gives_ratios() -> None:
    siamese = make_report(energy_j=5.0, wall_s=1.0, retained_bytes={})
    softmax = make_report(energy_j=20.0, wall_s=4.0, flops=4_000)
    ratios = compare_reports(siamese, softmax)
    assert ratios["energy_j"] == 0.25 and ratios["wall_s"] == 0.25
    assert ratios["flops"] == 0.25 and ratios["peak_rss_bytes"] == 1.0
    assert ratios["retained_total"] == 0.0
    assert ratios["peak_accel_bytes"] is None
    assert compare_reports(softmax, siamese)["retained_total"] is None  # zero denominator


def test_an_estimate_cannot_claim_to_be_measured() -> None:
    with pytest.raises(ValueError, match="cannot be marked as measured"):
        make_report(energy_measured=True)
    with pytest.raises(ValueError, match="unknown TaskReport fields"):
        TaskReport.from_dict({"joules": 3})
    with pytest.raises(ValueError, match="energy_method"):
        make_report(energy_method="guess")
