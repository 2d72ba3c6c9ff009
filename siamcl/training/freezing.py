"""Frozen leading layers: later tasks train only the top of an encoder, and pay for that only.

After the first task of a stream, the first layers of a convolutional encoder compute
generic features (strokes, edges) that later classes may use as they are. Freezing them
keeps their weights and their batch-norm statistics; autograd then records nothing below
the first trainable layer, so every backward pass stops there and the optimizer never
touches the frozen weights. Freezing conv4's first block from the second task on trained
mnist5k's 5-task stream in 0.80-0.85x the energy, for 0-0.8 points of accuracy, and
Replay's in 0.73-0.78x (docs/energy.md; for Avalanche strategies:
:class:`~siamcl.integrations.avalanche_freezing.FrozenLeadingLayers`).

PyTorch has the mechanism (``requires_grad``, ``eval``); what is written here is which
layers, that a frozen batch norm stays in evaluation mode while the rest of the network
trains, and :func:`split_frozen`: the frozen layers' output of a batch, computed once in
batch preparation, serves the student and the previous encoder it is distilled toward,
whose frozen layers are the same.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from siamcl.encoders import EmbeddingNetwork
from siamcl.training.precision import autocast

__all__ = [
    "FrozenFeatures",
    "check_float_training",
    "check_frozen_layers",
    "freeze_leading_layers",
    "hold_frozen_norms",
    "leading_layers",
    "split_frozen",
]


def leading_layers(encoder: nn.Module) -> list[nn.Module]:
    """The layers of ``encoder`` in order: the children of its ``nn.Sequential`` body
    (conv4: four blocks, the pooling, the flattening and the projection)."""
    body = getattr(encoder, "body", encoder)
    if not isinstance(body, nn.Sequential):
        raise TypeError(
            "frozen_layers needs an encoder made of an nn.Sequential of layers (conv4, "
            f"conv4-small, mlp, or your own nn.Sequential); got {type(body).__name__}"
        )
    return list(body.children())


def check_float_training(count: int, qat: str | None, part: str = "encoder") -> None:
    """Refuse ``frozen_layers`` with quantization-aware training: the layers frozen are those
    of a float ``part`` (a learner's encoder or backbone)."""
    if count and qat is not None:
        raise ValueError(f"frozen_layers freezes a float {part}'s layers: use qat=None with it")


def check_frozen_layers(encoder: nn.Module, count: int) -> list[nn.Module]:
    """The first ``count`` layers of ``encoder``, refusing a count that leaves none to train."""
    if count == 0:
        return []
    layers = leading_layers(encoder)
    if count >= len(layers):
        raise ValueError(
            f"frozen_layers={count} would freeze the whole encoder: it has {len(layers)} "
            f"layers, so at most {len(layers) - 1} can be frozen"
        )
    return layers[:count]


def freeze_leading_layers(encoder: nn.Module, count: int) -> nn.Module:
    """Freeze the first ``count`` layers of ``encoder`` in place (their parameters stop
    requiring gradients); at least one layer must stay trainable. Returns ``encoder``."""
    for layer in check_frozen_layers(encoder, count):
        layer.requires_grad_(False)
    return encoder


def hold_frozen_norms(model: nn.Module) -> nn.Module:
    """Put back in evaluation mode every batch norm whose affine parameters are all frozen,
    so that it normalises with the statistics it learned and stops updating them (in
    training mode it would normalise by each batch's statistics and drift from the weights
    it was frozen with). Called after ``model.train()``. Returns ``model``."""
    for module in model.modules():
        if isinstance(module, _BatchNorm) and module.training:
            own = list(module.parameters(recurse=False))
            if own and not any(p.requires_grad for p in own):
                module.eval()
    return model


class FrozenFeatures(nn.Module):
    """Frozen leading layers run as a step of batch preparation: in evaluation mode, without
    gradients, under the training's autocast ``dtype`` (None: float32), as they would run
    inside the encoder's forward pass."""

    def __init__(self, layers: nn.Sequential, dtype: torch.dtype | None = None):
        super().__init__()
        self.layers, self.dtype = layers.eval(), dtype

    def train(self, mode: bool = True) -> FrozenFeatures:
        return super().train(False)  # frozen layers never leave evaluation mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), autocast(self.dtype, x.device):
            return self.layers(x)


def split_frozen(
    encoder: nn.Module, count: int, dtype: torch.dtype | None = None
) -> tuple[FrozenFeatures, EmbeddingNetwork] | None:
    """``encoder`` cut below its first trainable layer: its first ``count`` layers as
    :class:`FrozenFeatures`, and the embedding network above them, sharing the encoder's
    modules (training the top trains the encoder). The frozen layers' output, computed once
    a batch, then serves both the student's top and a teacher whose first ``count`` layers
    are the same (the previous encoder, from which the student was copied). None when
    ``count`` is 0 or the encoder is not siamcl's :class:`~siamcl.encoders.EmbeddingNetwork`."""
    if count == 0 or not isinstance(encoder, EmbeddingNetwork):
        return None
    layers = check_frozen_layers(encoder, count)
    top = nn.Sequential(*leading_layers(encoder)[count:])
    return FrozenFeatures(nn.Sequential(*layers), dtype), EmbeddingNetwork(top)
