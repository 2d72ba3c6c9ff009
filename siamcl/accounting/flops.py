"""FLOP counting for :class:`~siamcl.accounting.ResourceMeter`, per batch or per block.

Counting with ``torch.utils.flop_counter`` slows the counted code down, so the meter can
count every batch, only the first few (extrapolating per sample), the whole block, or nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType

from torch.utils.flop_counter import FlopCounterMode

__all__ = ["FLOP_MODES", "FlopTally"]

FLOP_MODES = ("all", "sample", "block", "off")


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
        self._block = FlopCounterMode(display=False) if mode == "block" else None

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
            with FlopCounterMode(display=False) as mode:
                yield
            self.counted_batches += 1
            self.counted_samples += n_samples
            self.counted_flops += mode.get_total_flops()
        else:
            yield
        self.batches += 1
        self.samples += n_samples

    def result(self) -> tuple[int | None, str]:
        """The FLOP figure and how it was obtained."""
        if self.mode == "off":
            return None, "off"
        if self.mode == "block":
            return int(self._block.get_total_flops()), "counted (whole block)"
        if self.batches == 0:
            return None, "not counted: no meter.batch() blocks"
        if self.counted_batches == self.batches:
            return int(self.counted_flops), "counted"
        per_sample = self.counted_flops / self.counted_samples
        return (
            round(per_sample * self.samples),
            f"sampled {self.counted_batches} of {self.batches} batches, extrapolated",
        )
