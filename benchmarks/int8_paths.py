"""int8 conv4 three ways: PyTorch's FX QAT against torchao's PT2E QAT, eager and compiled.

Builds the ``conv4`` body (siamcl.encoders, 1x28x28 inputs) in fp32, prepares it for int8 QAT
through the FX flow (``qat="int8"``) and the PT2E flow (``qat="int8-pt2e"``), runs a few
training-mode batches so the observers learn ranges, converts both, and times on one torch
thread, interleaved round by round: fp32, FX int8, PT2E int8 lowered eagerly (what
``qat="int8-pt2e"`` predicts with), PT2E's converted graph run as it is (quantize /
dequantize ops around float ops), and with ``--compile`` that graph under ``torch.compile``
(inductor with freezing, the path torchao documents). Reports bytes, batch-1 and batch-256
latency and their ratios to fp32, the time of each conversion (the first PT2E one in a
process exports torchao's patterns) and of each compile (one per input shape).

    python benchmarks/int8_paths.py [--rounds 7] [--compile] [--out DIR]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from siamcl.allocator import retain_unless_disabled
from siamcl.compress import convert_qat, model_bytes, prepare_qat, schedule_qat
from siamcl.encoders import conv4
from siamcl.reporting import markdown_table, run_record, write_results
from siamcl.reporting.records import machine_line

SHAPE = (1, 28, 28)


def calibrated(scheme: str, model: nn.Module, batches: list[torch.Tensor]) -> nn.Module:
    """``model`` prepared for ``scheme`` after training-mode passes with fake quantization
    on (weights unchanged: this measures speed and size, not accuracy)."""
    prepared = prepare_qat(model, scheme, batches[0])
    schedule_qat(prepared, 0, 1)
    prepared.train()
    with torch.no_grad():
        for batch in batches:
            prepared(batch)
    prepared.eval()
    return prepared


def timed(step: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = step()
    return result, time.perf_counter() - start


def build_models(compile_graph: bool) -> tuple[dict[str, nn.Module], dict[str, Any]]:
    """The models to time and the seconds each preparation, conversion and compile took."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    torch.manual_seed(0)
    fp32 = conv4(SHAPE).eval()
    batches = [torch.randn(64, *SHAPE) for _ in range(4)]
    seconds: dict[str, Any] = {}
    fx, seconds["fx_prepare_s"] = timed(lambda: calibrated("int8", fp32, batches))
    fx_int8, seconds["fx_convert_s"] = timed(lambda: convert_qat(fx, "int8"))
    pt2e, seconds["pt2e_prepare_s"] = timed(lambda: calibrated("int8-pt2e", fp32, batches))
    lowered, seconds["pt2e_convert_first_s"] = timed(lambda: convert_qat(pt2e, "int8-pt2e"))
    lowered, seconds["pt2e_convert_again_s"] = timed(lambda: convert_qat(pt2e, "int8-pt2e"))
    graph, seconds["pt2e_convert_pt2e_only_s"] = timed(lambda: convert_pt2e(copy.deepcopy(pt2e)))
    models = {
        "fp32": fp32,
        "FX int8 (qat='int8')": fx_int8,
        "PT2E int8 lowered, eager (qat='int8-pt2e')": lowered,
        "PT2E int8 convert_pt2e graph, eager": graph,
    }
    if compile_graph:
        models["PT2E int8 + torch.compile"], seconds["compile_s"] = compiled(graph)
    return models, seconds


def compiled(graph: nn.Module) -> tuple[nn.Module, dict[str, float]]:
    """``graph`` under inductor with freezing (which fuses int8 convolutions), and the
    seconds of the first call at each timed batch size (each compiles for its shape)."""
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True
    model = torch.compile(graph, dynamic=False)
    seconds = {}
    with torch.no_grad():
        for batch in (256, 1):
            _, seconds[f"batch_{batch}"] = timed(lambda b=batch: model(torch.randn(b, *SHAPE)))
    return model, seconds


