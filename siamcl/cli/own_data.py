"""``siamcl learn``, ``siamcl add`` and ``siamcl predict``: a classifier for your own images.

Images sit in one folder per class (``DIR/<class name>/<image files>``). ``learn`` trains a
new model on such a folder, or continues a saved one with the folder as its next task;
``add`` adds classes from a few images each without any training step; ``predict`` names the
class of image files. The model folder keeps the class names (see
:mod:`siamcl.cli.image_model`), so a class keeps its label across commands. Every path is
checked before any image is read or any model trained.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

from siamcl.cli.image_model import ImageModel, check_model_folder
from siamcl.cli.stopping_options import add_stopping_options, stop_note, stopping_params
from siamcl.reporting.records import non_negative_int, parse_one_seed, positive_int

__all__ = [
    "configure_add",
    "configure_learn",
    "configure_predict",
    "run_add",
    "run_learn",
    "run_predict",
]

OBJECTIVES = ("metric", "cross-entropy")

LEARN = """\
Train a classifier on a folder of images, one sub-folder per class (DIR/<class>/<images>),
and save it to MODEL. If MODEL holds a model already, the folder is its next task: new
classes are learned, known ones keep their names and labels. With --task, each named
sub-folder of DIR (itself a folder of class folders) is one task, learned in order.

  siamcl learn --data photos --model my-model
  siamcl learn --data more-photos --model my-model          # the next task
  siamcl learn --data stream --task day1 day2 --model my-model
  siamcl learn --data photos --model my-model --epochs 30 --target 0.95 --patience 3
  siamcl learn --data photos --model small-model --qat int8   # int8, for siamcl export
  siamcl learn --data stream --task day1 day2 --model my-model --objective cross-entropy"""

ADD = """\
Add classes to a saved model from a few images each (DIR/<class>/<images>), with no training
step: their mean embeddings become the classes' prototypes. A known class name gets the
images as more examples."""

PREDICT = """\
Name the class of each image: files, or folders searched for image files. Prints one row per
image, as CSV with a header (path,label,score and label_2,score_2,... up to --top-k) or as JSON
lines ({"path", "label", "score", "top_k": [{"label", "score"}, ...]}). The score is the
model's probability (predict_proba) of that class."""


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model folder (classifier + class names)")
    parser.add_argument("--device", default="cpu", help="torch device")


def _add_quiet_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")


def configure_learn(parser: argparse.ArgumentParser) -> None:
    """Options of ``siamcl learn``."""
    parser.description = LEARN
    parser.add_argument("--data", required=True, help="folder of class folders")
    parser.add_argument(
        "--task",
        nargs="+",
        default=None,
        metavar="SUBDIR",
        help="sub-folders of --data learned as one task each, in order (default: --data is one task)",
    )
    _add_model_options(parser)
    _add_quiet_option(parser)
    parser.add_argument(
        "--epochs",
        type=positive_int,
        default=None,
        help="training epochs per task (default: 8 for a new model, a saved model's own)",
    )
    parser.add_argument(
        "--seeds",
        "--seed",
        dest="seed",
        type=parse_one_seed,
        default=None,
        help="random seed (default: 0 for a new model, a saved model's own)",
    )
    parser.add_argument(
        "--size",
        type=positive_int,
        default=None,
        help="side in pixels images are resized to (default: the most common size of the "
        "first task; a saved model keeps its own)",
    )
    _add_training_options(parser)
    parser.add_argument(
        "--objective",
        choices=OBJECTIVES,
        default="metric",
        help="metric (default): the Siamese learner, its encoder trained with a metric loss; "
        "cross-entropy: a softmax network trained on the tasks given, then its backbone read "
        "out by whitened class means (siamcl.learners.PrototypeReadout: on mnist5k within "
        "about a point of the metric loss early, for less energy a step); a new model only, "
        "saved as a prototype model that later tasks train with the metric loss",
    )
    add_stopping_options(parser)


def _add_training_options(parser: argparse.ArgumentParser) -> None:
    """How ``siamcl learn`` trains: precision, quantization-aware training, frozen layers."""
    parser.add_argument(
        "--precision",
        choices=("fp32", "bf16", "auto"),  # siamcl.training.precision.PRECISIONS, torch-free
        default=None,
        help="fp32, bf16 (mixed precision in every forward pass, training's and the model's "
        "embeddings: 0.7x the CPU time of an mnist epoch on a CPU with AVX512-BF16, several "
        "times slower where emulated) or auto (bf16 only where native); default fp32, a saved "
        "model's own",
    )
    parser.add_argument(
        "--qat",
        choices=("int8", "int8-ptq"),
        default=None,
        help="int8: train quantization-aware, so that the model predicts, and exports to ONNX, "
        "with an int8 encoder (on mnist5k its export is 0.27x the bytes and predicts in 0.54x "
        "the time of the float one's where the CPU has VNNI, 0.74x on AVX2 alone, for about "
        "1.2x the training energy); int8-ptq: the same int8 encoder from float training, "
        "quantized after each task on 512 of its images (post-training quantization: no "
        "extra training energy, but no training against the rounding either); set for a new "
        "model only (default: float, a saved model's own)",
    )
    parser.add_argument(
        "--frozen-layers",
        type=non_negative_int,
        default=None,
        metavar="N",
        help="from the second task on, keep the encoder's first N layers (conv4's blocks) as "
        "they are and train the rest: on mnist5k one block trained a 5-task stream in "
        "0.80-0.85x the energy for up to a point of accuracy (default 0, a saved model's own)",
    )


