"""Mixed-precision training: the forward pass in bfloat16 where the hardware computes it.

Under ``torch.autocast`` convolutions and matrix products run in bfloat16 while weights,
gradients and the optimizer's state stay float32 (bfloat16 keeps float32's exponent range,
so no loss scaling is needed). On a CPU with native bfloat16 instructions (AVX512-BF16 or
AMX, which oneDNN uses) a conv4 training step took 0.53-0.75x the float32 CPU time on the
machine measured, and 6.1-9.8x with oneDNN held to AVX2, where bfloat16 is emulated
(7.2-11.3x on a machine with AVX2 only; ``python benchmarks/precision_step.py``), so ``"auto"`` picks it only where it is native.
The metric loss and every other objective term see float32 embeddings: pair similarities
that a loss exponentiates keep their precision.

A learner's ``precision`` covers every forward pass it runs, not only training's: the
embedding passes that choose exemplars, build prototypes, validate and predict run under the
same autocast (:func:`forward_dtype`), their outputs cast back to float32, so stored
prototypes are float32 means of bfloat16-rounded embeddings. Exported models (ONNX, the
deployed bundle) stay float32.

Precisions: ``"fp32"`` (everything float32, the default: results do not depend on the
machine's instruction set), ``"bf16"`` (mixed, asked for), ``"auto"`` (``"bf16"`` where
native, else ``"fp32"``).
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from typing import Any

import torch

__all__ = [
    "PRECISIONS",
    "autocast",
    "forward_dtype",
    "has_vnni",
    "native_bf16",
    "precision_with_qat",
    "resolve_precision",
]

PRECISIONS = ("fp32", "bf16", "auto")


@functools.cache
def _cpu_bf16() -> bool:
    try:  # oneDNN's own check of the instructions it would use (AVX512-BF16, AMX)
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def native_bf16(device: str | torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively (a CUDA GPU of compute capability 8 or
    more, a CPU with AVX512-BF16 or AMX)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    return device.type == "cpu" and _cpu_bf16()


def has_vnni() -> bool:
    """Whether this CPU has VNNI int8 dot products: without them int8 activations use 7 bits
    (``reduce_range``) so that x86 int8 kernels cannot overflow."""
    return bool(getattr(torch.cpu, "_is_vnni_supported", lambda: False)())


def resolve_precision(precision: str, device: str | torch.device) -> torch.dtype | None:
    """The autocast dtype ``precision`` means on ``device``: ``torch.bfloat16``, or None for
    float32 throughout. Warns when ``"bf16"`` is asked for where it is emulated."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp32":
        return None
    native = native_bf16(device)
    if precision == "auto":
        return torch.bfloat16 if native else None
    if not native:
        warnings.warn(
            f"bfloat16 is not native on {torch.device(device).type} here: forward passes "
            "will be slower than in float32 (precision='auto' picks float32 on such hardware)",
            UserWarning,
            stacklevel=3,
        )
    return torch.bfloat16


POST_TRAINING_SUFFIX = "-ptq"  # of a qat scheme quantized after float training


def precision_with_qat(precision: str, qat: str | None) -> str:
    """The precision a learner with ``qat`` trains in: fake quantization computes in float32
    (torch's fake-quantize kernels refuse bfloat16), so ``"auto"`` means ``"fp32"`` there and
    ``"bf16"`` is refused before any training. A scheme quantized after float training
    (``"int8-ptq"``) fake-quantizes nothing: it trains in ``precision``."""
    if qat is None or precision == "fp32" or qat.endswith(POST_TRAINING_SUFFIX):
        return precision
    if precision == "bf16":
        raise ValueError(
            f"precision='bf16' cannot be combined with qat={qat!r}: quantization-aware "
            "training fake-quantizes in float32; use precision='fp32' or 'auto'"
        )
    return "fp32"


def forward_dtype(
    precision: str, qat: str | None, device: str | torch.device
) -> torch.dtype | None:
    """The autocast dtype of every forward pass of a learner with ``precision`` and ``qat`` on
    ``device`` (training steps, teachers, embedding passes): ``torch.bfloat16`` or None."""
    return resolve_precision(precision_with_qat(precision, qat), device)


def autocast(dtype: torch.dtype | None, device: str | torch.device) -> Any:
    """``torch.autocast`` to ``dtype`` on ``device``'s type, or a null context for None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)
