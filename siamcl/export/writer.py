"""Writing an export folder: encoder graph, FAISS index, class map and ``model.json``.

The encoder is exported with standardisation inside the graph, so it takes canonical inputs
(images as float ``[N, C, H, W]`` in [0, 1], resized and inverted as ``model.json`` says;
vectors as float ``[N, D]``) with a dynamic batch dimension and returns L2-normalised
embeddings ``[N, D]``.

Float encoders go through ``torch.onnx.export(dynamo=True)``. The int8 encoder (``qat="int8"``)
is a torch.ao FX graph of quantized modules, which ``torch.export`` cannot trace (its packed
weights are TorchScript objects), so it goes through the TorchScript-based exporter: the graph
holds int8 weights and QuantizeLinear/DequantizeLinear pairs around float Conv and Gemm
nodes, which onnxruntime fuses into QLinearConv and QGemm int8 kernels.
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import nn

from siamcl._atomic import atomic_directory, write_json
from siamcl._extras import ensure_installed
from siamcl.export import FORMATS
from siamcl.export.deploy import (
    ENCODER_INPUT,
    ENCODER_OUTPUT,
    EXPORT_FORMAT,
    EXPORT_VERSION,
    MODEL_FILE,
)
from siamcl.export.store import write_store
from siamcl.learners.prediction import NotFittedError

__all__ = ["FORMATS", "ImageFiles", "export_classifier"]

ENCODER_FILES = {"onnx": "encoder.onnx", "torch.export": "encoder.pt2"}
DYNAMO_OPSET = 18
TORCHSCRIPT_OPSET = 17


class StandardisedEncoder(nn.Module):
    """The fitted standardisation followed by the encoder: canonical inputs to embeddings."""

    def __init__(self, encoder: nn.Module, mean: list[float], std: list[float], image: bool):
        super().__init__()
        self.encoder = encoder
        shape = (1, -1, 1, 1) if image else (1, -1)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(shape))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder((x - self.mean) / self.std)


def export_classifier(
    clf: Any,
    path: str | os.PathLike,
    format: str = "onnx",
    class_names: Mapping[int, str] | Sequence[str] | None = None,
    image_files: ImageFiles | None = None,
) -> Path:
    """Write a fitted classifier to the folder ``path`` (created or replaced atomically) for
    deployment with onnxruntime (or torch, for ``format="torch.export"``) and faiss.

    The folder holds the encoder (``encoder.onnx`` or ``encoder.pt2``), the FAISS index with
    its class map (``index.faiss``, ``classes.json``, ``prototypes.npy``) and ``model.json``;
    :mod:`siamcl.export.deploy` reads it. ``class_names`` (label -> name for every class the
    store knows, or a list indexed by label) go into ``classes.json``; ``image_files`` (how
    image files were read into the arrays the classifier learned from: their size and mode)
    into ``model.json``, so a deployment reads files as siamcl did. Raises ValueError for an
    unknown format, an empty store, ``embed_views > 1``, ``qat="int4"``, ``qat="int8-pt2e"``, ``qat="int8"`` with
    ``torch.export``, names missing for a class, NotFittedError before the first task, and
    ImportError naming ``siamcl[export]`` when ONNX export's packages are not installed.
    """
    state = _exportable(clf, format)
    names = _checked_names(class_names, state.store.classes)
    if image_files is not None and not isinstance(image_files, ImageFiles):
        raise TypeError(f"image_files must be an ImageFiles, got {type(image_files).__name__}")
    if format == "onnx":  # before any work: the exporter needs the export extra
        for module in ("onnx", "onnxscript"):
            ensure_installed(module, "ONNX export")
    preprocessor = state.preprocessor
    encoder = copy.deepcopy(state.encoder).cpu().eval()
    model = StandardisedEncoder(
        encoder, preprocessor.mean, preprocessor.std, preprocessor.kind == "image"
    ).eval()
    example = torch.rand((2, *preprocessor.input_shape))
    with atomic_directory(path) as staging:
        file = staging / ENCODER_FILES[format]
        if format == "onnx":
            exporter = _write_onnx(model, example, file, quantized=state.qat == "int8")
        else:
            exporter = _write_torch_export(model, example, file)
        store = write_store(state.store, staging, names)
        encoder_info = {
            "file": file.name,
            "format": format,
            "exporter": exporter,
            "precision": state.qat or "fp32",
            "input_name": ENCODER_INPUT,
            "output_name": ENCODER_OUTPUT,
            "input": "canonical",
            "input_shape": [None, *preprocessor.input_shape],
            "embedding_dim": state.store.dim,
            "l2_normalised": True,
        }
        model_json = _model_json(clf, preprocessor, encoder_info, store)
        if image_files is not None:
            model_json["image_files"] = image_files.to_json()
        write_json(staging / MODEL_FILE, model_json)
    return Path(path)


@dataclass(frozen=True)
class ImageFiles:
    """How image files became the arrays a classifier learned from (as
    :func:`siamcl.data.load_images` reads them): converted to grayscale (``"L"``) or RGB,
    then resized bilinearly to ``size`` (height, width) when they differ."""

    size: tuple[int, int]
    grayscale: bool

    def __post_init__(self) -> None:
        size = tuple(self.size)
        if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
            raise ValueError(f"image_files.size must be (height, width), got {self.size!r}")

    def to_json(self) -> dict[str, Any]:
        return {
            "size": list(self.size),
            "mode": "L" if self.grayscale else "RGB",
            "resize": "PIL Image.BILINEAR to size, when a file's size differs",
        }


def _checked_names(
    names: Mapping[int, str] | Sequence[str] | None, classes: Any
) -> dict[int, str] | None:
    """``names`` (``{label: name}``, or a list whose item ``label`` names that label) for
    exactly the store's classes, as ``{label: name}``; None stays None."""
    if names is None:
        return None
    if not isinstance(names, Mapping):
        names = dict(enumerate(names))
    missing = [int(c) for c in classes if int(c) not in names]
    if missing:
        raise ValueError(f"class_names names no class for labels {missing}")
    if not all(isinstance(names[int(c)], str) for c in classes):
        raise ValueError("class_names must map every label to a string")
    return {int(c): names[int(c)] for c in classes}


