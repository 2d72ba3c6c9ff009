"""How ``siamcl bench compress`` results are shown: the markdown report.

The mean table per family and variant, the bars, each seed's rows when there are several
seeds, and a fixed note on how every figure was measured.
"""

from __future__ import annotations

from typing import Any

from siamcl.reporting import markdown_table
from siamcl.reporting.records import machine_line

__all__ = ["render_markdown", "results_table"]

HEADERS = [
    "family",
    "variant",
    "accuracy",
    "Δ acc (points)",
    "model KiB",
    "bytes ×",
    "batch 1 ms",
    "batch 1 ×",
    "batch 256 ms",
    "batch 256 ×",
    "train energy J (method)",
    "energy ×",
    "train s",
]


def render_markdown(results: dict[str, Any]) -> str:
    """The result file's markdown: run record, mean table, bars, per-seed table, notes."""
    n_seeds = len(results["seeds"])
    settings = results["settings"]
    return "\n".join(
        [
            *_header(results),
            "",
            (
                f"Mean over {n_seeds} seed{'s' if n_seeds > 1 else ''} "
                "(accuracy ± standard deviation):"
            ),
            "",
            results_table(results["summary"], per_seed=False),
            "",
            (
                "Ratios (×) and accuracy differences are against the fp32 teacher of the same "
                "family and seed in this run, then averaged."
            ),
            "",
            "## Bars (on the means)",
            "",
            _bars_table(results["bars"]),
            "",
            *(
                ["## Each seed", "", results_table(results["rows"], per_seed=True), ""]
                if n_seeds > 1
                else []
            ),
            "## How it was measured",
            "",
            NOTES.format(rounds=settings["latency_rounds"]),
        ]
    )


def _header(results: dict[str, Any]) -> list[str]:
    """Title, run record and a line on the data and training budgets."""
    machine = results["machine"]
    settings = results["settings"]
    threads = f"{settings['torch_threads']} torch threads"
    return [
        f"# Compression on {settings['dataset']}: QAT, distillation, quantized distillation",
        "",
        f"Command: `{results['command']}`  ",
        f"Seeds: {results['seeds']}  ",
        f"Machine: {machine_line(machine, threads)}  ",
        f"Date: {results['date']}  ",
        (
            f"Data: {results['train_size']} training and {results['test_size']} test images, "
            f"one task with every class. Teacher and QAT: {settings['epochs']} epochs at "
            f"learning rate 1e-3; students: {settings['student_epochs']} epochs at "
            f"{settings['student_lr']:g}."
        ),
    ]


def results_table(rows: list[dict[str, Any]], per_seed: bool) -> str:
    """Accuracy, size, latency and energy of each row, with ratios to the fp32 teacher.

    ``per_seed`` rows carry their seed and plain accuracy; summary rows mean ± sd.
    """
    columns = HEADERS[:2] + (["seed"] if per_seed else []) + HEADERS[2:]
    return markdown_table(columns, [_table_row(r, per_seed) for r in rows])


def _table_row(r: dict[str, Any], per_seed: bool) -> list[Any]:
    return [
        r["family"],
        r["variant"],
        *([r["seed"]] if per_seed else []),
        r["accuracy"] if per_seed else f"{r['accuracy']:.3f} ± {r['accuracy_std']:.3f}",
        0.0 - r["accuracy_drop_points"],  # 0.0 - x, not -x: no "-0.000"
        r["model_bytes"] / 1024,
        r["bytes_ratio"],
        1000 * r["latency_1_s"],
        r["latency_1_ratio"],
        1000 * r["latency_256_s"],
        r["latency_256_ratio"],
        f"{r['energy_j']:.0f} ({r['energy_method']})",
        r["energy_ratio"] if r["energy_ratio"] is not None else "",
        r["train_wall_s"],
    ]


def _bars_table(bars: list[dict[str, Any]]) -> str:
    """Each bar with its value, limit and verdict."""
    rows = [
        [
            b["family"],
            b["variant"],
            b["measure"],
            b["value"],
            f"≤ {b['limit']}",
            "met" if b["met"] else "**not met**",
        ]
        for b in bars
    ]
    return markdown_table(["family", "variant", "measure", "value", "bar", ""], rows)


