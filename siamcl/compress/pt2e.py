"""int8 quantization-aware training through torchao's PT2E flow (scheme ``"int8-pt2e"``).

The model body is captured with ``torch.export`` (batch size dynamic), fake quantization is
inserted by :func:`torchao.quantization.pt2e.quantize_pt2e.prepare_qat_pt2e` with the
:class:`~torchao.quantization.pt2e.quantizer.x86_inductor_quantizer.X86InductorQuantizer` in QAT
mode (int8 weights, one scale per output channel; uint8 activations, 7 bits on CPUs without
VNNI as in the FX scheme; BatchNorm folded into the convolution before it), and
:func:`~torchao.quantization.pt2e.quantize_pt2e.convert_pt2e` turns the trained model into a
graph of quantize / dequantize ops around float ops.

That converted graph run eagerly is slower than fp32: each dequantize-op-quantize triple runs
as separate float ops. So :func:`convert_pt2e_int8` also lowers it, eagerly and without
``torch.compile``: torchao's x86 lowering (inductor's freezing passes) replaces each
dequantize-conv-quantize with a oneDNN int8 convolution with its weights pre-packed, and a
pass here runs max pooling on the uint8 values (pooling commutes with dequantization) and
the remaining quantize / dequantize ops through PyTorch's native kernels. What this gives
against the FX scheme is measured in ``benchmarks/int8_paths.py``.

torchao rebuilds the graph patterns it rewrites (by exporting each one) every time a model is
converted or switched between training and evaluation;
:func:`siamcl.compress.pt2e_patterns.cache_pattern_exports` memoises them for the process.
"""

from __future__ import annotations

import copy
import operator
import types
from typing import Any

import torch
from torch import nn

from siamcl.compress.float_phase import attach_float_network
from siamcl.compress.pt2e_patterns import cache_pattern_exports
from siamcl.training.precision import has_vnni

__all__ = [
    "LoweredInt8",
    "convert_pt2e_int8",
    "is_pt2e_model",
    "prepare_pt2e_int8",
    "set_pt2e_quantizers",
]

_BATCH = "batch"
_MARK = "siamcl_pt2e"  # in GraphModule.meta, which deep copies keep
_TRAINING = "siamcl_pt2e_training"


def prepare_pt2e_int8(model: nn.Module, example_inputs: torch.Tensor) -> torch.fx.GraphModule:
    """An exported copy of ``model`` with int8 fake quantization inserted, in training mode.

    ``model.train()`` and ``model.eval()`` work on the result (they switch its BatchNorm
    between batch and running statistics). ``torch.export`` keeps the module's own parameter
    and buffer objects, so the copy it was exported from shares all of them with the result
    and runs in its float epochs (:mod:`siamcl.compress.float_phase`). Raises ValueError when
    ``torch.export`` cannot capture the model.
    """
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    cache_pattern_exports()
    model = copy.deepcopy(model).cpu().train()
    example = (example_inputs[:2].cpu(),)
    batch = torch.export.Dim(_BATCH, min=1)
    try:
        exported = torch.export.export(model, example, dynamic_shapes=({0: batch},)).module()
    except Exception as error:  # data-dependent control flow, unsupported ops
        raise ValueError(
            f"cannot prepare {type(model).__name__} for qat='int8-pt2e': torch.export failed "
            f"to capture it ({type(error).__name__}: {error})"
        ) from error
    prepared = prepare_qat_pt2e(exported, _quantizer())
    prepared.meta[_MARK] = "prepared"
    attach_float_network(prepared, model)
    _install_mode_methods(prepared)
    return prepared.train()


def is_pt2e_model(model: nn.Module) -> bool:
    """Whether ``model`` came from :func:`prepare_pt2e_int8` (or is a copy of one)."""
    return isinstance(model, torch.fx.GraphModule) and model.meta.get(_MARK) == "prepared"


def set_pt2e_quantizers(model: nn.Module, fake: bool, observe: bool) -> None:
    """Turn a prepared model's fake quantization and range observers on or off (in place)."""
    from torchao.quantization.pt2e import (
        disable_fake_quant,
        disable_observer,
        enable_fake_quant,
        enable_observer,
    )

    model.apply(enable_fake_quant if fake else disable_fake_quant)
    model.apply(enable_observer if observe else disable_observer)


