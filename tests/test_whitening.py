"""Within-class whitening: the estimate, its folding into the encoder, and EpisodicTrainer's use."""

import argparse

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from siamcl.encoders import build_encoder
from siamcl.fewshot import EpisodicTrainer
from siamcl.whitening import fold_whitening, projection_of, whiten_encoder, within_class_whitening


def _elongated_classes(rng, n_classes=6, per_class=40, dim=4):
    """Classes whose drawings vary a lot along axis 0 and little along the others, and whose
    means differ along every axis alike."""
    means = rng.normal(size=(n_classes, dim)) * 2.0
    spread = np.array([6.0] + [0.5] * (dim - 1))
    X = np.repeat(means, per_class, axis=0) + rng.normal(size=(n_classes * per_class, dim)) * spread
    return X, np.repeat(np.arange(n_classes), per_class), means


def _nearest_mean_accuracy(X, y, transform):
    Z = X @ transform.T
    means = np.stack([Z[y == c].mean(0) for c in np.unique(y)])
    distances = ((Z[:, None] - means[None]) ** 2).sum(-1)
    return (distances.argmin(1) == y).mean()


def test_whitening_makes_the_within_class_covariance_isotropic():
    X, y, _ = _elongated_classes(np.random.default_rng(0))
    W = within_class_whitening(X, y, shrinkage=0.0)
    np.testing.assert_allclose(W, W.T, atol=1e-12)
    means = np.stack([X[y == c].mean(0) for c in np.unique(y)])
    deviations = (X - means[y]) @ W.T
    values = np.linalg.eigvalsh(deviations.T @ deviations / len(X))
    assert values.max() / values.min() == pytest.approx(1.0, abs=1e-6)
    assert np.abs(np.linalg.eigvalsh(W)).max() == pytest.approx(1.0)  # scaled: largest factor 1


def test_shrinkage_moves_the_whitening_towards_the_identity():
    X, y, _ = _elongated_classes(np.random.default_rng(1))
    conditioning = []
    for shrinkage in (0.0, 0.3, 1.0):
        values = np.linalg.eigvalsh(within_class_whitening(X, y, shrinkage))
        conditioning.append(values.max() / values.min())
    assert conditioning[0] > conditioning[1] > conditioning[2] == pytest.approx(1.0)


def test_whitening_helps_nearest_mean_classification_of_elongated_classes():
    X, y, _ = _elongated_classes(np.random.default_rng(2))
    plain = _nearest_mean_accuracy(X, y, np.eye(X.shape[1]))
    whitened = _nearest_mean_accuracy(X, y, within_class_whitening(X, y, shrinkage=0.1))
    assert whitened > plain + 0.1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((np.zeros((4, 2)), np.arange(3)), "one label per row"),
        ((np.zeros(4), np.arange(4)), "embeddings \\[N, D\\]"),
        ((np.random.rand(4, 2), np.arange(4)), "at least one class with two rows"),
        ((np.random.rand(4, 2), np.zeros(4), 1.5), "shrinkage must lie in \\[0, 1\\]"),
        ((np.ones((4, 3)), np.zeros(4), 0.0), "singular"),
    ],
)
def test_bad_whitening_input_is_named(args, message):
    with pytest.raises(ValueError, match=message):
        within_class_whitening(*args)


@pytest.mark.parametrize("name", ["mlp", "conv4-flat-pool-first"])
def test_folded_whitening_equals_whitening_the_embeddings(name):
    torch.manual_seed(0)
    shape = (1, 12, 12)
    encoder = build_encoder(name, shape, 8).eval()
    x = torch.rand(5, *shape)
    W = within_class_whitening(np.random.default_rng(0).normal(size=(40, 8)), np.arange(40) % 4)
    with torch.no_grad():
        expected = F.normalize(encoder(x) @ torch.as_tensor(W, dtype=torch.float32).T, dim=1)
        fold_whitening(encoder, W)
        torch.testing.assert_close(encoder(x), expected, atol=1e-5, rtol=1e-4)


def test_an_encoder_without_a_final_projection_is_refused():
    encoder = build_encoder(nn.Sequential(nn.Flatten(), nn.Linear(16, 4), nn.Tanh()), (1, 4, 4), 4)
    with pytest.raises(ValueError, match="ends in Tanh"):
        projection_of(encoder)
    with pytest.raises(ValueError, match="must be \\[8, 8\\]"):
        fold_whitening(build_encoder("mlp", (4,), 8), np.eye(4))


def test_whiten_encoder_restores_training_mode_and_is_seeded():
    torch.manual_seed(0)
    images = torch.rand(12, 1, 8, 8)
    labels = np.repeat(np.arange(4), 3)

    def noise(batch, generator):
        return batch + 0.1 * torch.randn(batch.shape, generator=generator)

    torch.manual_seed(1)
    reference = build_encoder("mlp", (1, 8, 8), 4)
    folded = []
    for _ in range(2):
        encoder = build_encoder("mlp", (1, 8, 8), 4)
        encoder.load_state_dict(reference.state_dict())
        encoder.train()
        whiten_encoder(
            encoder, images, labels, lambda b: b, noise, torch.Generator().manual_seed(3)
        )
        assert encoder.training
        folded.append(encoder)
    weights = [projection_of(e).weight for e in folded]
    torch.testing.assert_close(weights[0], weights[1])
    assert not torch.allclose(weights[0], projection_of(reference).weight)


