"""Where an episodic training step's CPU time goes, for the encoders of the one-shot recipes.

One step as EpisodicTrainer takes it at 28x28: 20 classes x 6 images, the supervised
contrastive loss, Adam, one torch thread. For each encoder the CPU time of a step (median of
interleaved rounds) and torch.profiler's self CPU time of the step's operators, grouped:
convolutions (forward and backward), batch norm, ReLU, max-pooling, filling tensors (the
zeroed gradients max-pooling's backward writes into) and the rest. Absolute times hold for
the machine they were taken on; compare the encoders within one run.

    python benchmarks/episodic_step.py [--rounds 5] [--steps 10] [--out DIR]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

from siamcl.allocator import retain_unless_disabled
from siamcl.encoders import build_encoder
from siamcl.losses import build_loss
from siamcl.reporting import markdown_table, run_record, titled_markdown, write_results
from siamcl.reporting.records import DEFAULT_OUT
from siamcl.training import prefer_channels_last

# name -> (encoder, embedding size, channels-last): the recipes of benchmarks/fewshot_recipes.py
ENCODERS = {
    "conv4, NCHW (previous recipe)": ("conv4", 64, False),
    "conv4-flat, channels-last": ("conv4-flat", 128, True),
    "conv4-flat-pool-first, channels-last (default)": ("conv4-flat-pool-first", 128, True),
}
# operator-name fragment -> group; the first fragment found in a name decides
GROUPS = {
    "convolution": "convolution",
    "batch_norm": "batch norm",
    "threshold": "ReLU",
    "relu": "ReLU",
    "clamp": "ReLU",
    "max_pool": "max-pooling",
    "fill_": "filling",
    "zero_": "filling",
}
WAYS, IMAGES_PER_CLASS, SIZE = 20, 6, 28


def _step(encoder: str, dim: int, channels_last: bool):
    """A closure running one training step, and the batch it trains on."""
    torch.manual_seed(0)
    net = build_encoder(encoder, (1, SIZE, SIZE), dim)
    inputs = torch.randn(WAYS * IMAGES_PER_CLASS, 1, SIZE, SIZE)
    if channels_last:
        prefer_channels_last(net)
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    labels = torch.arange(WAYS).repeat_interleave(IMAGES_PER_CLASS)
    loss, optimizer = build_loss("supcon"), torch.optim.Adam(net.parameters())

    def step() -> None:
        optimizer.zero_grad()
        loss(net(inputs), labels).backward()
        optimizer.step()

    for _ in range(2):  # warm-up: first-call allocations
        step()
    return step


def _seconds(step, steps: int) -> float:
    start = time.process_time()
    for _ in range(steps):
        step()
    return (time.process_time() - start) / steps


def _groups(step, steps: int) -> dict[str, float]:
    """Self CPU milliseconds per step of each operator group."""
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        for _ in range(steps):
            step()
    totals: dict[str, float] = {}
    for event in profiler.key_averages():
        if not event.key.startswith("aten::"):
            continue
        group = next((g for key, g in GROUPS.items() if key in event.key), "other")
        totals[group] = totals.get(group, 0.0) + event.self_cpu_time_total / 1e3 / steps
    return totals


def measure(rounds: int, steps: int) -> list[dict[str, Any]]:
    steps_by_name = {name: _step(*spec) for name, spec in ENCODERS.items()}
    samples: dict[str, list[float]] = {name: [] for name in ENCODERS}
    for _ in range(rounds):
        for name, step in steps_by_name.items():
            samples[name].append(_seconds(step, steps))
    first = statistics.median(samples[next(iter(ENCODERS))])
    rows = []
    for name, step in steps_by_name.items():
        median = statistics.median(samples[name])
        rows.append(
            {
                "encoder": name,
                "step_ms": median * 1e3,
                "ratio": median / first,
                "profiled_ms": _groups(step, steps),
            }
        )
    return rows


def render(results: dict[str, Any]) -> str:
    groups = list(dict.fromkeys([*GROUPS.values(), "other"]))
    table = []
    for row in results["rows"]:
        profiled = row["profiled_ms"]
        total = sum(profiled.values())
        shares = [
            f"{profiled.get(g, 0.0):.0f} ({profiled.get(g, 0.0) / total:.0%})" for g in groups
        ]
        table.append([row["encoder"], f"{row['step_ms']:.0f}", f"{row['ratio']:.2f}", *shares])
    settings = results["settings"]
    caption = (
        f"{WAYS} classes x {IMAGES_PER_CLASS} images of {SIZE}x{SIZE}, supcon loss, Adam, "
        f"one torch thread. Step: CPU ms, median of {settings['rounds']} interleaved "
        f"rounds of {settings['steps']} steps; ratio to the first row. Groups: "
        "torch.profiler's self CPU ms per step of aten operators (share of their sum)."
    )
    return titled_markdown(
        "An episodic training step's CPU time, by encoder",
        results,
        caption,
        markdown_table(["encoder", "step ms", "ratio", *groups], table),
        "",
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    retain_unless_disabled()  # freed memory kept for reuse, as the siamcl command starts
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (5)")
    parser.add_argument("--steps", type=int, default=10, help="steps timed per round (10)")
    parser.add_argument("--out", default=DEFAULT_OUT, help="result folder")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    results = run_record(
        "episodic_step", [0], rounds=args.rounds, steps=args.steps, torch_threads=1
    )
    results["rows"] = measure(args.rounds, args.steps)
    markdown = render(results)
    write_results(args.out, "episodic_step", results, markdown)
    print(markdown)
    return results


if __name__ == "__main__":
    main()