class LoweredInt8(nn.Module):
    """A PT2E int8 model lowered to oneDNN ops (``graph_module``), for inference only.

    Deep copies share the pre-packed oneDNN weights, which cannot be copied and which
    inference never changes; everything else is copied.
    """

    def __init__(self, graph_module: torch.fx.GraphModule):
        super().__init__()
        self.graph_module = graph_module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.graph_module(x)

    def __deepcopy__(self, memo: dict[int, Any]) -> LoweredInt8:
        for module in self.graph_module.modules():
            for value in [
                *vars(module).values(),
                *module._parameters.values(),
                *module._buffers.values(),
            ]:
                if isinstance(value, torch.Tensor) and value.layout == torch._mkldnn:
                    memo[id(value)] = value
        return LoweredInt8(copy.deepcopy(self.graph_module, memo)).train(self.training)


def convert_pt2e_int8(model: nn.Module) -> LoweredInt8:
    """A copy of a model from :func:`prepare_pt2e_int8` converted to int8 and lowered to
    oneDNN int8 kernels that run eagerly on the CPU (evaluation mode, no gradients)."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    if not is_pt2e_model(model):
        raise TypeError(
            "int8-pt2e conversion needs a model returned by prepare_qat(..., 'int8-pt2e')"
        )
    prepared = copy.deepcopy(model).cpu().eval()
    example = _example_input(prepared)
    cache_pattern_exports()
    converted = convert_pt2e(prepared)
    lowered = _lower_to_x86(converted, example)
    _run_uint8_natively(lowered)
    _drop_unused_attributes(lowered)
    lowered.meta[_MARK] = "lowered"
    _install_mode_methods(lowered)
    return LoweredInt8(lowered).eval()


# ---------------------------------------------------------------------------------- helpers


def _quantizer() -> Any:
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer,
        get_default_x86_inductor_quantization_config,
    )

    config = get_default_x86_inductor_quantization_config(is_qat=True, reduce_range=not has_vnni())
    return X86InductorQuantizer().set_global(config)


def _train(self: torch.fx.GraphModule, mode: bool = True) -> torch.fx.GraphModule:
    """``train`` for an exported model: rewrites its BatchNorm ops for the mode."""
    from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train

    cache_pattern_exports()
    (move_exported_model_to_train if mode else move_exported_model_to_eval)(self)
    self.meta[_TRAINING] = mode
    return _set_training_flag(self, mode)


def _install_mode_methods(model: torch.fx.GraphModule) -> None:
    """Give an exported model working ``train`` / ``eval`` methods, and have every deep copy
    of it get them too (``GraphModule`` copies keep only their graph, tensors and ``meta``)."""
    prepared = model.meta.get(_MARK) == "prepared"
    model.train = types.MethodType(_train if prepared else _set_training_flag, model)
    model.eval = types.MethodType(nn.Module.eval, model)
    if prepared:  # torchao's record of the graph's mode, which a deep copy loses
        model._exported_training = model.meta.get(_TRAINING, True)
    hooks = model.__dict__.setdefault("_deepcopy_hooks", [])
    if _install_mode_methods not in hooks:
        hooks.append(_install_mode_methods)


def _set_training_flag(self: nn.Module, mode: bool = True) -> nn.Module:
    """``train`` for a lowered model, whose graph is the same in both modes: sets the flag."""
    for module in self.modules():
        module.training = mode
    return self


def _example_input(model: torch.fx.GraphModule) -> torch.Tensor:
    """A batch of two zeros of the shape the exported model takes."""
    placeholder = next(n for n in model.graph.nodes if n.op == "placeholder")
    shape = [2, *(int(s) for s in placeholder.meta["val"].shape[1:])]
    return torch.zeros(shape)


def _lower_to_x86(model: torch.fx.GraphModule, example: torch.Tensor) -> torch.fx.GraphModule:
    """torchao's ``lower_pt2e_quantized_to_x86``, keeping the batch size dynamic: re-export,
    then inductor's freezing passes fuse dequantize-conv-quantize into oneDNN int8 ops. The
    export is not strict, as torchao's is: a strict one runs dynamo, which leaves each call's
    compiled graph (weights and all) as a global of ``torch._dynamo.functional_export``."""
    from torch._inductor.constant_folding import constant_fold
    from torch._inductor.fx_passes.freezing_patterns import freezing_passes

    table = torch.export.default_decompositions()
    for op in list(table):
        if not torch._export.utils._is_cia_op(op):
            del table[op]
    batch = torch.export.Dim(_BATCH, min=1)
    exported = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
    lowered = exported.run_decompositions(table).module()
    graph = lowered.graph
    for node in list(graph.nodes):  # as torchao does: aten.t as a permute, which oneDNN packs
        if node.target == torch.ops.aten.t.default:
            with graph.inserting_before(node):
                permute = graph.call_function(
                    torch.ops.aten.permute.default, (node.args[0], [1, 0])
                )
            node.replace_all_uses_with(permute)
            graph.erase_node(node)
    lowered.recompile()
    with torch.no_grad():
        freezing_passes(lowered, (example,))
        constant_fold(lowered)
    return lowered


def _run_uint8_natively(model: torch.fx.GraphModule) -> None:
    """Rewrite the lowered graph's remaining uint8 ops to run fast eagerly (in place).

    ``dequantize -> max_pool2d -> quantize`` with one scale becomes max pooling of the uint8
    values; other ``quantize`` / ``dequantize`` ops use PyTorch's native kernels instead of
    the decomposed float arithmetic that only a compiler would fuse.
    """
    decomposed = torch.ops.quantized_decomposed
    graph = model.graph
    for node in list(graph.nodes):
        if node.target == decomposed.quantize_per_tensor.default and _is_uint8(node.args):
            pooled = _pooled_uint8(node)
            with graph.inserting_before(node):
                if pooled is not None:
                    values, pool_args = pooled
                    new = graph.call_function(_max_pool2d_uint8, (values, *pool_args))
                else:
                    new = graph.call_function(_quantize_uint8, (*node.args[:3], node.args[4]))
            node.replace_all_uses_with(new)
            graph.erase_node(node)
    for node in list(graph.nodes):
        if node.target == decomposed.dequantize_per_tensor.default and _is_uint8(node.args):
            with graph.inserting_before(node):
                new = graph.call_function(_dequantize_uint8, tuple(node.args[:3]))
            node.replace_all_uses_with(new)
            graph.erase_node(node)
    graph.eliminate_dead_code()
    model.recompile()


def _is_uint8(args: tuple) -> bool:
    """uint8 from 0 to 255, or to 127 (7 bits, ``reduce_range`` on CPUs without VNNI)."""
    return len(args) >= 6 and args[3] == 0 and args[4] in (127, 255) and args[5] == torch.uint8


def _pooled_uint8(quantize: torch.fx.Node) -> tuple[torch.fx.Node, tuple] | None:
    """For ``quantize(getitem(max_pool2d_with_indices(dequantize(x)), 0))`` with the same
    scale and zero point, ``x`` and the pooling arguments; else None."""
    item = quantize.args[0]
    if not (isinstance(item, torch.fx.Node) and item.target is operator.getitem):
        return None
    pool = item.args[0]
    if item.args[1] != 0 or pool.target != torch.ops.aten.max_pool2d_with_indices.default:
        return None
    dequantize = pool.args[0]
    if dequantize.target != torch.ops.quantized_decomposed.dequantize_per_tensor.default:
        return None
    if tuple(dequantize.args[1:6]) != tuple(quantize.args[1:6]):
        return None
    return dequantize.args[0], (*quantize.args[1:3], *pool.args[1:])


def _max_pool2d_uint8(
    values: torch.Tensor,
    scale: float,
    zero_point: int,
    kernel_size: list[int],
    stride: list[int] | None = None,
    padding: list[int] | int = 0,
    dilation: list[int] | int = 1,
    ceil_mode: bool = False,
) -> torch.Tensor:
    """Max pooling of uint8 values through PyTorch's quantized kernel."""
    quantized = torch._make_per_tensor_quantized_tensor(values, scale, zero_point)
    pooled = torch.nn.functional.max_pool2d(
        quantized, kernel_size, stride or kernel_size, padding, dilation, ceil_mode=ceil_mode
    )
    return pooled.int_repr()