def test_trainer_whitens_unless_told_not_to():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(30, 12, 12), dtype=np.uint8)
    y = np.repeat(np.arange(6), 5)
    settings = {"input_size": 12, "ways": 3, "queries": 2, "steps": 3, "flops": "off"}
    plain = EpisodicTrainer(whitening=None, **settings).fit(X, y)
    whitened = [EpisodicTrainer(**settings).fit(X, y) for _ in range(2)]
    np.testing.assert_array_equal(whitened[0].embed(X), whitened[1].embed(X))
    assert not np.allclose(plain.embed(X), whitened[0].embed(X), atol=1e-3)
    with pytest.raises(ValueError, match="whitening must be None or"):
        EpisodicTrainer(whitening=2.0, **settings).fit(X, y)
    own = nn.Sequential(nn.Flatten(), nn.Linear(144, 8), nn.Tanh())
    with pytest.raises(ValueError, match="ends in Tanh"):
        EpisodicTrainer(encoder=own, embedding_dim=8, **settings).fit(X, y)
    EpisodicTrainer(encoder=own, embedding_dim=8, whitening=None, **settings).fit(X, y)


def test_cli_whitening_option():
    from siamcl.cli.fewshot import _shrinkage_or_none

    assert _shrinkage_or_none("none") is None and _shrinkage_or_none("0.1") == 0.1
    for bad in ("2", "x", "nan"):
        with pytest.raises(argparse.ArgumentTypeError, match="'none'"):
            _shrinkage_or_none(bad)


# ------------------------------------------------------------------ IncrementalClassifier


def _small(**kwargs):
    from siamcl import IncrementalClassifier

    settings = {"epochs": 2, "batch_size": 64, "memory_per_class": 5, "flops": "off", "seed": 0}
    return IncrementalClassifier(**{**settings, **kwargs})


def test_classifier_whitens_each_task_and_predicts_with_whitened_class_means(digits_40, tmp_path):
    from siamcl import IncrementalClassifier

    X, y, X_test, y_test = digits_40
    plain, whitened = _small(), _small(whitening=0.1)
    for clf in (plain, whitened):
        clf.fit_task(X, y)
    # the same training, then the whitening folded into the projection: the encoders differ
    # only there, and the prototypes are the class means of the whitened embeddings
    assert not torch.allclose(
        projection_of(plain.encoder_).weight, projection_of(whitened.encoder_).weight
    )
    embedded = whitened.embed(X)
    means = np.stack([embedded[y == c].mean(0) for c in range(10)])
    np.testing.assert_allclose(
        whitened.store_.prototypes(),
        means / np.linalg.norm(means, axis=1, keepdims=True),
        atol=1e-5,
    )
    accuracy = np.mean(whitened.predict(X_test) == y_test)
    assert accuracy > 0.6  # chance is 0.1
    whitened.save(tmp_path / "model")
    loaded = IncrementalClassifier.load(tmp_path / "model")
    np.testing.assert_array_equal(loaded.predict(X_test), whitened.predict(X_test))
    assert loaded.whitening == 0.1


def test_classifier_whitening_in_a_class_incremental_stream(digits_40):
    X, y, X_test, y_test = digits_40
    clf = _small(whitening=0.3)
    for classes in ((0, 1, 2, 3, 4), (5, 6, 7, 8, 9)):
        rows = np.isin(y, classes)
        clf.fit_task(X[rows], y[rows])
    assert set(clf.store_.classes.tolist()) == set(range(10))
    assert np.mean(clf.predict(X_test) == y_test) > 0.5


def test_classifier_whitening_refusals(digits_40):
    X, y, _, _ = digits_40
    with pytest.raises(
        ValueError, match=r"use qat=None, or quantize after training \(qat='int8-ptq'\)"
    ):
        _small(whitening=0.1, qat="int8").fit_task(X, y)
    with pytest.raises(ValueError, match=r"\(qat='int8-pt2e-ptq'\)"):
        _small(whitening=0.1, qat="int8-pt2e").fit_task(X, y)
    with pytest.raises(ValueError, match="whitening must be None or"):
        _small(whitening=-1).fit_task(X, y)
    own = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.Tanh())
    clf = _small(whitening=0.1, encoder=own, embedding_dim=8)
    with pytest.raises(ValueError, match="ends in Tanh"):
        clf.fit_task(X, y)
    assert not clf.is_fitted


def test_classes_without_exemplars_keep_their_prototypes_whitened_as_the_encoder_is(
    digits_40, monkeypatch
):
    from siamcl.learners import siamese_task
    from siamcl.whitening import whiten_rows

    X, y, _, _ = digits_40
    matrices = iter([np.eye(64), np.diag(np.linspace(0.5, 2.0, 64))])  # task 1, then task 2
    monkeypatch.setattr(siamese_task, "within_class_whitening", lambda *args: next(matrices))
    clf = _small(whitening=0.3, memory_per_class=0)  # no exemplars: task 1's prototypes kept
    first = np.isin(y, (0, 1, 2, 3, 4))
    clf.fit_task(X[first], y[first])
    before = {c: clf.store_.prototypes(c) for c in range(5)}
    clf.fit_task(X[~first], y[~first])
    second = np.diag(np.linspace(0.5, 2.0, 64))
    for c in range(5):  # mapped by the whitening folded into the encoder after task 2
        expected = whiten_rows(before[c], second)
        np.testing.assert_allclose(clf.store_.prototypes(c), expected, atol=1e-5)
        assert not np.allclose(expected, before[c], atol=1e-3)
