"""Shared test settings.

Tests use tiny models and indexes, where thread pools only add contention: on a busy
two-core machine a BatchNorm of a few values took 50 ms on two torch threads and 20 us on
one, and a FAISS k-means of a few points stalled for seconds. One thread each is enough.
"""

import faiss
import numpy as np
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


@pytest.fixture(scope="module")
def digits_40():
    """scikit-learn's 8x8 digits: 40 training images a class and all 359 test images."""
    from siamcl.data import load_dataset

    X_train, y_train, X_test, y_test = load_dataset("digits")
    rows = np.concatenate([np.flatnonzero(y_train == c)[:40] for c in range(10)])
    return X_train[rows], y_train[rows], X_test, y_test


@pytest.fixture(scope="module")
def mnist_slice():
    """An Avalanche benchmark of two experiences of two digits each: 40 training and 30 test
    images per digit."""
    from siamcl.data import class_incremental, load_dataset
    from siamcl.integrations.avalanche import to_avalanche

    X_train, y_train, X_test, y_test = load_dataset("mnist5k")
    digits = [0, 1, 2, 3]
    train = np.concatenate([np.flatnonzero(y_train == d)[:40] for d in digits])
    test = np.concatenate([np.flatnonzero(y_test == d)[:30] for d in digits])
    tasks = class_incremental(X_train[train], y_train[train], n_tasks=2, seed=0)
    return to_avalanche(tasks, X_test[test], y_test[test])
