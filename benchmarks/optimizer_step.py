"""What an Adam step costs in each of torch's implementations, on the networks siamcl trains:
the default per-parameter loop, ``foreach`` (one op per kind over every tensor) and ``fused``
(one kernel), for conv4 at 28x28 (mnist), conv4-half at 16x16 and conv4-small at 8x8
(digits), with weight decay as the learners use it. One torch thread, interleaved rounds,
median CPU time a step; each round's steps follow a warm-up. The fused step is the one
:func:`siamcl.training.adam` chooses; a learner's whole step, forward and backward included,
is in the energy records that compare before and after.

    python benchmarks/optimizer_step.py [--rounds 5] [--steps 500] [--out DIR]
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any

import torch

from siamcl.encoders import build_encoder
from siamcl.reporting import markdown_table
from siamcl.reporting.records import record_markdown, timing_script

NETWORKS = {
    "conv4, 28x28": ("conv4", (1, 28, 28)),
    "conv4-half, 16x16": ("conv4-half", (1, 16, 16)),
    "conv4-small, 8x8": ("conv4-small", (1, 8, 8)),
}
IMPLEMENTATIONS = {
    "loop": {"foreach": False},
    "foreach": {"foreach": True},
    "fused": {"fused": True},
}


def _steps_s(optimizer: torch.optim.Optimizer, steps: int) -> float:
    """CPU seconds a step, over ``steps`` steps (gradients already set)."""
    start = time.process_time()
    for _ in range(steps):
        optimizer.step()
    return (time.process_time() - start) / steps


def measure(rounds: int, steps: int) -> list[dict[str, Any]]:
    """Median CPU time an Adam step, per network and implementation, interleaved."""
    results = []
    for name, (encoder, shape) in NETWORKS.items():
        torch.manual_seed(0)
        optimizers = {}
        for implementation, option in IMPLEMENTATIONS.items():
            network = build_encoder(encoder, shape, 64)
            for parameter in network.parameters():
                parameter.grad = torch.randn_like(parameter) * 1e-3
            optimizers[implementation] = torch.optim.Adam(
                network.parameters(), lr=1e-3, weight_decay=1e-4, **option
            )
            _steps_s(optimizers[implementation], 20)  # warm-up: state allocated, kernels loaded
        samples: dict[str, list[float]] = {k: [] for k in IMPLEMENTATIONS}
        for _ in range(rounds):
            for implementation, optimizer in optimizers.items():
                samples[implementation].append(_steps_s(optimizer, steps))
        medians = {k: statistics.median(v) for k, v in samples.items()}
        network = build_encoder(encoder, shape, 64)
        results.append(
            {
                "network": name,
                "tensors": len(list(network.parameters())),
                "parameters": sum(p.numel() for p in network.parameters()),
                **{f"{k}_ms": v * 1e3 for k, v in medians.items()},
                "fused_ratio": medians["fused"] / medians["loop"],
            }
        )
    return results


def render(results: dict[str, Any]) -> str:
    cells = [
        [
            r["network"],
            str(r["tensors"]),
            f"{r['parameters']:,}",
            *(f"{r[f'{k}_ms']:.3f}" for k in IMPLEMENTATIONS),
            f"{r['fused_ratio']:.2f}x",
        ]
        for r in results["rows"]
    ]
    settings = results["settings"]
    header = ["network", "tensors", "parameters", *(f"{k} ms" for k in IMPLEMENTATIONS)]
    return (
        "# An Adam step in each of torch's implementations\n\n"
        f"{record_markdown(results)}\n\n"
        f"CPU time (process) of one `torch.optim.Adam` step (lr 0.001, weight decay 0.0001) "
        f"over every parameter of the network, median of {settings['rounds']} interleaved "
        f"rounds of {settings['steps']} steps, 1 torch thread. `loop` is torch's default on "
        "the CPU, `fused` what siamcl's learners, its Avalanche strategy and the baselines "
        "use (`siamcl.training.adam`). Absolute times hold for this machine only.\n\n"
        f"{markdown_table([*header, 'fused / loop'], cells)}\n"
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    options = {"steps": (500, "steps a round, per implementation")}
    return timing_script("optimizer_step", __doc__.splitlines()[0], argv, options, measure, render)


if __name__ == "__main__":
    main()
