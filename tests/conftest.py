"""Shared test settings.

Tests use tiny models and indexes, where thread pools only add contention: on a busy
two-core machine a BatchNorm of a few values took 50 ms on two torch threads and 20 us on
one, and a FAISS k-means of a few points stalled for seconds. One thread each is enough.
"""

import faiss
import torch

faiss.omp_set_num_threads(1)
torch.set_num_threads(1)
