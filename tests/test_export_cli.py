"""From a folder of one's own images to a deployed model: ``siamcl export`` writes a model
trained by ``siamcl learn`` as an export folder with its class names and how it reads image
files, and the deployment recipe (siamcl.export.deploy) names image files' classes as
``siamcl predict`` does."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from siamcl import IncrementalClassifier
from siamcl.cli import main
from siamcl.data import load_dataset, load_images
from siamcl.export import ExportedClassifier, ImageFiles, deploy, export_classifier

NAMES = ("zero", "one", "two")


def write_class(folder: Path, images: np.ndarray) -> list[Path]:
    """Grayscale 28x28 PNGs, and every third image an RGB 32x32 JPEG."""
    folder.mkdir(parents=True)
    paths = []
    for index, pixels in enumerate(images):
        image = Image.fromarray(pixels)
        if index % 3 == 2:
            paths.append(folder / f"{index}.jpg")
            image.convert("RGB").resize((32, 32)).save(paths[-1], quality=95)
        else:
            paths.append(folder / f"{index}.png")
            image.save(paths[-1])
    return paths


@pytest.fixture(scope="module")
def learned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """A model trained by ``siamcl learn`` on three digit classes, and held-out image files."""
    root = tmp_path_factory.mktemp("own")
    X, y, X_test, y_test = load_dataset("mnist5k")
    held_out = []
    for digit, name in enumerate(NAMES):
        write_class(root / "train" / name, X[y == digit][:40])
        held_out += write_class(root / "test" / name, X_test[y_test == digit][:20])
    status = main(["learn", "--data", str(root / "train"), "--model", str(root / "model"),
                   "--epochs", "1", "--quiet"])  # fmt: skip
    assert status == 0
    return root / "model", held_out


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_export_then_deploy_names_files_as_predict_does(learned, tmp_path, capsys) -> None:
    model, files = learned
    out = tmp_path / "deployed"
    status, text, err = run(["export", "--model", str(model), "--out", str(out)], capsys)
    assert status == 0, err
    assert f"to {out}" in text and "encoder.onnx (fp32)" in text and "siamcl.export.deploy" in text

    exported = ExportedClassifier(out)
    assert sorted(exported.class_names.values()) == sorted(NAMES)
    size, mode = exported.image_files["size"], exported.image_files["mode"]
    assert size == [28, 28] and mode == "RGB"  # the training folder mixed gray and colour
    reference = load_images(files, tuple(size), grayscale=False)
    np.testing.assert_array_equal(exported.read_images(files), reference)

    status, text, err = run(["predict", "--model", str(model), *map(str, files)], capsys)
    assert status == 0, err
    predicted = [row["label"] for row in csv.DictReader(io.StringIO(text))]
    assert deploy.main([str(out), *map(str, files)]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [row["path"] for row in rows] == list(map(str, files))
    deployed = [row["label"] for row in rows]
    assert np.mean([a == b for a, b in zip(deployed, predicted)]) >= 0.98
    truth = [Path(path).parent.name for path in files]
    assert np.mean([a == b for a, b in zip(deployed, truth)]) > 0.6  # chance is 1/3

    status, _, err = run(["export", "--model", str(model), "--out", str(out), "--quiet"], capsys)
    assert status == 0, err  # an earlier export is replaced


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("{tmp}/busy", "holds no siamcl export"),
        ("{tmp}/file", "is a file"),
        ("{model}", "is the model folder"),
        ("{model}/classifier", "is the model folder or inside it"),
    ],
)
def test_export_refuses_an_out_that_is_not_an_export(learned, tmp_path, capsys, out, message):
    model, _ = learned
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("keep me")
    (tmp_path / "file").write_text("not a folder")
    out = out.format(tmp=tmp_path, model=model)
    status, _, err = run(["export", "--model", str(model), "--out", out], capsys)
    assert status == 2 and message in err and err.count("\n") == 1
    assert (tmp_path / "busy" / "notes.txt").read_text() == "keep me"
    assert (model / "classes.json").is_file()


def test_export_needs_a_model(tmp_path, capsys) -> None:
    argv = ["export", "--model", str(tmp_path / "none"), "--out", str(tmp_path / "out")]
    status, _, err = run(argv, capsys)
    assert status == 2 and "siamcl learn" in err
    assert not (tmp_path / "out").exists()


def test_names_and_image_files_are_checked_and_optional(tmp_path) -> None:
    X, y, X_test, _ = load_dataset("digits")
    vectors = X.reshape(len(X), -1).astype(np.float32)
    clf = IncrementalClassifier(encoder="mlp", epochs=1, seed=0)
    clf.fit_task(vectors, y)
    with pytest.raises(ValueError, match=r"names no class for labels \[9\]"):
        export_classifier(clf, tmp_path / "e", class_names={c: str(c) for c in range(9)})
    with pytest.raises(ValueError, match="must be \\(height, width\\)"):
        ImageFiles((0, 8), grayscale=True)
    assert not (tmp_path / "e").exists()

    plain = ExportedClassifier(clf.export(tmp_path / "plain"))
    assert plain.class_names is None and plain.image_files is None
    queries = X_test[:5].reshape(5, -1).astype(np.float32)
    assert plain.names(plain.predict(queries)) == [str(label) for label in clf.predict(queries)]
    with pytest.raises(ValueError, match="vectors, not image files"):
        plain.read_images(["any.png"])

    with pytest.raises(TypeError, match="must be an ImageFiles"):
        clf.export(tmp_path / "e", image_files={"size": (8, 8), "grayscale": True})
    names = [f"digit {c}" for c in range(10)]  # a list indexed by label, or a mapping
    named = ExportedClassifier(clf.export(tmp_path / "named", class_names=names))
    assert named.names(named.predict(queries)) == [names[c] for c in clf.predict(queries)]
    assert json.loads((tmp_path / "named" / "classes.json").read_text())["class_names"][3] == (
        "digit 3"
    )


@pytest.mark.parametrize("qat", ["int8", "int8-ptq"])
def test_an_int8_model_learned_and_exported_from_the_command_line(learned, tmp_path, capsys, qat):
    model, files = learned
    int8, out = tmp_path / "int8", tmp_path / "int8-onnx"
    data = str(model.parent / "train")
    argv = ["learn", "--data", data, "--model", str(int8), "--epochs", "4", "--qat", qat]
    status, _, err = run(argv, capsys)  # int8: fake quantization, then frozen observers
    assert status == 0, err
    status, text, err = run(["export", "--model", str(int8), "--out", str(out)], capsys)
    assert status == 0, err
    assert "encoder.onnx (int8)" in text
    assert json.loads((out / "model.json").read_text())["encoder"]["precision"] == "int8"

    status, text, err = run(["predict", "--model", str(int8), *map(str, files)], capsys)
    assert status == 0, err
    predicted = [row["label"] for row in csv.DictReader(io.StringIO(text))]
    exported = ExportedClassifier(out)
    deployed = exported.names(exported.predict(exported.read_images(files)))
    assert np.mean([a == b for a, b in zip(deployed, predicted)]) >= 0.95  # int8 kernels differ

    broken = tmp_path / "broken" / "digit 0"
    broken.mkdir(parents=True)
    (broken / "not-an-image.png").write_bytes(b"not a png")
    argv = ["learn", "--data", str(broken.parent), "--model", str(model), "--qat", "int8"]
    status, _, err = run(argv, capsys)  # a float model stays float, refused before reading
    assert status == 2 and "qat cannot be switched" in err and "trained in float" in err
