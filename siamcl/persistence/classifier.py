"""Saving and loading an IncrementalClassifier as a directory, atomically and verifiably.

Layout of a saved classifier::

    siamcl.json     format name and version, parameters, preprocessing, sha256 of every file
    encoder.pt      encoder weights (named encoders) or the whole module (user modules); for
                    a quantized classifier (``qat``), the fake-quantised training state, from
                    which the quantized encoder is rebuilt exactly on load
    objects.pt      constructor arguments that are objects rather than plain values, if any
    memory.npz      exemplar memory
    store/          the PrototypeStore's own save directory
    reports.json    the TaskReports gathered so far

The directory is written next to its destination under a temporary name, flushed to disk,
then renamed into place, so a crash mid-save never leaves half a model where a good one was.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from siamcl._atomic import atomic_directory, file_checksums, sha256_file, write_json
from siamcl.accounting import TaskReport
from siamcl.compress.qat import training_scheme
from siamcl.encoders import auto_encoder_name, build_encoder
from siamcl.preprocess import Preprocessor
from siamcl.replay import ExemplarMemory
from siamcl.store import PrototypeStore

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "read_classifier", "save_classifier"]


class Learner(Protocol):
    """What saving and checkpointing use of a learner (an IncrementalClassifier): its
    parameters, its public learned attributes, and ways to rebuild it."""

    device: str
    reports: list[TaskReport]

    def get_params(self, deep: bool = True) -> dict[str, Any]: ...

    def fit_task(self, X: Any, y: Any) -> TaskReport: ...

    def adopt(self, other: Any) -> None: ...


FORMAT_NAME = "siamcl.IncrementalClassifier"
FORMAT_VERSION = 1
MANIFEST = "siamcl.json"
REQUIRED_FILES = {"encoder.pt", "memory.npz", "reports.json"}
_PLAIN = (str, int, float, bool, type(None))


def save_classifier(clf: Learner, directory: str | os.PathLike) -> None:
    """Write ``clf`` to ``directory``, replacing what is there, in one atomic rename."""
    with atomic_directory(directory) as staging:
        _write(clf, staging)


def read_classifier(directory: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """The parameters and learned state of a classifier written by :func:`save_classifier`,
    verified (format and checksums); a learner's ``from_state(params, **state)`` rebuilds it."""
    source = Path(directory)
    manifest = read_manifest(source)
    for name, digest in manifest["files"].items():
        path = source / name
        if not path.is_file():
            raise ValueError(f"{source} is incomplete: {name} is missing")
        if sha256_file(path) != digest:
            raise ValueError(f"{source} is corrupt: checksum of {name} does not match")

    params = dict(manifest["params"])
    if (source / "objects.pt").is_file():
        params.update(torch.load(source / "objects.pt", weights_only=False))
    if isinstance(params.get("input_size"), list):
        params["input_size"] = tuple(params["input_size"])
    preprocessor = Preprocessor.from_state_dict(manifest["preprocessor"])
    if manifest["encoder"] == "module":
        encoder = torch.load(source / "encoder.pt", weights_only=False, map_location="cpu")
    else:
        encoder = _named_encoder(params, preprocessor, source / "encoder.pt")
    with np.load(source / "memory.npz", allow_pickle=False) as arrays:
        memory_state = json.loads(str(arrays["state"]))
        memory_state["exemplars"] = {
            key[len("class_") :]: arrays[key] for key in arrays.files if key.startswith("class_")
        }
    reports = json.loads((source / "reports.json").read_text())
    state = {
        "preprocessor": preprocessor,
        "trainable_encoder": encoder.eval(),
        "store": PrototypeStore.load(source / "store"),
        "memory": ExemplarMemory.from_state_dict(memory_state),
        "reports": [TaskReport.from_dict(r) for r in reports],
    }
    return params, state


def read_manifest(source: Path) -> dict[str, Any]:
    """The manifest of a saved classifier, with clear errors for anything that is not one."""
    if not source.exists():
        raise FileNotFoundError(f"no saved classifier at {source}: the directory does not exist")
    if not source.is_dir():
        raise ValueError(f"{source} is not a directory holding a saved classifier")
    path = source / MANIFEST
    if not path.is_file():
        raise ValueError(f"{source} is not a saved siamcl classifier: {MANIFEST} is missing")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is corrupt: {error}") from error
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise ValueError(f"{source} was written by another tool, not as {FORMAT_NAME}")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{source} has format version {version}; this siamcl reads version {FORMAT_VERSION}"
        )
    files = manifest.get("files")
    if not (
        isinstance(files, dict)
        and REQUIRED_FILES <= files.keys()
        and all(isinstance(digest, str) for digest in files.values())
        and all(_inside(name) for name in files)
    ):
        raise ValueError(f"{path} is corrupt: its list of files and checksums is incomplete")
    missing = [key for key in ("params", "preprocessor", "encoder") if key not in manifest]
    if missing:
        raise ValueError(f"{path} is corrupt: it lacks {missing}")
    return manifest


def _named_encoder(params: dict[str, Any], preprocessor: Preprocessor, path: Path) -> nn.Module:
    """The encoder named in ``params``, prepared as it was trained (quantization-aware or
    not), holding the saved weights."""
    shape = preprocessor.input_shape
    with torch.random.fork_rng(devices=[]):
        name = auto_encoder_name(params.get("encoder", "auto"), shape)
        encoder = build_encoder(name, shape, params.get("embedding_dim", 64))
    try:
        scheme = training_scheme(params.get("qat"))
    except ValueError as error:
        raise ValueError(f"{path.parent} is corrupt: {error}") from error
    encoder = scheme.prepare(encoder, torch.zeros((2, *shape)))
    encoder.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return encoder


def _inside(name: str) -> bool:
    """Whether a manifest's file name stays inside the saved directory."""
    relative = Path(name)
    return not relative.is_absolute() and ".." not in relative.parts


def _write(clf: Learner, staging: Path) -> None:
    params = clf.get_params(deep=False)
    if "teacher" in params:  # a teacher guides training only; it is not part of the model
        params["teacher"] = None
    plain = {k: v for k, v in params.items() if _is_plain(v)}
    objects = {k: v for k, v in params.items() if k not in plain}
    if objects:
        torch.save(objects, staging / "objects.pt")
    named_encoder = isinstance(clf.encoder, str)
    encoder = clf.trainable_encoder_
    torch.save(encoder.state_dict() if named_encoder else encoder, staging / "encoder.pt")
    memory_state = clf.memory_.state_dict()
    exemplars = memory_state.pop("exemplars")
    np.savez(
        staging / "memory.npz",
        state=np.array(json.dumps(memory_state)),
        **{f"class_{label}": array for label, array in exemplars.items()},
    )
    clf.store_.save(staging / "store")
    (staging / "reports.json").write_text(json.dumps([r.to_dict() for r in clf.reports]))

    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "params": plain,
        "preprocessor": clf.preprocessor_.state_dict(),
        "encoder": "named" if named_encoder else "module",
        "classes": clf.classes_.tolist(),
        "files": file_checksums(staging),
    }
    write_json(staging / MANIFEST, manifest)


def _is_plain(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(isinstance(v, _PLAIN) for v in value)
    return isinstance(value, _PLAIN)
