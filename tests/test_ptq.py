"""Post-training int8 quantization (qat="int8-ptq", "int8-pt2e-ptq"): float training, an
int8 network after it."""

import warnings

import numpy as np
import pytest
import torch
from quick_settings import FAST

from siamcl import IncrementalClassifier
from siamcl.baselines import SoftmaxClassifier
from siamcl.compress import (
    POST_TRAINING,
    check_scheme,
    convert_qat,
    model_bytes,
    prepare_qat,
    training_scheme,
)
from siamcl.compress.float_phase import needs_calibration
from siamcl.encoders import build_encoder


def test_post_training_schemes_train_in_float_and_convert_to_their_format():
    assert POST_TRAINING == ("int8-ptq", "int8-pt2e-ptq")
    assert check_scheme("int8-ptq") == "int8-ptq"
    steps = training_scheme("int8-pt2e-ptq")
    assert steps.scheme == "int8-pt2e" and steps.post_training
    assert not training_scheme("int8").post_training
    with pytest.raises(ValueError, match="unknown quantization scheme 'int4-ptq'"):
        training_scheme("int4-ptq")
    with pytest.raises(ValueError, match="quantized models run on the CPU"):
        training_scheme("int8-ptq", device="cuda")
    encoder = build_encoder("conv4-small", (1, 8, 8), 16)
    with pytest.raises(ValueError, match="prepared and converted as 'int8'"):
        prepare_qat(encoder, "int8-ptq", torch.zeros(2, 1, 8, 8))
    with pytest.raises(ValueError, match="prepared and converted as 'int8-pt2e'"):
        convert_qat(encoder, "int8-pt2e-ptq")


@pytest.mark.parametrize(
    ("learner", "scheme"),
    [
        (IncrementalClassifier, "int8-ptq"),
        (SoftmaxClassifier, "int8-ptq"),
        (IncrementalClassifier, "int8-pt2e-ptq"),
    ],
)
def test_a_ptq_learner_trains_exactly_as_a_float_one_and_predicts_with_int8(
    digits_40, learner, scheme
):
    X_train, y_train, X_test, y_test = digits_40
    settings = {**FAST, "encoder": "conv4-small"}
    float_learner = learner(precision="fp32", **settings)
    float_learner.fit_task(X_train, y_train)
    ptq_learner = learner(qat=scheme, **settings)
    ptq_learner.fit_task(X_train, y_train)

    assert ptq_learner.qat_ == scheme.removesuffix("-ptq")  # the format it converts to
    network = _networks(ptq_learner)
    assert not needs_calibration(network)  # calibrated in place after training
    with torch.no_grad():
        probe = ptq_learner.preprocessor_(X_test)
        float_out = _networks(float_learner).eval()(probe)
        ptq_out = network.meta["siamcl_float_network"].eval()(probe)
    assert torch.equal(ptq_out, float_out)  # every step the float network's, exactly
    predicting = ptq_learner.model_ if _softmax(ptq_learner) else ptq_learner.encoder_
    assert model_bytes(predicting) < 0.5 * model_bytes(_networks(float_learner))  # int8 weights
    agreement = np.mean(ptq_learner.predict(X_test) == float_learner.predict(X_test))
    assert agreement > 0.95
    float_score = float_learner.score(X_test, y_test)
    assert ptq_learner.score(X_test, y_test) > max(0.3, float_score - 0.03)  # chance: 0.1


def test_a_ptq_learner_saves_and_loads_its_int8_encoder(digits_40, tmp_path):
    X_train, y_train, X_test, _ = digits_40
    learner = IncrementalClassifier(encoder="conv4-small", qat="int8-ptq", **FAST)
    learner.fit(X_train, y_train)
    learner.save(tmp_path / "model")
    loaded = IncrementalClassifier.load(tmp_path / "model")
    assert loaded.qat == "int8-ptq" and loaded.qat_ == "int8"
    np.testing.assert_array_equal(loaded.predict(X_test), learner.predict(X_test))
    np.testing.assert_array_equal(loaded.embed(X_test), learner.embed(X_test))


def _softmax(learner) -> bool:
    return isinstance(learner, SoftmaxClassifier)


