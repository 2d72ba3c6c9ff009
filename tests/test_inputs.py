"""Pixel scale: the same images in any integer dtype, or as floats in [0, 1], give the same
predictions; inputs the model cannot mean are refused with a message naming X."""

from __future__ import annotations

import numpy as np
import pytest

from siamcl import IncrementalClassifier
from siamcl.data import load_dataset


@pytest.fixture(scope="module")
def fitted():
    X, y, X_test, _ = load_dataset("mnist5k")
    rows = np.concatenate([np.flatnonzero(y == c)[:30] for c in range(4)])
    clf = IncrementalClassifier(epochs=1, batch_size=32, flops="off", seed=0)
    clf.fit_task(X[rows], y[rows])
    return clf, X_test[:300]


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint16, np.int16])
def test_integer_images_of_any_dtype_are_scaled_as_uint8(fitted, dtype):
    clf, images = fitted
    np.testing.assert_array_equal(clf.predict(images.astype(dtype)), clf.predict(images))


def test_float_images_in_unit_range_match_uint8(fitted):
    clf, images = fitted
    same = clf.predict(images.astype(np.float32) / 255)
    assert (same == clf.predict(images)).mean() > 0.99  # float rounding of the last bit only


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (
            lambda X: X.astype(np.float32),
            r"X holds pixel values in \[0, 255\].*fitted on images in \[0, 1\]",
        ),
        (lambda X: X.astype(np.int64) * 2, r"X holds integer pixel values in \[0, 510\]"),
        (lambda X: X.astype(np.int32) - 1, r"X holds integer pixel values in \[-1, 254\]"),
        (lambda X: np.full(X.shape, 1e300), "beyond float32's range"),
        (lambda X: np.where(X > 0, np.nan, 0.0), "NaN"),
    ],
)
def test_inputs_the_model_cannot_mean_are_refused(fitted, images, message):
    clf, X = fitted
    with pytest.raises(ValueError, match=message):
        clf.predict(images(X[:20]))


def test_prediction_in_blocks_equals_prediction_at_once(fitted, monkeypatch):
    clf, images = fitted
    whole = clf.embed(images)
    monkeypatch.setattr("siamcl.learners.prediction.CHUNK_ROWS", 7)
    np.testing.assert_allclose(clf.embed(images), whole, atol=1e-6)
