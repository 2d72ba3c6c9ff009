"""Memoised pattern exports for torchao's PT2E QAT flow.

torchao rebuilds the graph patterns it rewrites (by exporting each one with
``torch.export``) every time a model is converted or switched between training and
evaluation. :func:`cache_pattern_exports` memoises them for the process, so only the first
conversion pays for them (14.0 s for the first conversion, 5.9 s for a later one on two
cores: ``benchmarks/results/int8_paths.md``).

No public torchao API offers this, so it wraps four private helpers. A torchao release
without them gets no memoisation: conversion is then slower, never wrong, and a debug log
line says why.
"""

from __future__ import annotations

import copy
import functools
import logging
import threading
from types import ModuleType
from typing import Any

import torch

__all__ = ["cache_pattern_exports", "patch_pattern_exports"]

_LOG = logging.getLogger(__name__)
_LOCK = threading.Lock()
_PATTERN_CACHE: dict[Any, torch.fx.GraphModule] = {}
_EXPORT = "_get_aten_graph_module_for_pattern"
_CONV_BN_HELPERS = ("_fuse_conv_bn_qat_helper", "_fold_conv_bn_qat_helper")
_CONV_KINDS = {"conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d"}  # F.* and aten.*


def cache_pattern_exports() -> None:
    """Memoise torchao's pattern exports for the process (idempotent, thread safe)."""
    from torchao.quantization.pt2e import qat_utils, utils

    patch_pattern_exports(utils, qat_utils)


def patch_pattern_exports(utils: ModuleType, qat_utils: ModuleType) -> bool:
    """Wrap ``utils._get_aten_graph_module_for_pattern`` (as ``utils`` and ``qat_utils`` both
    hold it) in a cache, and the conv-BN helpers of ``qat_utils`` so that they skip kinds of
    convolution a graph does not hold. Returns whether the helpers are patched; a torchao
    without any of them is left as it is."""
    missing = [
        f"{module.__name__}.{name}"
        for module, names in ((utils, (_EXPORT,)), (qat_utils, (_EXPORT, *_CONV_BN_HELPERS)))
        for name in names
        if not callable(getattr(module, name, None))
    ]
    if missing:
        _LOG.debug("torchao pattern exports not memoised: %s not found", ", ".join(missing))
        return False
    with _LOCK:
        original = getattr(utils, _EXPORT)
        if getattr(original, "siamcl_cached", False):
            return True
        cached = _memoised(original)
        setattr(utils, _EXPORT, cached)
        setattr(qat_utils, _EXPORT, cached)
        for name in _CONV_BN_HELPERS:
            setattr(qat_utils, name, _only_present_convs(getattr(qat_utils, name)))
    return True


def _memoised(export: Any) -> Any:
    """``export`` (a pure function of the pattern and its example inputs' shapes; torchao
    calls it about 100 times per conversion) answered from a cache. Patterns whose key cannot
    be formed are exported as before."""

    @functools.wraps(export)
    def cached(pattern, example_inputs, is_cuda=False, **kwargs):
        key = _pattern_key(pattern, example_inputs, is_cuda, kwargs)
        if key is None:
            return export(pattern, example_inputs, is_cuda, **kwargs)
        if key not in _PATTERN_CACHE:
            _PATTERN_CACHE[key] = export(pattern, example_inputs, is_cuda, **kwargs)
        return copy.deepcopy(_PATTERN_CACHE[key])

    cached.siamcl_cached = True
    return cached


def _only_present_convs(helper: Any) -> Any:
    """Wrap torchao's conv-BN fuse/fold helper so that it skips a kind of convolution the
    graph does not hold (it would export a dozen patterns that cannot match). A graph with
    no convolution at all goes through every helper as before."""

    @functools.wraps(helper)
    def wrapped(m, conv_fn, example_inputs, is_cuda, *args, **kwargs):
        present = {
            getattr(n.target, "__name__", "").split(".")[0]
            for n in m.graph.nodes
            if n.op == "call_function"
        }
        kind = getattr(conv_fn, "__name__", "")
        if kind in _CONV_KINDS and kind not in present and present & _CONV_KINDS:
            return m
        return helper(m, conv_fn, example_inputs, is_cuda, *args, **kwargs)

    return wrapped


def _pattern_key(pattern: Any, example_inputs: tuple, is_cuda: bool, kwargs: dict) -> Any:
    """A hashable description of one pattern export, or None when one cannot be formed."""
    function = getattr(pattern, "fn", pattern)  # torchao's WrapperModule holds a function
    code = getattr(function, "__code__", None)
    if code is None:
        return None
    try:
        cells = tuple(cell.cell_contents for cell in function.__closure__ or ())
        key = (code, cells, _shapes(example_inputs), is_cuda, _shapes(sorted(kwargs.items())))
        hash(key)
    except (TypeError, ValueError):
        return None
    return key


def _shapes(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return ("tensor", tuple(value.shape), value.dtype)
    if isinstance(value, (tuple, list)):
        return tuple(_shapes(v) for v in value)
    return value
