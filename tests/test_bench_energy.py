"""``siamcl bench energy``: energy to target, curves from the loop, lifecycle, break-even."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from siamcl.bench.energy_multiclass import BASES, MulticlassRunner
from siamcl.bench.energy_targets import break_even_predictions, first_reach, mean_curve
from siamcl.cli import main
from siamcl.data import load_dataset
from siamcl.learners.softmax import SoftmaxClassifier


def test_first_reach_is_the_first_point_at_or_above_the_target():
    curve = [
        {"accuracy": 0.5, "energy_j": 1.0},
        {"accuracy": 0.9, "energy_j": 2.0},
        {"accuracy": 0.95, "energy_j": 3.0},
    ]
    assert first_reach(curve, 0.9)["energy_j"] == 2.0
    assert first_reach(curve, 0.91)["energy_j"] == 3.0
    assert first_reach(curve, 0.99) is None


def test_mean_curve_averages_checkpoints_and_cuts_to_the_shortest():
    a = [{"accuracy": 0.5, "energy_j": 1.0, "cpu_s": 1.0, "flops": None}] * 3
    b = [{"accuracy": 0.7, "energy_j": 3.0, "cpu_s": 2.0, "flops": None}] * 2
    mean = mean_curve([a, b])
    assert len(mean) == 2
    assert mean[0]["accuracy"] == pytest.approx(0.6) and mean[0]["energy_j"] == 2.0
    assert "flops" not in mean[0]  # not counted: not made up
    assert mean[0]["accuracy_std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert "accuracy_std" not in mean_curve([a])[0]  # one seed: no spread to draw
    from siamcl.reporting.energy import _reach

    half = mean_curve([[{**a[0], "epoch": 0.5}]] * 2)[0]  # a check inside the first epoch
    assert _reach(half).endswith("; epoch 0.5)") and _reach(mean[1]).endswith("; epoch 2)")


def test_break_even_covers_every_case():
    assert break_even_predictions(10, 1, 20, 2)["predictions"] == 0
    assert break_even_predictions(30, 1, 20, 2)["predictions"] == 10
    assert break_even_predictions(30, 3, 20, 2)["predictions"] is None
    ahead = break_even_predictions(10, 3, 20, 2)
    assert ahead["predictions"] is None and "first 10" in ahead["why"]


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_curves_record_every_epoch_and_students_learn_from_the_siamese_run(digits):
    settings = {
        "device": "cpu",
        "batch_size": 64,
        "epochs": 3,
        "student_epochs": 2,
        "student_lr": 3e-3,
        "data_fraction": 0.5,
        "data_selection": "stratified",
    }
    runner = MulticlassRunner(digits, settings, seed=0)
    with pytest.raises(ValueError, match="run that method first"):
        runner.run("kd-student")
    for name in ("standard", "siamese", "kd-student", "siamese-selected"):
        run = runner.run(name)
        curve = run["curve"]
        assert [p["epoch"] for p in curve] == list(range(1, len(curve) + 1))
        energies = [p["energy_j"] for p in curve]
        assert energies == sorted(energies) and energies[0] > 0
        assert curve[-1]["accuracy"] > 0.5  # ten classes: chance is 0.1
        last, total = curve[-1], run["report"]["energy_j"]
        # anchored to the learner's metered total: setup + epochs + one finishing pass
        assert (
            last["energy_j"] == pytest.approx(total)
            if last["setup_j"] > 0
            else last["energy_j"] >= total
        )
        assert run["inference"]["predictions"] == 10_000 and run["inference"]["energy_j"] > 0
        assert run["rows_trained"] == (721 if name == "siamese-selected" else len(digits[0]))
    siamese = runner.teacher
    assert siamese.callbacks is None  # the monitor is not kept in the model
    # a 16x16 learner's curve is scored on 16x16 inputs, as the learner itself predicts
    small = runner.run("siamese-16px")
    assert small["accuracy"] > 0.5
    assert small["curve"][-1]["accuracy"] == pytest.approx(small["accuracy"], abs=0.03)
    # every training row a prototype: the monitor's 1-NN is the learner's own store
    nearest = runner.run("siamese-nn")
    assert nearest["curve"][-1]["accuracy"] == pytest.approx(nearest["accuracy"], abs=0.005)
    assert nearest["accuracy"] > 0.5


def test_checks_inside_epochs_add_curve_points_and_leave_the_model_as_it_was(digits):
    settings = {"device": "cpu", "batch_size": 64, "epochs": 2}
    runners = [
        MulticlassRunner(digits, {**settings, "checks_per_epoch": n}, seed=0) for n in (1, 3)
    ]
    once, thrice = (runner.run("siamese") for runner in runners)
    # 23 steps an epoch: checks after 8, 15 and 23
    expected = [8 / 23, 15 / 23, 1, 31 / 23, 38 / 23, 2]
    assert [p["epoch"] for p in thrice["curve"]] == pytest.approx(expected)
    predictions = [runner.teacher.predict(digits[2]) for runner in runners]
    assert np.array_equal(*predictions)  # the checks changed no training
    ends = thrice["curve"][2::3]
    assert [p["accuracy"] for p in ends] == [p["accuracy"] for p in once["curve"]]
    energies = [p["training_j"] for p in thrice["curve"]]
    assert energies == sorted(energies) and 0 < energies[0] < energies[2] / 2
    accuracies = [p["accuracy"] for p in thrice["curve"]]
    assert accuracies[0] > 0.5 and accuracies[0] < accuracies[-1]  # a third of an epoch in


@pytest.mark.parametrize("row", ["qat-int8", "siamese-ptq", "siamese-whitened-ptq"])
def test_a_quantized_row_is_scored_as_it_would_be_deployed(digits, row):
    runner = MulticlassRunner(digits, {"device": "cpu", "batch_size": 64, "epochs": 2}, seed=0)
    run = runner.run(row)
    assert all(p["finish_j"] > 0 for p in run["curve"])  # each check converts, counted
    # the last check scores the int8 conversion with every row's class mean: the model the
    # learner deploys, so its accuracy is the row's final one to the image
    assert run["curve"][-1]["accuracy"] == run["accuracy"]
    assert run["accuracy"] > 0.5


def test_bench_energy_quick_writes_curves_bars_and_figure(tmp_path: Path):
    argv = ["bench", "energy", "--quick", "--quiet", "--dataset", "digits", "--out", str(tmp_path)]
    argv += ["--methods", "standard,siamese,kd-student", "--cil-methods", "siamese,siamese-16px"]
    assert main(argv) == 0
    results = json.loads((tmp_path / "energy_digits.json").read_text())
    summary = {row["method"]: row for row in results["multiclass"]["summary"]}
    assert set(summary) == {"standard", "siamese", "kd-student"}
    assert (
        summary["kd-student"]["break_even"]["predictions"] is not None
        or summary["kd-student"]["break_even"]["why"]
    )
    cil = {row["method"]: row for row in results["cil"]["summary"]}
    assert cil["siamese"]["points"][0]["accuracy"] > 0.2
    # the 16x16 variant upsamples digits' 8x8 images: more FLOPs for the same stream
    assert cil["siamese-16px"]["points"][0]["flops"] > 2 * cil["siamese"]["points"][0]["flops"]
    assert any(name.startswith("multiclass: Siamese") for name in results["bars"])
    markdown = (tmp_path / "energy_digits.md").read_text()
    assert markdown.index("## Bars") < markdown.index("## Multi-class")
    assert (tmp_path / "energy_digits.png").read_bytes().startswith(b"\x89PNG")
    assert np.isfinite(summary["siamese"]["training_energy_j"])
    # the saved runs summarised again, training nothing: the same summaries and bars
    saved, again = tmp_path / "energy_digits.json", tmp_path / "again"
    assert main(["bench", "energy", "--summarise", str(saved), "--out", str(again)]) == 0
    redone = json.loads((again / "energy_digits.json").read_text())
    assert redone["multiclass"] == results["multiclass"] and redone["cil"] == results["cil"]
    assert redone["bars"] == results["bars"] and redone["date"] == results["date"]
    assert set(redone["summarised"]) == {"command", "git", "date"}  # who redid it, and when
    assert "Summaries and bars recomputed from these runs by `" in (
        (again / "energy_digits.md").read_text()
    )


def test_bench_energy_summarise_refuses_other_files(tmp_path, capsys):
    other = tmp_path / "cl.json"
    other.write_text(json.dumps({"suite": "cl", "runs": []}))
    assert main(["bench", "energy", "--summarise", str(other), "--out", str(tmp_path)]) != 0
    assert "is not a result of siamcl bench energy" in capsys.readouterr().err
    other.write_text("{not json")
    assert main(["bench", "energy", "--summarise", str(other), "--out", str(tmp_path)]) != 0
    assert "cannot read a result file from" in capsys.readouterr().err


def test_bars_give_their_ratio_seed_by_seed_at_the_points_the_means_chose():
    from siamcl.bench.energy_summary import bars
    from siamcl.bench.energy_targets import mean_curve

    def curve(*points):
        return [{"epoch": i + 1, "accuracy": a, "energy_j": e} for i, (a, e) in enumerate(points)]

    runs = [
        {"method": "standard", "seed": 0, "curve": curve((0.9, 40.0), (0.98, 80.0))},
        {"method": "standard", "seed": 1, "curve": curve((0.9, 60.0), (0.98, 120.0))},
        {"method": "siamese", "seed": 0, "curve": curve((0.98, 20.0), (0.99, 40.0))},
        {"method": "siamese", "seed": 1, "curve": curve((0.97, 30.0), (0.99, 48.0))},
    ]
    summary = [
        {"method": name, "curve": mean_curve([r["curve"] for r in runs if r["method"] == name])}
        for name in ("standard", "siamese")
    ]
    check = bars({"multiclass": {"summary": summary, "runs": runs}})[
        "multiclass: Siamese to the best of the standard network, <= 0.5x its energy"
    ]
    # the mean reaches 0.98 at the second checkpoint (44 J) against the standard's 100 J
    assert check["ratio"] == pytest.approx(0.44) and check["met"]
    assert check["seed_ratios"] == pytest.approx([40 / 80, 48 / 120])

    def stream(method, seed, *budgets):
        return [
            {"method": method, "seed": seed, "budget": b, "accuracy": a, "report": {"energy_j": e}}
            for b, a, e in budgets
        ]

    cil_runs = [
        *stream("replay", 0, (3, 0.6, 400.0)),
        *stream("replay", 1, (3, 0.7, 200.0)),
        *stream("siamese", 0, (1, 0.91, 30.0), (3, 0.96, 80.0)),
        *stream("siamese", 1, (1, 0.92, 40.0), (3, 0.95, 70.0)),
    ]
    rows = [
        {
            "method": "replay",
            "label": "Replay",
            "points": [{"budget": 3, "epochs": 3, "accuracy": 0.65, "energy_j": 300.0}],
            "to_target": {},
        },
        {
            "method": "siamese",
            "label": "Siamese",
            "points": [
                {"budget": 1, "epochs": 1, "accuracy": 0.915, "energy_j": 35.0},
                {"budget": 3, "epochs": 3, "accuracy": 0.955, "energy_j": 75.0},
            ],
            "to_target": {"0.95": {"budget": 3, "epochs": 3, "accuracy": 0.955, "energy_j": 75.0}},
        },
    ]
    checks = bars({"cil": {"summary": rows, "runs": cil_runs}})
    at_target = checks[
        "class-incremental: Siamese >= 0.95 at <= 0.25x the energy of Replay, undominated"
    ]
    assert at_target["ratio"] == pytest.approx(0.25) and at_target["met"]
    assert at_target["seed_ratios"] == pytest.approx([80 / 400, 70 / 200])

    from siamcl.reporting.energy import _bars_section

    short = {**at_target, "accuracy": 0.935, "energy_j": 43.0, "met": False}
    table = "\n".join(_bars_section({"short of 0.95": short, "at 0.95": at_target}))
    assert "| 43 (best 0.935: target not reached) |" in table  # never read as reached at 43 J
    assert "| 75 |" in table


def test_bench_energy_refuses_students_without_their_teacher(tmp_path, capsys):
    argv = ["bench", "energy", "--quick", "--methods", "kd-student", "--out", str(tmp_path)]
    assert main(argv) != 0
    assert "add siamese to --methods" in capsys.readouterr().err
    assert main(["bench", "energy", "--targets", "0.9,1.5", "--out", str(tmp_path)]) != 0
    assert "targets are accuracies in (0, 1]" in capsys.readouterr().err
    assert main(["bench", "energy", "--checks-per-epoch", "0", "--out", str(tmp_path)]) != 0
    assert "--checks-per-epoch must be at least 1" in capsys.readouterr().err


def test_baselines_on_small_inputs_get_the_stream_resized_as_the_learner_resizes(digits):
    from siamcl.bench.energy_cil import resized
    from siamcl.data import class_incremental
    from siamcl.preprocess import Preprocessor

    X, y, X_test, y_test = digits
    tasks = class_incremental(X, y, n_tasks=2, seed=0)
    small, (small_test, labels) = resized(tasks, (X_test, y_test), (16, 16))
    assert [t.X.shape[1:] for t in small] == [(1, 16, 16)] * 2
    assert small_test.shape == (len(X_test), 1, 16, 16) and labels is y_test
    assert [t.classes for t in small] == [t.classes for t in tasks]
    learner_view = Preprocessor((16, 16)).fit(tasks[0].X).canonical(tasks[1].X).numpy()
    np.testing.assert_array_equal(small[1].X, learner_view)


def test_a_baseline_on_small_inputs_can_dominate_the_siamese_rows():
    from siamcl.bench.energy_summary import bars

    def row(label, *points):
        keys = ("budget", "epochs", "accuracy", "energy_j")
        points = [dict(zip(keys, p, strict=True)) for p in points]
        reach = [p for p in points if p["accuracy"] >= 0.95]
        return {
            "label": label,
            "points": points,
            "to_target": {"0.95": reach[0] if reach else None},
        }

    summary = [
        {"method": "siamese", **row("Siamese", (3, 3, 0.955, 90.0))},
        {"method": "siamese-16px", **row("Siamese 16x16", (3, 3, 0.954, 30.0))},
        {"method": "replay", **row("Replay", (3, 3, 0.65, 400.0))},
        {"method": "replay-16px", **row("Replay, 16x16 inputs", (3, 3, 0.96, 80.0))},
    ]
    checks = bars({"cil": {"summary": summary}})
    at_28 = checks[
        "class-incremental: Siamese >= 0.95 at <= 0.25x the energy of Replay, undominated"
    ]
    assert at_28["ratio"] == pytest.approx(90 / 400)
    assert not at_28["met"] and at_28["dominated_by"][0].startswith("Replay, 16x16 inputs")
    like = "class-incremental: Siamese on 16x16 inputs >= 0.95 at <= 0.25x the energy of Replay on 16x16 inputs"
    assert checks[like + ", undominated"]["ratio"] == pytest.approx(30 / 80)


def test_mixed_precision_methods_are_their_method_in_bf16_and_are_compared_like_for_like(digits):
    from siamcl.bench.energy_summary import bars

    settings = {"device": "cpu", "batch_size": 64, "epochs": 2}
    runner = MulticlassRunner(digits, settings, seed=0)
    whitened = runner.learner("siamese-whitened-bf16")
    assert (whitened.precision, whitened.whitening) == ("bf16", 0.1)
    assert runner.learner("standard-bf16").precision == "bf16"
    assert runner.learner("standard").precision == "fp32"
    seen = []  # the monitor's prototype pass embeds as the learner does
    hook = nn.modules.module.register_module_forward_hook(  # tensors, not torch.fx's proxies
        lambda module, inputs, output: (
            isinstance(output, torch.Tensor) and seen.append(output.dtype)
        )
    )
    try:
        encoder = whitened.new_encoder(runner.preprocessor(None).input_shape)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="bfloat16 is not native")
            runner._scorer("siamese-whitened-bf16", whitened)(encoder)
            mixed = set(seen)
            seen.clear()
            runner._scorer("siamese-whitened", runner.learner("siamese-whitened"))(encoder)
    finally:
        hook.remove()
    assert torch.bfloat16 in mixed and torch.bfloat16 not in seen

    def curve(*points):
        return [{"epoch": i + 1, "accuracy": a, "energy_j": e} for i, (a, e) in enumerate(points)]

    rows = {
        "standard": curve((0.9, 40.0), (0.98, 80.0)),
        "standard-bf16": curve((0.9, 20.0), (0.98, 40.0)),
        "siamese-bf16": curve((0.98, 25.0)),
    }
    summary = [{"method": name, "curve": points} for name, points in rows.items()]
    checks = bars({"multiclass": {"summary": summary}})
    prefix = "multiclass: Siamese in bf16 mixed precision to the best of the standard network"
    assert checks[f"{prefix}, <= 0.5x its energy"]["ratio"] == pytest.approx(25 / 80)
    like = checks[f"{prefix} in bf16 mixed precision, <= 0.5x its energy"]
    assert like["ratio"] == pytest.approx(25 / 40) and not like["met"]


def test_median_run_keeps_the_repeat_of_median_energy_and_every_repeats_figures():
    from siamcl.bench.energy_cil import median_run

    runs = [{"accuracy": 0.9, "report": {"energy_j": e}} for e in (30.0, 10.0, 20.0, 40.0)]
    chosen = median_run(runs)
    assert chosen["report"]["energy_j"] == 20.0  # the lower middle of four
    assert chosen["repeat_energies_j"] == [30.0, 10.0, 20.0, 40.0]
    assert chosen["repeat_accuracies"] == [0.9] * 4
    assert median_run(runs[:1]) == runs[0]  # one run: nothing to choose
    failed = {"error": "RuntimeError: boom"}
    assert median_run([runs[0], failed]) == failed  # a failure is not hidden by a success


def test_cil_repeats_run_every_method_again_and_one_seed_gives_one_model(tmp_path: Path):
    argv = ["bench", "energy", "--quick", "--quiet", "--dataset", "digits", "--parts", "cil"]
    argv += ["--cil-methods", "siamese,replay", "--cil-repeats", "2", "--out", str(tmp_path)]
    assert main(argv) == 0
    results = json.loads((tmp_path / "energy_digits_cil.json").read_text())
    assert results["settings"]["cil_repeats"] == 2
    for run in results["cil"]["runs"]:
        assert len(run["repeat_energies_j"]) == 2
        assert run["report"]["energy_j"] == min(run["repeat_energies_j"])  # lower middle of 2
        assert run["repeat_accuracies"][0] == run["repeat_accuracies"][1], run["method"]
    markdown = (tmp_path / "energy_digits_cil.md").read_text()
    assert "repeated 2 times in interleaved rounds" in markdown
    assert "Every repeat of a run gave the same final accuracy." in markdown


def test_holdout_scores_on_training_data_and_never_touches_the_test_split(
    tmp_path, monkeypatch, capsys
):
    from siamcl.bench import energy

    X = energy.load_dataset("digits")[0]
    scored = []
    original = energy.MulticlassRunner

    def runner(data, settings, seed):  # what the curves and final accuracies are scored on
        scored.append(data[2])
        return original(data, settings, seed)

    monkeypatch.setattr(energy, "MulticlassRunner", runner)
    argv = ["bench", "energy", "--quick", "--quiet", "--dataset", "digits", "--parts"]
    argv += ["multiclass", "--methods", "standard", "--holdout", "0.2", "--out", str(tmp_path)]
    assert main(argv) == 0
    held = scored[0]
    train_rows = {row.tobytes() for row in X}
    assert all(row.tobytes() in train_rows for row in held)  # every scored image is training's
    results = json.loads((tmp_path / "energy_digits_multiclass_holdout.json").read_text())
    assert results["settings"]["holdout"] == 0.2
    markdown = (tmp_path / "energy_digits_multiclass_holdout.md").read_text()
    assert "20% of the training data held out" in markdown
    assert main(["bench", "energy", "--holdout", "1.5", "--out", str(tmp_path)]) != 0
    assert "--holdout must be in [0, 1), got 1.5" in capsys.readouterr().err


def test_undistorted_rows_learn_without_distortions_and_are_weighed_like_for_like():
    from siamcl.bench.energy_cil import _settings
    from siamcl.bench.energy_summary import bars

    base = {"tasks": 5, "memory_per_class": 20, "batch_size": 128}
    options = _settings(base, "siamese-16px-frozen1-undistorted", 3)["siamese_options"]
    assert options == {"input_size": (16, 16), "frozen_layers": 1, "augment": False}
    assert "augment" not in _settings(base, "siamese-16px-frozen1", 3)["siamese_options"]

    def row(name, accuracy, energy):
        point = {"budget": 3, "epochs": 3, "accuracy": accuracy, "energy_j": energy}
        reached = point if accuracy >= 0.95 else None
        return {"method": name, "label": name, "points": [point], "to_target": {"0.95": reached}}

    summary = [
        row("siamese-16px-frozen1-undistorted", 0.955, 20.0),
        row("replay", 0.65, 100.0),
        row("replay-16px-frozen1", 0.85, 40.0),
    ]
    checks = bars({"cil": {"summary": summary}})
    frozen = "on 16x16 inputs with its first block frozen after the first task"
    name = f"Siamese {frozen} on undistorted batches"
    against_replay = checks[
        f"class-incremental: {name} >= 0.95 at <= 0.25x the energy of Replay, undominated"
    ]
    assert against_replay["ratio"] == pytest.approx(0.2) and against_replay["met"]
    like = checks[
        f"class-incremental: {name} >= 0.95 at <= 0.25x the energy of Replay {frozen}, undominated"
    ]
    assert like["ratio"] == pytest.approx(0.5) and not like["met"]


def test_baselines_on_a_share_of_the_data_learn_the_rows_the_siamese_learner_selects(digits):
    from siamcl.bench.energy_cil import baseline_stream
    from siamcl.data import class_incremental
    from siamcl.learners.incremental import IncrementalClassifier
    from siamcl.learners.task_data import task_rows

    X, y, X_test, y_test = digits
    tasks = class_incremental(X, y, n_tasks=2, seed=0)
    share, (small_test, _) = baseline_stream(tasks, (X_test, y_test), (16, 16), 0.75, seed=3)
    learner = IncrementalClassifier(data_fraction=0.75, seed=3)
    full, _ = baseline_stream(tasks, (X_test, y_test), (16, 16), 1.0, seed=3)
    for task, whole in zip(share, full, strict=True):
        rows = task_rows(learner, None, whole.y, task.index)
        assert 0.7 * len(whole.y) < len(rows) < 0.8 * len(whole.y)
        np.testing.assert_array_equal(task.y, whole.y[rows])
        np.testing.assert_array_equal(task.X, whole.X[rows])
    assert small_test.shape[1:] == (1, 16, 16)


def test_each_siamese_row_is_weighed_against_the_closest_replay_row_of_the_run():
    from siamcl.bench.energy_cil import replay_references

    everything = ["replay", "replay-16px", "replay-16px-frozen1", "replay-16px-frozen1-data75"]
    assert replay_references("siamese", everything) == ["replay"]
    assert replay_references("siamese-16px-frozen1", everything) == [
        "replay",
        "replay-16px-frozen1",
    ]
    assert replay_references("siamese-16px-frozen1", everything[:2]) == ["replay", "replay-16px"]
    assert replay_references("siamese-16px-frozen1-data75", everything)[1:] == [
        "replay-16px-frozen1-data75"
    ]  # 50% of the data is not 75%: its closest is Replay frozen on all of it
    assert replay_references("siamese-16px-frozen1-data50", everything)[1:] == [
        "replay-16px-frozen1"
    ]
    assert replay_references("siamese-16px-bf16-d128", ["replay", "replay-bf16"]) == [
        "replay",
        "replay-bf16",
    ]


def test_class_incremental_methods_are_warmed_up_on_a_few_rows_before_any_run_counts(
    tmp_path, monkeypatch
):
    from siamcl.bench import energy

    calls = []
    original = energy.run_cil

    def recording(args, tasks, test, seed, methods, budgets, progress=None):
        calls.append((sum(len(t.y) for t in tasks), list(methods), list(budgets), args))
        return original(args, tasks, test, seed, methods, budgets, progress)

    monkeypatch.setattr(energy, "run_cil", recording)
    argv = ["bench", "energy", "--quick", "--quiet", "--dataset", "digits", "--parts", "cil"]
    argv += ["--cil-methods", "siamese,replay", "--cil-repeats", "2", "--out", str(tmp_path)]
    assert main(argv) == 0
    (warm_rows, warm_methods, warm_budgets, warm_args), measured = calls[0], calls[1:]
    assert warm_rows == 8 * 10 and warm_methods == ["siamese", "replay"] and warm_budgets == [1]
    assert warm_args.cil_repeats == 1  # thrown away: once is enough
    assert measured and all(rows > warm_rows for rows, *_ in measured)
    results = json.loads((tmp_path / "energy_digits_cil.json").read_text())
    assert {r["method"] for r in results["cil"]["runs"]} == {"siamese", "replay"}
    assert all(len(r["repeat_energies_j"]) == 2 for r in results["cil"]["runs"])


def test_every_row_a_run_can_hold_is_described_in_the_energy_docs():
    from siamcl.bench.energy_cil import CIL_METHODS
    from siamcl.bench.energy_multiclass import METHODS

    docs = (Path(__file__).parents[1] / "docs" / "energy.md").read_text()
    section = docs.split("### The rows a run can hold", 1)[1].split("\n### ", 1)[0]
    multiclass, cil = section.split("| class-incremental |", 1)
    assert [m for m in METHODS if f"`{m}`" not in multiclass] == []
    assert [m for m in CIL_METHODS if f"`{m}`" not in cil] == []


def stream_rows(digits, monkeypatch):
    """A function giving the ``StreamRunner`` of a row on a two-task digits stream (5
    exemplars a class, 2 epochs), whose ``run`` records the learner it builds in the list
    returned beside it instead of training it."""
    import argparse

    from siamcl.bench import cl_methods
    from siamcl.bench.energy_cil import _settings
    from siamcl.data import class_incremental

    X, y, X_test, y_test = digits
    tasks = class_incremental(X, y, n_tasks=2, seed=0)
    args = argparse.Namespace(batch_size=128, memory=5, device="cpu", checkpoint=None)
    base = {"tasks": 2, "memory_per_class": 5, "batch_size": 128}
    built = []
    monkeypatch.setattr(
        cl_methods, "evaluate_stream", lambda learner, *a, **k: built.append(learner) or {}
    )

    def runner(name: str):
        return cl_methods.StreamRunner(args, tasks, X_test, y_test, 0, _settings(base, name, 2))

    return runner, built


def test_narrow_and_small_batch_rows_reach_the_learner_and_replay_alike(digits, monkeypatch):
    from siamcl.bench.energy_cil import replay_references

    runner, built = stream_rows(digits, monkeypatch)
    for name, batch in (("siamese-16px-half-b32", 32), ("siamese-16px-b64", 64)):
        runner(name).run("siamese")
        learner = built.pop()
        assert (learner.batch_size, learner.epochs, learner.input_size) == (batch, 2, (16, 16))
        assert learner.encoder == ("conv4-half" if "half" in name else "conv4")
    strategy = runner("replay-16px-half-b32")._strategy("replay", evaluator=None)
    widths = {m.out_channels for m in strategy.model.modules() if isinstance(m, nn.Conv2d)}
    assert strategy.train_mb_size == 32 and widths == {32}
    present = ["replay", "replay-16px", "replay-16px-b64", "replay-16px-half-b32"]
    assert replay_references("siamese-16px-half-b32", present) == ["replay", "replay-16px-half-b32"]
    assert replay_references("siamese-16px-b64", present) == ["replay", "replay-16px-b64"]


def test_every_baseline_row_sets_only_what_a_baseline_takes():
    from siamcl.bench import energy_cil

    base = {"tasks": 5, "memory_per_class": 20, "batch_size": 128}
    baselines = [n for n in energy_cil.CIL_METHODS if not n.startswith("siamese")]
    energy_cil.check_cil_rows(baselines)
    for name in baselines:
        method = name.split("-")[0]
        settings = energy_cil._settings(base, name, 3)
        assert settings["epochs"][method] == 3 * (10 if method == "gdumb" else 1)
    with pytest.raises(
        ValueError, match=r"replay-metric0: a baseline takes no option \['metric_weight'\]"
    ):
        energy_cil.check_cil_rows(["replay", "replay-metric0"])
    energy_cil.check_cil_rows(["replay-whitened", "er_ace-k1", "der-whitened-16px"])
    with pytest.raises(ValueError, match=r"icarl-whitened: a prototype readout replaces the"):
        energy_cil.check_cil_rows(["icarl-whitened"])
    with pytest.raises(ValueError, match=r"replay-k3: a baseline is read out by one class mean a"):
        energy_cil.check_cil_rows(["replay-k3"])
    with pytest.raises(ValueError, match=r"siamese-e2: a class-incremental row takes no epoch"):
        energy_cil.check_cil_rows(["siamese-e2"])  # --cil-epochs is every row's budget


def test_a_bar_names_a_cheaper_point_within_one_standard_error_of_its_target():
    from siamcl.bench.energy_summary import bars
    from siamcl.bench.energy_targets import within_error
    from siamcl.reporting.energy import _bars_section

    def row(method, *points):
        return {
            "method": method,
            "label": method,
            "to_target": {},
            "points": [
                {
                    "budget": b,
                    "epochs": b,
                    "seeds": 3,
                    "accuracy": a,
                    "accuracy_std": sd,
                    "energy_j": e,
                }
                for b, a, sd, e in points
            ],
        }

    standard = row("standard", (4, 0.942, 0.014, 34.0), (8, 0.9563, 0.0104, 66.7))
    siamese = row(
        "siamese", (3, 0.949, 0.011, 43.0), (4, 0.9557, 0.008, 53.1), (8, 0.964, 0.003, 104.0)
    )
    key = "class-incremental: Siamese to the best of siamcl's standard network with replay, "
    check = bars({"cil": {"summary": [standard, siamese], "runs": []}})[key + "<= 0.5x its energy"]
    assert check["ratio"] == pytest.approx(104.0 / 66.7) and not check["met"]  # decided on means
    near = check["within_error"]  # 0.0006 short; the target's standard error 0.0104 / sqrt(3)
    assert near["budget"] == 4 and near["ratio"] == pytest.approx(53.1 / 66.7)
    assert near["short_by"] == pytest.approx(0.0006)
    assert near["standard_error"] == pytest.approx(0.0104 / 3**0.5)
    table = "\n".join(_bars_section({"to the best": check}))
    assert "0.9557 at 4 ep/task, 0.0006 short, within one standard error of the target" in table
    assert "53 J, 0.80x" in table and "**not met**" in table
    curve_point = {"checkpoint": 6, "accuracy": 0.98, "short_by": 0.001, "standard_error": 0.002}
    for point, words in (
        (curve_point, "at check 6,"),
        ({**curve_point, "epoch": 1.5}, "epoch 1.5"),
    ):
        near_curve = {**check, "within_error": {**point, "energy_j": 9.0, "ratio": 0.4}}
        assert words in "\n".join(_bars_section({"to the best": near_curve}))
    best = standard["points"][1]
    # 3 epochs fall 0.0073 short, beyond the error (0.0060); one seed has no error to weigh
    assert within_error(siamese["points"][:1], best, None) is None
    assert within_error(siamese["points"], {**best, "seeds": 1}, None) is None
    # nothing reported where the point that reaches the target is cheaper still
    assert within_error(siamese["points"], best, siamese["points"][0]) is None


def test_a_row_name_is_parsed_into_its_method_options_and_words():
    from siamcl.bench.variants import parse_variant

    row = parse_variant("replay-16px-half-b32")
    assert row.method == "replay"
    assert row.options == {"input_size": (16, 16), "encoder": "conv4-half", "batch_size": 32}
    assert row.label == "Replay, 16x16 inputs, conv4-half, batches of 32"
    assert row.bar_name == "Replay on 16x16 inputs with conv4-half in batches of 32"
    frozen = parse_variant("siamese-frozen2-data50-d128-bf16")
    assert frozen.options == {
        "frozen_layers": 2,
        "data_fraction": 0.5,
        "embedding_dim": 128,
        "precision": "bf16",
    }
    assert frozen.label.startswith("Siamese, first 2 blocks frozen after the first task, 50%")
    assert parse_variant("er_ace").label == "ER-ACE" and parse_variant("slda").options == {}
    cached = parse_variant("siamese-16px-cached")  # targets of the undistorted image
    assert cached.options == {"input_size": (16, 16), "teacher_targets": "cached"}
    assert cached.label == "Siamese, 16x16 inputs, distillation targets cached"
    alone = parse_variant("siamese-16px-distill0")  # no previous encoder to distil toward
    assert alone.options == {"input_size": (16, 16), "distill_weight": 0.0}
    assert alone.bar_name == (
        "Siamese on 16x16 inputs with distillation toward the previous encoder weighted 0"
    )
    budget = parse_variant("siamese-whitened-e2-lr0.003")
    assert budget.options == {"whitening": 0.1, "epochs": 2, "lr": 0.003}
    assert budget.bar_name == "Siamese with whitened class means in 2 epochs at learning rate 0.003"
    for name, message in (
        ("replay-16pix", r"unknown suffix -16pix; suffixes are -16px, -whitened"),
        (
            "softmax-16px",
            r"'softmax-16px': unknown method; methods are \['siamese', 'standard', 'naive'",
        ),
        ("siamese-b64-b32", r"two suffixes set \['batch_size'\]"),
        ("siamese-data150", r"unknown suffix -data150"),
        ("replay-0px", r"unknown suffix -0px"),
        ("replay-lr0.0", r"unknown suffix -lr0.0"),
        ("siamese-e0", r"unknown suffix -e0"),
        ("siamese-k0", r"unknown suffix -k0"),
    ):
        with pytest.raises(ValueError, match=message):
            parse_variant(name)


def test_multiclass_rows_compose_too_and_are_weighed_like_for_like(digits):
    from siamcl.bench.energy_multiclass import check_rows, multiclass_row
    from siamcl.bench.energy_summary import bars

    runner = MulticlassRunner(digits, {"device": "cpu", "batch_size": 128, "epochs": 2}, seed=0)
    standard, siamese = runner.learner("standard-b64"), runner.learner("siamese-whitened-half-b64")
    assert (standard.batch_size, standard.encoder) == (64, "conv4")
    assert (siamese.batch_size, siamese.encoder, siamese.whitening) == (64, "conv4-half", 0.1)
    assert runner.learner("siamese-nn-16px").prototypes_per_class > 1
    budget = runner.learner("standard-e1-lr0.003")  # the run's 2 epochs and lr 1e-3 overridden
    assert (budget.epochs, budget.lr) == (1, 0.003)
    assert runner.learner("siamese-supcon").loss == "supcon"
    assert runner.learner("siamese-whitened-k5").prototypes_per_class == 5
    assert multiclass_row("siamese-whitened-k5").bar_name == (
        "Siamese with whitened class means with 5 k-means prototypes a class"
    )
    assert multiclass_row("kd-student-metric0").options == {"metric_weight": 0.0}
    assert multiclass_row("kd-student-metric0").bar_name == (
        "the KD student with the metric loss weighted 0"
    )
    assert multiclass_row("siamese-nn-16px").bar_name == (
        "Siamese with every training image a prototype on 16x16 inputs"
    )
    check_rows(["standard", "standard-whitened", "standard-whitened-k5"])  # scored, not trained
    with pytest.raises(ValueError, match=r"standard-whitened-undistorted-lr0.1-d32: Softmax"):
        check_rows(["standard-whitened-undistorted-lr0.1-d32"])  # no embedding_dim
    with pytest.raises(ValueError, match=r"standard-supcon: SoftmaxClassifier takes no option"):
        check_rows(["standard-supcon"])  # a metric loss is the Siamese learner's alone

    def row(name, accuracies, energies):
        curve = [
            {"epoch": i + 1, "accuracy": a, "energy_j": e}
            for i, (a, e) in enumerate(zip(accuracies, energies))
        ]
        return {"method": name, "label": name, "curve": curve, "accuracy_mean": accuracies[-1]}

    summary = [
        row("standard", [0.90, 0.97], [10.0, 20.0]),
        row("standard-b64", [0.95, 0.98], [12.0, 24.0]),
        row("siamese-b64", [0.98, 0.99], [11.0, 22.0]),
    ]
    checks = bars({"multiclass": {"summary": summary}})
    assert checks[
        "multiclass: Siamese in batches of 64 to the best of the standard network, <= 0.5x its energy"
    ]["ratio"] == pytest.approx(0.55)
    like = checks[
        "multiclass: Siamese in batches of 64 to the best of the standard network in batches of "
        "64, <= 0.5x its energy"
    ]
    assert like["ratio"] == pytest.approx(11.0 / 24.0) and like["met"]
    students = [row("siamese", [0.97, 0.99], [10.0, 20.0]), row("qkd-student-b64", [0.98], [8.0])]
    student = bars({"multiclass": {"summary": students}})[
        "multiclass: qkd-student-b64 within 1 point of its teacher, <= 0.6x its energy"
    ]
    assert student["ratio"] == pytest.approx(0.4) and student["met"]
    students.append(row("kd-student-ptq", [0.98], [11.0]))  # quantized: the quantized limit
    student = bars({"multiclass": {"summary": students}})[
        "multiclass: kd-student-ptq within 1 point of its teacher, <= 0.6x its energy"
    ]
    assert student["ratio"] == pytest.approx(0.55) and student["met"]


def test_any_composed_row_is_taken_and_a_bad_one_refused_before_anything_runs(tmp_path):
    from siamcl.bench import energy
    from siamcl.cli import build_parser

    def parse(*rest: str):
        argv = ["bench", "energy", "--parts", "cil", "--out", str(tmp_path), *rest]
        return build_parser(argv).parse_args(argv)

    args = parse("--cil-methods", "replay-16px-half-b32-bf16,siamese-32px-b16,replay")
    assert args.cil_methods == ["replay-16px-half-b32-bf16", "siamese-32px-b16", "replay"]
    with pytest.raises(SystemExit):
        parse("--cil-methods", "replay-16pix")
    bad = parse("--cil-methods", "siamese,replay-undistorted", "--seeds", "0")
    with pytest.raises(ValueError, match=r"replay-undistorted: a baseline takes no option"):
        energy.run(bad)
    assert not list(tmp_path.iterdir())  # refused before any run or file


def test_the_standard_network_read_out_by_prototypes_of_its_features(digits):
    from siamcl.bench.energy_multiclass import is_readout
    from siamcl.bench.variants import like_for_like

    settings = {"device": "cpu", "batch_size": 64, "epochs": 2}
    runner = MulticlassRunner(digits, settings, seed=0)
    assert is_readout("standard-whitened") and not is_readout("standard-b64")
    learner = runner.learner("standard-whitened-k5")
    assert isinstance(learner, SoftmaxClassifier) and not hasattr(learner, "whitening")
    plain, readout = runner.run("standard"), runner.run("standard-whitened")
    # the same network trained the same way, batch for batch: only the scoring differs
    assert [p["steps"] for p in plain["curve"]] == [p["steps"] for p in readout["curve"]]
    assert all(p["finish_j"] == 0 for p in plain["curve"])
    assert all(p["finish_j"] > 0 and p["finish_cpu_s"] > 0 for p in readout["curve"])
    assert readout["accuracy"] == readout["curve"][-1]["accuracy"] > 0.5  # 10 classes
    assert readout["accuracy"] != plain["accuracy"]  # prototypes, not the softmax head
    present = ["standard", "standard-whitened", "siamese-whitened"]
    assert like_for_like("siamese-whitened", present, "standard", BASES) == [
        "standard",
        "standard-whitened",
    ]


def test_standard_rows_train_siamcl_s_softmax_network_and_read_it_out(digits, monkeypatch):
    from siamcl.bench import energy_cil
    from siamcl.learners import SoftmaxClassifier
    from siamcl.learners.readout import PrototypeReadout

    runner, built = stream_rows(digits, monkeypatch)
    for name in ("standard-16px-b64", "standard-whitened-k3"):
        runner(name).run("standard")
    head, readout = built
    assert isinstance(head, SoftmaxClassifier)
    assert (head.batch_size, head.epochs, head.input_size) == (64, 2, (16, 16))
    assert head.memory_per_class == 5
    assert isinstance(readout, PrototypeReadout) and readout.model.memory_per_class == 5
    assert readout.readout == {"memory_per_class": 5, "whitening": 0.1, "prototypes_per_class": 3}
    runner("standard-k1").run("standard")
    assert built[-1].readout["whitening"] is None  # class means, as the multi-class row
    energy_cil.check_cil_rows(["standard-whitened-half-b32", "standard-bf16"])
    with pytest.raises(ValueError, match=r"standard-metric0: SoftmaxClassifier takes no option"):
        energy_cil.check_cil_rows(["standard-metric0"])


def test_the_standard_network_read_out_by_prototypes_runs_in_the_stream(tmp_path: Path):
    argv = ["bench", "energy", "--quick", "--quiet", "--dataset", "digits", "--parts", "cil"]
    argv += ["--cil-methods", "standard,standard-whitened", "--out", str(tmp_path)]
    assert main(argv) == 0
    runs = json.loads((tmp_path / "energy_digits_cil.json").read_text())["cil"]["runs"]
    accuracy = {run["method"]: run["accuracy"] for run in runs}
    assert accuracy["standard-whitened"] > accuracy["standard"] + 0.1  # a short run's head is poor
    readout = next(run for run in runs if run["method"] == "standard-whitened")["report"]
    assert 0 < readout["extra"]["readout_cpu_s"] < readout["cpu_s"]


def test_a_stream_weighs_the_siamese_learner_against_siamcls_standard_network_too():
    """With siamcl's own standard network with replay in the run (the same training engine),
    each Siamese row is weighed against its best as well as against Replay's."""
    from siamcl.bench.energy_summary import bars

    def stream(method, seed, *budgets):
        return [
            {"method": method, "seed": seed, "budget": b, "accuracy": a, "report": {"energy_j": e}}
            for b, a, e in budgets
        ]

    runs = [
        *stream("replay", 0, (3, 0.5, 120.0)),
        *stream("standard", 0, (1, 0.55, 30.0), (3, 0.84, 80.0)),
        *stream("siamese", 0, (1, 0.90, 60.0), (3, 0.95, 140.0)),
    ]

    def row(method, *points):
        budgets = [{"budget": b, "epochs": b, "accuracy": a, "energy_j": e} for b, a, e in points]
        return {"method": method, "label": method, "points": budgets, "to_target": {}}

    summary = [
        row("replay", (3, 0.5, 120.0)),
        row("standard", (1, 0.55, 30.0), (3, 0.84, 80.0)),
        row("siamese", (1, 0.90, 60.0), (3, 0.95, 140.0)),
    ]
    checks = bars({"cil": {"summary": summary, "runs": runs}})
    against_replay = checks["class-incremental: Siamese to the best of Replay, <= 0.5x its energy"]
    assert against_replay["ratio"] == pytest.approx(0.5) and against_replay["met"]
    own = checks[
        "class-incremental: Siamese to the best of siamcl's standard network with replay, "
        "<= 0.5x its energy"
    ]
    # the Siamese learner's one-epoch stream (60 J, 0.90) reaches the standard's best (0.84, 80 J)
    assert own["ratio"] == pytest.approx(0.75) and not own["met"]
