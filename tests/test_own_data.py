"""From a folder of one's own images to a model and predictions: ``load_image_folder`` and the
``siamcl learn``, ``siamcl add`` and ``siamcl predict`` commands, end to end."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from siamcl.cli import main
from siamcl.data import load_dataset, load_image_folder

NAMES = ("zero", "one", "two", "three", "four")


@pytest.fixture(scope="module")
def digits() -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Training and held-out mnist5k images of the digits 0..4, by digit."""
    X_train, y_train, X_test, y_test = load_dataset("mnist5k")
    return {d: (X_train[y_train == d], X_test[y_test == d]) for d in range(len(NAMES))}


def write_class(folder: Path, images: np.ndarray, jpeg_every: int = 3) -> None:
    """Images as files: mostly grayscale 28x28 PNG, and every ``jpeg_every``-th an RGB 32x32
    JPEG (another format, size and mode), in every class alike so that no class can be told
    apart by its file format."""
    folder.mkdir(parents=True)
    for index, pixels in enumerate(images):
        image = Image.fromarray(pixels)
        if index % jpeg_every == jpeg_every - 1:
            image.convert("RGB").resize((32, 32)).save(folder / f"{index}.jpg", quality=95)
        else:
            image.save(folder / f"{index}.png")


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _predict_held_out(
    tmp_path: Path, model: Path, digits, n_classes: int, capsys: pytest.CaptureFixture[str]
) -> tuple[Path, list[dict[str, str]], float]:
    """``siamcl predict`` on 30 held-out images of each of the first ``n_classes`` digits,
    written as class folders: the folder, the CSV rows and the share labelled right."""
    held_out = tmp_path / "held-out"
    for digit in range(n_classes):
        write_class(held_out / NAMES[digit], digits[digit][1][:30])
    status, out, err = run(["predict", "--model", str(model), str(held_out)], capsys)
    assert status == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    truth = [Path(row["path"]).parent.name for row in rows]
    return held_out, rows, float(np.mean([row["label"] == true for row, true in zip(rows, truth)]))


def test_load_image_folder_mixes_formats_sizes_and_modes(tmp_path: Path, digits) -> None:
    write_class(tmp_path / "b", digits[1][0][:4], jpeg_every=99)
    write_class(tmp_path / "a", digits[0][0][:3], jpeg_every=1)
    (tmp_path / "b" / ".DS_Store").write_bytes(b"not an image")
    X, y, names = load_image_folder(tmp_path)
    assert names == ["a", "b"] and X.shape == (7, 3, 28, 28) and X.dtype == np.uint8
    assert y.tolist() == [0, 0, 0, 1, 1, 1, 1]
    X_gray, _, _ = load_image_folder(tmp_path, size=16, grayscale=True)
    assert X_gray.shape == (7, 16, 16)
    X_b, _, _ = load_image_folder(tmp_path, size=(8, 12))
    assert X_b.shape[-2:] == (8, 12)


