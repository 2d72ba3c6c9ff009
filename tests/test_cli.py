"""The ``siamcl`` command itself: fast help, its version, and help that states every default."""

from __future__ import annotations

import argparse
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import siamcl
from siamcl.cli import build_parser, main
from siamcl.cli.help import HelpFormatter, plain_text, shown_default
from siamcl.cli.registry import COMMANDS, Group

ROOT = Path(__file__).resolve().parent.parent

HELP_WITHOUT_TORCH = """
import sys
import siamcl.cli
for argv in (["--help"], ["bench", "--help"], ["fewshot", "--help"], ["report", "--help"]):
    assert siamcl.cli.main(argv) == 0, argv
heavy = sorted(name for name in ("torch", "numpy", "avalanche") if name in sys.modules)
assert not heavy, heavy
"""


def _command_lines() -> list[list[str]]:
    lines = []
    for name, entry in COMMANDS.items():
        if isinstance(entry, Group):
            lines += [[name, sub] for sub in entry.commands]
        else:
            lines.append([name])
    return lines


def _chosen_parser(argv: list[str]) -> argparse.ArgumentParser:
    """The parser of the command named by ``argv``, configured."""
    parser = build_parser(argv)
    for word in argv:
        (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        parser = commands.choices[word]
    return parser


def test_help_imports_neither_torch_nor_numpy() -> None:
    done = subprocess.run(
        [sys.executable, "-c", HELP_WITHOUT_TORCH],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "bench" in done.stdout and "make-runs" in done.stdout


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    try:
        expected = metadata.version("siamcl")
    except metadata.PackageNotFoundError:
        expected = siamcl.__version__
    assert capsys.readouterr().out == f"siamcl {expected}\n"


@pytest.mark.parametrize("argv", _command_lines(), ids=" ".join)
def test_every_option_states_its_default_in_plain_text(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    parser = _chosen_parser(argv)
    formatter = HelpFormatter(parser.prog)
    for action in parser._actions:
        if not action.option_strings or action.required or action.help == argparse.SUPPRESS:
            continue
        text = formatter._get_help_string(action)
        if action.default is not argparse.SUPPRESS:
            assert "default" in text or f"({shown_default(action.default)})" in text, text
    assert main([*argv, "--help"]) == 0
    shown = capsys.readouterr().out
    assert "``" not in shown and ":class:" not in shown and ":mod:" not in shown


def test_plain_text_unwraps_sphinx_markup() -> None:
    text = "Uses :class:`~siamcl.store.PrototypeStore` and :mod:`siamcl.data` with ``k=1``."
    assert plain_text(text) == "Uses PrototypeStore and siamcl.data with k=1."


def test_public_names_import_lazily() -> None:
    from siamcl import IncrementalClassifier, PrototypeStore, ResourceMeter, TaskReport

    assert IncrementalClassifier.__module__ == "siamcl.learners.incremental"
    assert {PrototypeStore.__name__, ResourceMeter.__name__, TaskReport.__name__} == {
        "PrototypeStore",
        "ResourceMeter",
        "TaskReport",
    }
    assert set(siamcl.__all__) <= set(dir(siamcl))
    with pytest.raises(AttributeError, match="no_such_name"):
        siamcl.no_such_name  # noqa: B018


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--device", "banana"], "--device 'banana' is not a torch device"),
        (["--out", "{file}"], "is a file; give a folder"),
        (["--out", "{file}/results"], "is a file, not a folder"),
    ],
)
def test_bad_devices_and_outputs_fail_before_any_work(tmp_path, capsys, extra, message):
    blocker = tmp_path / "taken.txt"
    blocker.write_text("mine")
    argv = ["bench", "quick", *[arg.format(file=blocker) for arg in extra]]
    assert main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and error.count("\n") == 0
    assert blocker.read_text() == "mine"


def test_a_checkpoint_path_that_is_a_file_fails_before_training(tmp_path, capsys):
    blocker = tmp_path / "ck"
    blocker.write_text("mine")
    argv = ["bench", "core", "--quick", "--checkpoint", str(blocker), "--out", str(tmp_path)]
    assert main(argv) == 2
    assert "--checkpoint" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]  # nothing was trained or written


def test_cuda_without_a_gpu_is_one_line(capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    assert main(["bench", "quick", "--device", "cuda"]) == 2
    assert "no CUDA device is available" in capsys.readouterr().err


def test_an_existing_output_file_may_be_replaced(tmp_path):
    from siamcl.cli.checks import UsageError, check_writable

    existing = tmp_path / "results.json"
    existing.write_text("{}")
    check_writable(existing, "--out", folder=False)  # a file output may be overwritten
    with pytest.raises(UsageError, match="is a folder"):
        check_writable(tmp_path, "--out", folder=False)
