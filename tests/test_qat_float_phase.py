"""int8 QAT's float epochs run the float network (siamcl.compress.float_phase), in both
flows: torch.ao's FX graph ("int8") and torchao's PT2E graph ("int8-pt2e")."""

import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from quick_settings import FAST

from siamcl import IncrementalClassifier
from siamcl.baselines import SoftmaxClassifier
from siamcl.compress import calibration_rows, convert_qat, prepare_qat, schedule_qat
from siamcl.compress.float_phase import needs_calibration
from siamcl.encoders import build_encoder
from siamcl.training import StepBudget

SCHEMES = ["int8", "int8-pt2e"]


def _prepared(scheme: str = "int8", seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    encoder = build_encoder("conv4-small", (1, 8, 8), 16)
    return prepare_qat(encoder, scheme, torch.zeros(2, 1, 8, 8))


def _float_network(encoder: torch.nn.Module) -> torch.nn.Module:
    return encoder.body.meta["siamcl_float_network"]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_prepared_graph_shares_every_weight_with_the_float_network_it_runs_in_float_epochs(
    scheme,
):
    encoder = _prepared(scheme)
    network = _float_network(encoder)
    shared = {id(p) for p in network.parameters()}
    assert shared == {id(p) for p in encoder.parameters()}
    assert {id(b) for b in network.buffers()} <= {id(b) for b in encoder.buffers()}
    x = torch.randn(16, 1, 8, 8)

    schedule_qat(encoder, 0, 3)  # a float epoch: the float network's forward, exactly
    encoder.eval()
    with torch.no_grad():
        routed, own = encoder.body(x), network.eval()(x)
    assert torch.equal(routed, own)

    optimizer = torch.optim.Adam(encoder.parameters(), lr=1e-2)  # the graph's parameters
    before = [p.detach().clone() for p in network.parameters()]
    encoder.train()
    encoder(x).sum().backward()
    optimizer.step()
    assert network.training  # follows the graph's mode
    assert all(not torch.equal(b, p) for b, p in zip(before, network.parameters()))

    schedule_qat(encoder, 2, 3)  # fake-quantised: the graph's own forward
    encoder.eval()
    with torch.no_grad():
        assert not torch.equal(encoder.body(x), network.eval()(x))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_fake_quantization_restarts_the_ranges_float_epochs_left_stale(scheme):
    encoder = _prepared(scheme)
    encoder.train()
    schedule_qat(encoder, 2, 3)
    encoder(torch.randn(32, 1, 8, 8))  # ranges observed on a first task
    schedule_qat(encoder, 0, 3)  # float epochs of the next
    encoder(torch.randn(32, 1, 8, 8))
    assert needs_calibration(encoder)

    schedule_qat(encoder, 2, 3)
    batch = 3 + torch.rand(32, 1, 8, 8)  # in [3, 4): far from the first task's rows
    encoder(batch)

    assert not needs_calibration(encoder)
    observed = [  # per-tensor ranges; the input's is set by this batch alone
        (float(m.activation_post_process.min_val), float(m.activation_post_process.max_val))
        for m in encoder.modules()
        if hasattr(m, "fake_quant_enabled") and m.activation_post_process.min_val.numel() == 1
    ]
    assert (pytest.approx(float(batch.min())), pytest.approx(float(batch.max()))) in observed


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_conversion_after_float_epochs_calibrates_on_rows_it_is_given(digits_40, scheme):
    X_train = torch.from_numpy(digits_40[0].astype(np.float32)).unsqueeze(1)
    rows = (X_train - X_train.mean()) / X_train.std()
    encoder = _prepared(scheme)
    encoder.train()
    schedule_qat(encoder, 0, 3)
    encoder(rows[:64])
    stale = copy.deepcopy(encoder)  # a copy knows its ranges are stale, and shares its weights
    assert needs_calibration(stale)
    assert {id(p) for p in _float_network(stale).parameters()} == {
        id(p) for p in stale.parameters()
    }

    with pytest.raises(ValueError, match="pass calibration rows"):
        convert_qat(encoder, scheme)
    quantized = convert_qat(encoder, scheme, calibration_rows(rows))

    with torch.no_grad():
        exact, int8 = _float_network(encoder).eval()(rows), quantized.body(rows)
    cosine = torch.nn.functional.cosine_similarity(exact, int8).mean()
    assert cosine > 0.98  # post-training int8 of the network as it stands
    assert needs_calibration(encoder) and encoder.training  # the original is left as it was


def test_calibration_rows_are_evenly_spaced_and_capped():
    inputs = torch.arange(2000.0).reshape(-1, 1)
    rows = calibration_rows(inputs, lambda t: t / 10)
    assert len(rows) == 512 and float(rows[0]) == 0 and float(rows[-1]) == pytest.approx(199.9)
    assert len(calibration_rows(inputs[:7])) == 7


@pytest.mark.parametrize(
    ("learner", "scheme"),
    [
        (IncrementalClassifier, "int8"),
        (SoftmaxClassifier, "int8"),
        (IncrementalClassifier, "int8-pt2e"),
    ],
)
def test_a_qat_learner_stopped_in_a_float_epoch_trained_as_a_float_one_and_deploys_int8(
    digits_40, learner, scheme
):
    X_train, y_train, X_test, _ = digits_40
    settings = {**FAST, "encoder": "conv4-small", "epochs": 6, "stopping": [StepBudget(20)]}
    float_learner = learner(precision="fp32", **settings)
    qat_learner = learner(qat=scheme, **settings)
    float_learner.fit_task(X_train, y_train)
    report = qat_learner.fit_task(X_train, y_train)

    assert report.stopped_by == "step budget (20)"  # in epoch 2 of 6: a float epoch
    trained, float_trained = _networks(qat_learner), _networks(float_learner)
    assert not needs_calibration(trained)  # settled: calibrated on the task's rows
    with torch.no_grad():
        probe = qat_learner.preprocessor_(X_test)
        float_out = float_trained.eval()(probe)
        qat_out = trained.meta["siamcl_float_network"].eval()(probe)
    assert torch.equal(qat_out, float_out)  # the float network's steps, exactly
    agreement = np.mean(qat_learner.predict(X_test) == float_learner.predict(X_test))
    assert agreement > 0.95  # its int8 network predicts as the float one


def _networks(learner) -> torch.nn.Module:
    """The quantized part of a learner's network as trained."""
    if isinstance(learner, SoftmaxClassifier):
        return learner.trainable_model_.backbone
    return learner.trainable_encoder_.body


def test_a_learner_stopped_in_a_float_epoch_saves_and_loads_its_int8_network(digits_40, tmp_path):
    X_train, y_train, X_test, _ = digits_40
    learner = IncrementalClassifier(
        encoder="conv4-small", qat="int8", stopping=[StepBudget(15)], **{**FAST, "epochs": 6}
    )
    learner.fit_task(X_train, y_train)
    learner.save(tmp_path / "model")
    loaded = IncrementalClassifier.load(tmp_path / "model")
    np.testing.assert_array_equal(loaded.predict(X_test), learner.predict(X_test))
    np.testing.assert_array_equal(loaded.embed(X_test), learner.embed(X_test))


@pytest.mark.parametrize("scheme", [*SCHEMES, "int8-ptq"])
def test_a_qat_stream_resumed_from_its_checkpoint_ends_as_the_uninterrupted_one(
    digits_40, tmp_path, scheme
):
    X_train, y_train, X_test, _ = digits_40
    tasks = [
        SimpleNamespace(X=X_train[np.isin(y_train, classes)], y=y_train[np.isin(y_train, classes)])
        for classes in ((0, 1, 2, 3, 4), (5, 6, 7, 8, 9))
    ]

    def learner() -> IncrementalClassifier:
        return IncrementalClassifier(encoder="conv4-small", qat=scheme, **FAST)

    def first_task_only():
        yield tasks[0]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        learner().fit_stream(first_task_only(), checkpoint_dir=tmp_path / "ck")
    resumed = learner()  # rebuilt from the saved state: its float network shares the weights
    resumed.fit_stream(tasks, checkpoint_dir=tmp_path / "ck")
    uninterrupted = learner()
    uninterrupted.fit_stream(tasks)

    assert FAST["epochs"] == 3  # the second task's first two epochs run the float network
    np.testing.assert_array_equal(resumed.embed(X_test), uninterrupted.embed(X_test))
    np.testing.assert_array_equal(resumed.predict(X_test), uninterrupted.predict(X_test))


def test_a_float_network_that_shares_no_weights_with_the_graph_is_refused():
    from siamcl.compress.float_phase import attach_float_network

    encoder = _prepared()
    stranger = build_encoder("conv4-small", (1, 8, 8), 16)  # its own parameters
    with pytest.raises(RuntimeError, match="does not share EmbeddingNetwork's parameters"):
        attach_float_network(encoder.body, stranger)
