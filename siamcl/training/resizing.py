"""Progressive resizing: the first epochs train on smaller images, the rest on full-size ones.

A convolution's cost grows with the image's area, so an epoch on 16x16 images costs about a
third of one on 28x28. :class:`ProgressiveResizing` is a training-loop callback (any learner's
``callbacks``) that resizes the inputs of the first ``fraction`` of the epochs to ``size``
(bilinear, antialiased, as siamcl's preprocessing resizes) with a forward pre-hook on the
trained model, active only while the model trains: checks, validation, prototypes and
predictions always see full-size inputs. The technique is fast.ai's and MosaicML Composer's
progressive resizing, here in two steps instead of a ramp; it needs an encoder that takes any
input size (conv4 averages its last feature map; ``conv4-flat`` does not) and image inputs (not
``frozen_layers``, whose batches arrive as features).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch.nn.functional as F
from torch import nn

__all__ = ["ProgressiveResizing"]


@dataclass(frozen=True)
class ProgressiveResizing:
    """Train the first ``fraction`` of the epochs (rounded) on inputs resized to ``size``."""

    size: tuple[int, int]
    fraction: float = 0.5
    _handles: list[Any] = field(default_factory=list, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.size) != 2 or min(self.size) < 1:
            raise ValueError(f"size must be (height, width) in pixels, got {self.size!r}")
        if not 0 < self.fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {self.fraction!r}")

    def small_epochs(self, epochs: int) -> int:
        """How many of ``epochs`` train on resized inputs."""
        return round(self.fraction * epochs)

    def on_epoch_start(self, model: nn.Module, epoch: int, epochs: int) -> None:
        small = epoch < self.small_epochs(epochs)
        if small and not self._handles:
            self._handles.append(model.register_forward_pre_hook(self._resize))
        elif not small:
            self._release()

    def on_train_end(self, model: nn.Module) -> None:
        self._release()

    def _resize(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        inputs = args[0]
        if not module.training or tuple(inputs.shape[-2:]) == tuple(self.size):
            return None
        resized = F.interpolate(
            inputs, size=tuple(self.size), mode="bilinear", align_corners=False, antialias=True
        )
        return (resized, *args[1:])

    def _release(self) -> None:
        while self._handles:
            self._handles.pop().remove()
