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

from siamcl._lazy import lazy_names

__all__ = ["FORMATS", "ExportedClassifier", "ImageFiles", "export_classifier", "predict_exported"]

FORMATS = ("onnx", "torch.export")  # encoder formats; here so that --help imports no torch

_WHERE = {
    "ExportedClassifier": "siamcl.export.deploy",
    "predict_exported": "siamcl.export.deploy",
    "ImageFiles": "siamcl.export.writer",
    "export_classifier": "siamcl.export.writer",
}


__getattr__, __dir__ = lazy_names(globals(), _WHERE)