def _exportable(clf: Any, format: str) -> Any:
    """The classifier's learned snapshot, once the export asked for is known to be possible."""
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; choose one of {FORMATS}")
    if not clf.is_fitted:
        raise NotFittedError(
            f"{type(clf).__name__} is not fitted: call fit_task before export "
            f"(or load a trained one)"
        )
    state = clf.learned_
    if clf.embed_views > 1:
        raise ValueError(
            f"cannot export a classifier with embed_views={clf.embed_views}: its embeddings "
            f"average fixed affine warps of each input, which the export does not include; "
            f"set embed_views=1 (the encoder is unchanged) before exporting"
        )
    if state.qat == "int4":
        raise ValueError(
            "cannot export an int4 (qat='int4') encoder: torchao's int4 weight tensors have "
            "no ONNX or torch.export form here; train with qat='int8' or qat=None to export"
        )
    if state.qat == "int8-pt2e":
        raise ValueError(
            "cannot export an int8-pt2e (qat='int8-pt2e') encoder: its lowered oneDNN int8 "
            "ops have no ONNX form and call Python helpers; train with qat='int8' to export"
        )
    if state.qat == "int8" and format == "torch.export":
        raise ValueError(
            "cannot export the int8 encoder with torch.export: its quantized modules hold "
            "packed TorchScript weights torch.export cannot trace; use format='onnx'"
        )
    if state.qat == "int8" and format == "onnx" and _has_quantized_batch_norm(state.encoder):
        raise ValueError(
            "cannot export this int8 encoder to ONNX: a batch norm that does not follow a "
            "convolution (as in conv4-flat-pool-first) quantizes to an op ONNX lacks; export "
            "the classifier trained without qat, or an encoder whose batch norms follow "
            "convolutions (conv4-flat)"
        )
    if len(state.store) == 0:
        raise ValueError("no classes are known: call fit_task or add_classes before export")
    return state


