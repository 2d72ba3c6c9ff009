"""The prototype readout of a softmax-trained backbone (siamcl.learners.readout)."""

import numpy as np
import pytest
import torch

from siamcl.learners import IncrementalClassifier, NotFittedError, SoftmaxClassifier
from siamcl.learners.readout import PrototypeReadout, prototype_readout


@pytest.fixture(scope="module")
def early_softmax(digits_40):
    """A softmax network after two short epochs: its head is still poor."""
    X, y, _, _ = digits_40
    model = SoftmaxClassifier(epochs=2, batch_size=32, memory_per_class=0, seed=0)
    model.fit_task(X, y)
    return model


def test_readout_beats_the_head_early_and_leaves_the_network_as_it_was(digits_40, early_softmax):
    X, y, X_test, y_test = digits_40
    before = {k: v.clone() for k, v in early_softmax.model_.state_dict().items()}
    clf = prototype_readout(early_softmax, X, y)
    head, readout = early_softmax.score(X_test, y_test), clf.score(X_test, y_test)
    assert readout > 0.8  # chance is 0.1
    assert readout > head + 0.05
    after = early_softmax.model_.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [r.method for r in clf.reports] == ["fit_task", "prototype_readout"]
    assert clf.reports[-1].cpu_s > 0 and clf.reports[-1].samples_seen == len(y)


def test_prototypes_are_class_means_of_the_whitened_features(digits_40, early_softmax):
    X, y, X_test, _ = digits_40
    clf = prototype_readout(early_softmax, X, y)
    embeddings = clf.embed(X)
    means = np.stack([embeddings[y == c].mean(axis=0) for c in range(10)])
    expected = (clf.embed(X_test) @ means.T / np.linalg.norm(means, axis=1)).argmax(axis=1)
    assert np.mean(clf.predict(X_test) == expected) > 0.99
    plain = prototype_readout(early_softmax, X, y, whitening=None)
    assert not np.allclose(plain.embed(X[:20]), embeddings[:20], atol=1e-3)


def test_readout_takes_the_classifier_s_own_parameters(digits_40, early_softmax):
    X, y, _, _ = digits_40
    clf = prototype_readout(early_softmax, X, y, prototypes_per_class=3, memory_per_class=5)
    assert clf.store_.prototypes(4).shape == (3, early_softmax.features)
    assert clf.embedding_dim == early_softmax.features and clf.seed == early_softmax.seed
    assert len(clf.memory_) == 50


def test_a_read_out_classifier_saves_loads_and_adds_classes(tmp_path, digits_40, early_softmax):
    X, y, X_test, _ = digits_40
    clf = prototype_readout(early_softmax, X[y < 8], y[y < 8])
    clf.save(tmp_path / "model")
    loaded = IncrementalClassifier.load(tmp_path / "model")
    np.testing.assert_array_equal(loaded.predict(X_test), clf.predict(X_test))
    few = np.concatenate([np.flatnonzero(y == 8)[:5], np.flatnonzero(y == 9)[:5]])
    loaded.add_classes(X[few], y[few])
    assert loaded.classes_.tolist() == list(range(10))


def test_same_seed_same_readout(digits_40):
    X, y, X_test, _ = digits_40
    predictions = []
    for _ in range(2):
        model = SoftmaxClassifier(epochs=1, batch_size=64, memory_per_class=0, seed=3)
        model.fit_task(X, y)
        predictions.append(prototype_readout(model, X, y).predict(X_test))
    np.testing.assert_array_equal(*predictions)


def test_readout_after_each_task_keeps_earlier_classes_from_the_memory(digits_40):
    X, y, X_test, y_test = digits_40
    model = SoftmaxClassifier(epochs=2, batch_size=32, memory_per_class=10, seed=0)
    learner = PrototypeReadout(model, {"memory_per_class": 10})
    first, second = y < 5, y >= 5
    learner.fit_task(X[first], y[first])
    report = learner.fit_task(X[second], y[second])
    assert learner.classes_.tolist() == list(range(10))
    old = y_test < 5
    assert learner.score(X_test[old], y_test[old]) > 0.7  # chance over ten classes: 0.1
    assert learner.score(X_test, y_test) > 0.8
    assert report.extra["readout_cpu_s"] > 0 and report.cpu_s > report.extra["readout_cpu_s"]
    assert report.method == "fit_task" and report.task == 1
    assert report.flops and report.flops == learner.model_.reports[-1].flops  # steps only
    assert not hasattr(model, "model_")  # the network given is a parameter, left untrained
    assert len(learner.reports) == 2
    assert sorted(learner.classifier_.memory_.classes) == list(range(10))


def test_readout_refuses_what_it_cannot_read(digits_40):
    X, y, _, _ = digits_40
    with pytest.raises(RuntimeError, match="not fitted: call fit_task before reading it out"):
        prototype_readout(SoftmaxClassifier(), X, y)
    with pytest.raises(NotFittedError, match="call fit_task before predict"):
        PrototypeReadout().predict(X)
    learner = PrototypeReadout(SoftmaxClassifier(epochs=1), {"whitening": 2.0})
    with pytest.raises(ValueError, match="whitening"):
        learner.fit_task(X, y)
    assert not hasattr(learner, "model_")  # refused before any training
    quantized = SoftmaxClassifier(epochs=1, memory_per_class=0, qat="int8", seed=0)
    quantized.fit_task(X[:100], y[:100])
    with pytest.raises(ValueError, match="train the softmax network with qat=None"):
        prototype_readout(quantized, X, y)


def test_the_benchmark_s_readout_row_scores_by_the_same_rule(digits_40, early_softmax):
    from siamcl.bench.energy_scoring import prototype_scorer
    from siamcl.encoders import EmbeddingNetwork
    from siamcl.learners.readout import READOUT_WHITENING

    X, y, X_test, y_test = digits_40
    score = prototype_scorer(
        early_softmax.preprocessor_, (X, y), (X_test, y_test), whitening=READOUT_WHITENING
    )
    benchmark, _ = score(EmbeddingNetwork(early_softmax.model_.backbone))
    assert benchmark == prototype_readout(early_softmax, X, y).score(X_test, y_test)
