"""Export a fitted classifier for deployment without siamcl.

:func:`export_classifier` (also :meth:`IncrementalClassifier.export
<siamcl.IncrementalClassifier.export>`) writes a folder holding the encoder as an ONNX graph
(or a ``torch.export`` program), the prototype store as a FAISS index with a JSON class map,
and ``model.json`` describing the preprocessing. :mod:`siamcl.export.deploy` is the
deployment recipe: it reads such a folder with numpy, onnxruntime and faiss only (Pillow for
resizing), imports nothing from siamcl, and can be copied into a service as it is.
"""

from siamcl.export.deploy import ExportedClassifier, predict_exported
from siamcl.export.writer import FORMATS, export_classifier

__all__ = ["FORMATS", "ExportedClassifier", "export_classifier", "predict_exported"]
