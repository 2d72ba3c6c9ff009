"""End-to-end behaviour of IncrementalClassifier on a small slice of mnist5k."""

import copy

import numpy as np
import pytest
import torch

from siamcl import IncrementalClassifier, TaskReport
from siamcl.data import class_incremental, load_dataset


@pytest.fixture(scope="module")
def digits4():
    """Four digits, 60 training and 40 test images each."""
    X_train, y_train, X_test, y_test = load_dataset("mnist5k")
    keep = [0, 1, 2, 3]

    def take(X, y, n):
        rows = np.concatenate([np.flatnonzero(y == c)[:n] for c in keep])
        return X[rows], y[rows]

    return (*take(X_train, y_train, 60), *take(X_test, y_test, 40))


def small(**params):
    defaults = {"epochs": 3, "batch_size": 64, "memory_per_class": 10, "flops": "off", "seed": 0}
    return IncrementalClassifier(**{**defaults, **params})


@pytest.fixture(scope="module")
def trained(digits4):
    X_train, y_train, _, _ = digits4
    clf = small()
    reports = [
        clf.fit_task(task.X, task.y)
        for task in class_incremental(X_train, y_train, n_tasks=2, class_order=[0, 1, 2, 3])
    ]
    return clf, reports


def test_two_task_stream_is_well_above_chance_on_all_classes(trained, digits4):
    clf, _reports = trained
    _, _, X_test, y_test = digits4
    assert clf.classes_.tolist() == [0, 1, 2, 3]
    accuracy = clf.score(X_test, y_test)
    assert accuracy > 0.75  # chance is 0.25
    first_task = np.isin(y_test, [0, 1])
    assert (clf.predict(X_test[first_task]) == y_test[first_task]).mean() > 0.7


def test_reports_record_the_cost_of_each_task(trained):
    clf, reports = trained
    assert len(clf.reports) == 2 and all(isinstance(r, TaskReport) for r in reports)
    assert [r.task for r in reports] == [0, 1]
    for report in reports:
        assert report.wall_s > 0 and report.cpu_s > 0 and report.samples_seen > 0
        assert report.peak_rss_bytes > 0 and report.energy_j > 0
        assert report.retained_bytes["replay"] > 0 and report.retained_bytes["store"] > 0
    # the second task replays the first task's exemplars: 10 per class of 2 classes
    assert reports[1].retained_bytes["replay"] > reports[0].retained_bytes["replay"]


def test_predict_proba_rows_sum_to_one_and_agree_with_predict(trained, digits4):
    clf, _ = trained
    X_test = digits4[2][:50]
    proba = clf.predict_proba(X_test)
    assert proba.shape == (50, 4)
    assert np.allclose(proba.sum(axis=1), 1, atol=1e-5)
    assert np.array_equal(clf.classes_[proba.argmax(axis=1)], clf.predict(X_test))


def test_embeddings_are_unit_norm(trained, digits4):
    clf, _ = trained
    embeddings = clf.embed(digits4[2][:5])
    assert embeddings.shape == (5, 64)
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1, atol=1e-5)


def test_save_load_round_trip_predicts_identically(trained, digits4, tmp_path):
    clf, _ = trained
    X_test = digits4[2]
    clf.save(tmp_path / "model")
    loaded = IncrementalClassifier.load(tmp_path / "model")
    assert np.array_equal(loaded.predict(X_test), clf.predict(X_test))
    assert np.allclose(loaded.embed(X_test[:10]), clf.embed(X_test[:10]), atol=1e-6)
    assert loaded.get_params() == clf.get_params()
    assert len(loaded.reports) == 2
    # saving again over the same directory replaces it cleanly
    loaded.save(tmp_path / "model")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_half_width_encoder_learns_a_stream_and_is_rebuilt_by_name(digits4, tmp_path):
    X_train, y_train, X_test, y_test = digits4
    clf = small(encoder="conv4-half", input_size=(16, 16))
    for task in class_incremental(X_train, y_train, n_tasks=2, class_order=[0, 1, 2, 3]):
        clf.fit_task(task.X, task.y)
    assert clf.score(X_test, y_test) > 0.7  # chance is 0.25
    clf.save(tmp_path / "model")
    loaded = IncrementalClassifier.load(tmp_path / "model")
    assert loaded.encoder == "conv4-half"
    assert np.array_equal(loaded.predict(X_test), clf.predict(X_test))


