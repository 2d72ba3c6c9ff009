"""The standard network's shape: a backbone producing features, then a linear head producing
class logits, grown as classes arrive."""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["HeadClassifier"]


class HeadClassifier(nn.Module):
    """A backbone producing features followed by a linear layer producing class logits
    (``head``, or a new ``features`` x ``n_classes`` layer)."""

    def __init__(
        self, backbone: nn.Module, features: int, n_classes: int, head: nn.Linear | None = None
    ):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(features, n_classes) if head is None else head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def with_backbone(self, backbone: nn.Module) -> HeadClassifier:
        """This classifier with another backbone (a converted, quantized one) and a copy of
        the head, on the CPU; itself when ``backbone`` is its own."""
        if backbone is self.backbone:
            return self
        head = copy.deepcopy(self.head).cpu()
        return HeadClassifier(backbone, head.in_features, head.out_features, head).eval()

    def grow(self, n_classes: int) -> None:
        """Widen the head to ``n_classes`` outputs, keeping the weights of existing ones."""
        old = self.head
        if n_classes <= old.out_features:
            return
        self.head = nn.Linear(old.in_features, n_classes).to(old.weight.device)
        with torch.no_grad():
            self.head.weight[: old.out_features] = old.weight
            self.head.bias[: old.out_features] = old.bias
