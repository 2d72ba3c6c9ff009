"""Export a fitted classifier for deployment without siamcl.

:func:`export_classifier` (also :meth:`IncrementalClassifier.export
<siamcl.IncrementalClassifier.export>`) writes a folder holding the encoder as an ONNX graph
(or a ``torch.export`` program), the prototype store as a FAISS index with a JSON class map,
and ``model.json`` describing the preprocessing. :mod:`siamcl.export.deploy` is the
deployment recipe: it reads such a folder with numpy, onnxruntime and faiss only (Pillow for
image files and resizing), imports nothing from siamcl, and can be copied into a service as
it is, or run as ``python -m siamcl.export.deploy FOLDER IMAGE...``.

Names are imported when first used, so that running the recipe as a module does not import
it twice (once as this package's submodule, once as ``__main__``).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["FORMATS", "ExportedClassifier", "ImageFiles", "export_classifier", "predict_exported"]

_WHERE = {
    "ExportedClassifier": "siamcl.export.deploy",
    "predict_exported": "siamcl.export.deploy",
    "FORMATS": "siamcl.export.writer",
    "ImageFiles": "siamcl.export.writer",
    "export_classifier": "siamcl.export.writer",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)


def __dir__() -> list[str]:
    return sorted(__all__)
