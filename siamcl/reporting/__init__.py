"""Reporting: result records, markdown tables, and reports with Pareto charts across results.

Nothing here imports torch or numpy at import time; a record imports torch only to describe
the machine, and a chart imports matplotlib only when it is drawn.
"""

from siamcl.reporting.pareto import ParetoPoint, find_points, pareto_front, plot_pareto
from siamcl.reporting.records import (
    DEFAULT_OUT,
    parse_seeds,
    record_markdown,
    run_record,
    titled_markdown,
    write_results,
)
from siamcl.reporting.report import ResultFile, read_results, render_report, write_report
from siamcl.reporting.tables import markdown_table

__all__ = [
    "DEFAULT_OUT",
    "ParetoPoint",
    "ResultFile",
    "find_points",
    "markdown_table",
    "pareto_front",
    "parse_seeds",
    "plot_pareto",
    "read_results",
    "record_markdown",
    "render_report",
    "run_record",
    "titled_markdown",
    "write_report",
    "write_results",
]
