"""The ``siamcl`` command: benchmark suites, reports, few-shot tools, and models of your own
images.

    siamcl bench SUITE [--dataset D] [--data-root DIR] [--seeds 0,1,2] [--device cpu]
                       [--out DIR] [--quick] [--quiet]
    siamcl report DIR
    siamcl fewshot {train,eval,make-runs} ...
    siamcl learn --data DIR --model MODEL [--task SUBDIR ...]
    siamcl add --data DIR --model MODEL
    siamcl predict --model MODEL IMAGES... [--top-k K] [--format csv|jsonl]
    siamcl export --model MODEL --out FOLDER [--format onnx|torch.export]

Every command is listed in ``siamcl.cli.registry``; only the chosen one is imported, so help
answers without loading torch. Errors in what the user typed (unknown suite, data set or
option, missing data) and an optional package a command needs but this installation lacks
(``pip install 'siamcl[avalanche]'``) end the command with one clear line and exit status 2,
not a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

from siamcl._extras import missing_extra
from siamcl.allocator import retain_unless_disabled
from siamcl.cli.checks import UsageError, check_arguments
from siamcl.cli.help import OneLineErrorParser
from siamcl.cli.registry import COMMANDS, Command, Group

__all__ = ["UsageError", "build_parser", "main"]

DESCRIPTION = "Siamese networks for class-incremental and few-shot learning, measured."


class _VersionAction(argparse.Action):
    """``--version``: the installed version, looked up only when asked for."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        kwargs.update(nargs=0, default=argparse.SUPPRESS)
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        print(f"siamcl {version()}")
        parser.exit(0)


def version() -> str:
    """siamcl's installed version, or the source tree's when it is not installed."""
    from importlib import metadata

    try:
        return metadata.version("siamcl")
    except metadata.PackageNotFoundError:
        import siamcl

        return siamcl.__version__


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The command's parser. Every command is listed with its summary; only the one named in
    ``argv`` is imported and given its options."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = OneLineErrorParser(prog="siamcl", description=DESCRIPTION)
    parser.add_argument("--version", action=_VersionAction, help="print the version and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    for name, entry in COMMANDS.items():
        chosen = bool(argv) and argv[0] == name
        description = entry.description or entry.summary
        sub = commands.add_parser(name, help=_literal(entry.summary), description=description)
        if isinstance(entry, Group):
            _add_group(sub, entry, argv[1] if chosen and len(argv) > 1 else None)
        elif chosen:
            _configure(sub, name, entry)
    return parser


def _add_group(parser: argparse.ArgumentParser, group: Group, chosen: str | None) -> None:
    """A group's subcommands, each with its summary; only ``chosen`` is configured."""
    commands = parser.add_subparsers(dest="subcommand", metavar=group.metavar)
    commands.required = True
    for name, command in group.commands.items():
        description = command.description or command.summary
        sub = commands.add_parser(name, help=_literal(command.summary), description=description)
        if name == chosen:
            _configure(sub, name, command)


def _literal(text: str) -> str:
    """Help text as written: argparse %-formats it."""
    return text.replace("%", "%%")


def _configure(parser: argparse.ArgumentParser, name: str, command: Command) -> None:
    """Import the command's module; add its shared and own options and its ``run``."""
    module = _import(command.module)
    if module is None:
        parser.set_defaults(run=_missing(name))
        return
    if command.options:
        _resolve(command.options)(parser, module)
    getattr(module, command.configure)(parser)
    parser.set_defaults(run=getattr(module, command.run))


def _import(module_name: str) -> ModuleType | None:
    """Import a command's module, or ``None`` when it is not part of this installation."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name == module_name:
            return None
        raise


def _resolve(target: str) -> Callable[..., Any]:
    module_name, _, function = target.partition(":")
    return getattr(importlib.import_module(module_name), function)


def _missing(name: str) -> Callable[[argparse.Namespace], None]:
    def run(args: argparse.Namespace) -> None:
        raise UsageError(f"{name!r} is not part of this installation")

    return run


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: this process's arguments); the exit status."""
    try:
        parser = build_parser(argv)
    except ImportError as error:  # a command module needing an extra that is not installed
        return _missing_extra(error)
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help, --version, or a usage error already printed as one line
        return stop.code if isinstance(stop.code, int) else 2
    if getattr(args, "nproc", 1) > 1 and "LOCAL_RANK" not in os.environ:
        return _launch_processes(args.nproc, argv)
    retain_unless_disabled()  # batches reuse freed pages (siamcl.allocator)
    try:
        check_arguments(args)
        args.run(args)
        if args.command == "bench":
            print(f"siamcl: results written to {os.path.abspath(args.out)}")
    except (UsageError, FileNotFoundError, ValueError) as error:
        print(f"siamcl: error: {error}", file=sys.stderr)
        return 2
    except ImportError as error:
        return _missing_extra(error)
    except KeyboardInterrupt:
        print("siamcl: interrupted", file=sys.stderr)
        return 130
    return 0


def _missing_extra(error: ImportError) -> int:
    """One line naming the extra to install (exit status 2) for an optional package the
    command needs; any other ImportError is a fault of the installation and propagates."""
    missing = missing_extra(error)
    if missing is None:
        raise error
    print(f"siamcl: error: {missing}", file=sys.stderr)
    return 2


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
