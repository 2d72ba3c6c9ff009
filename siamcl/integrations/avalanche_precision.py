"""Mixed-precision training for Avalanche's own strategies, as a plugin.

siamcl's learners and :class:`~siamcl.integrations.SiameseStrategy` run their forward passes
under autocast through :func:`~siamcl.training.train_step`; Avalanche's templates run their
own loop, so :class:`MixedPrecision` opens autocast where the template's training forward
begins (``before_forward``) and closes it where it ends (``after_forward``): the step's
forward passes (the replayed batch's too, as ER-ACE makes it) run in bfloat16, the
criterion and the backward pass see float32 outputs. This is how a baseline is compared
with siamcl's learners like for like when both train in mixed precision.
"""

from __future__ import annotations

from typing import Any

import torch

from siamcl._extras import needs_extra
from siamcl.training.precision import autocast

with needs_extra("the Avalanche plugin"):
    from avalanche.core import SupervisedPlugin

__all__ = ["MixedPrecision"]

OUTPUTS = ("mb_output", "mb_buffer_out")  # the template's and ER-ACE's forward outputs


class MixedPrecision(SupervisedPlugin):
    """Training forward passes under ``torch.autocast(dtype)``; evaluation stays float32."""

    def __init__(self, dtype: torch.dtype, device: str | torch.device = "cpu"):
        super().__init__()
        self.dtype, self.device = dtype, device
        self._open: Any = None

    def before_forward(self, strategy: Any, **kwargs: Any) -> None:
        self._close()  # a step that raised between the two hooks left one open
        self._open = autocast(self.dtype, self.device)
        self._open.__enter__()

    def after_forward(self, strategy: Any, **kwargs: Any) -> None:
        self._close()
        for name in OUTPUTS:
            output = getattr(strategy, name, None)
            if isinstance(output, torch.Tensor) and output.dtype == self.dtype:
                setattr(strategy, name, output.float())

    def after_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        self._close()

    def _close(self) -> None:
        if self._open is not None:
            context, self._open = self._open, None
            context.__exit__(None, None, None)
