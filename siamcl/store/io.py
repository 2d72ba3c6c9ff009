"""A store directory on disk: writing it atomically, reading and checking it back.

A directory holds ``index.faiss`` (``faiss.write_index``), the prototype and class arrays as
``.npy`` files, and ``store.json``: format name and version, parameters, and a sha256
checksum of every file.  A store built on a ready-made ``faiss.Index`` also holds
``template.faiss``, the empty index it was given, in place of a factory string.  Reading
runs no code from the files: JSON, ``np.load(allow_pickle=False)`` and ``faiss.read_index``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from siamcl._atomic import atomic_directory, fsync_path, recover, sha256_file
from siamcl.store.contents import FIELDS, Contents
from siamcl.store.faiss_index import METRICS, FaissIndex

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "Loaded", "load", "save"]

FORMAT_NAME = "siamcl.PrototypeStore"
FORMAT_VERSION = 2  # 2 added template.faiss; a store built from a factory string writes 1
META_FILE = "store.json"
INDEX_FILE = "index.faiss"
TEMPLATE_FILE = "template.faiss"
ARRAY_FILES = {
    "vectors": "prototypes.npy",
    "ids": "prototype_ids.npy",
    "labels": "prototype_labels.npy",
    "weights": "prototype_weights.npy",
    "class_labels": "class_labels.npy",
    "class_sums": "class_sums.npy",
    "class_counts": "class_counts.npy",
}


# ---------------------------------------------------------------------- writing
def save(
    directory: str | os.PathLike,
    params: dict[str, Any],
    contents: Contents,
    faiss_index: FaissIndex,
    next_id: int,
) -> Path:
    """Write a store to ``directory`` atomically (temporary directory, fsync, rename).

    ``params`` are the store's constructor parameters other than ``index``.  An existing
    store directory is replaced; any other non-empty directory is refused.
    """
    target = Path(directory)
    if target.exists() and not target.is_dir():
        raise ValueError(f"cannot save store to {target}: it is a file, not a directory")
    if target.is_dir() and any(target.iterdir()) and not (target / META_FILE).is_file():
        raise ValueError(
            f"refusing to replace {target}: it is a non-empty directory without {META_FILE}"
        )
    params = dict(params)
    meta = {
        "format": FORMAT_NAME,
        "format_version": 1 if faiss_index.template is None else FORMAT_VERSION,
        "dim": params.pop("dim"),
        "metric": params.pop("metric"),
        "index": faiss_index.spec,
        "params": params,
        "next_id": next_id,
        "n_classes": len(contents.class_labels),
        "n_prototypes": len(contents.ids),
        "trained": bool(faiss_index.index.is_trained),
        "faiss_version": faiss.__version__,
    }
    indexes = {INDEX_FILE: faiss_index.index}
    if faiss_index.template is not None:
        indexes[TEMPLATE_FILE] = faiss_index.template
    with atomic_directory(target) as staging:
        _write(staging, contents, indexes, meta)
    return target


def _write(
    staging: Path, contents: Contents, indexes: dict[str, faiss.Index], meta: dict[str, Any]
) -> None:
    """Every file of a store into ``staging``, flushed to disk, ``store.json`` last with
    the checksum of each of the others."""
    checksums = {}
    for name, file in ARRAY_FILES.items():
        with open(staging / file, "wb") as handle:
            np.save(handle, np.asarray(getattr(contents, name)), allow_pickle=False)
            handle.flush()
            os.fsync(handle.fileno())
        checksums[file] = sha256_file(staging / file)
    for file, index in indexes.items():
        faiss.write_index(index, str(staging / file))
        fsync_path(staging / file)
        checksums[file] = sha256_file(staging / file)
    with open(staging / META_FILE, "w") as handle:
        json.dump({**meta, "checksums": checksums}, handle, indent=2)
        handle.flush()
        os.fsync(handle.fileno())
    fsync_path(staging)


# ---------------------------------------------------------------------- reading
@dataclass(frozen=True)
class Loaded:
    """A store directory read and checked: the store built from its parameters and the
    state to give it."""

    store: Any
    contents: Contents
    index: faiss.Index
    index_nbytes: int
    next_id: int
    mapped: bool
    note: str | None


def load(directory: str | os.PathLike, mmap: bool, make: Callable[..., Any]) -> Loaded:
    """Read the store directory ``directory``; ``make(**parameters)`` builds the empty
    store (its checks apply to the parameters read).  ``mmap`` memory-maps the index where
    FAISS can, and the arrays."""
    source = Path(directory)
    recover(source)  # a save killed between its two renames left the store aside
    meta = _read_meta(source)
    try:
        store = make(**_constructor_args(source, meta))
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{source / META_FILE} holds invalid parameters: {error}") from None
    contents = _read_contents(source, store.dim, mmap)
    index, mapped, note = _read_index(source / INDEX_FILE, mmap)
    _check_index(index, source, store.dim, store.metric, np.asarray(contents.ids))
    nbytes = (source / INDEX_FILE).stat().st_size
    next_id = _read_next_id(source, meta, contents)
    return Loaded(store, contents, index, nbytes, next_id, mapped, note)


def _read_meta(source: Path) -> dict[str, Any]:
    """``store.json`` of a store directory, once the directory and every file's checksum
    are found sound."""
    if not source.exists():
        raise FileNotFoundError(f"no saved store at {source}")
    if not source.is_dir():
        raise FileNotFoundError(f"{source} is not a directory holding a saved store")
    path = source / META_FILE
    meta = _parsed_meta(path, source)
    for key in ("dim", "metric", "index", "params", "next_id", "checksums"):
        if key not in meta:
            raise ValueError(f"{path} is corrupt: key {key!r} is missing")
    checksums = meta["checksums"]
    if not isinstance(checksums, dict) or not isinstance(meta["params"], dict):
        problem = "'checksums' and 'params' must be objects"  # a malformed file: ValueError
        raise ValueError(f"{path} is corrupt: {problem}")  # noqa: TRY004
    files = [INDEX_FILE, *ARRAY_FILES.values()] + ([TEMPLATE_FILE] if meta["index"] is None else [])
    for file in files:
        if not (source / file).is_file():
            raise ValueError(f"{source} is incomplete: {file} is missing")
        if checksums.get(file) != sha256_file(source / file):
            raise ValueError(f"{source / file} does not match its checksum in {META_FILE}")
    return meta


def _parsed_meta(path: Path, source: Path) -> dict[str, Any]:
    """The JSON of ``store.json``, if it names this format in a version this code reads."""
    if not path.is_file():
        raise ValueError(f"{source} is not a saved PrototypeStore: {META_FILE} is missing")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is corrupt: {error}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ValueError(f"{path} is not a {FORMAT_NAME} file (format is {found!r})")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"{path} has an invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{path} has format version {version}, newer than this siamcl reads "
            f"({FORMAT_VERSION}); upgrade siamcl"
        )
    return meta


def _constructor_args(source: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """The store's constructor arguments recorded in ``meta`` (KeyError if one is missing);
    the index is the factory string, or the empty index read from ``template.faiss``."""
    params = meta["params"]
    index = meta["index"]
    if index is None:
        index, _, _ = _read_index(source / TEMPLATE_FILE, mmap=False)
    names = ("prototypes_per_class", "vote_k", "nprobe", "ef_search", "seed", "min_train_size")
    return {
        "dim": meta["dim"],
        "metric": meta["metric"],
        "index": index,
        **{name: params[name] for name in names},
    }


def _read_contents(source: Path, dim: int, mmap: bool) -> Contents:
    """The prototype and class arrays, memory-mapped when ``mmap``, checked for shape,
    dtype and order."""
    contents = Contents(
        **{
            name: _read_array(source / file, FIELDS[name], mmap)
            for name, file in ARRAY_FILES.items()
        }
    )
    n, c = len(contents.ids), len(contents.class_labels)
    shapes = {
        "vectors": (n, dim),
        "labels": (n,),
        "weights": (n,),
        "class_sums": (c, dim),
        "class_counts": (c,),
    }
    for name, shape in shapes.items():
        if getattr(contents, name).shape != shape:
            raise ValueError(
                f"{source / ARRAY_FILES[name]} has shape {getattr(contents, name).shape}, "
                f"expected {shape}"
            )
    if np.any(np.diff(contents.ids) <= 0) or np.any(np.diff(contents.class_labels) <= 0):
        raise ValueError(f"{source}: prototype ids or class labels are not strictly increasing")
    if not np.array_equal(np.unique(contents.labels), contents.class_labels):
        raise ValueError(f"{source}: prototype labels and class labels disagree")
    return contents


def _read_array(path: Path, dtype: type, mmap: bool) -> np.ndarray:
    try:
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise ValueError(f"{path} is not a readable array: {error}") from None
    if array.dtype != dtype:
        raise ValueError(f"{path} holds {array.dtype}, expected {np.dtype(dtype)}")
    return array


def _read_index(path: Path, mmap: bool) -> tuple[faiss.Index, bool, str | None]:
    """A FAISS index file, memory-mapped where FAISS can when ``mmap``: ``(index, mapped,
    note)``, the note saying why a requested mapping did not happen."""
    notes = []
    if mmap:
        for flag_name in ("IO_FLAG_MMAP_IFC", "IO_FLAG_MMAP"):
            flag = getattr(faiss, flag_name, None)
            if flag is None:
                notes.append(f"this FAISS has no {flag_name}")
                continue
            try:
                return faiss.read_index(str(path), flag | faiss.IO_FLAG_READ_ONLY), True, None
            except RuntimeError as error:
                notes.append(f"{flag_name}: {str(error).strip().splitlines()[-1]}")
    try:
        index = faiss.read_index(str(path))
    except RuntimeError as error:
        raise ValueError(f"{path} is not a readable FAISS index: {error}") from None
    note = "index read into memory; FAISS could not map it (" + "; ".join(notes) + ")"
    return index, False, note if mmap else None


def _check_index(index: faiss.Index, source: Path, dim: int, metric: str, held: np.ndarray) -> None:
    """Refuse a saved index that does not fit the store's dimension, metric or prototypes."""
    path = source / INDEX_FILE
    if index.d != dim:
        raise ValueError(f"{path} has dimension {index.d}, {META_FILE} says {dim}")
    if index.metric_type != METRICS[metric]:
        raise ValueError(f"{path} uses FAISS metric {index.metric_type}, not {metric}")
    expected = len(held) if index.is_trained else 0
    if index.ntotal != expected:
        raise ValueError(f"{path} holds {index.ntotal} vectors, expected {expected}")
    stored = _index_ids(index) if expected else None
    if stored is not None and not np.array_equal(np.sort(stored), np.sort(held)):
        raise ValueError(f"{path} holds other prototype ids than {META_FILE}'s arrays")


def _index_ids(index: faiss.Index) -> np.ndarray | None:
    """The ids a FAISS index answers with (id map or inverted lists); None if not readable."""
    id_map = getattr(faiss.downcast_index(index), "id_map", None)
    if id_map is not None:
        return faiss.vector_to_array(id_map).astype(np.int64)
    try:
        ivf = faiss.extract_index_ivf(index)
    except RuntimeError:
        return None
    lists = ivf.invlists
    parts = [
        faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
        for i in range(lists.nlist)
        if lists.list_size(i)
    ]
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)


def _read_next_id(source: Path, meta: dict[str, Any], contents: Contents) -> int:
    """The next FAISS id to give, checked to be above every id in use."""
    next_id = meta["next_id"]
    in_use = int(contents.ids[-1]) if len(contents.ids) else -1
    if not isinstance(next_id, int) or isinstance(next_id, bool) or next_id <= in_use:
        raise ValueError(f"{source / META_FILE}: next_id {next_id!r} is not above the ids in use")
    return next_id
