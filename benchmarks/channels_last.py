"""conv4 with NCHW weights against channels-last weights: CPU time of a training step and of
an inference batch, at the input sizes siamcl trains on (digits 8x8, 16x16, mnist 28x28,
Omniglot 105x105), one torch thread, interleaved rounds, median. Inputs stay NCHW: the
weights' layout alone decides the layout the convolutions run in.

    python benchmarks/channels_last.py [--rounds 5] [--steps 8] [--out DIR]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch

from siamcl.allocator import retain_unless_disabled
from siamcl.encoders import build_encoder
from siamcl.reporting import markdown_table, run_record, write_results
from siamcl.reporting.records import DEFAULT_OUT, record_markdown
from siamcl.training import prefer_channels_last

SHAPES = {
    "8x8": ((1, 8, 8), 128),
    "16x16": ((1, 16, 16), 128),
    "28x28": ((1, 28, 28), 128),
    "105x105": ((1, 105, 105), 40),
}


def _timings(
    shape: tuple[int, ...], batch: int, channels_last: bool, steps: int
) -> tuple[float, float]:
    """CPU seconds of one training step and of one inference batch (means over ``steps``)."""
    torch.manual_seed(0)
    net = build_encoder("conv4", shape, 64)
    if channels_last:
        prefer_channels_last(net)
    inputs = torch.randn(batch, *shape)
    optimizer = torch.optim.Adam(net.parameters())
    for _ in range(2):  # warm-up: first-call allocations
        net(inputs).sum().backward()
    start = time.process_time()
    for _ in range(steps):
        optimizer.zero_grad()
        net(inputs).sum().backward()
        optimizer.step()
    train = (time.process_time() - start) / steps
    net.eval()
    with torch.no_grad():
        start = time.process_time()
        for _ in range(steps):
            net(inputs)
        infer = (time.process_time() - start) / steps
    return train, infer


def measure(rounds: int, steps: int) -> list[dict[str, Any]]:
    rows = []
    for name, (shape, batch) in SHAPES.items():
        samples: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
        for _ in range(rounds):
            for layout in (False, True):
                samples[layout].append(_timings(shape, batch, layout, steps))
        medians = {
            k: [statistics.median(s[i] for s in v) for i in (0, 1)] for k, v in samples.items()
        }
        rows.append(
            {
                "input": name,
                "batch": batch,
                "train_step_ms": {
                    "nchw": medians[False][0] * 1e3,
                    "channels_last": medians[True][0] * 1e3,
                },
                "inference_ms": {
                    "nchw": medians[False][1] * 1e3,
                    "channels_last": medians[True][1] * 1e3,
                },
                "train_ratio": medians[True][0] / medians[False][0],
                "inference_ratio": medians[True][1] / medians[False][1],
            }
        )
    return rows


def render(results: dict[str, Any]) -> str:
    table = markdown_table(
        [
            "input",
            "batch",
            "train step ms NCHW",
            "channels-last",
            "ratio",
            "inference ms NCHW",
            "channels-last",
            "ratio",
        ],
        [
            [
                r["input"],
                r["batch"],
                f"{r['train_step_ms']['nchw']:.1f}",
                f"{r['train_step_ms']['channels_last']:.1f}",
                f"{r['train_ratio']:.2f}x",
                f"{r['inference_ms']['nchw']:.1f}",
                f"{r['inference_ms']['channels_last']:.1f}",
                f"{r['inference_ratio']:.2f}x",
            ]
            for r in results["rows"]
        ],
    )
    return (
        "# conv4: channels-last weights against NCHW\n\n"
        f"{record_markdown(results)}\n\n"
        "CPU time (process), 1 torch thread, median of "
        f"{results['settings']['rounds']} interleaved rounds of "
        f"{results['settings']['steps']} steps; absolute times hold for this machine only.\n\n"
        f"{table}\n"
    )


def main() -> None:
    retain_unless_disabled()  # freed memory kept for reuse, as the siamcl command starts
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (5)")
    parser.add_argument("--steps", type=int, default=8, help="steps timed per round (8)")
    parser.add_argument("--out", default=DEFAULT_OUT, help="result folder")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {
        **run_record("channels_last", [0], rounds=args.rounds, steps=args.steps, torch_threads=1)
    }
    results["rows"] = measure(args.rounds, args.steps)
    print(write_results(args.out, "channels_last", results, render(results)))


if __name__ == "__main__":
    main()
