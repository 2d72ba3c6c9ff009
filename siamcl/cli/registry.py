"""Every ``siamcl`` command in one table: its summary, and where its code lives.

The summaries here are all that ``siamcl --help`` and ``siamcl bench --help`` print, so help
imports nothing heavy; a command's module is imported only when that command is chosen.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["COMMANDS", "Command", "Group"]


@dataclass(frozen=True)
class Command:
    """A command: ``module.configure(parser)`` adds its options, ``module.run(args)`` runs it.

    ``options`` names a function (``"package.module:function"``) called as
    ``function(parser, module)`` before ``configure``: the options a family of commands
    shares, such as every benchmark suite's.
    """

    summary: str
    module: str
    configure: str = "configure"
    run: str = "run"
    options: str | None = None
    description: str | None = None


@dataclass(frozen=True)
class Group:
    """A command made of subcommands, such as ``siamcl bench SUITE``."""

    summary: str
    commands: dict[str, Command] = field(default_factory=dict)
    description: str | None = None
    metavar: str = "SUBCOMMAND"


def _suite(name: str, summary: str) -> Command:
    return Command(summary, f"siamcl.bench.{name}", options="siamcl.cli.bench:add_suite_options")


_FEWSHOT = "siamcl.cli.fewshot"
_OWN_DATA = "siamcl.cli.own_data"

COMMANDS: dict[str, Command | Group] = {
    "bench": Group(
        "run a benchmark suite",
        {
            "quick": _suite("quick", "Siamese vs standard CNN, class-incremental, in a minute"),
            "core": _suite("core", "the default learner's stream, 3 seeds, and joint training"),
            "data-efficiency": _suite(
                "data_efficiency", "Siamese vs standard at 1-100% of the training data"
            ),
            "cl": _suite("cl", "Siamese learner vs Avalanche's continual-learning baselines"),
            "compress": _suite("compress", "QAT, distillation and quantized distillation"),
            "energy": _suite("energy", "energy to target accuracy, every technique, one run"),
            "fewshot": _suite("fewshot", "Omniglot one-shot and few-shot class-incremental"),
            "store": _suite("store", "FAISS indexes for the prototype store at 10k-1M vectors"),
        },
        description="Run a benchmark suite; it writes JSON and markdown results under --out.",
        metavar="SUITE",
    ),
    "fewshot": Group(
        "one-shot learning: train, make runs, evaluate",
        {
            "train": Command(
                "train a one-shot encoder on Omniglot alphabets",
                _FEWSHOT,
                configure="configure_train",
                run="run_train",
            ),
            "make-runs": Command(
                "write N-way one-shot runs from alphabets",
                _FEWSHOT,
                configure="configure_make_runs",
                run="run_make_runs",
            ),
            "eval": Command(
                "accuracy of a saved classifier on one-shot runs",
                _FEWSHOT,
                configure="configure_eval",
                run="run_eval",
            ),
        },
        description=(
            "Train a one-shot encoder, write N-way one-shot runs, evaluate on them.\n\n"
            "  siamcl fewshot train --data-root DIR [--alphabets A B ...] --out MODEL_DIR\n"
            "  siamcl fewshot make-runs --data-root DIR --alphabets A B ... --out RUNS_DIR\n"
            "  siamcl fewshot eval --model MODEL_DIR --runs RUNS_DIR [--out RESULT.json]"
        ),
    ),
    "learn": Command(
        "train a model on your own image folder (or continue one)",
        _OWN_DATA,
        configure="configure_learn",
        run="run_learn",
    ),
    "add": Command(
        "add classes to a model from a few images each, no training",
        _OWN_DATA,
        configure="configure_add",
        run="run_add",
    ),
    "predict": Command(
        "name the class of image files with a model, as CSV or JSON lines",
        _OWN_DATA,
        configure="configure_predict",
        run="run_predict",
    ),
    "export": Command(
        "write a model for deployment: ONNX and FAISS, no siamcl needed",
        "siamcl.cli.export",
        configure="configure_export",
        run="run_export",
    ),
    "report": Command(
        "render a folder of benchmark results into one markdown report",
        "siamcl.cli.report",
    ),
}
