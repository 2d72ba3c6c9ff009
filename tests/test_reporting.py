"""Reporting: Pareto points across result files, and result records."""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from siamcl.reporting import (
    DEFAULT_OUT,
    ParetoPoint,
    find_points,
    pareto_front,
    parse_seeds,
    record_markdown,
    run_record,
    write_results,
)


def test_find_points_prefers_summary_rows_over_runs() -> None:
    data = {
        "runs": [{"method": "a", "seed": s, "accuracy": 0.1, "energy_j": 1.0} for s in (0, 1)],
        "summary": [{"method": "a", "fraction": 0.5, "accuracy": 0.6, "energy_j": 2.0}],
    }
    (point,) = find_points(data, source="s")
    assert (point.label, point.accuracy, point.energy_j) == ("a, 50%", 0.6, 2.0)


def test_pareto_front_keeps_points_nothing_beats() -> None:
    points = [
        ParetoPoint("s", "cheap", 0.5, 1.0),
        ParetoPoint("s", "dominated", 0.4, 2.0),
        ParetoPoint("s", "best", 0.9, 3.0),
        ParetoPoint("s", "costly", 0.9, 4.0),
    ]
    assert [p.label for p in pareto_front(points)] == ["cheap", "best"]


def test_find_points_reads_other_suites_field_names() -> None:
    data = {"summary": [{"final_accuracy": 0.9, "stream_energy_j": 12.0, "encoder": "conv4"}]}
    (point,) = find_points(data, source="core")
    assert (point.label, point.accuracy, point.energy_j) == ("encoder conv4", 0.9, 12.0)
    assert find_points({"rows": [{"accuracy": 0.5, "energy_j": "n/a"}]}) == []


def test_parse_seeds_reads_a_comma_separated_list() -> None:
    assert parse_seeds("0,1, 2,") == [0, 1, 2]
    with pytest.raises(argparse.ArgumentTypeError, match="integers"):
        parse_seeds("0,x")
    with pytest.raises(argparse.ArgumentTypeError, match="at least one"):
        parse_seeds(",")


def test_result_record_names_the_code_and_every_file_states_it(tmp_path: Path) -> None:
    import numpy as np

    record = run_record("toy", [0, 1], dataset="digits")
    assert record["seeds"] == [0, 1] and record["settings"] == {"dataset": "digits"}
    assert "torch" in record["versions"] and record["machine"]["cpu_count"]
    results = {**record, "value": np.float32(0.5), "matrix": np.eye(2)}
    path = write_results(tmp_path, "toy", results, "# Toy\n\n" + record_markdown(record))
    saved = json.loads(path.read_text())
    assert saved["value"] == 0.5 and saved["matrix"] == [[1.0, 0.0], [0.0, 1.0]]
    markdown = (tmp_path / "toy.md").read_text()
    assert markdown.count("Code: commit") == 1 and "Seeds: [0, 1]" in markdown
    write_results(tmp_path, "bare", record, "# A table without a record")
    assert "Code: commit" in (tmp_path / "bare.md").read_text()


def _benchmark(script: str) -> Any:
    """benchmarks/<script>.py imported as a module (the folder is not a package)."""
    path = Path(__file__).resolve().parent.parent / "benchmarks" / f"{script}.py"
    spec = importlib.util.spec_from_file_location(f"benchmark_{script}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "script", ["accounting", "distributed", "fewshot_settings", "fewshot_recipes"]
)
def test_benchmark_scripts_take_seeds_like_the_command(
    script: str, capsys: pytest.CaptureFixture[str]
) -> None:
    module = _benchmark(script)
    with pytest.raises(SystemExit) as stop:
        module.main(["--seeds", "0,x", "--data-root", "unused"])
    assert stop.value.code == 2
    assert "--seeds must be integers" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        module.main(["--help"])
    assert stop.value.code == 0 and f"(default: {DEFAULT_OUT})" in capsys.readouterr().out


def test_episodic_step_profile_names_every_encoder_and_where_its_time_goes(tmp_path: Path) -> None:
    module = _benchmark("episodic_step")
    results = module.main(["--rounds", "1", "--steps", "1", "--out", str(tmp_path)])
    assert [r["encoder"] for r in results["rows"]] == list(module.ENCODERS)
    assert results["rows"][0]["ratio"] == 1.0
    for row in results["rows"]:
        assert row["profiled_ms"]["convolution"] > 0 and row["profiled_ms"]["batch norm"] > 0
    markdown = (tmp_path / "episodic_step.md").read_text()
    assert "conv4-flat-pool-first" in markdown and "| convolution | batch norm |" in markdown


