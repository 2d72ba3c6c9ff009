"""Shared test settings.

The tests use tiny indexes, where FAISS's OpenMP thread pool only adds contention (a k-means
of a few points can stall for seconds on a busy two-core machine); one thread is enough.
"""

import faiss

faiss.omp_set_num_threads(1)
