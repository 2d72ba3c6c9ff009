"""Cost of metering, and siamcl's energy estimate beside CodeCarbon's.

1. Overhead: the same training workload (conv4 + multi-similarity loss on mnist5k batches)
   run with and without a ResourceMeter (FLOP sampling on), interleaved, several repeats;
   reports the median wall-time ratio.
2. CodeCarbon: the same workload metered at once by ResourceMeter(energy="estimate") and by
   CodeCarbon's OfflineEmissionsTracker (no network); reports both energies and their ratio.

Usage: python benchmarks/accounting.py [--repeats 5] [--batches 100] [--out benchmarks/results]
Needs codecarbon for part 2 (pip install codecarbon); skipped with a note when absent.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from siamcl.accounting import ResourceMeter
from siamcl.bench.common import markdown_table, run_record, write_results
from siamcl.data import load_dataset
from siamcl.encoders import build_encoder
from siamcl.losses import build_loss


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
    sampling, interleaved so that drifts in machine load fall on all three alike."""
    train()  # warm up allocator and kernels
    times: dict[str, list[float]] = {"plain": [], "metered_no_flops": [], "metered": []}
    for _ in range(repeats):
        for name, elapsed in times.items():
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument(
        "--flop-sample-batches",
        type=int,
        default=ResourceMeter().flop_sample_batches,
        help="batches whose FLOPs are counted (the meter's default)",
    )
    args = parser.parse_args(argv)
    train = make_workload(args.batches)
    results = {
        **run_record(
            "accounting",
            [0],
            repeats=args.repeats,
            batches=args.batches,
            flop_sample_batches=args.flop_sample_batches,
        ),
        "command": " ".join(["python", *sys.argv]),
        "overhead": overhead(train, args.repeats, args.flop_sample_batches),
        "codecarbon": codecarbon_comparison(train),
    }
    o, c = results["overhead"], results["codecarbon"]
    rows = [
        [
            (
                f"metered/plain wall time, FLOPs counted on {o['flop_sample_batches']} of "
                f"{args.batches} batches (median over repeats)"
            ),
            f"{o['median_ratio']:.3f}",
        ],
        ["the same, ratio of median times", f"{o['ratio_of_medians']:.3f}"],
        ["metered/plain wall time, FLOPs off (median)", f"{o['no_flops']['median_ratio']:.3f}"],
        ["plain workload wall time (median s)", f"{statistics.median(o['plain_s']):.2f}"],
    ]
    if "skipped" in c:
        rows.append(["CodeCarbon comparison", c["skipped"]])
    else:
        rows += [
            ["siamcl estimate (J)", f"{c['siamcl_estimate_j']:.1f}"],
            ["CodeCarbon (J)", f"{c['codecarbon_j']:.1f}"],
            ["siamcl / CodeCarbon", f"{c['ratio_siamcl_to_codecarbon']:.2f}"],
            [
                "CodeCarbon CPU power (W) / RAM power (W)",
                f"{c['codecarbon_cpu_power_w']:.1f} / {c['codecarbon_ram_power_w']:.1f}",
            ],
        ]
    markdown = "\n".join(
        [
            "# Accounting: metering overhead and the energy estimate beside CodeCarbon",
            "",
            f"Command: `{results['command']}`  ",
            f"Machine: {results['machine']['processor']}, {results['machine']['cpu_count']} CPUs  ",
            f"Date: {results['date']}",
            "",
            markdown_table(["measure", "value"], rows),
            "",
            "Both energy figures are estimates on this machine (no RAPL counter is readable).",
        ]
    )
    write_results(Path(args.out), "accounting", results, markdown)
    print(markdown)
    return results


if __name__ == "__main__":
    main()
