"""Work done once and less data on purpose: one embedding pass per task, distillation
targets computed once per row, and training on a chosen fraction of a task."""

import numpy as np
import pytest
import torch
from torch import nn

from siamcl import IncrementalClassifier
from siamcl.data import load_dataset
from siamcl.learners import siamese_task
from siamcl.learners.softmax import SoftmaxClassifier
from siamcl.losses import DistillationTerm
from siamcl.replay import herding_order
from siamcl.training import Batch
from siamcl.training.selection import k_center_greedy, rows_per_class, select_rows


@pytest.fixture(scope="module")
def digits():
    """sklearn's 8x8 digits: 1438 training and 359 test images of 10 classes."""
    return load_dataset("digits")


def small(**params):
    defaults = {"epochs": 2, "batch_size": 64, "memory_per_class": 8, "flops": "off"}
    return IncrementalClassifier(**{**defaults, **params})


def first_classes(data, classes):
    X_train, y_train, X_test, y_test = data
    train, test = np.isin(y_train, classes), np.isin(y_test, classes)
    return X_train[train], y_train[train], X_test[test], y_test[test]


class Counting(nn.Module):
    """A module that counts the rows it is called on."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network
        self.rows = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += len(x)
        return self.network(x)


# ------------------------------------------------------------------ one embedding pass


def test_one_embedding_pass_serves_exemplars_and_prototypes(digits, monkeypatch):
    X, y, _, _ = first_classes(digits, [0, 1, 2, 3])
    first, second = np.isin(y, [0, 1]), np.isin(y, [2, 3])
    clf = small()
    clf.fit_task(X[first], y[first])
    embedded = []
    original = siamese_task.embed_in_batches

    def counting(encoder, inputs, *args, **kwargs):
        embedded.append(len(inputs))
        return original(encoder, inputs, *args, **kwargs)

    monkeypatch.setattr(siamese_task, "embed_in_batches", counting)
    clf.fit_task(X[second], y[second])
    # the task once, then the 8 exemplars of each earlier class once: 2x the task before
    assert embedded == [int(second.sum()), 8, 8]
    monkeypatch.undo()

    # prototypes are the class means of the task's embeddings (as two passes gave them)...
    task_X, task_y = X[second], y[second]
    embeddings = clf.embed(task_X)
    reference = clf._new_store(clf.store_.dim).add(embeddings, task_y)
    for label in (2, 3):
        assert np.allclose(clf.store_.prototypes(label), reference.prototypes(label), atol=1e-5)
        # ...and herding chose the exemplars from those same embeddings
        rows = np.flatnonzero(task_y == label)
        expected = clf.preprocessor_.canonical(task_X[rows]).numpy().astype(np.float16)
        chosen = expected[herding_order(embeddings[rows], 8)]
        assert np.array_equal(clf.memory_.get(label), chosen)
    # earlier classes: the class means of their exemplars under the new encoder
    for label in (0, 1):
        exemplars = clf._embedder(clf.encoder_, clf.preprocessor_)(clf.memory_.get(label))
        old = clf._new_store(clf.store_.dim).add(exemplars, np.full(8, label))
        assert np.allclose(clf.store_.prototypes(label), old.prototypes(label), atol=1e-5)


def test_exemplar_memory_uses_given_embeddings_and_embeds_only_held_exemplars():
    from siamcl.replay import ExemplarMemory

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3)).astype(np.float32)
    y = np.repeat([0, 1], 20)
    calls = []

    def embed(inputs):
        calls.append(len(inputs))
        return np.asarray(inputs, dtype=np.float64)

    memory = ExemplarMemory(per_class=5)
    memory.add(X, y, embed=embed, embeddings=X)
    assert calls == []
    reference = ExemplarMemory(per_class=5)
    reference.add(X, y, embed=embed)
    for label in (0, 1):
        assert np.array_equal(memory.get(label), reference.get(label))
    calls.clear()
    memory.add(X[:20] + 1, y[:20], embed=embed, embeddings=X[:20] + 1)
    assert calls == [5]  # only class 0's held exemplars
    with pytest.raises(ValueError, match="embeddings"):
        memory.add(X, y, embed=embed, embeddings=X[:3])


# ------------------------------------------------------------------ teacher targets


def test_previous_encoder_runs_once_per_row_with_cached_targets(digits):
    X, y, X_test, y_test = first_classes(digits, [0, 1, 2, 3])
    first, second = np.isin(y, [0, 1]), np.isin(y, [2, 3])
    rows = {}
    for mode in ("cached", "per_step"):
        clf = small(teacher_targets=mode, seed=1)
        clf.fit_task(X[first], y[first])
        counter = Counting(clf.encoder_)
        clf.encoder_ = counter
        report = clf.fit_task(X[second], y[second])
        rows[mode] = (counter.rows, report)
        assert clf.score(X_test, y_test) > 0.6  # chance is 0.25
    trained_rows = int(second.sum()) + 2 * 8  # the task plus the replayed exemplars
    assert rows["cached"][0] == trained_rows
    steps = rows["per_step"][1].extra["steps"]
    assert rows["per_step"][0] > trained_rows and steps >= 2 * 4


def test_external_teacher_runs_once_per_row_for_both_learners(digits):
    X, y, X_test, y_test = digits
    siamese_teacher = Counting(small(encoder="mlp", epochs=1).new_encoder((64,)))
    clf = small(encoder="mlp", teacher=siamese_teacher, epochs=2)
    clf.fit_task(X.reshape(len(X), -1), y)
    probe = 2  # the teacher is probed once on two zero rows when it is checked
    assert siamese_teacher.rows == len(X) + probe
    assert clf.score(X_test.reshape(len(X_test), -1), y_test) > 0.5  # chance is 0.1

    logits = Counting(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)))
    for mode, expected in (("cached", len(X) + probe), ("per_step", None)):
        logits.rows = 0
        student = SoftmaxClassifier(
            encoder="mlp",
            features=32,
            epochs=3,
            teacher=logits,
            teacher_weight=0.5,
            teacher_targets=mode,
            flops="off",
            memory_per_class=0,
        )
        student.fit_task(X.reshape(len(X), -1), y)
        if expected is not None:
            assert logits.rows == expected
        else:
            assert logits.rows >= 3 * len(X)  # every step's batch
        assert student.score(X_test.reshape(len(X_test), -1), y_test) > 0.5


def test_auto_targets_are_cached_unless_batches_are_distorted(digits):
    X, y, _, _ = first_classes(digits, [0, 1, 2, 3])
    first, second = np.isin(y, [0, 1]), np.isin(y, [2, 3])
    counts = {}
    for augment in (False, True):
        clf = small(augment=augment, epochs=2)  # teacher_targets="auto", the default
        clf.fit_task(X[first], y[first])
        clf.encoder_ = counter = Counting(clf.encoder_)
        clf.fit_task(X[second], y[second])
        counts[augment] = counter.rows
    trained_rows = int(second.sum()) + 2 * 8
    assert counts[False] == trained_rows  # undistorted: the cached targets are exact
    assert counts[True] > trained_rows  # distorted batches: the teacher runs each step


def test_cached_targets_need_batch_rows_and_are_looked_up_by_them():
    teacher = nn.Linear(3, 2)
    inputs = torch.randn(10, 3)
    term = DistillationTerm.cached(teacher, inputs, loss=lambda s, t: (s - t).abs().sum())
    rows = torch.tensor([4, 1, 4])
    with torch.no_grad():
        expected = teacher(inputs[rows])
    assert torch.allclose(
        term(expected, Batch(inputs[rows], torch.zeros(3), rows)), torch.zeros(()), atol=1e-6
    )
    with pytest.raises(ValueError, match="rows"):
        term(expected, Batch(inputs[rows], torch.zeros(3)))


# ------------------------------------------------------------------ data selection


def test_select_rows_keeps_the_fraction_of_every_class_and_repeats_from_the_seed():
    labels = np.repeat([0, 1, 2], [40, 10, 3])
    rows = select_rows(labels, 0.25, "stratified", seed=3)
    assert np.all(np.diff(rows) > 0)
    counts = np.bincount(labels[rows])
    assert counts.tolist() == [10, 3, 2]  # ceil(25%), at least 2 rows of a class
    assert rows_per_class(3, 0.25) == 2 and rows_per_class(1, 0.25) == 1
    assert np.array_equal(rows, select_rows(labels, 0.25, "stratified", seed=3))
    assert not np.array_equal(rows, select_rows(labels, 0.25, "stratified", seed=4))
    assert np.array_equal(select_rows(labels, 1.0), np.arange(len(labels)))


def test_coreset_spreads_over_the_class_and_differs_from_stratified():
    rng = np.random.default_rng(0)
    # one class: a dense blob of 90 points and 10 points far out on a circle
    blob = rng.normal(scale=0.05, size=(90, 2))
    angles = np.linspace(0, 2 * np.pi, 10, endpoint=False)
    ring = 5 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    features = np.concatenate([blob, ring])
    labels = np.zeros(100, dtype=np.int64)
    coreset = select_rows(labels, 0.11, "coreset", seed=0, features=features)
    assert len(coreset) == 11
    assert set(range(90, 100)) <= set(coreset.tolist())  # every far point is covered
    stratified = select_rows(labels, 0.11, "stratified", seed=0)
    assert not np.array_equal(coreset, stratified)
    order = k_center_greedy(features, 3)
    assert len(set(order.tolist())) == 3 and order[0] < 90  # starts near the mean


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fraction": 0}, "data_fraction"),
        ({"fraction": 1.5}, "data_fraction"),
        ({"fraction": 0.5, "method": "random"}, "data_selection"),
        ({"fraction": 0.5, "method": "coreset"}, "features"),
    ],
)
def test_select_rows_refuses_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        select_rows(np.zeros(10), **kwargs)


@pytest.mark.parametrize("make", [small, SoftmaxClassifier])
@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"data_fraction": 0.0}, "data_fraction"),
        ({"data_fraction": 1.2}, "data_fraction"),
        ({"data_selection": "random"}, "data_selection"),
        ({"teacher_targets": "sometimes"}, "teacher_targets"),
    ],
)
def test_learners_refuse_bad_selection_parameters(make, params, name, digits):
    X, y, _, _ = digits
    with pytest.raises(ValueError, match=name):
        make(**params).fit_task(X[:40], y[:40])


@pytest.mark.parametrize("selection", ["stratified", "coreset"])
def test_incremental_classifier_trains_on_the_selected_rows_only(selection, digits, tmp_path):
    X, y, X_test, y_test = digits
    clf = small(data_fraction=0.25, data_selection=selection, epochs=3, seed=2)
    report = clf.fit_task(X, y)
    assert report.extra["rows_offered"] == len(X)
    assert report.extra["rows_trained"] == sum(rows_per_class(int(n), 0.25) for n in np.bincount(y))
    assert report.samples_seen < 0.3 * 3 * len(X)
    accuracy = clf.score(X_test, y_test)
    assert accuracy > 0.5  # chance is 0.1
    # the same seed trains the same model
    again = small(data_fraction=0.25, data_selection=selection, epochs=3, seed=2)
    again.fit_task(X, y)
    assert np.array_equal(again.predict(X_test), clf.predict(X_test))
    # exemplars come from the selected rows, and the parameters are saved
    selected = (
        select_rows(y, 0.25, "stratified", seed=2 * 1000) if selection == "stratified" else None
    )
    if selected is not None:
        kept = clf.preprocessor_.canonical(X[selected]).numpy().astype(np.float16)
        kept_rows = {row.tobytes() for row in kept.reshape(len(kept), -1)}
        held, _ = clf.memory_.arrays()
        assert all(row.tobytes() in kept_rows for row in held.reshape(len(held), -1))
    clf.save(tmp_path / "model")
    loaded = IncrementalClassifier.load(tmp_path / "model")
    assert loaded.get_params()["data_fraction"] == 0.25
    assert loaded.get_params()["data_selection"] == selection
    assert loaded.get_params()["teacher_targets"] == "auto"
    # a second task selects in the space of the fitted encoder (coreset) and is metered
    report = clf.fit_task(X[y < 5], y[y < 5])
    assert report.extra["rows_trained"] < (y < 5).sum()


def test_softmax_classifier_trains_on_the_selected_rows_only(digits):
    X, y, X_test, y_test = digits
    flat, flat_test = X.reshape(len(X), -1), X_test.reshape(len(X_test), -1)
    clf = SoftmaxClassifier(
        encoder="mlp", features=32, epochs=4, data_fraction=0.5, flops="off", seed=1
    )
    report = clf.fit_task(flat, y)
    assert report.extra == {
        "rows_trained": float(sum(rows_per_class(int(n), 0.5) for n in np.bincount(y))),
        "rows_offered": float(len(X)),
        "epochs_run": 4.0,
        "steps": report.extra["steps"],
    }
    assert clf.score(flat_test, y_test) > 0.5
    coreset = SoftmaxClassifier(
        encoder="mlp", features=32, epochs=1, data_fraction=0.5, data_selection="coreset"
    )
    coreset.fit_task(flat, y)
    report = coreset.fit_task(flat[y < 3], y[y < 3])  # selected under the fitted backbone
    assert report.extra["rows_trained"] < (y < 3).sum()