def configure_add(parser: argparse.ArgumentParser) -> None:
    """Options of ``siamcl add``."""
    parser.description = ADD
    parser.add_argument("--data", required=True, help="folder of class folders")
    _add_model_options(parser)
    _add_quiet_option(parser)


def configure_predict(parser: argparse.ArgumentParser) -> None:
    """Options of ``siamcl predict``."""
    parser.description = PREDICT
    parser.add_argument("images", nargs="+", metavar="IMAGES", help="image files or folders")
    _add_model_options(parser)
    parser.add_argument("--top-k", type=positive_int, default=3, help="classes listed per image")
    parser.add_argument("--format", choices=("csv", "jsonl"), default="csv", help="output format")


# ------------------------------------------------------------------------------ learn


def run_learn(args: argparse.Namespace) -> dict[str, Any]:
    """Train (or continue) the model on each task folder, save it, print each report."""
    model_dir = Path(args.model)
    folders = _task_folders(Path(args.data), args.task)
    existing = check_model_folder(model_dir, must_exist=False)
    model = ImageModel.load(model_dir) if existing else ImageModel(_new_classifier(args))
    if existing:
        _check_same_qat(model.classifier, args.qat, model_dir)
    learner = _learner(model, args, existing)
    tasks = _read_tasks(model, folders, None if existing else args.size)
    reports = []
    for folder, (X, y, names) in zip(folders, tasks):
        labels = model.labels(y, names)
        report = learner.fit_task(X, labels)
        reports.append(report.to_dict())
        _say(args, _report_line(f"task {report.task} ({folder})", names, report))
    if learner is not model.classifier:  # the softmax network's readout is what is kept
        model.classifier = learner.classifier_
    model.save(model_dir)
    _say(args, _saved_line(model, model_dir))
    return {"model": str(model_dir), "classes": model.class_names, "reports": reports}


def _check_same_qat(classifier: Any, qat: str | None, model_dir: Path) -> None:
    """Refuse ``--qat`` for a saved model trained otherwise before any image is read (the
    learner refuses it too, but only once a task's images are in memory)."""
    if qat is not None and qat != classifier.qat:
        raise ValueError(
            f"--qat {qat}: qat cannot be switched on or off after the first task, and "
            f"{model_dir} was trained "
            f"{f'with qat={classifier.qat!r}' if classifier.qat else 'in float'}; "
            f"learn a new model with --qat {qat}"
        )


def _task_folders(data: Path, tasks: list[str] | None) -> list[Path]:
    """The folders learned as tasks, each checked to exist."""
    if not data.is_dir():
        what = "is a file" if data.exists() else "does not exist"
        raise FileNotFoundError(f"--data {data} {what}: give a folder of class folders")
    folders = [data / task for task in tasks] if tasks else [data]
    for folder in folders:
        if not folder.is_dir():
            raise FileNotFoundError(f"--task {folder.name}: {folder} is not a folder")
    return folders


def _new_classifier(args: argparse.Namespace) -> Any:
    from siamcl.learners.incremental import IncrementalClassifier

    return IncrementalClassifier(seed=0 if args.seed is None else args.seed)


def _learner(model: ImageModel, args: argparse.Namespace, existing: bool) -> Any:
    """What trains on the tasks: the model's classifier with the command line's options, or
    for ``--objective cross-entropy`` a softmax network read out after every task."""
    if getattr(args, "objective", "metric") == "metric":
        _set_options(model.classifier, args)
        return model.classifier
    if existing:
        raise ValueError(
            f"--objective {args.objective} trains a new model: {args.model} holds one already "
            "(its later tasks train with the metric loss: omit --objective)"
        )
    if args.qat is not None:
        raise ValueError(
            f"--objective {args.objective} reads a float backbone out by prototypes: "
            f"it takes no --qat {args.qat}"
        )
    from siamcl.learners import PrototypeReadout, SoftmaxClassifier

    params = _options(SoftmaxClassifier(), args)
    return PrototypeReadout(SoftmaxClassifier(**params))


def _set_options(classifier: Any, args: argparse.Namespace) -> None:
    """Apply the options given on the command line to a new or loaded classifier."""
    classifier.set_params(**_options(classifier, args))