NOTES = """\
- **Models.** Teacher and QAT rows use `conv4` (4 conv-BN-ReLU-pool blocks of 64 channels and a
  linear projection to 64 dimensions); students use `conv4-small` (16 channels). The Siamese
  learner (`IncrementalClassifier`, multi-similarity loss, nearest class prototype) and the
  standard CNN (`SoftmaxClassifier`, same backbone with a softmax head, cross-entropy) are
  trained with the same optimiser, augmentation and epochs.
- **QAT int8** (`qat="int8"`): fake-quantised int8 weights (per output channel) and uint8
  activations on every conv and linear layer during training, BatchNorm folded into the convs
  (fused conv-BN-ReLU), then conversion to real int8 modules that run on the CPU's
  fbgemm/oneDNN int8 kernels (PyTorch FX graph-mode QAT, x86 backend; 8-bit activations on
  CPUs with VNNI, 7-bit otherwise). QAT is fine-tuning: the first two thirds of the epochs
  train the float network the graph was prepared from (it shares every weight), the last
  third fake-quantises, its ranges observed afresh from its first batch (from four epochs on,
  the last epoch also freezes ranges and BatchNorm statistics). Fake quantization over more of
  the epochs lost more accuracy in development runs, the softmax CNN far more than the Siamese
  encoder. The Siamese encoder's final L2 normalisation
  stays float; the softmax classifier's head stays float (it grows with new classes).
- **PTQ int8** (`qat="int8-ptq"`): the same int8 format with no fake-quantised epoch: every
  epoch trains the float network, and after training the ranges are calibrated on 512
  evenly spaced training images (post-training static quantization), so training costs what
  float training costs. The students' `PTQ int8` row is the KD student quantized that way.
- **QAT int8 (PT2E)** (`qat="int8-pt2e"`): the same quantization and schedule through torchao's
  PT2E flow (`torch.export`, `prepare_qat_pt2e` with the X86InductorQuantizer, `convert_pt2e`; the
  last epoch freezes ranges but not BatchNorm statistics), lowered eagerly to oneDNN int8
  convolutions with uint8 max pooling, no `torch.compile` (compiling matched FX at batch 256 but
  took 46 s for the first input shape and 5 s for the next on two cores, and a compiled model
  cannot be saved). It is
  opt-in because it measured slower than FX at batch 256 in `benchmarks/results/int8_paths`
  (0.095x against 0.082x of fp32); on an AVX2 machine without VNNI it was the faster one (0.15x
  against 0.20x, `benchmarks/results/int8_paths_avx2`): which int8 path wins depends on the CPU.
- **Distillation**: Siamese students match the teacher's embeddings (cosine distance;
  `teacher_loss="auto"`: relational distillation, pairwise distances and angles after Park et
  al. 2019, only where the embedding sizes differ); softmax students
  add temperature-4 logit distillation (Hinton et al. 2015) to cross-entropy; both with
  weight 1. The teacher's outputs are computed once per training image before the first
  step (`teacher_targets="cached"`) and students see undistorted batches, so no teacher
  forward pass runs inside the loop and a cached output is exactly the teacher's answer for
  that batch; their training energy includes that one pass. Students train longer and at a
  higher learning rate than the teacher: a 16-channel network learns less per step, and its
  steps are cheap.
- **Model bytes** count the numbers each network holds (state dict at each tensor's storage
  width; quantized weights at 1 byte plus their per-channel scales and zero points). The
  JSON also gives `serialized_bytes`, the size of the saved state dict. Siamese rows exclude
  the prototype store (one 64-float prototype per class), the same for every variant.
- **Latency**: median over {rounds} rounds of one forward pass on preprocessed test images
  (no preprocessing, no prototype search), every round timing every model in turn so that
  load from other processes falls on all alike.
- **Energy**: from `ResourceMeter` around training; the method column says whether it was
  measured (RAPL/NVML) or estimated from CPU time (see docs/energy.md).
"""
