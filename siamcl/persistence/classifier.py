"""Saving and loading an IncrementalClassifier as a directory of data, never of code.

Layout of a saved classifier (format version 3)::

    siamcl.json          format, parameters (JSON; siamcl's stopping policies too, as data
                         since version 3), preprocessing, sha256 of every file, its
                         own checksum, and an HMAC when saved with a key (see
                         :mod:`siamcl.persistence.manifest`)
    encoder.safetensors  the encoder's weights as trained (for a quantized classifier, the
                         fake-quantised training state, from which the quantized encoder is
                         rebuilt exactly)
    objects.pt           only when a parameter is a Python object (a user's nn.Module, a
                         pytorch-metric-learning loss object, an optimizer factory)
    memory.npz           exemplar memory (arrays; no pickled objects)
    store/               the PrototypeStore's own save directory
    reports.json         the TaskReports gathered so far

Loading reads weights, arrays and JSON only. ``objects.pt`` is a pickle, and unpickling can
run code, so it is read only when the caller opts in (``trust_pickle=True``); otherwise the
caller passes those parameters itself (``IncrementalClassifier.load(dir, encoder=MyNet())``),
or loading stops with an error that says so. The directory is written next to its
destination and renamed into place (:func:`siamcl._atomic.atomic_directory`).
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from siamcl._atomic import atomic_directory
from siamcl.accounting import TaskReport
from siamcl.persistence.manifest import MANIFEST, read_manifest, verify_files, write_manifest
from siamcl.preprocess import Preprocessor
from siamcl.replay import ExemplarMemory
from siamcl.store import PrototypeStore
from siamcl.training.stopping import policies_from_json, policies_to_json

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MANIFEST",
    "Learner",
    "read_classifier",
    "save_classifier",
]

FORMAT_NAME = "siamcl.IncrementalClassifier"
FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
OBJECTS = "objects.pt"
_PLAIN = (str, int, float, bool, type(None))


class Learner(Protocol):
    """What saving and checkpointing use of a learner (an IncrementalClassifier): its
    parameters, its public learned attributes, and ways to rebuild it."""

    device: str
    reports: list[TaskReport]

    def get_params(self, deep: bool = True) -> dict[str, Any]: ...

    def fit_task(self, X: Any, y: Any) -> TaskReport: ...

    def adopt(self, other: Any) -> None: ...


def save_classifier(
    clf: Learner, directory: str | os.PathLike, key: str | bytes | None = None
) -> None:
    """Write ``clf`` to ``directory``, replacing what is there, in one atomic rename; with
    ``key``, sign its manifest (HMAC-SHA256)."""
    with atomic_directory(directory) as staging:
        _write(clf, staging, key)


def split_params(params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(as JSON data, as Python objects)``: the parameters a save writes into its manifest
    (tuples as lists, siamcl's stopping policies as :func:`policies_to_json` data) and those
    JSON cannot hold (a user's module or policy, a loss object), which it pickles apart."""
    data, objects = {}, {}
    for name, value in params.items():
        encoded = policies_to_json(value) if name == "stopping" and value is not None else None
        if encoded is not None:
            data[name] = encoded
        elif _is_plain(value):
            data[name] = list(value) if isinstance(value, tuple) else value
        else:
            objects[name] = value
    return data, objects


