"""Benchmark suites behind ``siamcl bench``.

Each suite is a module with ``configure(parser)`` (its own options, beyond the shared ones
of ``siamcl.cli.bench``) and ``run(args) -> dict`` (writes JSON and markdown under
``args.out`` and returns the results). The command registry (``siamcl.cli.registry``) lists
them; a suite is imported only when chosen.
"""
