"""``siamcl export``: a model trained with ``siamcl learn`` as a folder a service deploys.

The folder is what :func:`siamcl.export.export_classifier` writes (encoder graph, FAISS index,
class map, preprocessing), with the model's class names and how its image files are read, so
that :mod:`siamcl.export.deploy` (numpy, onnxruntime, faiss and Pillow, no siamcl) names the
classes of image files as ``siamcl predict`` does.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from siamcl.cli.checks import UsageError
from siamcl.cli.image_model import ImageModel, check_model_folder
from siamcl.export import FORMATS

__all__ = ["configure_export", "run_export"]

EXPORT = """\
Write a model trained with siamcl learn to a folder that a service classifies with, without
siamcl: the encoder as ONNX (or a torch.export program), the prototypes as a FAISS index, the
class names, and how image files are read. Classify image files with it by running the
deployment recipe, a file with no siamcl import that can be copied into a service:

  siamcl export --model my-model --out my-model-onnx
  python -m siamcl.export.deploy my-model-onnx new/*.jpg     # CSV: path,label"""


def configure_export(parser: argparse.ArgumentParser) -> None:
    """Options of ``siamcl export``."""
    parser.description = EXPORT
    parser.add_argument("--model", required=True, help="model folder written by siamcl learn")
    parser.add_argument(
        "--out",
        required=True,
        help="folder to write: new, empty, or an earlier export, which is replaced",
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="onnx",
        help="encoder format: onnx (onnxruntime; fp32 or int8) or torch.export (torch; fp32) "
        "(onnx)",
    )
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    parser.set_defaults(out_is_folder=True)


def run_export(args: argparse.Namespace) -> Path:
    """Export the model folder ``--model`` to ``--out``; print what was written."""
    from siamcl.export import ImageFiles, export_classifier

    model_dir, out = Path(args.model), Path(args.out)
    check_model_folder(model_dir, must_exist=True)
    check_export_folder(out, model_dir)
    model = ImageModel.load(model_dir)
    written = export_classifier(
        model.classifier,
        out,
        args.format,
        class_names=dict(enumerate(model.class_names)),
        image_files=ImageFiles(model.image_size, model.grayscale),
    )
    if not args.quiet:
        print(_written_line(written, model))
    return written


def check_export_folder(out: Path, model_dir: Path) -> None:
    """Refuse an ``--out`` that would replace something other than an earlier export: the
    export replaces the folder as a whole."""
    if out.resolve() == model_dir.resolve() or model_dir.resolve() in out.resolve().parents:
        raise UsageError(f"--out {out} is the model folder or inside it; give another folder")
    if out.resolve() in model_dir.resolve().parents:
        raise UsageError(f"--out {out} holds the model folder; give another folder")
    from siamcl.export.deploy import MODEL_FILE

    if out.is_dir() and any(out.iterdir()) and not _is_export(out):
        raise UsageError(
            f"--out {out} is a folder that holds no siamcl export ({MODEL_FILE}); "
            "give a new or empty folder"
        )


def _is_export(folder: Path) -> bool:
    from siamcl.export.deploy import EXPORT_FORMAT, MODEL_FILE

    try:
        return json.loads((folder / MODEL_FILE).read_text()).get("format") == EXPORT_FORMAT
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return False


def _written_line(folder: Path, model: ImageModel) -> str:
    from siamcl.export.deploy import MODEL_FILE

    info: dict[str, Any] = json.loads((folder / MODEL_FILE).read_text())
    encoder = info["encoder"]
    count = len(model.class_names)
    return (
        f"exported {count} classes ({', '.join(model.class_names)}) to {folder}: "
        f"{encoder['file']} ({encoder['precision']}), {info['store']['index_file']}; "
        f"classify image files with: python -m siamcl.export.deploy {folder} IMAGE..."
    )
