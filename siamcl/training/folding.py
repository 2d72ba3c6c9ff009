"""Inference passes fold each Conv-BatchNorm pair into one convolution.

In eval mode a BatchNorm after a convolution is a fixed affine map of its output, so it can
be folded into the convolution's weights and bias, sparing a pass over every activation:
a conv4 embedding pass over 4,000 rows took 0.87-0.90x the CPU time folded, at 8x8, 16x16
and 28x28, with freed memory retained, and 0.49-0.54x under the C library's default
(``python benchmarks/folding.py``, one thread). Every prototype pass, exemplar
selection and prediction runs through :func:`~siamcl.training.embed_in_batches`, which
folds a copy of the model (torch.fx's ``fuse``) for passes long enough to repay the copy;
the model itself, which may go on training, is never changed.

Folding costs 7-8 ms whatever the input, and saves a share of each row's pass, so the rows
that repay it shrink as rows grow: a pass repays it after a number of input values (rows
times values a row), whatever their size. How many depends on the allocator
(:mod:`siamcl.allocator`). With freed memory retained, as the ``siamcl`` command runs, an
unfolded BatchNorm's output reuses freed pages and folding saves 10-13% of a pass: repaid
after 196,000-255,000 values in the recorded run (``benchmarks/results/folding``). Under
the C library's default every layer's output is freshly mapped, zero-filled memory, and
folding, which writes one output where convolution and BatchNorm wrote two, saves about half
a pass: repaid after 28,000-32,000 values (``benchmarks/results/folding_system_malloc``).
:func:`fold_min_values` gives the threshold for this process.
"""

from __future__ import annotations

import warnings

from torch import nn

from siamcl.allocator import allocator_setting
from siamcl.training.memory_format import prefer_channels_last

__all__ = ["FOLD_MIN_VALUES", "fold_min_values", "folded"]

# input values a pass needs to repay folding, by how malloc treats freed memory
FOLD_MIN_VALUES = {"system": 30_000, "retained": 250_000}


def fold_min_values() -> int:
    """Input values from which a pass folds, for this process's allocator setting."""
    return FOLD_MIN_VALUES["system" if allocator_setting() == "system" else "retained"]


def folded(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (in eval mode) with every Conv-BatchNorm pair folded into one
    convolution, its 4-D weights channels-last as training leaves them; ``model`` itself
    when it holds no BatchNorm, is training, or torch.fx cannot trace it (data-dependent
    control flow), so any encoder still embeds."""
    if model.training or not any(
        isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()
    ):
        return model
    from torch.fx.experimental.optimization import fuse
    from torch.fx.proxy import TraceError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return prefer_channels_last(fuse(model))
    except (TraceError, TypeError, RuntimeError, AttributeError, NotImplementedError):
        # torch.fx cannot trace it: embed with the model as it is
        return model
