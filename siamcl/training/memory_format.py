"""Channels-last weights: the memory layout oneDNN's CPU convolutions run fastest on.

Converting a convolutional network's 4-D weights to channels-last makes its convolutions,
pooling and batch norm produce channels-last activations from ordinary NCHW inputs; on the
machine measured (``python benchmarks/channels_last.py``, 8x8 to 105x105 inputs) a conv4
training step took 0.62-0.79x the CPU time and an inference batch 0.42-0.62x, with the same
results up to float rounding.
The conversion is in place: parameter objects keep their identity, so an optimizer built
before or after it trains the same tensors.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["prefer_channels_last"]


def prefer_channels_last(model: nn.Module) -> nn.Module:
    """``model`` with its 4-D parameters and buffers in channels-last layout (in place);
    a model without 4-D weights is returned unchanged."""
    if any(p.dim() == 4 for p in model.parameters()):
        model.to(memory_format=torch.channels_last)
    return model
