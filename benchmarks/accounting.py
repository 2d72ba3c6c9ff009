"""Cost of metering, and siamcl's energy estimate beside CodeCarbon's.

1. Overhead: the same training workload (conv4 + multi-similarity loss on mnist5k batches)
   run with and without a ResourceMeter (FLOP sampling on), interleaved, several repeats;
   reports the median wall-time ratio. Then the meter's parts one by one, among them a
   FLOP-counted batch's extra time, counted as the meter counts and by torch's
   FlopCounterMode, at 28x28 and at 8x8 (digits).
2. CodeCarbon: the same workload metered at once by ResourceMeter(energy="estimate") and by
   CodeCarbon's OfflineEmissionsTracker (no network); reports both energies and their ratio.

Usage: python benchmarks/accounting.py [--repeats 11] [--batches 100] [--seeds 0]
       [--out benchmarks/results]
Needs codecarbon for part 2 (pip install codecarbon); skipped with a note when absent.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from siamcl.accounting import ResourceMeter
from siamcl.cli.help import HelpFormatter
from siamcl.data import load_dataset
from siamcl.encoders import build_encoder
from siamcl.losses import build_loss
from siamcl.reporting import (
    DEFAULT_OUT,
    markdown_table,
    parse_seeds,
    record_markdown,
    run_record,
    write_results,
)


def make_workload(batches: int, seed: int = 0):
    """A closure that trains a fresh conv4 encoder for ``batches`` steps of 128 images."""
    X, y, _, _ = load_dataset("mnist5k")
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(X), size=(batches, 128))
    images = torch.from_numpy(X.astype(np.float32) / 255.0).unsqueeze(1)
    labels = torch.from_numpy(y)

    def train(meter: ResourceMeter | None = None) -> None:
        torch.manual_seed(seed)
        encoder = build_encoder("conv4", (1, 28, 28))
        loss_fn = build_loss("multisimilarity")
        optimizer = torch.optim.Adam(encoder.parameters(), lr=1e-3)
        for batch in rows:
            xb, yb = images[batch], labels[batch]
            context = meter.batch(len(batch)) if meter is not None else _Null()
            with context:
                loss = loss_fn(encoder(xb), yb)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()

    return train


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def overhead(train, repeats: int, flop_sample_batches: int) -> dict:
    """Wall time of the workload plain, metered without FLOPs, and metered with FLOP
    sampling, interleaved (the order rotating each repeat) so that drifts in machine load
    and any effect of running first or last fall on all three alike."""
    train()  # warm up allocator and kernels
    times: dict[str, list[float]] = {"plain": [], "metered_no_flops": [], "metered": []}
    names = list(times)
    for repeat in range(repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            elapsed = times[name]
            start = time.perf_counter()
            if name == "plain":
                train()
            else:
                flops = "off" if name == "metered_no_flops" else "sample"
                meter = ResourceMeter(flops=flops, flop_sample_batches=flop_sample_batches)
                with meter:
                    train(meter)
            elapsed.append(time.perf_counter() - start)
    plain = times["plain"]

    def ratios(name: str) -> dict:
        per_repeat = [m / p for m, p in zip(times[name], plain)]
        return {
            "median_ratio": statistics.median(per_repeat),
            "ratio_of_medians": statistics.median(times[name]) / statistics.median(plain),
        }

    return {
        "plain_s": plain,
        "metered_s": times["metered"],
        "metered_no_flops_s": times["metered_no_flops"],
        "flop_sample_batches": flop_sample_batches,
        **ratios("metered"),
        "no_flops": ratios("metered_no_flops"),
    }


def overhead_parts(pairs: int = 21, rss_reads: int = 2000) -> dict:
    """The meter's costs measured one by one, each against its own baseline right beside it,
    so that the machine's drifts (which swamp a 2% difference between whole runs on a
    shared virtual machine) cancel: the extra time of a FLOP-counted batch over the plain
    batch before it (median over ``pairs``), counted as the meter counts (``FlopCount``) and
    by torch's ``FlopCounterMode``, on mnist5k (28x28) and digits (8x8) batches; one RSS read
    of the sampler thread; and entering and leaving a meter."""
    from siamcl.accounting.memory import PeakRssSampler

    parts: dict = {}
    for dataset, prefix in (("mnist5k", ""), ("digits", "digits_")):
        for name, value in _counted_batch_extra(dataset, pairs).items():
            parts[prefix + name] = value
    sampler = PeakRssSampler(0.05)
    start = time.perf_counter()
    for _ in range(rss_reads):
        sampler.sample()
    parts["rss_read_s"] = (time.perf_counter() - start) / rss_reads
    start = time.perf_counter()
    for _ in range(20):
        with ResourceMeter(flops="off"):
            pass
    parts["meter_enter_exit_s"] = (time.perf_counter() - start) / 20
    return parts


def _counted_batch_extra(dataset: str, pairs: int) -> dict:
    """A conv4 multi-similarity step of 128 ``dataset`` images: its median time, and the
    median extra time of the same step counted by each FLOP counter, each right after a plain
    step. The first counted step of the process is recorded apart (its first dispatch)."""
    from torch.utils.flop_counter import FlopCounterMode

    from siamcl.accounting.flops import FlopCount

    X, y, _, _ = load_dataset(dataset)
    xb = torch.from_numpy(X[:128].astype(np.float32) / 255.0).unsqueeze(1)
    yb = torch.from_numpy(y[:128])
    torch.manual_seed(0)
    encoder = build_encoder("conv4", tuple(xb.shape[1:]))
    loss_fn = build_loss("multisimilarity")
    optimizer = torch.optim.Adam(encoder.parameters(), lr=1e-3)

    def step() -> None:
        loss = loss_fn(encoder(xb), yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for _ in range(3):
        step()
    counters = {
        "flop_counted": FlopCount,
        "flop_counter_mode": lambda: FlopCounterMode(display=False),
    }
    plain: list[float] = []
    extra: dict[str, list[float]] = {name: [] for name in counters}
    for _ in range(pairs):
        for name, counter in counters.items():
            start = time.perf_counter()
            step()
            plain.append(time.perf_counter() - start)
            start = time.perf_counter()
            with counter():
                step()
            extra[name].append(time.perf_counter() - start - plain[-1])
    return {
        "plain_batch_s": statistics.median(plain),
        **{f"{name}_batch_extra_s": statistics.median(times) for name, times in extra.items()},
        "first_flop_counted_batch_extra_s": extra["flop_counted"][0],
    }


def predicted_overhead(parts: dict, batches: int, flop_batches: int, interval: float) -> float:
    """Metering's share of a task of ``batches`` batches, from the measured parts."""
    task_s = batches * parts["plain_batch_s"]
    reads = task_s / interval
    extra = (
        flop_batches * parts["flop_counted_batch_extra_s"]
        + reads * parts["rss_read_s"]
        + parts["meter_enter_exit_s"]
    )
    return extra / task_s