def read_classifier(
    directory: str | os.PathLike,
    trust_pickle: bool = False,
    key: str | bytes | None = None,
    objects: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The parameters and learned state of a saved classifier, verified; a learner's
    ``from_state(params, **state)`` rebuilds it.

    ``objects`` supplies parameters that were saved as Python objects; any still missing are
    unpickled from ``objects.pt`` only with ``trust_pickle=True``.
    """
    source = Path(directory)
    manifest = read_manifest(source, FORMAT_NAME, READABLE_VERSIONS, key)
    missing = [k for k in ("params", "preprocessor", "encoder") if k not in manifest]
    if missing:
        raise ValueError(f"{source / MANIFEST} is corrupt: it lacks {missing}")
    version = manifest["format_version"]
    weights = "encoder.safetensors" if version >= 2 else "encoder.pt"
    verify_files(source, manifest, {weights, "memory.npz", "reports.json"})
    params = _params(source, manifest, trust_pickle, dict(objects or {}))
    with _reading(source / MANIFEST):
        preprocessor = Preprocessor.from_state_dict(manifest["preprocessor"])
    with _reading(source / weights):
        encoder_weights = _read_weights(source / weights, manifest, trust_pickle)
    with _reading(source / "memory.npz"):
        memory = _read_memory(source / "memory.npz")
    with _reading(source / "reports.json"):
        reports = [
            TaskReport.from_dict(r) for r in json.loads((source / "reports.json").read_text())
        ]
    with _reading(source / "store"):
        store = PrototypeStore.load(source / "store")
    state = {
        "preprocessor": preprocessor,
        "encoder_weights": encoder_weights,
        "store": store,
        "memory": memory,
        "reports": reports,
    }
    return params, state


def _params(
    source: Path, manifest: dict[str, Any], trust_pickle: bool, objects: dict[str, Any]
) -> dict[str, Any]:
    params = manifest.get("params")
    if not isinstance(params, dict):
        raise ValueError(  # noqa: TRY004 - a corrupt file is a ValueError
            f"{source / MANIFEST} is corrupt: it holds no parameters"
        )
    params = dict(params)
    if manifest["format_version"] == 1:  # format 1 did not list its objects' names
        saved = ["objects"] if (source / OBJECTS).is_file() else []
    else:
        saved = [str(name) for name in manifest.get("objects", [])]
        if not saved and (source / OBJECTS).is_file():
            raise ValueError(
                f"{source / OBJECTS} is not part of this save: its manifest names no "
                f"parameter saved as an object"
            )
    missing = sorted(set(saved) - objects.keys())
    if missing and not trust_pickle:
        raise ValueError(
            f"{source / OBJECTS} holds parameters saved as Python objects "
            f"({', '.join(missing)}), and unpickling them could run code: pass them yourself "
            f"(load(directory, {missing[0]}=...)), or trust_pickle=True if you trust whoever "
            f"wrote {source}"
        )
    if params.get("stopping") is not None:  # saved as data: see split_params
        params["stopping"] = policies_from_json(params["stopping"])
    if missing:
        params.update(_unpickle(source / OBJECTS, trust_pickle))
    params.update(objects)
    if isinstance(params.get("input_size"), list):
        params["input_size"] = tuple(params["input_size"])
    return params


def _read_weights(
    path: Path, manifest: dict[str, Any], trust_pickle: bool
) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        return load_file(path, device="cpu")
    if manifest.get("encoder") != "module":  # format 1: a state dict, loadable without code
        return torch.load(path, map_location="cpu", weights_only=True)
    return _unpickle(path, trust_pickle).state_dict()  # format 1 saved user modules whole


def _unpickle(path: Path, trust_pickle: bool) -> Any:
    """The one place a save's pickle is read, which can run code: only when the caller
    opted in with ``trust_pickle=True``."""
    if not trust_pickle:
        raise ValueError(
            f"{path} holds pickled Python objects, and unpickling them could run code: pass "
            f"trust_pickle=True if you trust whoever wrote it"
        )
    with _reading(path):
        return torch.load(path, map_location="cpu", weights_only=False)


def _read_memory(path: Path) -> ExemplarMemory:
    with np.load(path, allow_pickle=False) as arrays:
        state = json.loads(str(arrays["state"]))
        state["exemplars"] = {
            k[len("class_") :]: arrays[k] for k in arrays.files if k.startswith("class_")
        }
    return ExemplarMemory.from_state_dict(state)


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Any failure to read ``path`` as a ValueError that names it."""
    try:
        yield
    except ValueError as error:
        if str(path) in str(error):
            raise
        raise ValueError(f"{path} is corrupt: {error}") from error
    except (
        OSError,
        RuntimeError,
        TypeError,
        KeyError,
        AttributeError,
        zipfile.BadZipFile,
        pickle.UnpicklingError,
        EOFError,
        SafetensorError,
        json.JSONDecodeError,
    ) as error:
        raise ValueError(f"{path} is corrupt: {type(error).__name__}: {error}") from error


def _write(clf: Learner, staging: Path, key: str | bytes | None) -> None:
    params = clf.get_params(deep=False)
    if "teacher" in params:  # a teacher guides training only; it is not part of the model
        params["teacher"] = None
    data, objects = split_params(params)
    if objects:
        torch.save(objects, staging / OBJECTS)
    weights = clf.trainable_encoder_.state_dict()
    save_file(
        {k: v.detach().cpu().contiguous().clone() for k, v in weights.items()},
        staging / "encoder.safetensors",
    )
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
        "params": data,
        "objects": sorted(objects),
        "preprocessor": clf.preprocessor_.state_dict(),
        "encoder": "named" if isinstance(params.get("encoder"), str) else "module",
        "classes": clf.classes_.tolist(),
    }
    write_manifest(staging, manifest, key)


def _is_plain(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(isinstance(v, _PLAIN) for v in value)
    return isinstance(value, _PLAIN)
