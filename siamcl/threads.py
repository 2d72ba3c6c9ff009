"""How many CPU threads a block of work uses: torch's own pool, and the BLAS and OpenMP pools
that numpy, scikit-learn and FAISS run on (set through threadpoolctl).

Setting torch's threads alone leaves the others at one a core, and their idle threads spin
for a while after each call: on the machine measured, a 1-NN search or a whitening estimate
between epochs made the next digits epoch cost 1.6x its CPU time (0.25 s against 0.16 s), so
a benchmark run "on one thread" charged some methods for spinning the others were spared. Measurements of CPU time and
energy therefore run under :func:`cpu_threads`.
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