def test_load_image_folder_errors_name_the_problem(tmp_path: Path, digits) -> None:
    with pytest.raises(FileNotFoundError, match="missing"):
        load_image_folder(tmp_path / "missing")
    with pytest.raises(ValueError, match="no class folders"):
        load_image_folder(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty holds no image"):
        load_image_folder(tmp_path)
    write_class(tmp_path / "empty" / "x", digits[0][0][:1])  # images in sub-folders count
    assert load_image_folder(tmp_path)[0].shape == (1, 28, 28)
    (tmp_path / "empty" / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match="notes.txt"):
        load_image_folder(tmp_path)


def test_learn_add_predict_end_to_end(tmp_path: Path, digits, capsys) -> None:
    data, model = tmp_path / "data", tmp_path / "model"
    for digit in (0, 1, 2):
        write_class(data / "first" / NAMES[digit], digits[digit][0][:40])
    write_class(data / "second" / "three", digits[3][0][:40])
    write_class(data / "second" / "one", digits[1][0][40:60])  # a known class, more examples
    write_class(data / "few" / "four", digits[4][0][:5])
    base = ["--model", str(model), "--epochs", "2"]

    status, out, err = run(["learn", "--data", str(data / "first"), *base], capsys)
    assert status == 0, err
    assert "task 0" in out and "J (estimate)" in out and "samples seen" in out
    assert f"saved to {model}" in out
    assert json.loads((model / "classes.json").read_text())["classes"] == ["one", "two", "zero"]

    status, out, err = run(["learn", "--data", str(data), "--task", "second", *base], capsys)
    assert status == 0, err
    assert "task 1" in out
    classes = json.loads((model / "classes.json").read_text())["classes"]
    assert classes == ["one", "two", "zero", "three"]  # a known name keeps its label

    status, out, err = run(["add", "--data", str(data / "few"), "--model", str(model)], capsys)
    assert status == 0, err
    assert "added" in out and "5 samples seen" in out

    held_out, rows, accuracy = _predict_held_out(tmp_path, model, digits, 5, capsys)
    assert len(rows) == 150 and set(rows[0]) >= {"path", "label", "score", "label_3", "score_3"}
    assert {row["label"] for row in rows} <= set(NAMES)
    assert accuracy > 0.6, accuracy  # chance is 0.2
    assert all(0 <= float(row["score"]) <= 1 for row in rows)

    one_file = min((held_out / "four").iterdir())
    argv = ["predict", "--model", str(model), str(one_file), "--format", "jsonl", "--top-k", "9"]
    status, out, err = run(argv, capsys)
    assert status == 0, err
    (line,) = [json.loads(text) for text in out.splitlines()]
    assert line["path"] == str(one_file) and len(line["top_k"]) == 5
    assert {entry["label"] for entry in line["top_k"]} == set(NAMES)
    assert line["score"] == max(entry["score"] for entry in line["top_k"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["learn", "--data", "{tmp}/nowhere", "--model", "{tmp}/m"], "nowhere does not exist"),
        (["learn", "--data", "{tmp}/data", "--task", "t9", "--model", "{tmp}/m"], "--task t9"),
        (["learn", "--data", "{tmp}/data", "--model", "{tmp}/other"], "holds no siamcl model"),
        (["learn", "--data", "{tmp}/data", "--model", "{tmp}/file"], "is a file"),
        (["learn", "--data", "{tmp}/data", "--model", "{tmp}/m", "--epochs", "0"], "positive"),
        (["learn", "--data", "{tmp}/bad", "--model", "{tmp}/m"], "bad.png"),
        (["add", "--data", "{tmp}/data", "--model", "{tmp}/m"], "siamcl learn"),
        (["predict", "--model", "{tmp}/m", "{tmp}/data"], "siamcl learn"),
        (["predict", "--model", "{tmp}/other", "{tmp}/no.png"], "no.png does not exist"),
        (["learn", "--data", "{tmp}/data", "--model", "{tmp}/m", "--target", "1.5"], "(0, 1]"),
        (["learn", "--data", "{tmp}/data", "--model", "{tmp}/m", "--target", "nan"], "'nan'"),
        (["learn", "--data", "{tmp}/data", "--model", "{tmp}/m", "--patience", "0"], "positive"),
        (
            ["learn", "--data", "{tmp}/data", "--model", "{tmp}/m", "--energy-budget", "-1"],
            "joules",
        ),
        (
            ["learn", "--data", "{tmp}/data", "--model", "{tmp}/m", "--validation", "0.5"],
            "[0, 0.5)",
        ),
        (
            [
                "learn",
                "--data",
                "{tmp}/data",
                "--model",
                "{tmp}/m",
                "--target",
                "0.9",
                "--validation",
                "0",
            ],
            "TargetScore stops on validation scores",
        ),
    ],
)
def test_mistakes_are_one_line_before_any_work(tmp_path: Path, digits, capsys, argv, message):
    write_class(tmp_path / "data" / "zero", digits[0][0][:2])
    write_class(tmp_path / "bad" / "zero", digits[0][0][:2])
    (tmp_path / "bad" / "zero" / "bad.png").write_bytes(b"\x89PNG broken")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "mine.txt").write_text("mine")
    (tmp_path / "file").write_text("mine")
    status, out, err = run([arg.format(tmp=tmp_path) for arg in argv], capsys)
    assert status == 2 and out == ""
    assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "m").exists() and (tmp_path / "other" / "mine.txt").read_text() == "mine"


def _two_task_folders(tmp_path: Path, digits) -> tuple[Path, Path, list[str]]:
    """Folders "first" (two digits) and "second" (a third), 20 images a class; the model
    folder; and the argv learning "first" for one epoch."""
    data, model = tmp_path / "data", tmp_path / "model"
    for digit in (0, 1):
        write_class(data / "first" / NAMES[digit], digits[digit][0][:20])
    write_class(data / "second" / NAMES[2], digits[2][0][:20])
    argv = ["learn", "--data", str(data / "first"), "--model", str(model), "--epochs", "1"]
    return data, model, argv


def test_learn_trains_in_the_precision_asked_for_and_the_model_keeps_it(
    tmp_path: Path, digits, capsys
) -> None:
    import warnings

    from siamcl.cli.image_model import ImageModel

    data, model, argv = _two_task_folders(tmp_path, digits)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="bfloat16 is not native")
        status, _, err = run([*argv, "--precision", "bf16"], capsys)
        assert status == 0, err
        assert ImageModel.load(model).classifier.precision == "bf16"
        argv[2] = str(data / "second")
        status, _, err = run(argv, capsys)  # a saved model keeps its own
        assert status == 0, err
    assert ImageModel.load(model).classifier.precision == "bf16"
    status, _, err = run([*argv, "--precision", "half"], capsys)
    assert status != 0 and "invalid choice: 'half'" in err


