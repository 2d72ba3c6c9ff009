"""The default optimizer: Adam in torch's fused implementation, wherever torch has one.

torch's default Adam updates parameters one tensor at a time, a dozen small ops each; the
fused implementation updates every parameter in one kernel. The result is the same update
rule (weight decay added to the gradient, as ``torch.optim.Adam`` always does), rounded
differently. On the small networks siamcl trains the difference is a real share of a step:
``python benchmarks/optimizer_step.py`` times each implementation. siamcl's learners, its
Avalanche strategy and the Avalanche baselines it compares against all take it from here, so
no comparison hinges on which Adam a method happened to get.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

import torch

__all__ = ["FUSED_DEVICE_TYPES", "adam", "fusable"]

FUSED_DEVICE_TYPES = frozenset({"cpu", "cuda", "mps", "xpu"})  # torch's fused Adam kernels


def adam(
    lr: float = 1e-3, weight_decay: float = 0.0
) -> Callable[[Iterable[Any]], torch.optim.Optimizer]:
    """A factory of Adam over the parameters (or parameter groups) it is given, fused where
    every parameter allows it (:func:`fusable`), else torch's default implementation."""
    return functools.partial(_adam, lr=lr, weight_decay=weight_decay)


def _adam(params: Iterable[Any], lr: float, weight_decay: float) -> torch.optim.Optimizer:
    if isinstance(params, torch.Tensor):  # torch's own error names what it takes
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    # groups' parameters as lists: a generator read by fusable() would reach Adam empty
    groups = [{**p, "params": _tensors(p["params"])} if isinstance(p, dict) else p for p in params]
    fused = fusable(groups) or None  # None: torch chooses, as without the argument
    return torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay, fused=fused)


def fusable(params: Iterable[Any]) -> bool:
    """Whether torch's fused Adam takes every tensor of ``params`` (tensors, or parameter
    groups as dicts with ``"params"``): floating point, on a device type it has kernels for."""
    tensors = []
    for item in params:
        tensors += _tensors(item["params"]) if isinstance(item, dict) else [item]
    return bool(tensors) and all(
        isinstance(t, torch.Tensor)
        and t.is_floating_point()
        and t.device.type in FUSED_DEVICE_TYPES
        for t in tensors
    )


def _tensors(params: Any) -> list[Any]:
    """A group's ``"params"`` as a list (torch takes one tensor there as well as many)."""
    return [params] if isinstance(params, torch.Tensor) else list(params)
