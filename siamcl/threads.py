"""How many CPU threads a block of work uses: torch's own pool, and the BLAS and OpenMP pools
that numpy, scikit-learn and FAISS run on (set through threadpoolctl).

Setting torch's threads alone leaves the others at one a core, and their idle threads spin
for a while after each call. In ``siamcl bench energy --dataset digits`` run with torch's
threads alone set (benchmarks/results/energy_digits_whitening.json), every Siamese epoch after
the first, which follows the monitor's numpy work, cost 0.24-0.27 CPU s and the softmax
network's 0.10-0.12 s; with every pool limited (energy_digits_retained.json, which also keeps
freed memory) a Siamese epoch costs 0.15-0.19 s. Measurements of CPU time and energy
therefore run under :func:`cpu_threads`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["cpu_threads"]


@contextmanager
def cpu_threads(threads: int | None) -> Iterator[None]:
    """Run the block on ``threads`` CPU threads in torch and in every BLAS / OpenMP pool
    (None: unchanged), then restore them."""
    if threads is not None and (
        not isinstance(threads, int) or isinstance(threads, bool) or threads < 1
    ):
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    if threads is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        torch.set_num_threads(previous)
