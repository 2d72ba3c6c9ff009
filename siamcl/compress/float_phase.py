"""The float epochs of int8 QAT run the float network, not the prepared graph.

:func:`~siamcl.compress.qat.schedule_qat` trains the first two thirds of a task's epochs in
float and fake-quantises only the rest. Through a prepared graph (torch.ao's FX graph or
torchao's PT2E one) a float step still costs 1.5x a float network's
(``python benchmarks/qat_step.py``: BatchNorm folding, disabled fake quantizers and the
graph's overhead), so the prepared graph keeps the float network it was made from, which
shares every parameter and BatchNorm buffer with it, and in float epochs its ``forward`` is
that network's. The optimiser, the state dict and every
caller see the prepared graph throughout.

Its range observers see nothing in float epochs, so they are stale by the end of one:
fake quantization restarts them (the first fake-quantised batch sets the ranges, as QAT
started from a trained float network does), and a conversion after float epochs first
calibrates the ranges on rows of the task's training data in eval mode (post-training
quantization of the network as it stands); ``QuantizationAwareTraining.settle`` does that in
place when training ends in a float epoch, so a saved network converts as it was deployed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "CALIBRATION_ROWS",
    "attach_float_network",
    "calibrate",
    "calibration_rows",
    "float_network",
    "forget_ranges",
    "needs_calibration",
    "run_float",
]

CALIBRATION_ROWS = 512  # rows a conversion after float epochs calibrates its ranges on
_FLOAT = "siamcl_float_network"  # keys of GraphModule.meta, which deepcopy carries over
_STALE = "siamcl_ranges_stale"


def attach_float_network(prepared: torch.fx.GraphModule, network: nn.Module) -> None:
    """Keep ``network`` (the module ``prepared`` was prepared from without a copy, sharing
    its parameters and buffers) to run in float epochs; a deep copy of ``prepared`` keeps a
    copy of it, sharing the copy's parameters. Raises RuntimeError if they share no weights
    (float epochs would then train a network the graph never sees)."""
    graph_parameters = {id(p) for p in prepared.parameters()}
    if not all(id(p) in graph_parameters for p in network.parameters()):
        raise RuntimeError(
            f"the prepared graph does not share {type(network).__name__}'s parameters: "
            "its float epochs cannot run that network"
        )
    prepared.meta[_FLOAT] = network
    prepared.meta[_STALE] = False


def float_network(model: nn.Module) -> nn.Module:
    """The float network ``model``'s prepared graph runs in float epochs and shares its
    weights with: a change to its weights (a folded projection) is the graph's. Raises
    ValueError where ``model`` holds no such graph or more than one."""
    graphs = _graphs(model)
    if len(graphs) != 1:
        raise ValueError(
            f"expected one int8 graph keeping its float network, found {len(graphs)}: "
            "only a network prepared by prepare_qat(model, 'int8' or 'int8-pt2e') keeps one"
        )
    return graphs[0].meta[_FLOAT]


def run_float(model: nn.Module, on: bool) -> None:
    """Route every prepared graph in ``model`` that keeps a float network through it
    (``on``) or through its own graph; leaving the float network marks the graph's ranges
    stale, so they restart from the next batch it observes."""
    for graph in _graphs(model):
        if on:
            graph.forward = _FloatForward(graph, graph.meta[_FLOAT])
            graph.meta[_STALE] = True
        elif "forward" in vars(graph):
            _through_graph(graph)


def needs_calibration(model: nn.Module) -> bool:
    """Whether ``model`` trained in float since its ranges were last observed (in float
    epochs, or stopped in one): its conversion needs :func:`calibrate` first."""
    return any(graph.meta.get(_STALE, False) for graph in _graphs(model))


def calibrate(model: nn.Module, rows: torch.Tensor) -> nn.Module:
    """Set ``model``'s quantization ranges (in place) from one eval-mode pass over ``rows``
    (standardised inputs), its weights' from the weights as they are; routed through its
    graphs after. Fake quantization and train/eval mode are restored.

    The switches are set through the flags torch.ao's and torchao's fake quantizers both
    keep (``fake_quant_enabled``, ``observer_enabled``), so either flow's graph calibrates."""
    for graph in _graphs(model):
        _through_graph(graph)
    quantizers = [m for m in model.modules() if _flag(m, "fake_quant_enabled") is not None]
    saved = [(int(m.fake_quant_enabled[0]), int(m.observer_enabled[0])) for m in quantizers]
    was_training = model.training
    for module in quantizers:
        module.fake_quant_enabled[0], module.observer_enabled[0] = 0, 1
    model.eval()
    with torch.no_grad(), torch.autocast("cpu", enabled=False):  # ranges of float32 values
        model(rows.cpu())
    for module, (fake_on, observe_on) in zip(quantizers, saved):
        module.fake_quant_enabled[0], module.observer_enabled[0] = fake_on, observe_on
    return model.train(was_training)


def calibration_rows(inputs: torch.Tensor, standardise: Any = None) -> torch.Tensor:
    """Up to :data:`CALIBRATION_ROWS` rows of ``inputs`` evenly spaced (no randomness drawn,
    so training takes the same steps whether or not a conversion calibrates), standardised
    by ``standardise`` if given."""
    picked = np.linspace(0, len(inputs) - 1, min(len(inputs), CALIBRATION_ROWS)).round()
    rows = inputs[torch.as_tensor(picked.astype(np.int64))]
    return rows if standardise is None else standardise(rows)


class _FloatForward:
    """A prepared graph's ``forward`` in float epochs: its float network, in the graph's
    train or eval mode (the float network's modules are not the graph's children)."""

    def __init__(self, graph: nn.Module, network: nn.Module):
        self.graph, self.network = graph, network

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.network.train(self.graph.training)
        return self.network(*args, **kwargs)


def _graphs(model: nn.Module) -> list[torch.fx.GraphModule]:
    return [m for m in model.modules() if isinstance(m, torch.fx.GraphModule) and _FLOAT in m.meta]


def _through_graph(graph: torch.fx.GraphModule) -> None:
    """Run ``graph`` through its own graph again, every observed range forgotten, so the
    next observed batch sets them afresh."""
    vars(graph).pop("forward", None)
    graph.meta[_STALE] = False
    forget_ranges(graph)


def forget_ranges(model: nn.Module) -> None:
    """Reset every range ``model``'s fake quantizers observed (torch.ao's and torchao's), so
    the next observed batch sets them: ranges averaged over float epochs lag a network that
    was still learning."""
    for module in model.modules():
        observer = getattr(module, "activation_post_process", None)
        if _flag(module, "observer_enabled") is not None and observer is not None:
            observer.reset_min_max_vals()


def _flag(module: nn.Module, name: str) -> bool | None:
    flag = getattr(module, name, None)
    return bool(flag[0]) if isinstance(flag, torch.Tensor) and flag.numel() else None
