"""``siamcl report DIR``: every benchmark result in a folder as one markdown report."""

from __future__ import annotations

import argparse
from typing import Any

from siamcl.reporting.report import write_report

__all__ = ["configure", "run"]

DESCRIPTION = """\
Every benchmark result in a folder as one markdown report.

Each *.json result becomes a section (its command, seeds, machine, its own markdown table
when a .md of the same name sits beside it, and its plots: PNGs whose names start with the
result's name). Across all results, every row holding an accuracy and an energy figure
becomes a point of a Pareto chart of accuracy against energy; rows repeated over seeds are
averaged. Files that cannot be read are listed with the reason, not fatal."""


def configure(parser: argparse.ArgumentParser) -> None:
    """The ``report`` command's arguments."""
    parser.description = DESCRIPTION
    parser.add_argument("directory", help="folder of result JSON files (e.g. benchmarks/results)")
    parser.add_argument(
        "--out", default=None, help="markdown file to write (default DIR/REPORT.md)"
    )
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Write the report of ``args.directory`` and say where it went."""
    written = write_report(args.directory, args.out)
    if not args.quiet:
        files, skipped = len(written["files"]), len(written["skipped"])
        print(
            f"wrote {written['report']} ({files - skipped} results, "
            f"{written['points']} Pareto points)"
        )
    return written