def test_learn_freezes_the_layers_asked_for_from_the_second_task_on(
    tmp_path: Path, digits, capsys
) -> None:
    import torch

    from siamcl.cli.image_model import ImageModel
    from siamcl.training.freezing import leading_layers

    data, model, argv = _two_task_folders(tmp_path, digits)
    status, _, err = run([*argv, "--frozen-layers", "1"], capsys)
    assert status == 0, err

    def first_block():
        encoder = ImageModel.load(model).classifier.trainable_encoder_
        return {k: v.clone() for k, v in leading_layers(encoder)[0].state_dict().items()}

    before = first_block()
    argv[2] = str(data / "second")
    status, _, err = run(argv, capsys)  # a saved model keeps its own
    assert status == 0, err
    assert ImageModel.load(model).classifier.frozen_layers == 1
    assert all(torch.equal(v, first_block()[k]) for k, v in before.items())
    status, _, err = run([*argv, "--frozen-layers", "-1"], capsys)
    assert status != 0 and "expected an integer >= 0, got -1" in err


def test_learn_stops_early_when_told_and_the_model_keeps_its_policies(
    tmp_path: Path, digits, capsys
) -> None:
    from siamcl.cli.image_model import ImageModel
    from siamcl.training import EnergyBudget, Patience, TargetScore

    data, model = tmp_path / "data", tmp_path / "model"
    for digit in (0, 1):
        write_class(data / "first" / NAMES[digit], digits[digit][0][:30])
    write_class(data / "second" / NAMES[2], digits[2][0][:30])
    argv = ["learn", "--data", str(data / "first"), "--model", str(model), "--epochs", "40"]
    given = ["--target", "0.6", "--energy-budget", "1e6", "--checks-per-epoch", "2"]
    status, out, err = run([*argv, *given], capsys)
    assert status == 0, err
    assert "stopped by target score (0.6) reached after" in out and "validation accuracy" in out
    saved = ImageModel.load(model).classifier  # policies saved as data: no pickle to trust
    (report,) = saved.reports
    assert report.stopped_by == "target score (0.6) reached"
    assert report.extra["epochs_run"] < 40 and report.extra["validation_score"] >= 0.6
    assert report.extra["rows_trained"] == 48  # a fifth of each class held out
    assert saved.stopping == [TargetScore(0.6), EnergyBudget(1e6)]
    assert saved.validation_fraction == 0.2 and saved.checks_per_epoch == 2

    argv[2] = str(data / "second")
    status, out, err = run(argv, capsys)  # none given: the model keeps its own
    assert status == 0, err
    assert ImageModel.load(model).classifier.stopping == [TargetScore(0.6), EnergyBudget(1e6)]
    status, out, err = run([*argv, "--patience", "1", "--validation", "0.3"], capsys)
    assert status == 0, err
    saved = ImageModel.load(model).classifier
    assert saved.stopping == [Patience(1)] and saved.validation_fraction == 0.3
    argv[2:5] = [str(data / "first"), "--model", str(tmp_path / "budgeted")]
    status, out, err = run([*argv, "--energy-budget", "1e-6"], capsys)  # no validation needed
    assert status == 0, err
    assert out.splitlines()[0].endswith("; stopped by energy budget (1e-06 J) after 1 epoch")
    assert ImageModel.load(tmp_path / "budgeted").classifier.validation_fraction == 0.0


def test_learn_with_cross_entropy_reads_a_softmax_network_out_by_prototypes(
    tmp_path: Path, digits, capsys
) -> None:
    from siamcl.cli.image_model import ImageModel

    data, model, _ = _two_task_folders(tmp_path, digits)
    argv = ["learn", "--data", str(data), "--task", "first", "second", "--model", str(model)]
    argv += ["--epochs", "2", "--objective", "cross-entropy"]
    status, out, err = run(argv, capsys)
    assert status == 0, err
    assert "task 0" in out and "task 1" in out and f"saved to {model}" in out
    classifier = ImageModel.load(model).classifier
    assert classifier.whitening == 0.1 and classifier.epochs == 2
    assert [r.method for r in classifier.reports][-1] == "prototype_readout"
    _, _, accuracy = _predict_held_out(tmp_path, model, digits, 3, capsys)
    assert accuracy > 0.8, accuracy  # chance is 1/3

    status, out, err = run(argv, capsys)  # a saved model continues with the metric loss
    assert status == 2 and "trains a new model" in err and "omit --objective" in err
    more = ["learn", "--data", str(data / "second"), "--model", str(model), "--epochs", "1"]
    status, _, err = run(more, capsys)
    assert status == 0, err
    fresh = ["--model", str(tmp_path / "m2"), "--objective", "cross-entropy", "--qat", "int8"]
    status, _, err = run(["learn", "--data", str(data / "first"), *fresh], capsys)
    assert status == 2 and "takes no --qat int8" in err
    assert not (tmp_path / "m2").exists()