def _options(classifier: Any, args: argparse.Namespace) -> dict[str, Any]:
    """The parameters the command line's options set on a new or loaded ``classifier``."""
    params: dict[str, Any] = {"device": args.device}
    if getattr(args, "epochs", None) is not None:
        params["epochs"] = args.epochs
    if getattr(args, "seed", None) is not None:
        params["seed"] = args.seed
    if getattr(args, "precision", None) is not None:
        params["precision"] = args.precision
    if getattr(args, "qat", None) is not None:
        params["qat"] = args.qat
    if getattr(args, "frozen_layers", None) is not None:
        params["frozen_layers"] = args.frozen_layers
    params.update(stopping_params(classifier, args))
    return params


def _read_tasks(model: ImageModel, folders: list[Path], size: int | None) -> list[tuple]:
    """Every task's images, read before any training so a bad file stops the run at once.
    A new model takes the size and mode of its first task; later tasks are brought to it."""
    from siamcl.data import load_image_folder

    first = load_image_folder(folders[0], model.image_size or size, model.grayscale)
    model.set_format(first[0])
    rest = [load_image_folder(f, model.image_size, model.grayscale) for f in folders[1:]]
    return [first, *rest]


# -------------------------------------------------------------------------------- add


def run_add(args: argparse.Namespace) -> dict[str, Any]:
    """Add the folder's classes to the saved model with no training step; save it."""
    from siamcl.data import load_image_folder

    model_dir = Path(args.model)
    data = _task_folders(Path(args.data), None)[0]
    check_model_folder(model_dir, must_exist=True)
    model = ImageModel.load(model_dir)
    _set_options(model.classifier, args)
    X, y, names = load_image_folder(data, model.image_size, model.grayscale)
    report = model.classifier.add_classes(X, model.labels(y, names))
    _say(args, _report_line(f"added ({data})", names, report))
    model.save(model_dir)
    _say(args, _saved_line(model, model_dir))
    return {"model": str(model_dir), "classes": model.class_names, "report": report.to_dict()}


# ---------------------------------------------------------------------------- predict


def run_predict(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Predict every image's class; write CSV or JSON lines to stdout."""
    from siamcl.data import load_images

    paths = _image_paths(args.images)
    model_dir = Path(args.model)
    check_model_folder(model_dir, must_exist=True)
    model = ImageModel.load(model_dir)
    _set_options(model.classifier, args)
    X = load_images(paths, model.image_size, model.grayscale)
    rows = _predictions(model, X, paths, args.top_k)
    _write_rows(rows, args.format, min(args.top_k, len(model.classifier.classes_)))
    return rows


def _image_paths(images: list[str]) -> list[Path]:
    """Image files named, and those found in folders named (recursively), in order."""
    from siamcl.data.folders import image_files

    paths: list[Path] = []
    for image in map(Path, images):
        if image.is_dir():
            found = image_files(image, recursive=True)
            if not found:
                raise ValueError(f"{image} holds no image files")
            paths += found
        elif image.is_file():
            paths.append(image)
        else:
            raise FileNotFoundError(f"image {image} does not exist")
    return paths


def _predictions(model: ImageModel, X: Any, paths: list[Path], top_k: int) -> list[dict]:
    import numpy as np

    classifier = model.classifier
    labels = classifier.predict(X)
    proba = classifier.predict_proba(X)
    columns = {int(label): column for column, label in enumerate(classifier.classes_)}
    names = model.names_of(classifier.classes_)
    rows = []
    for path, label, row in zip(paths, labels, proba):
        best = np.argsort(-row, kind="stable")[:top_k]
        rows.append(
            {
                "path": str(path),
                "label": model.class_names[int(label)],
                "score": float(row[columns[int(label)]]),
                "top_k": [{"label": names[i], "score": float(row[i])} for i in best],
            }
        )
    return rows


def _write_rows(rows: list[dict[str, Any]], form: str, top_k: int) -> None:
    if form == "jsonl":
        for row in rows:
            sys.stdout.write(json.dumps(row) + "\n")
        return
    writer = csv.writer(sys.stdout, lineterminator="\n")
    header = ["path", "label", "score"]
    for rank in range(2, top_k + 1):
        header += [f"label_{rank}", f"score_{rank}"]
    writer.writerow(header)
    for row in rows:
        line = [row["path"], row["label"], f"{row['score']:.6f}"]
        others = [other for other in row["top_k"] if other["label"] != row["label"]]
        for other in others[: top_k - 1]:
            line += [other["label"], f"{other['score']:.6f}"]
        writer.writerow(line)


# ---------------------------------------------------------------------------- messages


def _say(args: argparse.Namespace, line: str) -> None:
    if not args.quiet:
        print(line)


def _report_line(what: str, names: list[str], report: Any) -> str:
    return (
        f"{what}: {len(names)} classes ({', '.join(names)}), {report.samples_seen} samples seen, "
        f"{report.wall_s:.1f} s wall, {report.cpu_s:.1f} s CPU, "
        f"{report.energy_j:.1f} J ({report.energy_method}){stop_note(report)}"
    )


def _saved_line(model: ImageModel, model_dir: Path) -> str:
    count = len(model.class_names)
    return f"saved to {model_dir} ({count} classes: {', '.join(model.class_names)})"