def test_validation_tracking_lags_are_accuracy_less_score() -> None:
    module = _benchmark("validation_tracking")

    def point(epoch, validation, sample, accuracy, cpu_s=(0.1, 0.3)):
        return {
            "epoch": epoch,
            "validation": validation,
            "sample": sample,
            "accuracy": accuracy,
            "validation_cpu_s": cpu_s[0],
            "sample_cpu_s": cpu_s[1],
        }

    runs = [
        {
            "method": "m",
            "seed": 0,
            "per_epoch": [point(1, 0.90, 0.80, 0.92), point(2, 0.95, 0.95, 0.96, (0.3, 0.5))],
        },
        {
            "method": "m",
            "seed": 1,
            "per_epoch": [point(1, 0.88, 0.86, 0.90), point(2, 0.97, 0.93, 0.96)],
        },
    ]
    (summary,) = module.summarise(runs, ["m"])
    assert summary["lag"] == pytest.approx((0.02 + 0.01 + 0.02 - 0.01) / 4)
    assert summary["sample_lag"] == pytest.approx((0.12 + 0.01 + 0.04 + 0.03) / 4)
    assert summary["lag_sd"] == pytest.approx(np.std([0.02, 0.01, 0.02, -0.01]))
    assert summary["cpu_s"] == pytest.approx(0.15) and summary["sample_cpu_s"] == pytest.approx(
        0.35
    )
    results = {"settings": {"methods": ["m"], "epochs": 2}, "runs": runs, "summary": [summary]}
    markdown = module.render({**results, "seeds": [0, 1], "command": "c", "date": "d"})
    assert "takes 0.15 CPU s" in markdown and "0.35 CPU s (2.3x)" in markdown
    results = {"settings": {"methods": ["m"], "epochs": 2}, "runs": runs, "summary": [summary]}
    results.update(seeds=[0, 1], command="c", date="d")
    table = module.render(results)
    assert "| m | 1 | 0.9100 | 0.8900 | +0.0200 | 0.8300 | +0.0800 |" in table
    assert "| m | 2 | 0.9600 | 0.9600 | +0.0000 | 0.9400 | +0.0200 |" in table


def test_stopping_benchmark_takes_any_bench_row_but_a_student() -> None:
    module = _benchmark("stopping")
    assert module.row_list("standard, siamese-whitened-k5,standard") == [
        "standard",
        "siamese-whitened-k5",
    ]
    for text, message in (
        ("standard-supcon", r"SoftmaxClassifier takes no option \['loss'\]"),
        ("siamese,kd-student", r"\['kd-student'\]: a student learns from its teacher's run"),
        ("siamese-k0", r"unknown suffix -k0"),
        ("standard-whitened", r"\['standard-whitened'\]: the bench reads the standard network"),
        (" , ", r"no rows in"),
    ):
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            module.row_list(text)


def test_folding_times_an_inference_pass_folded_against_unfolded(tmp_path: Path) -> None:
    module = _benchmark("folding")
    results = module.main(["--rounds", "1", "--rows", "256", "--out", str(tmp_path)])
    assert [r["input"] for r in results["rows"]] == list(module.SHAPES)
    assert all(
        r["unfolded_s"] > 0 and r["folded_s"] > 0 and r["fold_s"] > 0 for r in results["rows"]
    )
    assert "| 28x28 |" in (tmp_path / "folding.md").read_text()


def test_qat_step_times_every_phase_against_the_float_network(tmp_path: Path) -> None:
    module = _benchmark("qat_step")
    results = module.main(["--rounds", "1", "--steps", "1", "--out", str(tmp_path)])
    rows = results["rows"]
    assert [(r["input"], r["phase"]) for r in rows] == [
        (size, phase) for size in module.SHAPES for phase in module.PHASES
    ]
    assert all(r["ms"] > 0 for r in rows)
    assert [r["ratio"] for r in rows if r["phase"] == "float network"] == [1.0, 1.0]
    assert "| 28x28 | QAT, float epoch |" in (tmp_path / "qat_step.md").read_text()