def codecarbon_comparison(train) -> dict:
    try:
        from codecarbon import OfflineEmissionsTracker
    except ImportError:
        return {"skipped": "codecarbon is not installed (pip install codecarbon)"}
    logging.getLogger("codecarbon").setLevel(logging.ERROR)
    tracker = OfflineEmissionsTracker(
        country_iso_code="USA",
        save_to_file=False,
        log_level="error",
        measure_power_secs=1,
        tracking_mode="process",
    )
    with ResourceMeter(energy="estimate", flops="off") as meter:
        tracker.start()
        train()
        tracker.stop()
    report = meter.report(method="workload")
    data = tracker.final_emissions_data
    codecarbon_j = float(data.energy_consumed) * 3.6e6  # kWh -> J
    return {
        "siamcl_estimate_j": report.energy_j,
        "siamcl_components_j": report.energy_components,
        "siamcl_constants": report.energy_constants,
        "codecarbon_j": codecarbon_j,
        "codecarbon_cpu_j": float(data.cpu_energy) * 3.6e6,
        "codecarbon_ram_j": float(data.ram_energy) * 3.6e6,
        "codecarbon_cpu_power_w": float(data.cpu_power),
        "codecarbon_ram_power_w": float(data.ram_power),
        "codecarbon_cpu_model": getattr(data, "cpu_model", ""),
        "wall_s": report.wall_s,
        "cpu_s": report.cpu_s,
        "ratio_siamcl_to_codecarbon": report.energy_j / codecarbon_j if codecarbon_j else None,
    }


