"""The core library works without the optional extras (avalanche, plots, export, energy).

A fresh interpreter runs with avalanche, matplotlib, onnx, onnxruntime, onnxscript, zeus and
codecarbon made unimportable (``sys.modules[name] = None``, which is how Python reports an
absent package), then learns, saves, loads, answers ``siamcl --help``, runs the quick
benchmark, and meets a one-line error naming the extra wherever a feature needs one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BLOCKED = ("avalanche", "matplotlib", "onnx", "onnxruntime", "onnxscript", "codecarbon", "zeus")

SCRIPT = """
import contextlib, io, json, sys
for name in {blocked!r}:
    sys.modules[name] = None
out = sys.argv[1]

import siamcl
from siamcl import IncrementalClassifier
from siamcl.cli import main
from siamcl.data import load_dataset

torch = sys.modules["torch"]
torch.set_num_threads(1)
X, y, X_test, y_test = load_dataset("digits")
clf = IncrementalClassifier(encoder="mlp", epochs=1, seed=0)
clf.fit_task(X[:200], y[:200])
clf.save(out + "/model")
loaded = IncrementalClassifier.load(out + "/model")
assert (loaded.predict(X_test[:50]) == clf.predict(X_test[:50])).all()

def errors(call):
    try:
        call()
    except ImportError as error:
        return str(error)
    return None

def import_plugin():
    from siamcl.integrations.avalanche import SiameseStrategy  # noqa: F401

help_text = io.StringIO()
with contextlib.redirect_stdout(help_text):
    help_status = main(["--help"])
bench = ["bench", "quick", "--quick", "--quiet", "--tasks", "2", "--out", out + "/bench"]
quick_status = main(bench)
cl_status = main(["bench", "cl", "--quick", "--quiet", "--out", out + "/cl"])
report_status = main(["report", out + "/bench"])
heavy = sorted(name for name in {blocked!r} if sys.modules.get(name) is not None)
print(json.dumps({{
    "help": [help_status, "bench" in help_text.getvalue()],
    "plugin": errors(import_plugin),
    "export": errors(lambda: clf.export(out + "/exported")),
    "quick": quick_status,
    "cl": cl_status,
    "report": report_status,
    "imported": heavy,
}}))
"""


def test_core_works_without_the_extras(tmp_path: Path) -> None:
    script = textwrap.dedent(SCRIPT).format(blocked=BLOCKED)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["help"] == [0, True]
    assert "siamcl[avalanche]" in result["plugin"]
    assert "siamcl[export]" in result["export"]
    assert result["imported"] == []

    assert result["quick"] == 0
    assert json.loads((tmp_path / "bench" / "quick_mnist5k.json").read_text())["suite"] == "quick"
    assert "Siamese vs softmax" in (tmp_path / "bench" / "quick_mnist5k.md").read_text()

    # the Avalanche rows of bench cl: one line naming the extra, before any work
    assert result["cl"] == 2
    assert "siamcl bench cl" in done.stderr and "pip install 'siamcl[avalanche]'" in done.stderr
    assert not (tmp_path / "cl").exists() or not any((tmp_path / "cl").iterdir())

    # a report without matplotlib: the markdown, with the chart left out and a note
    assert result["report"] == 0
    report = (tmp_path / "bench" / "REPORT.md").read_text()
    assert "No result holds" not in report  # the Pareto table stands without its chart
    assert not list((tmp_path / "bench").glob("*.png"))
    assert "figure skipped" in done.stderr and "siamcl[plots]" in done.stderr
