"""The ``siamcl`` command: benchmark suites, reports and few-shot tools.

    siamcl bench SUITE [--dataset D] [--data-root DIR] [--seeds 0,1,2] [--device cpu]
                       [--out DIR] [--quick] [--quiet]
    siamcl report DIR
    siamcl fewshot {train,eval,make-runs} ...

Errors in what the user typed (unknown suite, data set or option, missing data) end the
command with one clear line and exit status 2, not a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from siamcl.bench import SUITES

DEFAULT_OUT = "benchmarks/results"


class UsageError(Exception):
    """A problem with what the user asked for, reported as one line."""


class OneLineErrorParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds must be integers separated by commas: {text!r}")
    if not seeds:
        raise argparse.ArgumentTypeError("--seeds needs at least one seed")
    return seeds


def add_shared_options(parser: argparse.ArgumentParser, dataset: str = "mnist5k") -> None:
    """Options every benchmark suite understands."""
    parser.add_argument("--dataset", default=dataset, help=f"data set name (default {dataset})")
    parser.add_argument("--data-root", default=None, help="folder holding on-disk data sets")
    parser.add_argument("--seeds", type=_seeds, default=None, help="comma-separated seeds")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"result folder ({DEFAULT_OUT})")
    parser.add_argument("--quick", action="store_true", help="smaller settings for a fast run")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The command's parser; only the suite named in ``argv`` is imported and configured.

    Suites pull in heavy libraries (Avalanche, torchao), so listing them costs nothing and
    running one imports just that one.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = argv[1] if len(argv) > 1 and argv[0] == "bench" else None
    parser = OneLineErrorParser(
        prog="siamcl",
        description="Siamese networks for class-incremental and few-shot learning, measured.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    bench = commands.add_parser("bench", help="run a benchmark suite")
    suites = bench.add_subparsers(dest="suite", metavar="SUITE")
    suites.required = True
    for name, (module_name, summary) in SUITES.items():
        sub = suites.add_parser(name, help=summary, description=summary)
        if name != chosen:
            continue
        module = _import_suite(module_name)
        if module is None:
            sub.set_defaults(run=_missing_suite(name))
            continue
        sub.description = module.__doc__
        add_shared_options(sub, getattr(module, "DEFAULT_DATASET", "mnist5k"))
        module.configure(sub)
        sub.set_defaults(run=module.run)
    for name in ("report", "fewshot"):
        module = _import_suite(f"siamcl.{name}_cli")
        if module is not None:
            module.configure(commands)
    return parser


def _missing_suite(name: str):
    def run(args: argparse.Namespace) -> None:
        raise UsageError(f"suite {name!r} is not part of this installation")

    return run


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help, or a usage error already printed as one line
        return stop.code if isinstance(stop.code, int) else 2
    if getattr(args, "nproc", 1) > 1 and "LOCAL_RANK" not in os.environ:
        return _launch_processes(args.nproc, argv)
    try:
        args.run(args)
    except (UsageError, FileNotFoundError, ValueError) as error:
        print(f"siamcl: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("siamcl: interrupted", file=sys.stderr)
        return 130
    return 0


def _launch_processes(nproc: int, argv: Sequence[str] | None) -> int:
    """Run this same command as ``nproc`` processes on this machine through torchrun."""
    import subprocess

    argv = list(sys.argv[1:] if argv is None else argv)
    # torchrun's own parser would take "--nproc" for an abbreviation of its --nproc-per-node
    argv = [
        "--processes" + arg[len("--nproc") :] if arg.split("=")[0] == "--nproc" else arg
        for arg in argv
    ]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", str(nproc), "-m", "siamcl.cli", *argv]
    return subprocess.run(command, check=False).returncode


def _import_suite(module_name: str):
    """Import a suite module, or ``None`` when it is not part of this installation yet."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name == module_name:
            return None
        raise


if __name__ == "__main__":
    sys.exit(main())
