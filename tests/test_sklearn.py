"""IncrementalClassifier as a scikit-learn estimator: fit, partial_fit, clone, check_estimator."""

import numpy as np
import pytest
from sklearn.base import clone, is_classifier
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_estimator
from torch import nn

from siamcl import IncrementalClassifier
from siamcl.data import load_dataset

# check_estimator's checks that cannot pass, and why.
EXPECTED_FAILED_CHECKS = {
    "check_classifiers_classes": (
        "labels must be integers: classes are int64 ids in the FAISS prototype store; encode "
        "string labels with sklearn.preprocessing.LabelEncoder first"
    ),
}


def small(**params):
    defaults = {"epochs": 5, "batch_size": 32, "embedding_dim": 16, "flops": "off"}
    return IncrementalClassifier(**{**defaults, **params})


def blobs(classes, n=30, features=5, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(123).normal(size=(100, features)) * 4
    y = np.repeat(np.asarray(classes), n)
    X = centres[np.asarray(y) % 100] + rng.normal(size=(len(y), features))
    return X.astype(np.float32), y


def test_check_estimator_passes_with_small_settings():
    assert is_classifier(small())
    check_estimator(small(energy="estimate"), expected_failed_checks=EXPECTED_FAILED_CHECKS)


def test_fit_forgets_what_was_learned_and_returns_self():
    clf = small()
    X, y = blobs([0, 1, 2])
    assert clf.fit(X, y) is clf
    assert clf.classes_.tolist() == [0, 1, 2]
    X2, y2 = blobs([-1, 1], seed=1)
    clf.fit(X2, y2)
    assert clf.classes_.tolist() == [-1, 1]
    assert len(clf.reports) == 1
    assert set(clf.predict(X2).tolist()) <= {-1, 1} and clf.score(X2, y2) > 0.9


def test_failed_fit_keeps_the_fitted_state():
    clf = small().fit(*blobs([0, 1, 2]))
    probe = blobs([0, 1, 2], n=5, seed=3)[0]
    before = clf.predict(probe)
    X, y = blobs([5, 6])
    X[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        clf.fit(X, y)
    with pytest.raises(ValueError, match="continuous"):
        clf.fit(X[4:8], [0.5, 1.5, 0.2, 3.1])
    assert np.array_equal(clf.predict(probe), before) and clf.classes_.tolist() == [0, 1, 2]


def test_partial_fit_learns_one_task_per_call():
    clf = small()
    X1, y1 = blobs([0, 1])
    X2, y2 = blobs([2, 3], seed=1)
    assert clf.partial_fit(X1, y1, classes=[0, 1, 2, 3]) is clf
    clf.partial_fit(X2, y2)
    assert clf.classes_.tolist() == [0, 1, 2, 3]
    assert [r.task for r in clf.reports] == [0, 1]
    X, y = np.concatenate([X1, X2]), np.concatenate([y1, y2])
    assert clf.score(X, y) > 0.8
    with pytest.raises(ValueError, match=r"labels \[7\] that are not in classes"):
        clf.partial_fit(*blobs([0, 7]), classes=[0, 1, 2, 3])
    assert clf.classes_.tolist() == [0, 1, 2, 3] and len(clf.reports) == 2


def test_clone_gives_an_unfitted_copy_with_equal_parameters():
    clf = small(epochs=3, memory_per_class=7).fit(*blobs([0, 1]))
    copy = clone(clf)
    assert copy.get_params() == clf.get_params()
    assert not copy.is_fitted and copy.classes_.tolist() == []
    module = nn.Sequential(nn.Flatten(), nn.Linear(5, 8))
    with_module = clone(small(encoder=module))
    assert isinstance(with_module.encoder, nn.Sequential) and with_module.encoder is not module


def test_get_and_set_params():
    clf = small()
    assert clf.set_params(epochs=2, lr=0.01) is clf
    assert clf.get_params()["epochs"] == 2 and clf.lr == 0.01
    with pytest.raises(ValueError, match="Invalid parameter"):
        clf.set_params(epocks=3)
    assert "epochs=2" in repr(clf)


def test_unfitted_methods_raise_not_fitted_error():
    clf = small()
    for call in (clf.predict, clf.predict_proba):
        with pytest.raises(NotFittedError, match="not fitted"):
            call(np.zeros((2, 5), np.float32))
    with pytest.raises(RuntimeError):  # still a RuntimeError, as before
        clf.predict(np.zeros((2, 5), np.float32))
    with pytest.raises(AttributeError):
        clf.n_features_in_  # noqa: B018


def test_feature_count_is_checked_against_fit():
    clf = small().fit(*blobs([0, 1], features=5))
    assert clf.n_features_in_ == 5
    with pytest.raises(
        ValueError, match="X has 4 features, but IncrementalClassifier is expecting"
    ):
        clf.predict(np.zeros((3, 4), np.float32))


def test_sklearn_methods_accept_array_likes_and_sample_weights():
    X, y = blobs([0, 1])
    clf = small().fit(X.tolist(), y.tolist())
    assert clf.predict(X[:5].tolist()).shape == (5,)
    weights = np.zeros(len(y))
    weights[y == 0] = 1.0
    class_zero = X[y == 0]
    assert clf.score(X, y, sample_weight=weights) == pytest.approx(
        (clf.predict(class_zero) == 0).mean()
    )
    with pytest.raises(ValueError, match="sample_weight"):
        clf.score(X, y, sample_weight=weights[:3])


def test_in_a_pipeline():
    X, y = blobs([3, 4, 5])
    pipeline = make_pipeline(StandardScaler(), small())
    assert pipeline.fit(X, y).score(X, y) > 0.9


def test_auto_encoder_is_conv4_for_images_and_mlp_for_vectors(tmp_path):
    X_train, y_train, _, _ = load_dataset("mnist5k")
    rows = np.concatenate([np.flatnonzero(y_train == c)[:10] for c in (0, 1)])
    images = small(epochs=1, input_size=(12, 12)).fit(X_train[rows], y_train[rows])
    convolutions = [m for m in images.encoder_.modules() if isinstance(m, nn.Conv2d)]
    assert len(convolutions) == 4 and convolutions[0].out_channels == 64  # conv4
    vectors = small().fit(*blobs([0, 1]))
    assert not any(isinstance(m, nn.Conv2d) for m in vectors.encoder_.modules())
    vectors.save(tmp_path / "vectors")
    loaded = IncrementalClassifier.load(tmp_path / "vectors")
    probe = blobs([0, 1], n=4, seed=5)[0]
    assert loaded.encoder == "auto"
    assert np.array_equal(loaded.predict_proba(probe), vectors.predict_proba(probe))


def test_tags_declare_image_inputs():
    tags = small().__sklearn_tags__()
    assert tags.input_tags.three_d_array and tags.estimator_type == "classifier"


def test_partial_fit_on_feature_vectors_matches_fit():
    X, y, X_test, y_test = load_dataset("digits")
    X = X.reshape(len(X), -1).astype(np.float32)
    X_test = X_test.reshape(len(X_test), -1).astype(np.float32)
    rows = np.concatenate([np.flatnonzero(y == c)[:40] for c in range(10)])
    X, y = X[rows], y[rows]
    whole = IncrementalClassifier(seed=0).fit(X, y).score(X_test, y_test)
    tasks = IncrementalClassifier(seed=0)
    for first_half in (True, False):  # features constant in the first task vary in the second
        part = (y < 5) == first_half
        tasks.partial_fit(X[part], y[part])
    assert tasks.score(X_test, y_test) >= whole - 0.02
    assert whole > 0.8