def main(argv: list[str] | None = None) -> dict:
    args = _arguments(argv)
    train = make_workload(args.batches, seed=args.seeds[0])
    results = {
        **run_record(
            "accounting",
            args.seeds,
            repeats=args.repeats,
            batches=args.batches,
            flop_sample_batches=args.flop_sample_batches,
        ),
        "parts": overhead_parts(),  # first: its first counted batch is the process's first
        "overhead": overhead(train, args.repeats, args.flop_sample_batches),
        "codecarbon": codecarbon_comparison(train),
    }
    results["predicted_overhead"] = predicted_overhead(
        results["parts"], args.batches, args.flop_sample_batches, ResourceMeter().sample_interval
    )
    markdown = _markdown(results, args.batches)
    write_results(Path(args.out), "accounting", results, markdown)
    print(markdown)
    return results


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--repeats", type=int, default=11, help="interleaved repeats")
    parser.add_argument("--batches", type=int, default=100, help="batches of the workload")
    parser.add_argument("--seeds", type=parse_seeds, default="0", help="the workload's seed")
    parser.add_argument("--out", default=DEFAULT_OUT, help="result folder")
    parser.add_argument(
        "--flop-sample-batches",
        type=int,
        default=ResourceMeter().flop_sample_batches,
        help="batches whose FLOPs are counted, as the meter counts them",
    )
    args = parser.parse_args(argv)
    if len(args.seeds) != 1:
        parser.error("--seeds: this benchmark measures one workload; give one seed")
    return args


def _rows(results: dict, batches: int) -> list[list[str]]:
    """The measures of the result table, overhead first, then the CodeCarbon comparison."""
    o, c, parts = results["overhead"], results["codecarbon"], results["parts"]
    rows = [
        [
            (
                f"metered/plain wall time, FLOPs counted on {o['flop_sample_batches']} of "
                f"{batches} batches (median over repeats)"
            ),
            f"{o['median_ratio']:.3f}",
        ],
        ["the same, ratio of median times", f"{o['ratio_of_medians']:.3f}"],
        ["metered/plain wall time, FLOPs off (median)", f"{o['no_flops']['median_ratio']:.3f}"],
        ["plain workload wall time (median s)", f"{statistics.median(o['plain_s']):.2f}"],
        [
            "spread of the plain workload's wall time (min-max, s)",
            f"{min(o['plain_s']):.2f}-{max(o['plain_s']):.2f}",
        ],
        ["a plain training batch (median s)", f"{parts['plain_batch_s']:.4f}"],
        [
            "extra time of a FLOP-counted batch, as the meter counts (median of paired runs, s)",
            f"{parts['flop_counted_batch_extra_s']:.4f}",
        ],
        [
            "the same counted by torch's FlopCounterMode (s)",
            f"{parts['flop_counter_mode_batch_extra_s']:.4f}",
        ],
        [
            "extra time of the process's first FLOP-counted batch (s)",
            f"{parts['first_flop_counted_batch_extra_s']:.4f}",
        ],
        ["a plain training batch of 8x8 digits (median s)", f"{parts['digits_plain_batch_s']:.4f}"],
        [
            "extra time of a FLOP-counted 8x8 batch, as the meter counts / by FlopCounterMode (s)",
            (
                f"{parts['digits_flop_counted_batch_extra_s']:.4f} / "
                f"{parts['digits_flop_counter_mode_batch_extra_s']:.4f}"
            ),
        ],
        ["one RSS read by the sampler thread (s)", f"{parts['rss_read_s']:.6f}"],
        ["entering and leaving a meter (s)", f"{parts['meter_enter_exit_s']:.4f}"],
        [
            f"metering's share of a {batches}-batch task, from these parts",
            f"{100 * results['predicted_overhead']:.2f}%",
        ],
    ]
    if "skipped" in c:
        return [*rows, ["CodeCarbon comparison", c["skipped"]]]
    return rows + [
        ["siamcl estimate (J)", f"{c['siamcl_estimate_j']:.1f}"],
        ["CodeCarbon (J)", f"{c['codecarbon_j']:.1f}"],
        ["siamcl / CodeCarbon", f"{c['ratio_siamcl_to_codecarbon']:.2f}"],
        [
            "CodeCarbon CPU power (W) / RAM power (W)",
            f"{c['codecarbon_cpu_power_w']:.1f} / {c['codecarbon_ram_power_w']:.1f}",
        ],
    ]


def _markdown(results: dict, batches: int) -> str:
    return "\n".join(
        [
            "# Accounting: metering overhead and the energy estimate beside CodeCarbon",
            "",
            record_markdown(results),
            "",
            markdown_table(["measure", "value"], _rows(results, batches)),
            "",
            "Both energy figures are estimates on this machine (no RAPL counter is readable).",
            "",
            (
                "Whole runs of the same workload vary by more than the metering costs on a shared "
                "virtual machine (see the spread above), so the ratios of whole runs are noisy; the "
                "parts are each timed beside their own baseline, and the share computed from them "
                "is the figure to read."
            ),
        ]
    )


if __name__ == "__main__":
    main()