def test_add_classes_learns_a_new_class_without_a_gradient_step(digits4):
    X_train, y_train, X_test, y_test = digits4
    clf = small()
    clf.fit_task(X_train[y_train < 3], y_train[y_train < 3])
    weights = [p.detach().clone() for p in clf.encoder_.parameters()]
    report = clf.add_classes(X_train[y_train == 3][:5], np.full(5, 3))
    assert report.samples_seen == 5
    assert all(torch.equal(a, b) for a, b in zip(weights, clf.encoder_.parameters()))
    assert 3 in clf.classes_
    new = y_test == 3
    assert (clf.predict(X_test[new]) == 3).mean() > 0.4  # 5 shots, 4 classes: chance 0.25


def test_reset_classes_keeps_the_encoder(trained, digits4):
    clf, _ = trained
    X_train, y_train, X_test, y_test = digits4
    import copy

    clone = copy.deepcopy(clf)
    clone.reset_classes()
    assert len(clone.classes_) == 0
    with pytest.raises(ValueError, match="no classes are known"):
        clone.predict(X_test[:3])
    clone.add_classes(X_train[::6], y_train[::6])
    assert clone.score(X_test, y_test) > 0.7


def test_prototypes_move_when_the_encoder_learns_a_new_task(digits4):
    X_train, y_train, _, _ = digits4
    clf = small()
    clf.fit_task(X_train[y_train < 2], y_train[y_train < 2])
    before = clf.store_.prototypes(0).copy()
    clf.fit_task(X_train[y_train >= 2], y_train[y_train >= 2])
    after = clf.store_.prototypes(0)
    assert not np.allclose(before, after)
    # distillation keeps the old class where it was: cosine to the old prototype stays high
    cosine = float((before * after).sum() / np.linalg.norm(before) / np.linalg.norm(after))
    assert cosine > 0.5


def test_vectors_and_labels_of_any_integer(tmp_path):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 12)) * 3
    y = np.repeat([-7, 10**12, 5], 40)
    X = (centres[np.repeat([0, 1, 2], 40)] + rng.normal(size=(120, 12))).astype(np.float32)
    clf = IncrementalClassifier(encoder="mlp", epochs=5, batch_size=32, flops="off")
    clf.fit_task(X, y)
    assert set(clf.predict(X).tolist()) <= {-7, 10**12, 5}
    assert clf.score(X, y) > 0.9


# ---------------------------------------------------------------- bad input


def snapshot(clf, probe):
    return clf.predict(probe).copy(), clf.classes_.copy(), len(clf.reports)


@pytest.mark.parametrize(
    "make_input, error, message",
    [
        (lambda X, y: (X[:10].astype(np.float32) * np.nan, y[:10]), ValueError, "NaN"),
        (lambda X, y: (X[:0], y[:0]), ValueError, "empty"),
        (lambda X, y: (X[:10], y[:9]), ValueError, "9 labels"),
        (lambda X, y: (X[:10], y[:10] + 0.5), TypeError, "integer class labels"),
        (lambda X, y: (X[:10].reshape(10, -1), y[:10]), ValueError, "expected images"),
        (lambda X, y: (X[:10, None].repeat(3, axis=1), y[:10]), ValueError, "channel"),
        (lambda X, y: (X[:10].tolist(), y[:10]), TypeError, "numpy array or torch tensor"),
        (lambda X, y: (X[y == 0][:10], y[y == 0][:10]), None, None),  # one class: replay helps
    ],
)
def test_bad_input_raises_and_leaves_the_classifier_unchanged(
    trained, digits4, make_input, error, message
):
    import copy

    clf = copy.deepcopy(trained[0])
    X_train, y_train, X_test, _ = digits4
    probe = X_test[::10]
    before = snapshot(clf, probe)
    X, y = make_input(X_train, y_train)
    if error is None:  # a single-class task trains against the replayed classes
        clf.fit_task(X, y)
        return
    with pytest.raises(error, match=message):
        clf.fit_task(X, y)
    with pytest.raises(error, match=message):
        clf.add_classes(X, y)
    after = snapshot(clf, probe)
    assert np.array_equal(before[0], after[0]) and np.array_equal(before[1], after[1])
    assert before[2] == after[2]


