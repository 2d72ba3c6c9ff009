"""A model folder for classifiers trained on image folders: the classifier and its class names.

    MODEL/classifier/    the IncrementalClassifier, as ``IncrementalClassifier.save`` writes it
    MODEL/classes.json   class names by label, and the image size and mode the model takes

The classifier's labels are integers; ``classes.json`` maps them to the folder names they came
from, so a class keeps its label from one command to the next. Both are written together in
one atomic step (:func:`siamcl._atomic.atomic_directory`): a reader sees the old pair or the
new one, never a classifier with another's names.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from siamcl._atomic import atomic_directory, recover, write_json
from siamcl.cli.checks import UsageError, check_writable

__all__ = ["CLASSES_FILE", "CLASSIFIER_DIR", "ImageModel", "check_model_folder"]

CLASSES_FILE = "classes.json"
CLASSIFIER_DIR = "classifier"
FORMAT = "siamcl-image-model"


def check_model_folder(path: Path, must_exist: bool) -> bool:
    """Check ``--model`` before any work; True when it holds a model already.

    A new model may go to a missing or empty folder; a folder holding anything else is
    refused rather than replaced.
    """
    recover(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"--model {path} is a file; give a model folder")
    exists = (path / CLASSES_FILE).is_file()
    if must_exist and not exists:
        what = "does not exist" if not path.exists() else f"holds no {CLASSES_FILE}"
        raise FileNotFoundError(f"--model {path} {what}: train one with siamcl learn")
    if not exists and path.is_dir() and any(path.iterdir()):
        raise UsageError(
            f"--model {path} is a folder that holds no siamcl model ({CLASSES_FILE}); "
            "give a new or empty folder"
        )
    check_writable(path, "--model", folder=True)
    return exists


@dataclass
class ImageModel:
    """A classifier with the names of its classes and the image format it takes."""

    classifier: Any
    class_names: list[str] = field(default_factory=list)
    image_size: tuple[int, int] | None = None
    grayscale: bool | None = None

    def labels(self, y: np.ndarray, names: Sequence[str]) -> np.ndarray:
        """This model's labels for a folder's labels ``y`` of class ``names``; names not
        seen before get the next free labels."""
        for name in names:
            if name not in self.class_names:
                self.class_names.append(name)
        mapping = np.asarray([self.class_names.index(name) for name in names], dtype=np.int64)
        return mapping[y]

    def names_of(self, labels: Any) -> list[str]:
        """Class names of integer labels."""
        return [self.class_names[int(label)] for label in labels]

    def set_format(self, X: np.ndarray) -> None:
        """Take the size and mode of the first images the model learns."""
        if self.image_size is None:
            self.image_size = (int(X.shape[-2]), int(X.shape[-1]))
            self.grayscale = X.ndim == 3

    def save(self, path: Path) -> None:
        """Write the classifier and ``classes.json`` to ``path`` in one atomic step."""
        with atomic_directory(path) as staging:
            self.classifier.save(staging / CLASSIFIER_DIR)
            write_json(
                staging / CLASSES_FILE,
                {
                    "format": FORMAT,
                    "classes": self.class_names,
                    "image_size": list(self.image_size or ()),
                    "grayscale": self.grayscale,
                },
            )

    @classmethod
    def load(cls, path: Path) -> ImageModel:
        """Read a model folder written by :meth:`save`."""
        from siamcl.learners.incremental import IncrementalClassifier

        recover(path)
        names, size, grayscale = read_classes(path / CLASSES_FILE)
        classifier = IncrementalClassifier.load(path / CLASSIFIER_DIR)
        unknown = [int(c) for c in classifier.classes_ if not 0 <= c < len(names)]
        if unknown:
            raise ValueError(f"{path / CLASSES_FILE} names no class for labels {unknown}")
        return cls(classifier, names, size, grayscale)


def read_classes(path: Path) -> tuple[list[str], tuple[int, int], bool]:
    """Class names, image size and mode from a ``classes.json``, checked."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read {path}: {error}") from error
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{path} is not a siamcl class map (format {FORMAT!r})")
    names, size, grayscale = data.get("classes"), data.get("image_size"), data.get("grayscale")
    if (
        not isinstance(names, list)
        or not all(isinstance(name, str) for name in names)
        or len(set(names)) != len(names)
    ):
        raise ValueError(f"{path}: 'classes' must be a list of distinct names")
    if (
        not isinstance(size, list)
        or len(size) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)
    ):
        raise ValueError(f"{path}: 'image_size' must be [height, width]")
    if type(grayscale) is not bool:  # a JSON value, so the error is ValueError
        raise ValueError(f"{path}: 'grayscale' must be true or false")
    return names, (size[0], size[1]), grayscale
