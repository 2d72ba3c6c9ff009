"""Result records: what every benchmark writes beside its numbers, and how it writes them.

A record states the command, the seeds, the settings, the machine, the git commit of the
code and the versions of the libraries that produced a result, so a result file can be
traced and rerun. Every benchmark (``siamcl bench`` suites and the scripts under
``benchmarks/``) parses its seeds with :func:`parse_seeds` and writes with
:func:`write_results`. Heavy libraries are imported only when a record is made.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_OUT",
    "LIBRARIES",
    "add_threads_option",
    "choice_list",
    "command_line",
    "git_commit",
    "library_versions",
    "machine_info",
    "parse_one_seed",
    "parse_seeds",
    "parsed_list",
    "positive_int",
    "positive_int_list",
    "record_markdown",
    "run_record",
    "timing_script",
    "write_results",
]

# Results go to a scratch folder unless --out says otherwise: the committed results under
# benchmarks/results/ are written there on purpose.
DEFAULT_OUT = os.path.join(tempfile.gettempdir(), "siamcl-results")
LIBRARIES = (
    "siamcl",
    "torch",
    "torchvision",
    "numpy",
    "faiss-cpu",
    "pytorch-metric-learning",
    "avalanche-lib",
    "torchao",
    "scikit-learn",
)


def parse_one_seed(text: str) -> int:
    """``--seeds`` of a command that trains one model: exactly one seed; an argparse ``type``."""
    seeds = parse_seeds(text)
    if len(seeds) != 1:
        raise argparse.ArgumentTypeError(
            f"this command trains one model: give one seed, not {text!r}"
        )
    return seeds[0]


def parse_seeds(text: str) -> list[int]:
    """Seeds from a comma-separated list such as ``"0,1,2"``; an argparse ``type``."""
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--seeds must be integers separated by commas: {text!r}"
        ) from None
    if not seeds:
        raise argparse.ArgumentTypeError("--seeds needs at least one seed")
    return seeds


def positive_int(text: str) -> int:
    """One positive integer; an argparse ``type``."""
    return _int_from(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    """One integer, 0 or more; an argparse ``type``."""
    return _int_from(text, 0, "an integer >= 0")


def _int_from(text: str, least: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
    return value


def add_threads_option(parser: argparse.ArgumentParser, default: int | None, why: str) -> None:
    """The ``--threads`` option every measuring command shares: CPU threads for torch and the
    BLAS / OpenMP pools (:func:`siamcl.threads.cpu_threads`); ``why`` explains the default."""
    shown = "their own choice" if default is None else default
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=default,
        help=f"CPU threads: torch, BLAS, OpenMP (default {shown}: {why})",
    )


def positive_int_list(text: str) -> list[int]:
    """Positive integers from a comma-separated list such as ``"1,3"``; an argparse ``type``."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas: {text!r}")
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers: {text!r}")
    return values