def _networks(learner) -> torch.nn.Module:
    """The quantized part of a learner's network as trained."""
    if _softmax(learner):
        return learner.trainable_model_.backbone
    return learner.trainable_encoder_.body


def test_ptq_trains_in_bf16_as_a_bf16_learner_and_predicts_with_int8(digits_40):
    X_train, y_train, X_test, _ = digits_40
    settings = {**FAST, "encoder": "conv4-small", "precision": "bf16"}
    with warnings.catch_warnings():  # bfloat16 may be emulated here: slower, same numbers
        warnings.simplefilter("ignore", UserWarning)
        bf16 = IncrementalClassifier(**settings)
        bf16.fit_task(X_train, y_train)
        ptq = IncrementalClassifier(qat="int8-ptq", **settings)
        ptq.fit_task(X_train, y_train)
        agreement = np.mean(ptq.predict(X_test) == bf16.predict(X_test))
    trained = _networks(ptq).meta["siamcl_float_network"].parameters()
    assert all(torch.equal(a, b) for a, b in zip(_networks(bf16).parameters(), trained))
    assert ptq.qat_ == "int8" and agreement > 0.95
    with pytest.raises(ValueError, match="cannot be combined with qat='int8'"):
        IncrementalClassifier(qat="int8", **settings).fit_task(X_train, y_train)


def _within_class_spread(embeddings: np.ndarray, labels: np.ndarray) -> float:
    """How unevenly a class's rows spread: the within-class covariance's largest eigenvalue
    over its mean (1 where every direction varies alike)."""
    deviations = embeddings.copy()
    for label in np.unique(labels):
        deviations[labels == label] -= embeddings[labels == label].mean(axis=0)
    values = np.linalg.eigvalsh(deviations.T @ deviations / len(deviations))
    return float(values.max() / values.mean())


def test_whitening_folds_into_a_network_quantized_after_training(digits_40, tmp_path):
    """The within-class whitening folds into the float network's projection, which the
    graph shares, and the int8 network is calibrated and converted after it: the deployed
    int8 encoder's class spreads are evener, its prototypes its own, its predictions the
    float whitened learner's, and it saves and loads."""
    X_train, y_train, X_test, y_test = digits_40
    settings = {**FAST, "encoder": "conv4-small", "whitening": 0.1}
    plain = IncrementalClassifier(**{**settings, "whitening": None, "qat": "int8-ptq"})
    learner = IncrementalClassifier(qat="int8-ptq", **settings)
    float_learner = IncrementalClassifier(**settings)
    for model in (plain, learner, float_learner):
        model.fit_task(X_train, y_train)

    assert learner.qat_ == "int8" and not needs_calibration(_networks(learner))
    assert model_bytes(learner.encoder_) < 0.5 * model_bytes(learner.trainable_encoder_)
    whitened = _within_class_spread(learner.embed(X_train), y_train)
    assert whitened < 0.7 * _within_class_spread(plain.embed(X_train), y_train)
    for label in range(10):  # prototypes: class means of the int8 encoder's embeddings
        mean = learner.embed(X_train[y_train == label]).mean(axis=0)
        prototype = learner.store_.prototypes(label)[0]
        assert mean @ prototype / np.linalg.norm(mean) / np.linalg.norm(prototype) > 0.999
    assert np.mean(learner.predict(X_test) == float_learner.predict(X_test)) > 0.9
    assert learner.score(X_test, y_test) > max(0.3, float_learner.score(X_test, y_test) - 0.05)
    learner.save(tmp_path / "model")
    loaded = IncrementalClassifier.load(tmp_path / "model")
    np.testing.assert_array_equal(loaded.embed(X_test), learner.embed(X_test))
    np.testing.assert_array_equal(loaded.predict(X_test), learner.predict(X_test))


def test_a_stream_whitened_and_quantized_after_each_task(digits_40):
    X_train, y_train, X_test, y_test = digits_40
    learner = IncrementalClassifier(qat="int8-ptq", whitening=0.1, encoder="conv4-small", **FAST)
    for classes in ((0, 1, 2, 3, 4), (5, 6, 7, 8, 9)):
        rows = np.isin(y_train, classes)
        learner.fit_task(X_train[rows], y_train[rows])
    assert learner.store_.classes.tolist() == list(range(10))
    assert learner.score(X_test, y_test) > 0.3  # chance: 0.1
