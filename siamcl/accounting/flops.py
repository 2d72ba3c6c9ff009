"""FLOP counting for :class:`~siamcl.accounting.ResourceMeter`, per batch or per block.

Counting slows the counted code down, and the meter's clock runs while it counts, so the
meter can count every batch, only the first few (extrapolating per sample), the whole block,
or nothing. It counts with :class:`FlopCount`: torch's own FLOP formulas
(``torch.utils.flop_counter``'s registry, the formulas ``FlopCounterMode`` applies) under a
dispatch mode that only adds them up. ``FlopCounterMode`` also attributes every FLOP to the
modules it ran in, through hooks on every module's forward and backward, and decomposes
composite operators in Python; the meter keeps only the total. On a conv4 training step of
128 8x8 digits (12.9 ms) ``FlopCounterMode`` added 13.6 ms and :class:`FlopCount` 4.3 ms; at
28x28 (92 ms) 20 ms against 6 ms (``python benchmarks/accounting.py``). A class-incremental
stream of digits runs three or four batches a task, one of them counted.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

__all__ = ["FLOP_MODES", "FlopCount", "FlopTally"]

FLOP_MODES = ("all", "sample", "block", "off")


class FlopCount(TorchDispatchMode):
    """The FLOPs of the operators run inside it, by torch's FLOP formulas (matrix products,
    convolutions and attention, forward and backward; every other operator counts 0), in
    ``total``. A context manager, as ``FlopCounterMode(display=False)`` is, without its
    per-module breakdown."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:  # a shape formula: tensors in, an integer out
            self.total += int(formula(*args, **kwargs, out_val=out))
        return out


class FlopTally:
    """Batches, samples and FLOPs of one metered block.

    ``mode`` is one of :data:`FLOP_MODES`; with ``"sample"`` only the first
    ``sample_batches`` batches are counted and the total is extrapolated per sample.
    """

    def __init__(self, mode: str, sample_batches: int) -> None:
        self.mode = mode
        self.sample_batches = sample_batches
        self.batches = self.samples = 0
        self.counted_batches = self.counted_samples = self.counted_flops = 0
        self._block = FlopCount() if mode == "block" else None

    def enter_block(self) -> None:
        """Start counting the whole block (``"block"`` mode only)."""
        if self._block is not None:
            self._block.__enter__()

    def exit_block(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop counting the whole block (``"block"`` mode only)."""
        if self._block is not None:
            self._block.__exit__(exc_type, exc, tb)

    @contextmanager
    def batch(self, n_samples: int) -> Iterator[None]:
        """One batch of ``n_samples``, its FLOPs counted when due; recorded only when the
        block finishes without an exception."""
        count = self.mode == "all" or (
            self.mode == "sample" and self.counted_batches < self.sample_batches
        )
        if count:
            with FlopCount() as mode:
                yield
            self.counted_batches += 1
            self.counted_samples += n_samples
            self.counted_flops += mode.total
        else:
            yield
        self.batches += 1
        self.samples += n_samples

    def result(self) -> tuple[int | None, str]:
        """The FLOP figure and how it was obtained."""
        if self.mode == "off":
            return None, "off"
        if self.mode == "block":
            return self._block.total, "counted (whole block)"
        if self.batches == 0:
            return None, "not counted: no meter.batch() blocks"
        if self.counted_batches == self.batches:
            return int(self.counted_flops), "counted"
        per_sample = self.counted_flops / self.counted_samples
        return (
            round(per_sample * self.samples),
            f"sampled {self.counted_batches} of {self.batches} batches, extrapolated",
        )