def parsed_list(parse: Callable[[str], Any]) -> Any:
    """An argparse ``type`` reading a comma-separated list of names (duplicates dropped, order
    kept), each accepted by ``parse`` (which raises ValueError naming what is wrong)."""

    def names(text: str) -> list[str]:
        rows = list(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
        if not rows:
            raise argparse.ArgumentTypeError(f"no names in {text!r}")
        for name in rows:
            try:
                parse(name)
            except ValueError as error:
                raise argparse.ArgumentTypeError(str(error)) from None
        return rows

    return names


def choice_list(choices: Sequence[str]) -> Any:
    """An argparse ``type`` reading a comma-separated list of names from ``choices``
    (duplicates dropped, order kept)."""

    def parse(text: str) -> list[str]:
        names = [part.strip() for part in text.split(",") if part.strip()]
        unknown = sorted(set(names) - set(choices))
        if unknown or not names:
            raise argparse.ArgumentTypeError(
                f"unknown {unknown or repr(text)}; choose from {','.join(choices)}"
            )
        return list(dict.fromkeys(names))

    return parse


def machine_info() -> dict[str, Any]:
    """The machine a result came from: platform, CPU model, the vector instructions torch
    uses (AVX2, AVX512), whether it computes bfloat16 natively and has VNNI int8 dot products
    (mixed-precision and int8 figures depend on them), CPUs, memory, Python, torch,
    accelerator."""
    import psutil
    import torch

    from siamcl.allocator import allocator_setting
    from siamcl.training.precision import has_vnni, native_bf16

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_model": _cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_bf16_native": native_bf16("cpu"),
        "cpu_int8_vnni": has_vnni(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gb": round(psutil.virtual_memory().total / 1e9, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "malloc": allocator_setting(),
    }


def _cpu_model() -> str | None:
    """The CPU's model name as Linux reports it (None elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def library_versions(names: Sequence[str] = LIBRARIES) -> dict[str, str]:
    """Installed versions of ``names`` (distribution names); missing ones are left out."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_commit(folder: str | os.PathLike | None = None) -> dict[str, Any] | None:
    """The commit checked out where siamcl's code lives, and whether files other than
    results under ``benchmarks/results`` differ from it;
    ``None`` outside a git checkout (an installed wheel) or without git."""
    folder = Path(folder) if folder is not None else Path(__file__).resolve().parent
    try:
        commit = _git(folder, "rev-parse", "HEAD")
        # result files being written are not changes to the code that wrote them
        changes = _git(
            folder,
            *("status", "--porcelain", "--untracked-files=no", "--"),
            *(":(top)", ":(top,exclude)benchmarks/results"),
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(changes)}


def _git(folder: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10, check=True
    )
    return done.stdout.strip()


def command_line(argv: Sequence[str] | None = None) -> str:
    """The command that is running: ``siamcl ...`` for the command, ``python SCRIPT ...``
    for a script."""
    argv = list(sys.argv if argv is None else argv)
    if not argv:
        return ""
    program = Path(argv[0])
    if program.name == "siamcl" or program.parent.name == "cli":  # the script, or -m siamcl.cli
        return " ".join(["siamcl", *argv[1:]])
    return " ".join(["python", *argv])


def run_record(suite: str, seeds: Sequence[int], **settings: Any) -> dict[str, Any]:
    """Header of a result file: suite, command, seeds, settings, machine, code and date."""
    return {
        "suite": suite,
        "command": command_line(),
        "seeds": list(seeds),
        "settings": settings,
        "machine": machine_info(),
        "git": git_commit(),
        "versions": library_versions(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def record_markdown(results: dict[str, Any]) -> str:
    """The record as markdown lines: command, seeds, machine, code and date."""
    machine = results.get("machine") or {}
    lines = [
        f"Command: `{results.get('command', '')}`  ",
        f"Seeds: {results.get('seeds', [])}  ",
        f"Machine: {machine_line(machine)}  ",
        _code_line(results),
        f"Date: {results.get('date', '')}",
    ]
    return "\n".join(line for line in lines if line)


def machine_line(machine: dict[str, Any], *extra: str) -> str:
    """The machine a result was measured on, for a report's record: the CPU model (with its
    vector instructions, whether bfloat16 was native and whether int8 had VNNI), CPUs, torch,
    then ``extra`` (threads, library versions). Older records lack some of these."""
    parts = [machine.get("cpu_model") or machine.get("processor", "?")]
    features = [machine["cpu_capability"]] if machine.get("cpu_capability") else []
    if "cpu_bf16_native" in machine:
        features.append("bfloat16 " + ("native" if machine["cpu_bf16_native"] else "emulated"))
    if "cpu_int8_vnni" in machine:
        features.append("int8 " + ("with" if machine["cpu_int8_vnni"] else "without") + " VNNI")
    if features:
        parts[0] += f" ({', '.join(features)})"
    parts += [f"{machine.get('cpu_count', '?')} CPUs", f"torch {machine.get('torch', '?')}"]
    return ", ".join([*parts, *extra])


def titled_markdown(title: str, results: dict[str, Any], caption: str, *body: str) -> str:
    """A result file's markdown: a heading, the run's record, a caption, then ``body``."""
    return "\n".join([f"# {title}", "", record_markdown(results) + "  ", caption, "", *body])


def commit_label(git: dict[str, Any] | None) -> str:
    """A commit as a record names it: 12 hex digits, "(modified)" if the tree was dirty."""
    if not git:
        return "unknown"
    return f"{git['commit'][:12]}{' (modified)' if git.get('dirty') else ''}"


def _code_line(results: dict[str, Any]) -> str:
    git = results.get("git")
    versions = results.get("versions") or {}
    if not git and not versions:
        return ""
    commit = commit_label(git)
    listed = ", ".join(f"{name} {version}" for name, version in versions.items())
    return f"Code: commit {commit}; {listed}  "


def write_results(out: str | Path, name: str, results: dict[str, Any], markdown: str) -> Path:
    """Write ``name.json`` and ``name.md`` under ``out``; return the JSON path.

    When ``markdown`` does not state the code that made the result, the record's commit and
    library versions are added at its end, so every markdown result names them.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / f"{name}.json"
    json_path.write_text(json.dumps(results, indent=2, default=_jsonable) + "\n")
    markdown = markdown.rstrip()
    code = _code_line(results)
    if code and "Code: commit" not in markdown:
        markdown += f"\n\n{code.rstrip()}"
    (out / f"{name}.md").write_text(markdown + "\n")
    return json_path


def _jsonable(value: Any) -> Any:
    """numpy scalars and arrays and paths, as JSON can hold them."""
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist") and type(value).__module__ == "numpy":
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def timing_script(
    name: str,
    description: str,
    argv: Sequence[str] | None,
    options: dict[str, tuple[int, str]],
    measure: Callable[..., list[dict[str, Any]]],
    render: Callable[[dict[str, Any]], str],
    seeds: Sequence[int] = (0,),
    **fixed: Any,
) -> dict[str, Any]:
    """The ``main`` of a benchmark script that times work on one torch thread: ``--rounds``
    (interleaved rounds), each of ``options`` (name: (default, help), integers) and ``--out``;
    freed memory kept for reuse as the siamcl command keeps it. ``measure(rounds, *options)``
    gives the rows; the record (with the ``seeds`` the work draws from and ``fixed``
    settings) goes to JSON and ``render``'s markdown."""
    import torch

    from siamcl.allocator import retain_unless_disabled

    retain_unless_disabled()
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    for option, (default, help_text) in options.items():
        parser.add_argument(f"--{option}", type=int, default=default, help=help_text)
    parser.add_argument("--out", default=DEFAULT_OUT, help="result folder")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    values = {option: getattr(args, option) for option in options}
    settings = {"rounds": args.rounds, **values, "torch_threads": 1, **fixed}
    results = {**run_record(name, list(seeds), **settings)}
    results["rows"] = measure(args.rounds, *values.values())
    print(write_results(args.out, name, results, render(results)))
    return results
