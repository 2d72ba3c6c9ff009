"""Deployment recipe: classify with an exported folder using numpy, onnxruntime and faiss.

This module imports nothing from siamcl (Pillow only to read image files and resize images
of another size, torch only for a ``torch.export`` folder), so it can be copied into a
service as it is::

    from deploy import predict_exported              # this file, copied
    labels = predict_exported("exported_model", images)  # uint8 [N, H, W] or float, as to siamcl

or, to load the folder once and answer many calls::

    model = ExportedClassifier("exported_model")
    labels = model.predict(images)                   # embeddings: model.embed(images)
    names = model.names(model.predict(model.read_images(["a.png", "b.jpg"])))

or from a shell, for image files (CSV of path and class)::

    python deploy.py exported_model a.png b.jpg

It repeats what a fitted classifier does: inputs to canonical form (integer pixels / 255,
channels first, resized, inverted when the model was fitted on dark-on-light images), the
encoder graph (which standardises and returns L2-normalised embeddings), then the FAISS
search and vote of ``PrototypeStore.classify``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np

__all__ = ["ExportedClassifier", "predict_exported"]

EXPORT_FORMAT = "siamcl.export"
EXPORT_VERSION = 1
MODEL_FILE = "model.json"
INDEX_FILE = "index.faiss"
CLASSES_FILE = "classes.json"
PROTOTYPES_FILE = "prototypes.npy"
ENCODER_INPUT = "input"
ENCODER_OUTPUT = "embedding"
BATCH = 512  # rows embedded at a time
_METRICS = {"cosine": faiss.METRIC_INNER_PRODUCT, "l2": faiss.METRIC_L2}


def predict_exported(folder: str | os.PathLike, images: Any) -> np.ndarray:
    """Class labels of ``images`` (or vectors) by the classifier exported to ``folder``."""
    return ExportedClassifier(folder).predict(images)


class ExportedClassifier:
    """An export folder loaded once: :meth:`embed` and :meth:`predict` raw inputs."""

    def __init__(self, folder: str | os.PathLike):
        folder = Path(folder)
        self.model = json.loads((folder / MODEL_FILE).read_text())
        version = (self.model.get("format"), self.model.get("format_version"))
        if version != (EXPORT_FORMAT, EXPORT_VERSION):
            raise ValueError(f"{folder} is not a siamcl export folder of version {EXPORT_VERSION}")
        self.preprocessing = self.model["preprocessing"]
        self.image_files = self.model.get("image_files")  # how files were read, when known
        self._encode = _encoder(folder, self.model["encoder"])
        classes = json.loads((folder / CLASSES_FILE).read_text())
        self.metric = classes["metric"]
        self.vote_k = int(classes["vote_k"])
        self.ids = np.asarray(classes["ids"], dtype=np.int64)  # increasing
        self.labels = np.asarray(classes["labels"], dtype=np.int64)  # class of each id
        names = classes.get("class_names")  # aligned with "classes", when the export has them
        self.class_names = None if names is None else dict(zip(classes["classes"], names))
        self.prototypes = np.load(folder / PROTOTYPES_FILE, allow_pickle=False)
        self.index = faiss.read_index(str(folder / INDEX_FILE))
        space = faiss.ParameterSpace()
        for name, key in (("nprobe", "nprobe"), ("efSearch", "ef_search")):
            if classes.get(key) is not None:
                space.set_index_parameter(self.index, name, classes[key])

    def canonical(self, X: Any) -> np.ndarray:
        """Raw inputs as the encoder graph takes them (float32, channels first, resized)."""
        X = np.asarray(X)
        pre = self.preprocessing
        if pre["kind"] == "vector":
            if X.ndim != 2 or X.shape[1] != pre["features"]:
                raise ValueError(f"expected vectors [N, {pre['features']}], got {X.shape}")
            return np.ascontiguousarray(X, dtype=np.float32)
        if np.issubdtype(X.dtype, np.integer):
            if X.size and (X.min() < 0 or X.max() > 255):
                raise ValueError("integer images must hold 8-bit pixel values (0..255)")
            X = X.astype(np.float32) / pre["integer_pixel_scale"]
        X = X.astype(np.float32, copy=False)
        if X.ndim == 3:
            X = X[:, None]
        if X.ndim != 4 or X.shape[1] != pre["channels"]:
            raise ValueError(f"expected images with {pre['channels']} channel(s), got {X.shape}")
        size = tuple(pre["input_size"])
        if X.shape[2:] != size:
            X = _resize(X, size)
        if pre["invert"]:
            X = 1.0 - X
        return np.ascontiguousarray(X, dtype=np.float32)

    def read_images(self, paths: Sequence[str | os.PathLike]) -> np.ndarray:
        """Image files as the uint8 arrays the classifier takes, read with Pillow as siamcl's
        ``load_images`` reads them: converted to the mode of ``model.json``'s ``image_files``
        (``siamcl export`` writes it) and resized bilinearly to its size when they differ.
        Without that section, to the encoder's channels (1: grayscale, 3: RGB) and input size."""
        from PIL import Image

        pre = self.preprocessing
        if pre["kind"] != "image":
            raise ValueError("this export classifies vectors, not image files")
        files = self.image_files or {}
        mode = files.get("mode", "L" if pre["channels"] == 1 else "RGB")
        height, width = files.get("size", pre["input_size"])
        images = []
        for path in paths:
            with Image.open(path) as image:
                image = image.convert(mode)
                if image.size != (width, height):
                    image = image.resize((width, height), Image.Resampling.BILINEAR)
                pixels = np.asarray(image, dtype=np.uint8)
            images.append(pixels if mode == "L" else pixels.transpose(2, 0, 1))
        if not images:
            raise ValueError("no image files given")
        return np.stack(images)

    def names(self, labels: Any) -> list[str]:
        """The class names of ``labels`` when the export holds them, else the labels as text."""
        if self.class_names is None:
            return [str(int(label)) for label in labels]
        return [self.class_names[int(label)] for label in labels]

    def embed(self, X: Any) -> np.ndarray:
        """L2-normalised embeddings ``[N, D]`` of raw inputs, ``BATCH`` rows at a time."""
        X = np.asarray(X)
        parts = [
            self._encode(self.canonical(X[start : start + BATCH]))
            for start in range(0, len(X), BATCH)
        ]
        return np.concatenate(parts).astype(np.float32)

    def predict(self, X: Any) -> np.ndarray:
        """Label of the nearest prototype, or the majority among the ``vote_k`` nearest
        (ties go to the tied label with the nearest prototype), as siamcl classifies."""
        queries = np.ascontiguousarray(self.embed(X), dtype=np.float32)
        if self.metric == "cosine":
            faiss.normalize_L2(queries)
        k = min(self.vote_k, len(self.ids))
        _, found = self.index.search(queries, k)
        rows = np.searchsorted(self.ids, found)
        missing = np.any(found < 0, axis=1)  # too few found: exact search, as siamcl does
        if missing.any():
            metric = _METRICS[self.metric]
            _, rows[missing] = faiss.knn(queries[missing], self.prototypes, k, metric)
        labels = self.labels[rows]
        if k == 1:
            return labels[:, 0]
        votes = (labels[:, :, None] == labels[:, None, :]).sum(axis=2)
        winner = np.argmax(votes, axis=1)  # first maximum: the nearest among tied labels
        return labels[np.arange(len(labels)), winner]


