"""What quantization-aware training costs a training step, phase by phase: conv4 in float
against the same network prepared for int8 QAT (PyTorch's FX flow, as ``qat="int8"`` trains,
and torchao's PT2E flow, as ``qat="int8-pt2e"`` does) in each phase of :func:`siamcl.compress.schedule_qat` (the float epochs, which run the float
network the graph was prepared from, :mod:`siamcl.compress.float_phase`; the same epochs run
through the prepared graph, observers on, as siamcl trained them before; the fake-quantised
epochs; the last one, observers and BatchNorm statistics frozen). One torch thread,
channels-last weights, siamcl's ``train_step``, interleaved rounds, median CPU time.

    python benchmarks/qat_step.py [--rounds 3] [--steps 4] [--out DIR]
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from siamcl.compress import prepare_qat, schedule_qat
from siamcl.compress.float_phase import run_float
from siamcl.encoders import build_encoder
from siamcl.reporting import markdown_table
from siamcl.reporting.records import record_markdown, timing_script
from siamcl.training import Batch, prefer_channels_last, train_step

SHAPES = {"8x8": (1, 8, 8), "28x28": (1, 28, 28)}
EPOCHS = 9  # schedule_qat: epochs 0-5 float, 6-7 fake-quantised, 8 frozen
_QAT_PHASES = {  # name: (epoch scheduled; forced through the prepared graph)
    "float epoch": (0, False),
    "float epoch through the prepared graph": (0, True),
    "fake-quantised epoch": (6, False),
    "last epoch (frozen)": (EPOCHS - 1, False),
}
PHASES = {  # name: (scheme, None for the float network; epoch; through the graph)
    "float network": (None, None, False),
    **{f"QAT, {name}": ("int8", *setting) for name, setting in _QAT_PHASES.items()},
    **{f"PT2E QAT, {name}": ("int8-pt2e", *setting) for name, setting in _QAT_PHASES.items()},
}
BATCH = 128


def _network(
    shape: tuple[int, ...], scheme: str | None, epoch: int | None, through_graph: bool
) -> nn.Module:
    """conv4 with seed-0 weights, float (``scheme`` None) or prepared for ``scheme`` and
    scheduled for ``epoch``, then run through its prepared graph (observers on) if
    ``through_graph``."""
    torch.manual_seed(0)
    network = build_encoder("conv4", shape, 64)
    if scheme is not None:
        network = prepare_qat(network, scheme, torch.zeros(2, *shape))
        network.train()
        schedule_qat(network, epoch, EPOCHS)
        if through_graph:
            run_float(network, False)
    return prefer_channels_last(network)


def _step_s(
    shape: tuple[int, ...], phase: tuple[str | None, int | None, bool], steps: int
) -> float:
    """Mean CPU seconds of one training step (forward, loss, backward, Adam)."""
    network = _network(shape, *phase)
    optimizer = torch.optim.Adam(network.parameters())
    data = Batch(torch.randn(BATCH, *shape), torch.arange(BATCH) % 10)

    def objective(outputs: torch.Tensor, batch: Batch) -> torch.Tensor:
        return nn.functional.cross_entropy(outputs[:, :10], batch.labels)

    for _ in range(2):  # warm-up: first-call allocations, oneDNN's kernel choice
        train_step(network, objective, optimizer, data)
    start = time.process_time()
    for _ in range(steps):
        train_step(network, objective, optimizer, data)
    return (time.process_time() - start) / steps


def measure(rounds: int, steps: int) -> list[dict[str, Any]]:
    """Median step times per input size and phase, the phases interleaved in every round."""
    rows = []
    for name, shape in SHAPES.items():
        samples: dict[str, list[float]] = {phase: [] for phase in PHASES}
        for _ in range(rounds):
            for phase, setting in PHASES.items():
                samples[phase].append(_step_s(shape, setting, steps))
        medians = {phase: statistics.median(values) * 1e3 for phase, values in samples.items()}
        base = medians["float network"]
        rows += [
            {"input": name, "phase": phase, "ms": ms, "ratio": ms / base}
            for phase, ms in medians.items()
        ]
    return rows


def render(results: dict[str, Any]) -> str:
    cells = [
        [r["input"], r["phase"], f"{r['ms']:.1f}", f"{r['ratio']:.2f}x"] for r in results["rows"]
    ]
    settings = results["settings"]
    return (
        "# A training step of int8 quantization-aware training, phase by phase\n\n"
        f"{record_markdown(results)}\n\n"
        f"CPU time (process) of one conv4 training step, batch {BATCH}, 1 torch thread, "
        f"channels-last weights, median of {settings['rounds']} interleaved rounds of "
        f"{settings['steps']} steps. The phases are those `siamcl.compress.schedule_qat` sets "
        f"in a {EPOCHS}-epoch run, for PyTorch's FX flow (`QAT`, `qat=\"int8\"`) and torchao's "
        'PT2E flow (`PT2E QAT`, `qat="int8-pt2e"`); the ratio is against the float network. '
        "Absolute times hold for this machine only.\n\n"
        f"{markdown_table(['input', 'network', 'ms a step', 'vs float'], cells)}\n"
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    options = {"steps": (4, "steps timed per round")}
    description = __doc__.splitlines()[0]
    return timing_script("qat_step", description, argv, options, measure, render, batch=BATCH)


if __name__ == "__main__":
    main()
