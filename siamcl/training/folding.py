"""Inference passes fold each Conv-BatchNorm pair into one convolution.

In eval mode a BatchNorm after a convolution is a fixed affine map of its output, so it can
be folded into the convolution's weights and bias, sparing a pass over every activation:
a conv4 embedding pass over 4,000 rows took 0.85-0.93x the CPU time folded, at 8x8, 16x16
and 28x28 (``python benchmarks/folding.py``, one thread). Every prototype pass, exemplar
selection and prediction runs through :func:`~siamcl.training.embed_in_batches`, which
folds a copy of the model (torch.fx's ``fuse``) for passes long enough to repay the copy;
the model itself, which may go on training, is never changed.

Folding costs 8-10 ms whatever the input, and saves a share of each row's pass, so the rows
that repay it shrink as rows grow: about 5,100 at 8x8, 600 at 16x16 and 530 at 28x28 in the
recorded run (``benchmarks/results/folding``), 160,000-420,000 input values (rows times values
a row). :data:`FOLD_MIN_VALUES` lies in that range.
"""

from __future__ import annotations

import warnings

from torch import nn

from siamcl.training.memory_format import prefer_channels_last

__all__ = ["FOLD_MIN_VALUES", "folded"]

FOLD_MIN_VALUES = 250_000  # input values a pass needs to repay folding; shorter ones do not fold


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
