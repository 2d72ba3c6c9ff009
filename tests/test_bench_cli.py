"""The ``siamcl`` command: benchmark smoke runs, one-line errors, and ``siamcl report``."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from siamcl.bench import data_efficiency
from siamcl.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _one_line_error(capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    assert lines[0].startswith("siamcl")
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


# ---------------------------------------------------------------------- bench smoke runs


def test_bench_quick_smoke_writes_table_and_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the record names the code a run started with: taken before any training
    from siamcl import IncrementalClassifier
    from siamcl.reporting import records

    trained, fit_task = [], IncrementalClassifier.fit_task
    monkeypatch.setattr(
        IncrementalClassifier,
        "fit_task",
        lambda self, *a: trained.append(len(a[1])) or fit_task(self, *a),
    )
    fake = lambda: {"commit": f"after {len(trained)} tasks", "dirty": False}
    monkeypatch.setattr(records, "git_commit", fake)
    status = main(["bench", "quick", "--quick", "--quiet", "--tasks", "2", "--out", str(tmp_path)])
    assert status == 0
    recorded = json.loads((tmp_path / "quick_mnist5k.json").read_text())["git"]
    assert trained and recorded["commit"] == "after 0 tasks"
    # a warm-up first, on 8 rows of each of a task's 5 digits, so no measured row pays the
    # process's one-off costs; then the measured stream (a tenth of mnist5k, 2 tasks)
    assert trained[:2] == [40, 40] and trained[2:] and min(trained[2:]) > 40
    printed = capsys.readouterr().out
    assert "| siamese |" in printed and "| softmax |" in printed
    assert "| softmax-class-means |" in printed  # the softmax network read out by prototypes
    assert f"results written to {tmp_path}" in printed
    results = json.loads((tmp_path / "quick_mnist5k.json").read_text())
    assert results["suite"] == "quick"
    assert results["settings"]["quick"] is True
    assert results["settings"]["epochs"] == 1
    assert {run["method"] for run in results["runs"]} == {
        "siamese",
        "softmax",
        "softmax-class-means",
    }
    for run in results["runs"]:
        assert 0.0 <= run["accuracy"] <= 1.0
        assert len(run["accuracy_matrix"]) == 2
        assert run["report"]["energy_j"] > 0
    assert "Siamese vs softmax" in (tmp_path / "quick_mnist5k.md").read_text()


def test_bench_data_efficiency_smoke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    evaluated, evaluate = [], data_efficiency.evaluate_stream

    def recording(learner, tasks, *args, **kwargs):
        evaluated.append((type(learner).__name__, sum(len(task.y) for task in tasks)))
        return evaluate(learner, tasks, *args, **kwargs)

    monkeypatch.setattr(data_efficiency, "evaluate_stream", recording)
    argv = ["bench", "data-efficiency", "--quick", "--quiet", "--out", str(tmp_path)]
    argv += ["--fractions", "2,5", "--tasks", "2", "--min-steps", "2"]
    assert main(argv) == 0
    # each method warmed up on 8 rows a digit before the first measured run
    assert evaluated[:2] == [("IncrementalClassifier", 80), ("SoftmaxClassifier", 80)]
    assert len(evaluated) == 2 + 2 * 2 * 2
    results = json.loads((tmp_path / "data_efficiency_mnist5k.json").read_text())
    assert results["seeds"] == [0]
    assert results["settings"]["fractions"] == [0.02, 0.05]
    runs = results["runs"]
    assert len(runs) == 2 * 2 * 2  # settings x fractions x methods
    by_fraction = {run["fraction"]: run for run in runs}
    assert by_fraction[0.02]["samples_per_class"] == 8  # 2% of 400 images a digit
    assert by_fraction[0.05]["samples_per_class"] == 20
    incremental = [run for run in runs if run["setting"] == "class-incremental"]
    assert all(len(run["accuracy_matrix"]) == 2 for run in incremental)
    assert len(results["summary"]) == 8
    assert {r["setting"] for r in results["siamese_ahead"]} == set(data_efficiency.SETTINGS)
    assert len(results["reach_90"]) == 4
    assert {m["setting"] for m in results["less_data_to_match"]} == set(data_efficiency.SETTINGS)
    assert (tmp_path / "data_efficiency_mnist5k.png").read_bytes().startswith(PNG_MAGIC)
    markdown = (tmp_path / "data_efficiency_mnist5k.md").read_text()
    assert "data_efficiency_mnist5k.png" in markdown and "Siamese ahead" in markdown


@pytest.mark.parametrize("suite", ["cl", "compress", "data-efficiency", "energy", "store"])
@pytest.mark.parametrize("threads", ["0", "-2", "two"])
def test_every_measuring_suite_refuses_a_thread_count_that_is_not_positive(
    suite: str, threads: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", suite, "--threads", threads, "--out", str(tmp_path)]) == 2
    line = _one_line_error(capsys, "--threads", "expected a positive integer", threads)
    assert line.startswith(f"siamcl bench {suite}")
    assert not any(tmp_path.iterdir())  # refused before any work


def test_bench_compress_smoke_students_learn_from_cached_outputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from siamcl.bench import compress
    from siamcl.bench.compress import VARIANTS

    families, train_family = [], compress._train_family
    monkeypatch.setattr(
        compress,
        "_train_family",
        lambda args, family, seed, data, *rest: (
            families.append((family, len(data[0]))) or train_family(args, family, seed, data, *rest)
        ),
    )
    argv = ["bench", "compress", "--quick", "--quiet", "--threads", "1", "--out", str(tmp_path)]
    assert main(argv) == 0
    # both families warmed up on 8 rows a digit, then measured on the quick run's 200 rows
    assert families == [("siamese", 80), ("softmax", 80), ("siamese", 200), ("softmax", 200)]
    results = json.loads((tmp_path / "compress_mnist5k_quick.json").read_text())
    assert results["settings"]["torch_threads"] == 1
    rows = results["rows"]
    assert {(r["family"], r["variant"]) for r in rows} == {
        (family, variant) for family in ("siamese", "softmax") for variant in VARIANTS
    }
    students = [r for r in rows if r["distilled"]]
    assert students and all(r["teacher_targets"] == "cached" for r in students)
    assert all(r["teacher_targets"] is None for r in rows if not r["distilled"])
    assert (
        "| siamese | quantized-KD student |" in (tmp_path / "compress_mnist5k_quick.md").read_text()
    )


# ---------------------------------------------------------------------- data-efficiency logic


def test_epochs_for_gives_small_tasks_the_minimum_number_of_steps() -> None:
    assert data_efficiency.epochs_for(800, epochs=3, min_steps=10, batch_size=128) == 3
    assert data_efficiency.epochs_for(40, epochs=3, min_steps=60, batch_size=128) == 60
    assert data_efficiency.epochs_for(300, epochs=3, min_steps=60, batch_size=128) == 20
    with pytest.raises(ValueError, match="needs samples"):
        data_efficiency.epochs_for(0, epochs=3, min_steps=60, batch_size=128)


def _summary_row(fraction: float, method: str, accuracy: float, energy: float) -> dict:
    return {
        "setting": "class-incremental",
        "fraction": fraction,
        "method": method,
        "accuracy": accuracy,
        "energy_j": energy,
    }


def _summary(**methods: dict[float, tuple[float, float]]) -> list[dict]:
    return [
        _summary_row(fraction, method, accuracy, energy)
        for method, points in methods.items()
        for fraction, (accuracy, energy) in points.items()
    ]


def test_least_data_for_the_siamese_learner_to_match_the_standard_network() -> None:
    # fraction: (accuracy, energy); the standard network does best at 10% (more data: it forgets)
    summary = _summary(
        siamese={0.01: (0.70, 1.0), 0.10: (0.86, 2.0), 1.00: (0.95, 9.0)},
        softmax={0.01: (0.20, 1.0), 0.10: (0.90, 4.0), 1.00: (0.60, 8.0)},
    )
    matches = {m["reference"]: m for m in data_efficiency.less_data_to_match(summary)}
    assert set(matches) == {"all the data", "its best fraction"}
    all_data = matches["all the data"]
    assert (all_data["fraction"], all_data["standard_accuracy"]) == (0.01, 0.60)
    assert all_data["data_ratio"] == pytest.approx(0.01)
    assert all_data["energy_ratio"] == pytest.approx(1.0 / 8.0)
    best = matches["its best fraction"]
    assert (best["standard_fraction"], best["fraction"]) == (0.10, 1.00)  # 0.86 < 0.90
    assert best["data_ratio"] == pytest.approx(10.0)
    assert best["energy_ratio"] == pytest.approx(9.0 / 4.0)
    summary[2]["accuracy"] = 0.88  # the Siamese learner never reaches 0.90 now
    never = data_efficiency.less_data_to_match(summary)[1]
    assert never["fraction"] is None and never["energy_ratio"] is None
    from siamcl.reporting.data_efficiency import _match_section

    table = _match_section(data_efficiency.less_data_to_match(summary))
    assert "| its best fraction (10%) | 0.900 | never |" in table


def test_smallest_fraction_reaching_ninety_percent_of_full_data() -> None:
    summary = _summary(  # fraction: (accuracy, energy)
        siamese={0.01: (0.50, 1.0), 0.10: (0.88, 2.0), 1.00: (0.95, 9.0)},
        softmax={0.01: (0.20, 1.0), 0.10: (0.60, 2.0), 1.00: (0.90, 8.0)},
    )
    reached = {r["method"]: r for r in data_efficiency.smallest_fractions(summary)}
    assert reached["siamese"]["fraction"] == 0.10  # 0.88 >= 0.9 * 0.95
    assert reached["softmax"]["fraction"] == 1.00  # 0.60 < 0.81
    assert reached["softmax"]["target_accuracy"] == pytest.approx(0.81)
    assert reached["softmax"]["best_fraction"] == 1.00
    runs = [
        {**row, "seed": seed, "accuracy": row["accuracy"] + shift}
        for row in summary
        for seed, shift in ((0, 0.0), (1, -0.45 if row["method"] == "siamese" else 0.0))
    ]
    ahead = {a["fraction"]: a for a in data_efficiency.siamese_ahead(summary, runs)}
    assert ahead[0.01]["siamese_ahead"] and ahead[0.01]["gap"] == pytest.approx(0.30)
    assert (ahead[0.01]["seeds_ahead"], ahead[0.01]["seeds_compared"]) == (1, 2)
    assert ahead[1.00]["energy_ratio"] == pytest.approx(9.0 / 8.0)
    assert "up to 10%: yes**; ahead in 2 of 4" in data_efficiency.headline(list(ahead.values()))
    summary[1]["accuracy"] = 0.5  # Siamese now behind at 10%
    verdict = data_efficiency.headline(data_efficiency.siamese_ahead(summary))
    assert "no (behind at 10%)" in verdict


def test_fractions_option_takes_percentages(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "data-efficiency", "--fractions", "0,50"]) == 2
    _one_line_error(capsys, "--fractions")


# ---------------------------------------------------------------------- one-line errors


def test_unknown_suite_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "no-such-suite"]) == 2
    _one_line_error(capsys, "no-such-suite")


def test_unknown_dataset_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "quick", "--dataset", "no-such-data", "--out", str(tmp_path)]) == 2
    _one_line_error(capsys, "no-such-data")
    assert not list(tmp_path.iterdir())


def test_unknown_option_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "quick", "--no-such-option"]) == 2
    _one_line_error(capsys, "--no-such-option")


def test_data_root_without_files_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    argv = ["bench", "quick", "--dataset", "omniglot", "--data-root", str(empty)]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    _one_line_error(capsys, str(empty))


def test_report_of_missing_folder_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(tmp_path / "missing")]) == 2
    _one_line_error(capsys, "missing")
    assert main(["report", str(tmp_path)]) == 2  # a folder with no result files
    _one_line_error(capsys, "no result files")


# ---------------------------------------------------------------------- siamcl report


def _fake_results(folder: Path) -> None:
    results = {
        "suite": "fake",
        "command": "siamcl bench fake",
        "seeds": [0, 1],
        "settings": {"dataset": "toy"},
        "runs": [
            {"method": "alpha", "seed": 0, "accuracy": 0.9, "report": {"energy_j": 10.0}},
            {"method": "alpha", "seed": 1, "accuracy": 0.7, "report": {"energy_j": 30.0}},
            {"method": "beta", "seed": 0, "final_accuracy": 0.5, "energy_j": 5.0},
            {"method": "gamma", "seed": 0, "accuracy": 0.4, "energy_j": 50.0},
            {"method": "no-energy", "accuracy": 0.99},
        ],
    }
    (folder / "fake_toy.json").write_text(json.dumps(results))
    (folder / "fake_toy.png").write_bytes(PNG_MAGIC + b"not really an image")
    (folder / "broken.json").write_text("{not json")


def test_report_renders_markdown_and_pareto_chart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _fake_results(tmp_path)
    assert main(["report", str(tmp_path)]) == 0
    report = (tmp_path / "REPORT.md").read_text()
    assert (tmp_path / "REPORT_pareto.png").read_bytes().startswith(PNG_MAGIC)
    assert "![Pareto chart of accuracy against energy](REPORT_pareto.png)" in report
    assert "| fake (toy) | alpha | 0.800 | 20.0 |" in report  # two seeds averaged
    assert "| fake (toy) | beta | 0.500 | 5.0 |" in report
    assert "| fake (toy) | gamma | 0.400 | 50.0 |  | 1 |  |" in report  # dominated
    assert "no-energy" not in report
    assert "![fake_toy](fake_toy.png)" in report
    assert "siamcl bench fake" in report
    assert "broken.json" in report and "not readable as JSON" in report
    assert "REPORT.md" in capsys.readouterr().out


def test_report_out_elsewhere_links_back_to_the_results(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    _fake_results(results)
    out = tmp_path / "docs" / "report.md"
    assert main(["report", str(results), "--out", str(out), "--quiet"]) == 0
    text = out.read_text()
    assert "](report_pareto.png)" in text and (out.parent / "report_pareto.png").is_file()
    assert "![fake_toy](../results/fake_toy.png)" in text


# ---------------------------------------------------------------- checkpointed benchmark suites


def _run_twice(argv: list[str], tmp_path: Path, result: str) -> tuple[dict, dict]:
    """Run a checkpointed command twice (results in first/ and second/); each run's first
    result row."""
    rows = []
    for name in ("first", "second"):
        assert main([*argv, "--out", str(tmp_path / name)]) == 0
        rows.append(json.loads((tmp_path / name / result).read_text())["runs"][0])
    return rows[0], rows[1]


def test_bench_core_checkpoint_option_resumes_finished_seed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["bench", "core", "--quick", "--quiet", "--dataset", "digits", "--tasks", "2"]
    argv += ["--seeds", "0", "--no-joint", "--checkpoint", str(tmp_path / "ckpt")]
    first, second = _run_twice(argv, tmp_path, "core_digits.json")
    assert (tmp_path / "ckpt" / "seed-0" / "stream" / "rows.json").is_file()
    assert second["accuracy_matrix"] == first["accuracy_matrix"]
    assert second["report"]["wall_s"] == first["report"]["wall_s"]  # restored, not retrained


def test_bench_cl_checkpoint_resumes_the_siamese_stream(tmp_path: Path) -> None:
    argv = ["bench", "cl", "--quick", "--quiet", "--dataset", "digits", "--tasks", "2"]
    argv += ["--methods", "siamese", "--threads", "1", "--checkpoint", str(tmp_path / "ckpt")]
    first, second = _run_twice(argv, tmp_path, "cl_digits.json")
    assert (tmp_path / "ckpt" / "siamese-seed-0" / "rows.json").is_file()
    assert second["accuracy_matrix"] == first["accuracy_matrix"]
    assert second["report"]["wall_s"] == first["report"]["wall_s"]  # restored, not retrained


def test_bench_cl_warms_every_method_up_on_a_few_rows_saving_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from siamcl.bench import cl

    calls, run = [], cl.StreamRunner.run

    def recording(self, name):
        calls.append((name, sum(len(task.y) for task in self.tasks), self.args.checkpoint))
        return run(self, name)

    monkeypatch.setattr(cl.StreamRunner, "run", recording)
    argv = ["bench", "cl", "--quick", "--quiet", "--dataset", "digits", "--tasks", "2"]
    argv += ["--methods", "siamese,slda", "--threads", "1", "--out", str(tmp_path)]
    assert main([*argv, "--checkpoint", str(tmp_path / "ckpt")]) == 0
    # first every method once on 8 rows of each digit, never checkpointed (nothing to resume
    # from), then the measured runs on the quick run's rows
    assert calls[:2] == [("siamese", 80, None), ("slda", 80, None)]
    measured = calls[2:]
    assert [name for name, *_ in measured] == ["siamese", "slda"]
    assert all(rows > 80 and saved == str(tmp_path / "ckpt") for _, rows, saved in measured)


def test_bench_cl_runs_the_der_and_er_ace_rows(tmp_path: Path) -> None:
    argv = ["bench", "cl", "--quick", "--quiet", "--dataset", "digits", "--tasks", "2"]
    argv += ["--methods", "replay,der,er_ace", "--threads", "1", "--out", str(tmp_path)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(argv) == 0
    said = [f"{w.category.__name__}: {w.message} ({w.filename})" for w in caught]
    assert not [w for w in said if "No loggers specified" in w or "/avalanche/" in w], said
    results = json.loads((tmp_path / "cl_digits.json").read_text())
    rows = {row["method"]: row for row in results["summary"]}
    assert [rows[name]["label"] for name in ("der", "er_ace")] == ["DER++", "ER-ACE"]
    for name in ("der", "er_ace"):
        assert not rows[name]["errors"] and rows[name]["accuracy_mean"] > 0.1  # ten digits
        assert rows[name]["retained_bytes"] > 0  # the exemplar buffer
    markdown = (tmp_path / "cl_digits.md").read_text()
    assert "| DER++ |" in markdown and "| ER-ACE |" in markdown
    assert (tmp_path / "cl_digits.png").read_bytes().startswith(PNG_MAGIC)


def test_avalanche_chatter_is_dropped_and_other_warnings_passed_on_once() -> None:
    from siamcl.bench.cl_methods import _without_avalanche_chatter

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            with _without_avalanche_chatter():
                warnings.warn("No loggers specified, metrics will not be logged", UserWarning)
                warnings.warn("a warning the reader needs, from this test", UserWarning)
        with pytest.raises(RuntimeError), _without_avalanche_chatter():
            warnings.warn("said before a failure, from this test", UserWarning)
            raise RuntimeError("boom")
    said = [str(w.message) for w in caught]
    assert said == [
        "a warning the reader needs, from this test",
        "said before a failure, from this test",
    ]


def test_bench_cl_nproc_refuses_avalanche_rows(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCAL_RANK", "0")  # as under torchrun, so the command does not relaunch
    status = main(["bench", "cl", "--nproc", "2", "--methods", "siamese,replay"])
    assert status == 2
    _one_line_error(capsys, "--nproc trains only the IncrementalClassifier rows", "replay")


def test_an_explicit_option_wins_over_quick(tmp_path: Path) -> None:
    argv = ["bench", "quick", "--quick", "--quiet", "--tasks", "2", "--epochs", "2"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "quick_mnist5k.json").read_text())
    assert results["settings"]["epochs"] == 2