def call_seconds(model: nn.Module, inputs: torch.Tensor, calls: int) -> float:
    with torch.no_grad():
        start = time.perf_counter()
        for _ in range(calls):
            model(inputs)
        return (time.perf_counter() - start) / calls


def latencies(models: dict[str, nn.Module], rounds: int) -> dict[str, dict[str, float]]:
    """Median seconds per call at batch 1 and 256, every round timing every model in turn."""
    inputs = torch.randn(256, *SHAPE)
    samples = {name: {"latency_1_s": [], "latency_256_s": []} for name in models}
    for model in models.values():  # warm-up: first calls pack weights, allocate
        call_seconds(model, inputs, 2)
        call_seconds(model, inputs[:1], 5)
    for _ in range(rounds):
        for name, model in models.items():
            samples[name]["latency_256_s"].append(call_seconds(model, inputs, 3))
            samples[name]["latency_1_s"].append(call_seconds(model, inputs[:1], 30))
    return {
        name: {k: statistics.median(v) for k, v in values.items()}
        for name, values in samples.items()
    }


def rows_of(models: dict[str, nn.Module], times: dict[str, dict[str, float]]) -> list[dict]:
    base = times["fp32"]
    base_bytes = model_bytes(models["fp32"])
    rows = []
    for name, model in models.items():
        compiled_model = "compile" in name
        size = None if compiled_model else model_bytes(model)
        rows.append(
            {
                "model": name,
                "model_bytes": size,
                "bytes_ratio": None if size is None else size / base_bytes,
                **times[name],
                "latency_1_ratio": times[name]["latency_1_s"] / base["latency_1_s"],
                "latency_256_ratio": times[name]["latency_256_s"] / base["latency_256_s"],
            }
        )
    return rows


def render(results: dict[str, Any]) -> str:
    table = markdown_table(
        ["model", "bytes", "bytes ×", "batch 1 ms", "batch 1 ×", "batch 256 ms", "batch 256 ×"],
        [
            [
                r["model"],
                "–" if r["model_bytes"] is None else r["model_bytes"],
                "–" if r["bytes_ratio"] is None else r["bytes_ratio"],
                1000 * r["latency_1_s"],
                r["latency_1_ratio"],
                1000 * r["latency_256_s"],
                r["latency_256_ratio"],
            ]
            for r in results["rows"]
        ],
    )
    seconds = "\n".join(f"- `{k}`: {v}" for k, v in results["seconds"].items())
    machine = results["machine"]
    return "\n".join(
        [
            "# int8 conv4: FX QAT against PT2E QAT (eager, lowered, compiled)",
            "",
            f"Command: `{results['command']}`  ",
            (
                f"Machine: {machine_line(machine)}, "
                f"{results['settings']['torch_threads']} torch thread; date {results['date']}  "
            ),
            (
                f"Inputs 1x28x28; medians of {results['settings']['rounds']} interleaved rounds "
                "(3 calls at batch 256, 30 at batch 1); ratios against fp32 in this run."
            ),
            "",
            table,
            "",
            (
                "Seconds spent preparing, converting and compiling (compile: the first call at each "
                "batch size):"
            ),
            "",
            seconds,
            "",
            (
                "Bytes: `model_bytes` (state dict at storage width); the compiled model runs the "
                "converted graph's int8 weights, its compiled code and packed copies not counted."
            ),
        ]
    )


def main() -> None:
    retain_unless_disabled()  # freed memory kept for reuse, as the siamcl command starts
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds (7)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--out", default="/tmp/siamcl-bench/int8_paths", help="result folder")
    args = parser.parse_args()
    torch.set_num_threads(1)
    record = run_record(
        "int8_paths", [0], rounds=args.rounds, torch_threads=1, compile=args.compile
    )
    models, seconds = build_models(args.compile)
    times = latencies(models, args.rounds)
    results = {
        **record,  # taken before the work: the commit and date it started at
        "command": " ".join(["python", "benchmarks/int8_paths.py", *sys.argv[1:]]),
        "seconds": seconds,
        "rows": rows_of(models, times),
    }
    print(write_results(args.out, "int8_paths", results, render(results)))


if __name__ == "__main__":
    main()
