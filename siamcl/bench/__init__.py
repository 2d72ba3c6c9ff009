"""Benchmark suites behind ``siamcl bench``.

Each suite is a module with ``configure(parser)`` (its own options, beyond the shared ones
added by :mod:`siamcl.cli`) and ``run(args) -> dict`` (writes JSON and markdown under
``args.out`` and returns the results). Suites are imported only when chosen.
"""

SUITES: dict[str, tuple[str, str]] = {
    "quick": ("siamcl.bench.quick", "Siamese vs standard CNN, class-incremental, in a minute"),
    "core": ("siamcl.bench.core", "the default learner's stream, 3 seeds, and joint training"),
    "data-efficiency": (
        "siamcl.bench.data_efficiency",
        "Siamese vs standard at 1-100%% of the training data",
    ),
    "cl": ("siamcl.bench.cl", "Siamese learner vs Avalanche's continual-learning baselines"),
    "compress": ("siamcl.bench.compress", "QAT, distillation and quantized distillation"),
    "fewshot": ("siamcl.bench.fewshot", "Omniglot one-shot and few-shot class-incremental"),
    "store": ("siamcl.bench.store", "FAISS indexes for the prototype store at 10k-1M vectors"),
}
