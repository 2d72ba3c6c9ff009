"""Benchmark suites behind ``siamcl bench``.

Each suite is a module with ``configure(parser)`` (its own options, beyond the shared ones
added by :mod:`siamcl.cli`) and ``run(args) -> dict`` (writes JSON and markdown under
``args.out`` and returns the results). Suites are imported only when chosen.
"""

SUITES: dict[str, str] = {
    "quick": "siamcl.bench.quick",
    "core": "siamcl.bench.core",
    "data-efficiency": "siamcl.bench.data_efficiency",
    "cl": "siamcl.bench.cl",
    "compress": "siamcl.bench.compress",
    "fewshot": "siamcl.bench.fewshot",
    "store": "siamcl.bench.store",
}
