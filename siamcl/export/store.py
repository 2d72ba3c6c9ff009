"""The prototype store in an export folder: the FAISS index file and the JSON class map.

The store is first saved as siamcl saves it (one consistent snapshot, taken under the
store's lock), then turned into what a deployment reads: ``index.faiss`` (the store's own
index, so approximate indexes answer as they do in siamcl), ``prototypes.npy`` (for the
exact search siamcl falls back on when an index finds too few neighbours) and
``classes.json`` (FAISS id -> class label, metric and the classification rule, and the
classes' names when the exporter knows them).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from siamcl._atomic import fsync_path, write_json
from siamcl.export.deploy import CLASSES_FILE, INDEX_FILE, PROTOTYPES_FILE
from siamcl.store import io as store_io
from siamcl.store.faiss_index import METRICS

__all__ = ["write_store"]


def write_store(store: Any, staging: Path, names: dict[int, str] | None = None) -> dict[str, Any]:
    """Write ``store``'s index, prototypes and class map (with the classes' ``names``, when
    given) into ``staging``; returns the part of ``model.json`` that names them."""
    saved = staging / ".store"
    store.save(saved)
    meta = json.loads((saved / store_io.META_FILE).read_text())
    arrays = {
        name: np.load(saved / store_io.ARRAY_FILES[name], allow_pickle=False)
        for name in ("vectors", "ids", "labels")
    }
    metric = meta["metric"]
    if meta["trained"]:
        os.replace(saved / store_io.INDEX_FILE, staging / INDEX_FILE)
        index_kind = f"the store's index ({meta['index'] or 'ready-made'})"
    else:  # siamcl searches exactly until the index is trained: so does the export
        index = faiss.IndexIDMap(faiss.IndexFlat(int(meta["dim"]), METRICS[metric]))
        index.add_with_ids(np.ascontiguousarray(arrays["vectors"]), arrays["ids"])
        faiss.write_index(index, str(staging / INDEX_FILE))
        index_kind = "Flat (exact: the store's index was not trained yet)"
    fsync_path(staging / INDEX_FILE)
    with open(staging / PROTOTYPES_FILE, "wb") as handle:
        np.save(handle, arrays["vectors"].astype(np.float32), allow_pickle=False)
    fsync_path(staging / PROTOTYPES_FILE)
    shutil.rmtree(saved)
    params = meta["params"]
    classes = sorted(set(arrays["labels"].tolist()))
    class_map = {
        "metric": metric,
        "vote_k": params["vote_k"],
        "prototypes_per_class": params["prototypes_per_class"],
        "nprobe": params["nprobe"],
        "ef_search": params["ef_search"],
        "ids": arrays["ids"].tolist(),
        "labels": arrays["labels"].tolist(),
        "classes": classes,
    }
    if names is not None:  # aligned with "classes"
        class_map["class_names"] = [names[label] for label in classes]
    write_json(staging / CLASSES_FILE, class_map)
    return {
        "index_file": INDEX_FILE,
        "index": index_kind,
        "classes_file": CLASSES_FILE,
        "prototypes_file": PROTOTYPES_FILE,
        "metric": metric,
        "dim": int(meta["dim"]),
        "n_classes": int(meta["n_classes"]),
        "n_prototypes": int(meta["n_prototypes"]),
        "faiss_version": faiss.__version__,
    }
