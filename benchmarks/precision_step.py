"""conv4 training steps in float32 against bfloat16 mixed precision (siamcl's ``train_step``
with an autocast dtype), at the input sizes siamcl trains on, one torch thread, channels-last
weights, interleaved rounds, median CPU time. Run twice, each in its own process: with
oneDNN free to use every instruction the CPU has, and held to AVX2
(``ONEDNN_MAX_CPU_ISA=AVX2``), which shows what bfloat16 costs where it is emulated.

    python benchmarks/precision_step.py [--rounds 3] [--steps 4] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

import torch
from torch import nn

from siamcl.allocator import retain_unless_disabled
from siamcl.encoders import build_encoder
from siamcl.reporting import markdown_table, run_record, write_results
from siamcl.reporting.records import DEFAULT_OUT, record_markdown
from siamcl.training import Batch, native_bf16, prefer_channels_last, train_step

SHAPES = {"8x8": (1, 8, 8), "16x16": (1, 16, 16), "28x28": (1, 28, 28), "105x105": (1, 105, 105)}
BATCH = {"105x105": 40}  # Omniglot-sized batches are smaller; the rest train 128 at a time
ISAS = {"native": {}, "AVX2": {"ONEDNN_MAX_CPU_ISA": "AVX2"}}


def _step_s(shape: tuple[int, ...], batch: int, dtype: torch.dtype | None, steps: int) -> float:
    """Mean CPU seconds of one training step (forward, loss, backward, Adam)."""
    torch.manual_seed(0)
    net = prefer_channels_last(build_encoder("conv4", shape, 64))
    optimizer = torch.optim.Adam(net.parameters())
    data = Batch(torch.randn(batch, *shape), torch.arange(batch) % 10)

    def objective(outputs: torch.Tensor, b: Batch) -> torch.Tensor:
        return nn.functional.cross_entropy(outputs[:, :10], b.labels)

    for _ in range(2):  # warm-up: first-call allocations, oneDNN's kernel choice
        train_step(net, objective, optimizer, data, autocast_dtype=dtype)
    start = time.process_time()
    for _ in range(steps):
        train_step(net, objective, optimizer, data, autocast_dtype=dtype)
    return (time.process_time() - start) / steps


def measure(rounds: int, steps: int) -> dict[str, Any]:
    """This process's medians per input size: float32 and bfloat16 step times."""
    torch.set_num_threads(1)
    rows = []
    for name, shape in SHAPES.items():
        batch = BATCH.get(name, 128)
        samples: dict[str, list[float]] = {"fp32": [], "bf16": []}
        for _ in range(rounds):
            samples["fp32"].append(_step_s(shape, batch, None, steps))
            samples["bf16"].append(_step_s(shape, batch, torch.bfloat16, steps))
        fp32, bf16 = (statistics.median(samples[k]) * 1e3 for k in ("fp32", "bf16"))
        rows.append({"input": name, "batch": batch, "fp32_ms": fp32, "bf16_ms": bf16})
    return {"bf16_native": native_bf16("cpu"), "rows": rows}


def render(results: dict[str, Any]) -> str:
    cells = [
        [
            isa,
            "yes" if part["bf16_native"] else "no",
            r["input"],
            r["batch"],
            f"{r['fp32_ms']:.1f}",
            f"{r['bf16_ms']:.1f}",
            f"{r['bf16_ms'] / r['fp32_ms']:.2f}x",
        ]
        for isa, part in results["isas"].items()
        for r in part["rows"]
    ]
    headers = ["oneDNN", "bf16 native", "input", "batch", "fp32 ms", "bf16 ms", "bf16 / fp32"]
    return (
        "# conv4 training step: float32 against bfloat16 mixed precision\n\n"
        f"{record_markdown(results)}\n\n"
        "CPU time (process) of one training step, 1 torch thread, channels-last weights, median "
        f"of {results['settings']['rounds']} interleaved rounds of "
        f"{results['settings']['steps']} steps; each oneDNN setting in its own process. "
        "Absolute times hold for this machine only.\n\n"
        f"{markdown_table(headers, cells)}\n"
    )


def main() -> None:
    retain_unless_disabled()  # freed memory kept for reuse, as the siamcl command starts
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (3)")
    parser.add_argument("--steps", type=int, default=4, help="steps timed per round (4)")
    parser.add_argument("--out", default=DEFAULT_OUT, help="result folder")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:  # one oneDNN setting, measured in this process
        print(json.dumps(measure(args.rounds, args.steps)))
        return
    settings = {"rounds": args.rounds, "steps": args.steps, "torch_threads": 1}
    results = {**run_record("precision_step", [0], **settings), "isas": {}}
    for isa, env in ISAS.items():
        argv = [sys.executable, __file__, "--child", "--rounds", str(args.rounds)]
        argv += ["--steps", str(args.steps)]
        done = subprocess.run(
            argv, env={**os.environ, **env}, capture_output=True, text=True, check=True
        )
        results["isas"][isa] = json.loads(done.stdout.strip().splitlines()[-1])
    print(write_results(args.out, "precision_step", results, render(results)))


if __name__ == "__main__":
    main()