def test_single_class_first_task_is_refused_with_a_reason(digits4):
    X_train, y_train, _, _ = digits4
    clf = small()
    with pytest.raises(ValueError, match="at least two classes"):
        clf.fit_task(X_train[y_train == 0], y_train[y_train == 0])
    assert not clf.is_fitted


def test_unknown_names_and_bad_parameters(digits4):
    X_train, y_train, _, _ = digits4
    for params, message in [
        ({"encoder": "vgg99"}, "unknown encoder"),
        ({"loss": "hinge2"}, "unknown loss"),
        ({"index": "NotAnIndex"}, "NotAnIndex"),
        ({"epochs": 0}, "epochs"),
        ({"metric": "manhattan"}, "manhattan"),
    ]:
        clf = small(**params)
        with pytest.raises(ValueError, match=message):
            clf.fit_task(X_train[::6], y_train[::6])
        assert not clf.is_fitted


def test_methods_before_fitting_say_so():
    clf = IncrementalClassifier()
    with pytest.raises(RuntimeError, match="not fitted"):
        clf.predict(np.zeros((2, 28, 28), dtype=np.uint8))
    with pytest.raises(RuntimeError, match="not fitted"):
        clf.add_classes(np.zeros((2, 28, 28), dtype=np.uint8), [0, 1])


def test_loading_missing_corrupt_or_foreign_directories(trained, tmp_path):
    clf, _ = trained
    with pytest.raises(FileNotFoundError, match="does not exist"):
        IncrementalClassifier.load(tmp_path / "nowhere")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "siamcl.json").write_text('{"format": "something-else"}')
    with pytest.raises(ValueError, match="another tool"):
        IncrementalClassifier.load(tmp_path / "foreign")
    clf.save(tmp_path / "model")
    encoder_file = tmp_path / "model" / "encoder.safetensors"
    encoder_file.write_bytes(encoder_file.read_bytes()[:-10])
    with pytest.raises(ValueError, match="checksum of encoder.safetensors"):
        IncrementalClassifier.load(tmp_path / "model")
    manifest = tmp_path / "model" / "siamcl.json"
    manifest.write_text(manifest.read_text().replace('"format_version": 3', '"format_version": 99'))
    with pytest.raises(ValueError, match="format version 99"):
        IncrementalClassifier.load(tmp_path / "model")
    manifest.write_text("{not json")
    with pytest.raises(ValueError, match="corrupt"):
        IncrementalClassifier.load(tmp_path / "model")


def test_embed_views_average_fixed_warps_of_each_image(trained, digits4, tmp_path):
    clf, _ = trained
    _, _, X_test, y_test = digits4
    views = copy.copy(clf).set_params(embed_views=6)  # the same trained encoder
    views.reset_classes()
    views.add_classes(X_test[::2], y_test[::2])
    single, averaged = clf.embed(X_test[:20]), views.embed(X_test[:20])
    np.testing.assert_allclose(np.linalg.norm(averaged, axis=1), 1.0, atol=1e-5)
    assert np.abs(single - averaged).max() > 1e-3  # the warps change the embedding
    # an image's embedding does not depend on the batch it comes in
    np.testing.assert_allclose(views.embed(X_test[3:4]), averaged[3:4], atol=1e-5)
    assert views.score(X_test[1::2], y_test[1::2]) > 0.75  # chance is 0.25
    views.save(tmp_path / "views")
    loaded = IncrementalClassifier.load(tmp_path / "views")
    assert loaded.embed_views == 6
    np.testing.assert_array_equal(loaded.predict(X_test), views.predict(X_test))


def test_embed_views_need_images_and_a_positive_count(digits4):
    X_train, y_train, _, _ = digits4
    vectors = X_train.reshape(len(X_train), -1)[:, :50].astype(np.float32)
    with pytest.raises(ValueError, match="embed_views=3 warps images, but the inputs are vectors"):
        small(embed_views=3).fit_task(vectors, y_train)
    with pytest.raises(ValueError, match="embed_views must be a positive integer, got 0"):
        small(embed_views=0).fit_task(X_train, y_train)