def _has_quantized_batch_norm(encoder: nn.Module) -> bool:
    """Whether an int8 encoder kept a quantized batch norm (no convolution to fold it into)."""
    from torch.ao.nn.intrinsic.quantized import BNReLU2d
    from torch.ao.nn.quantized import BatchNorm2d

    return any(isinstance(m, (BatchNorm2d, BNReLU2d)) for m in encoder.modules())


def _write_onnx(model: nn.Module, example: torch.Tensor, file: Path, quantized: bool) -> str:
    """Export to ONNX with a dynamic batch dimension; returns which exporter wrote it."""
    names = {"input_names": [ENCODER_INPUT], "output_names": [ENCODER_OUTPUT]}
    if not quantized:
        batch = torch.export.Dim("batch")
        torch.onnx.export(
            model,
            (example,),
            str(file),
            dynamo=True,
            opset_version=DYNAMO_OPSET,
            dynamic_shapes=({0: batch},),
            external_data=False,
            verbose=False,
            **names,
        )
        return f"torch.onnx.export(dynamo=True), opset {DYNAMO_OPSET}"
    with warnings.catch_warnings():  # the TorchScript exporter announces its deprecation
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            model,
            (example,),
            str(file),
            dynamo=False,
            opset_version=TORCHSCRIPT_OPSET,
            dynamic_axes={ENCODER_INPUT: {0: "batch"}, ENCODER_OUTPUT: {0: "batch"}},
            **names,
        )
    return f"torch.onnx.export(dynamo=False) (TorchScript-based), opset {TORCHSCRIPT_OPSET}"


def _write_torch_export(model: nn.Module, example: torch.Tensor, file: Path) -> str:
    """``torch.export.export`` with a dynamic batch dimension, saved as a ``.pt2`` archive."""
    program = torch.export.export(
        model, (example,), dynamic_shapes=({0: torch.export.Dim("batch")},)
    )
    torch.export.save(program, str(file))
    return "torch.export.export + torch.export.save"


def _model_json(
    clf: Any, preprocessor: Any, encoder: dict[str, Any], store: dict[str, Any]
) -> dict[str, Any]:
    """What a deployment needs to turn raw inputs into the encoder's inputs, and where the
    files are."""
    image = preprocessor.kind == "image"
    preprocessing = {
        "kind": preprocessor.kind,
        "channels": preprocessor.channels,
        "features": preprocessor.features,
        "input_size": list(preprocessor.input_size) if image else None,
        "resize": "bilinear, antialiased (PIL Image.BILINEAR on each channel)" if image else None,
        "invert": bool(preprocessor.invert),
        "integer_pixel_scale": 255 if image else None,
        "value_range": preprocessor.value_range,
        "mean": list(preprocessor.mean),
        "std": list(preprocessor.std),
        "standardised_in_graph": True,
        "steps": (
            "integer pixels / 255 (floats as given); [N, H, W] -> [N, 1, H, W]; resize to "
            "input_size; if invert: 1 - x; then the graph standardises (x - mean) / std"
            if image
            else "float32 [N, D]; the graph standardises (x - mean) / std"
        ),
    }
    return {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_VERSION,
        "siamcl_version": _siamcl_version(),
        "torch_version": torch.__version__,
        "embed_views": int(clf.embed_views),
        "encoder": encoder,
        "preprocessing": preprocessing,
        "store": store,
    }


def _siamcl_version() -> str | None:
    """The installed siamcl's version (read from its metadata: importing the package root
    here would make a cycle with the classifier that calls this module)."""
    try:
        return metadata.version("siamcl")
    except metadata.PackageNotFoundError:
        return None