def main(argv: Sequence[str] | None = None) -> int:
    """``python deploy.py FOLDER IMAGE...``: CSV of each image file's path and class."""
    parser = argparse.ArgumentParser(description="Classify image files with an exported model.")
    parser.add_argument("folder", help="the exported model's folder")
    parser.add_argument("images", nargs="+", help="image files")
    args = parser.parse_args(argv)
    model = ExportedClassifier(args.folder)
    names = model.names(model.predict(model.read_images(args.images)))
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(["path", "label"])
    writer.writerows(zip(args.images, names))
    return 0


def _encoder(folder: Path, encoder: dict[str, Any]):
    """A function from a canonical float32 batch to embeddings, for the folder's format."""
    path = str(folder / encoder["file"])
    if encoder["format"] == "onnx":
        try:
            import onnxruntime
        except ModuleNotFoundError as error:
            raise ImportError(
                "an ONNX export needs onnxruntime: pip install onnxruntime (or 'siamcl[export]')"
            ) from error

        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        name, output = encoder["input_name"], encoder["output_name"]
        return lambda batch: session.run([output], {name: batch})[0]
    if encoder["format"] == "torch.export":
        import torch

        module = torch.export.load(path).module()

        def run(batch: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return module(torch.from_numpy(batch)).numpy()

        return run
    raise ValueError(f"unknown encoder format {encoder['format']!r}")


def _resize(X: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of every channel of every image with Pillow (antialiased when
    shrinking, as siamcl's ``F.interpolate(..., antialias=True)``)."""
    from PIL import Image

    height, width = size
    out = np.empty((*X.shape[:2], height, width), dtype=np.float32)
    for i, image in enumerate(X):
        for c, plane in enumerate(image):
            resized = Image.fromarray(np.ascontiguousarray(plane)).resize(
                (width, height), Image.Resampling.BILINEAR
            )
            out[i, c] = np.asarray(resized, dtype=np.float32)
    return out


if __name__ == "__main__":
    sys.exit(main())
