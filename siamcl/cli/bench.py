"""``siamcl bench SUITE``: the options every benchmark suite shares.

A suite is a module under ``siamcl.bench`` with ``configure(parser)`` (its own options) and
``run(args) -> dict`` (writes JSON and markdown under ``args.out``, returns the results);
the registry in ``siamcl.cli.registry`` lists them.
"""

from __future__ import annotations

import argparse
from types import ModuleType

from siamcl.cli.help import plain_text
from siamcl.reporting.records import DEFAULT_OUT, parse_seeds

__all__ = ["add_shared_options", "add_suite_options"]

SEEDS_HELP = (
    "comma-separated seeds (default: the suite's own: 0,1,2 for core, cl and data-efficiency "
    "without --quick, else 0)"
)


def add_shared_options(parser: argparse.ArgumentParser, dataset: str = "mnist5k") -> None:
    """Options every benchmark suite understands."""
    parser.add_argument("--dataset", default=dataset, help="data set name")
    parser.add_argument("--data-root", default=None, help="folder holding on-disk data sets")
    parser.add_argument("--seeds", type=parse_seeds, default=None, help=SEEDS_HELP)
    parser.add_argument("--device", default="cpu", help="torch device")
    parser.add_argument("--out", default=DEFAULT_OUT, help="result folder")
    parser.add_argument("--quick", action="store_true", help="smaller settings for a fast run")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(out_is_folder=True)


def add_suite_options(parser: argparse.ArgumentParser, suite: ModuleType) -> None:
    """The shared options with the suite's own default data set; its docstring as the
    description."""
    parser.description = plain_text(suite.__doc__) or parser.description
    add_shared_options(parser, getattr(suite, "DEFAULT_DATASET", "mnist5k"))