def _quantize_uint8(
    values: torch.Tensor, scale: float, zero_point: int, quant_max: int = 255
) -> torch.Tensor:
    """uint8 values clamped to ``quant_max`` as the decomposed op is (7 bits without VNNI)."""
    quantized = torch.quantize_per_tensor(values, scale, zero_point, torch.quint8).int_repr()
    return quantized if quant_max == 255 else quantized.clamp_(max=quant_max)


def _dequantize_uint8(values: torch.Tensor, scale: float, zero_point: int) -> torch.Tensor:
    return torch._make_per_tensor_quantized_tensor(values, scale, zero_point).dequantize()


def _drop_unused_attributes(model: torch.fx.GraphModule) -> None:
    """Delete parameters and buffers the graph no longer reads (the float weights that
    lowering replaced with packed int8 ones), so the model holds only what it runs."""
    used = {n.target for n in model.graph.nodes if n.op == "get_attr"}
    for name in [k for k in model.state_dict() if k not in used]:
        owner, _, leaf = name.rpartition(".")
        module = model.get_submodule(owner) if owner else model
        for store in (module._parameters, module._buffers):
            store.pop(leaf, None)
        if hasattr(module, leaf) and leaf not in module._modules:
            delattr(module, leaf)
    model.delete_all_unused_submodules()
