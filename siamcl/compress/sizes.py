"""What a model weighs: the bytes of its numbers, and its size on disk.

Quantized weights count at their integer width plus their scales and zero points, so float
and quantized models compare fairly.
"""

from __future__ import annotations

import io
from typing import Any

import torch
from torch import nn

__all__ = ["model_bytes", "serialized_bytes"]


def model_bytes(model: nn.Module) -> int:
    """Bytes of the numbers a model holds: its state dict at each tensor's storage width.

    Quantized weights count at their integer width plus their scales and zero points, so the
    figure compares float and quantized models fairly (serialisation overhead is left out; see
    :func:`serialized_bytes` for the size on disk).
    """
    return sum(_value_bytes(value) for value in model.state_dict().values())


def serialized_bytes(model: nn.Module) -> int:
    """Size of ``torch.save(model.state_dict())``: the model's size on disk.

    Pre-packed oneDNN weights (``qat="int8-pt2e"``), which ``torch.save`` cannot write, count
    as dense tensors of their shape and dtype.
    """
    state = {
        key: torch.empty(value.shape, dtype=value.dtype)
        if isinstance(value, torch.Tensor) and value.layout == torch._mkldnn
        else value
        for key, value in model.state_dict().items()
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getbuffer().nbytes


def _value_bytes(value: Any) -> int:
    if isinstance(value, (tuple, list)):
        return sum(_value_bytes(v) for v in value)
    if not isinstance(value, torch.Tensor):
        return 0
    if value.is_quantized:
        if value.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
            extra = value.q_per_channel_scales().nbytes + value.q_per_channel_zero_points().nbytes
        else:
            extra = 16  # one float64 scale and one int64 zero point
        return value.int_repr().nbytes + extra
    flatten = getattr(value, "__tensor_flatten__", None)
    if flatten is not None and type(value) is not torch.Tensor and type(value) is not nn.Parameter:
        names, _ = flatten()
        return sum(_value_bytes(getattr(value, name)) for name in names)
    return value.numel() * value.element_size()
