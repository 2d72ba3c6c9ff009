"""Shared test settings.

Tests use tiny models and indexes, where thread pools only add contention: on a busy
two-core machine a BatchNorm of a few values took 50 ms on two torch threads and 20 us on
one, and a FAISS k-means of a few points stalled for seconds. One thread each is enough.
"""

import faiss
import pytest
import torch

faiss.omp_set_num_threads(1)
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Every test starts on one torch thread, whatever an earlier test (a benchmark's
    ``--threads``, a few-shot command) set."""
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(1)
