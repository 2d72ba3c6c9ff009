"""Quantization-aware training, distillation and quantized distillation (siamcl.compress)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from quick_settings import FAST
from torch import nn
from torch.ao.nn import intrinsic, qat
from torch.ao.quantization import FakeQuantizeBase

from siamcl import IncrementalClassifier
from siamcl.baselines import SoftmaxClassifier
from siamcl.compress import (
    convert_qat,
    embedding_distillation_loss,
    embedding_teacher,
    freeze_qat,
    logit_distillation_loss,
    model_bytes,
    prepare_qat,
    relational_distillation_loss,
    teacher_distillation,
)
from siamcl.encoders import EmbeddingNetwork, build_encoder
from siamcl.losses import MetricLoss
from siamcl.preprocess import Preprocessor
from siamcl.training import embed_in_batches


@pytest.fixture(scope="module")
def siamese_teacher(digits_40):
    X_train, y_train, _, _ = digits_40
    teacher = IncrementalClassifier(encoder="conv4", **FAST)
    teacher.fit_task(X_train, y_train)
    return teacher


@pytest.fixture(scope="module")
def standardised(digits_40):
    X_train, y_train, X_test, y_test = digits_40
    preprocessor = Preprocessor().fit(X_train)
    return (
        preprocessor(X_train),
        torch.from_numpy(y_train),
        preprocessor(X_test),
        torch.from_numpy(y_test),
    )


def _cross_entropy_loop(model: nn.Module, X: torch.Tensor, y: torch.Tensor, steps: int) -> None:
    """The plain training loop any PyTorch classifier uses."""
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        rows = torch.randint(len(X), (64,), generator=generator)
        loss = F.cross_entropy(model(X[rows]), y[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def _small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 10),
    )


# ----------------------------------------------------------------------------- QAT


def test_int8_prepare_fake_quantizes_convolutions_linears_and_activations():
    encoder = build_encoder("conv4-small", (1, 8, 8), 16)
    prepared = prepare_qat(encoder, "int8", torch.zeros(2, 1, 8, 8))

    modules = list(prepared.modules())
    convs = [m for m in modules if isinstance(m, intrinsic.qat.ConvBnReLU2d)]
    linears = [m for m in modules if isinstance(m, qat.Linear)]
    assert len(convs) == 4  # every conv-BN-ReLU block fused, BatchNorm folded into the conv
    assert len(linears) == 1
    assert all(isinstance(m.weight_fake_quant, FakeQuantizeBase) for m in convs + linears)
    activation_quantizers = [n for n, _ in prepared.named_modules() if "activation_post" in n]
    assert len(activation_quantizers) >= 5
    # the L2 normalisation stays outside the quantized body, in float
    assert isinstance(prepared, EmbeddingNetwork)
    out = prepared(torch.randn(4, 1, 8, 8))
    torch.testing.assert_close(out.norm(dim=1), torch.ones(4))


def test_int8_conv4_encoder_shrinks_to_about_a_quarter():
    encoder = build_encoder("conv4", (1, 8, 8), 64)
    prepared = prepare_qat(encoder, "int8", torch.zeros(2, 1, 8, 8))
    prepared(torch.randn(16, 1, 8, 8))  # observers see one batch
    assert model_bytes(convert_qat(prepared, "int8")) <= 0.27 * model_bytes(encoder)


def test_int8_convert_gives_int8_weights_a_smaller_model_and_the_same_predictions(standardised):
    X_train, y_train, X_test, _ = standardised
    float_model = _small_cnn()
    prepared = prepare_qat(float_model, "int8", X_train[:2])
    _cross_entropy_loop(prepared, X_train, y_train, steps=80)
    freeze_qat(prepared).eval()
    quantized = convert_qat(prepared, "int8")

    convs = [m for m in quantized.modules() if isinstance(m, torch.ao.nn.quantized.Conv2d)]
    linears = [m for m in quantized.modules() if isinstance(m, torch.ao.nn.quantized.Linear)]
    assert len(convs) == 2 and len(linears) == 1
    assert all(m.weight().dtype == torch.qint8 for m in convs + linears)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in quantized.modules())
    assert model_bytes(quantized) < 0.35 * model_bytes(float_model)  # scales weigh in a tiny net
    with torch.no_grad():
        fake = prepared(X_test).argmax(dim=1)
        real = quantized(X_test).argmax(dim=1)
    assert (fake == real).float().mean() >= 0.95


def test_int4_quantizes_linear_weights_to_sixteen_levels():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 10))
    x = torch.randn(32, 1, 8, 8)
    prepared = prepare_qat(model, "int4", x)
    assert type(prepared[1]).__name__ == "FakeQuantizedLinear"
    prepared(x).sum().backward()  # trainable
    quantized = convert_qat(prepared, "int4")
    values = quantized[1].weight.qdata
    assert values.min() >= -8 and values.max() <= 7
    with torch.no_grad():
        torch.testing.assert_close(quantized(x), prepared.eval()(x), atol=1e-4, rtol=1e-4)
    assert model_bytes(quantized) < 0.35 * model_bytes(model)


@pytest.mark.parametrize(
    ("model", "scheme", "message"),
    [
        (nn.Sequential(nn.Flatten(), nn.ReLU()), "int8", "no Conv or Linear"),
        (nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU()), "int4", "Linear layers"),
        (nn.Sequential(nn.Flatten(), nn.Linear(64, 4)), "int3", "unknown quantization scheme"),
        (nn.Sequential(nn.Flatten(), nn.Linear(64, 4)), None, "scheme is required"),
    ],
)
def test_qat_refuses_what_it_cannot_quantize(model, scheme, message):
    with pytest.raises(ValueError, match=message):
        prepare_qat(model, scheme, torch.zeros(2, 1, 8, 8))


# ---------------------------------------------------------------------- distillation


def test_logit_distillation_is_zero_for_equal_logits_and_checks_sizes():
    logits = torch.randn(8, 5)
    assert logit_distillation_loss(logits, logits.clone()).item() == pytest.approx(0, abs=1e-6)
    assert logit_distillation_loss(logits, torch.randn(8, 5)).item() > 0
    with pytest.raises(ValueError, match="same classes"):
        logit_distillation_loss(logits, torch.randn(8, 6))


def test_relational_distillation_compares_structure_across_embedding_sizes():
    teacher = torch.randn(16, 32)
    assert relational_distillation_loss(teacher, teacher).item() == pytest.approx(0, abs=1e-6)
    # distances are normalised by their mean, so a scaled copy teaches nothing new
    scaled = relational_distillation_loss(3 * teacher, teacher)
    assert scaled.item() == pytest.approx(0, abs=1e-5)

    torch.manual_seed(0)
    student = nn.Linear(32, 8)  # a smaller embedding than the teacher's
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-2)
    inputs = torch.randn(16, 32)
    first = relational_distillation_loss(student(inputs), teacher).item()
    for _ in range(100):
        loss = relational_distillation_loss(student(inputs), teacher)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.5 * first


def test_teacher_loss_names_pick_match_relational_or_both_by_embedding_size():
    torch.manual_seed(0)
    student, teacher, smaller = torch.randn(16, 32), torch.randn(16, 32), torch.randn(16, 8)
    match = embedding_distillation_loss(student, teacher)
    relational = relational_distillation_loss(student, teacher)
    assert teacher_distillation("match")(student, teacher) == pytest.approx(match.item())
    assert teacher_distillation("relational")(student, teacher) == pytest.approx(relational.item())
    both = teacher_distillation("match+relational")(student, teacher)
    assert both == pytest.approx(match.item() + relational.item())
    # auto: matching where the sizes agree, structure where they cannot be matched
    assert teacher_distillation("auto")(student, teacher) == pytest.approx(match.item())
    across = relational_distillation_loss(smaller, teacher)
    assert teacher_distillation("auto")(smaller, teacher) == pytest.approx(across.item())
    with pytest.raises(ValueError, match="cannot be matched: use teacher_loss='relational'"):
        teacher_distillation("match")(smaller, teacher)
    with pytest.raises(ValueError, match="teacher_loss must be one of"):
        teacher_distillation("angles")
    with pytest.raises(ValueError, match="teacher_loss"):
        IncrementalClassifier(teacher_loss="angles", **FAST).fit_task(
            np.zeros((4, 8, 8)), np.array([0, 0, 1, 1])
        )


def test_distilled_student_moves_toward_its_teacher_and_learns(digits_40, siamese_teacher):
    X_train, y_train, X_test, y_test = digits_40
    teacher = siamese_teacher
    student = IncrementalClassifier(
        encoder="conv4-small", teacher=teacher, teacher_weight=5.0, **FAST
    )
    student.fit_task(X_train, y_train)
    alone = IncrementalClassifier(encoder="conv4-small", **FAST)  # same start, no teacher
    alone.fit_task(X_train, y_train)

    assert student.score(X_test, y_test) > 0.5  # chance is 0.1
    target = torch.from_numpy(teacher.embed(X_test))
    distilled = embedding_distillation_loss(torch.from_numpy(student.embed(X_test)), target)
    undistilled = embedding_distillation_loss(torch.from_numpy(alone.embed(X_test)), target)
    assert distilled < 0.9 * undistilled


def test_a_student_learns_from_its_teacher_alone_without_mining_pairs(
    digits_40, siamese_teacher, monkeypatch
):
    X_train, y_train, X_test, y_test = digits_40

    def metric_loss_ran(*args, **kwargs):
        raise AssertionError("metric_weight=0, yet the metric loss ran")

    monkeypatch.setattr(MetricLoss, "forward", metric_loss_ran)
    student = IncrementalClassifier(
        encoder="conv4-small", teacher=siamese_teacher, metric_weight=0.0, **FAST
    )
    student.fit_task(X_train, y_train)
    assert student.score(X_test, y_test) > 0.5  # chance is 0.1
    with pytest.raises(ValueError, match="metric_weight=0 trains on a teacher alone"):
        IncrementalClassifier(metric_weight=0.0, **FAST).fit_task(X_train, y_train)


# ------------------------------------------------------------- wiring into the learners


def test_quantized_distilled_learner_saves_loads_and_predicts_identically(
    digits_40, siamese_teacher, tmp_path
):
    X_train, y_train, X_test, y_test = digits_40
    teacher = siamese_teacher.encoder_  # a module teacher with 64-d embeddings, student 32-d
    clf = IncrementalClassifier(
        encoder="conv4-small", embedding_dim=32, qat="int8", teacher=teacher, **FAST
    )
    first = y_train < 5
    clf.fit_task(X_train[first], y_train[first])
    assert any(isinstance(m, torch.ao.nn.quantized.Conv2d) for m in clf.encoder_.modules())
    assert clf.score(X_test, y_test) > 0.3  # half the classes known: at most 0.5

    clf.save(tmp_path / "model")
    loaded = IncrementalClassifier.load(tmp_path / "model")
    np.testing.assert_array_equal(loaded.predict(X_test), clf.predict(X_test))
    np.testing.assert_allclose(loaded.embed(X_test), clf.embed(X_test), atol=1e-6)
    assert loaded.teacher is None  # a teacher guides training; it is not saved

    loaded.fit_task(X_train[~first], y_train[~first])  # training continues after loading
    assert set(loaded.classes_.tolist()) == set(range(10))


def test_softmax_classifier_with_qat_and_a_teacher(digits_40):
    X_train, y_train, X_test, y_test = digits_40
    teacher = SoftmaxClassifier(encoder="conv4", **FAST)
    teacher.fit_task(X_train, y_train)
    student = SoftmaxClassifier(
        encoder="conv4-small", qat="int8", teacher=teacher, **{**FAST, "epochs": 6}
    )
    student.fit_task(X_train, y_train)
    backbone = student.model_.backbone
    assert any(isinstance(m, torch.ao.nn.quantized.Conv2d) for m in backbone.modules())
    assert student.score(X_test, y_test) > 0.3  # chance is 0.1; QAT from scratch starts slowly


def test_bad_compression_settings_fail_before_training(digits_40):
    X_train, y_train, _, _ = digits_40
    with pytest.raises(ValueError, match="unknown quantization scheme"):
        IncrementalClassifier(qat="fp8", **FAST).fit_task(X_train, y_train)
    with pytest.raises(ValueError, match="Linear layers"):
        no_linear = nn.Sequential(nn.Conv2d(1, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        IncrementalClassifier(encoder=no_linear, qat="int4", **FAST).fit_task(X_train, y_train)
    five_logits = nn.Sequential(nn.Flatten(), nn.Linear(64, 5))
    with pytest.raises(ValueError, match="output sizes must match"):
        SoftmaxClassifier(teacher=five_logits, **FAST).fit_task(X_train, y_train)
    with pytest.raises(ValueError, match="not fitted"):
        IncrementalClassifier(teacher=IncrementalClassifier(), **FAST).fit_task(X_train, y_train)
    wide = Preprocessor(input_size=(16, 16)).fit(X_train)
    with pytest.raises(ValueError, match="same input_size"):
        fitted = IncrementalClassifier.from_state(
            FAST, preprocessor=wide, trainable_encoder=nn.Flatten()
        )
        embedding_teacher(fitted, Preprocessor().fit(X_train))


def _ranges(model: nn.Module) -> dict[str, torch.Tensor]:
    """The fake quantizers' observed ranges and scales of a prepared model."""
    keys = ("min_val", "max_val", "scale", "zero_point")
    return {k: v.clone() for k, v in model.state_dict().items() if k.endswith(keys)}


def test_embedding_a_qat_network_mid_training_leaves_its_ranges_alone():
    prepared = prepare_qat(
        build_encoder("conv4-small", (1, 8, 8), 16), "int8", torch.zeros(2, 1, 8, 8)
    )
    prepared.train()
    prepared(torch.randn(32, 1, 8, 8))  # a training step's forward: the observers see a batch
    before = _ranges(prepared)
    shifted = 5 * torch.randn(64, 1, 8, 8)  # rows far outside the ranges seen so far

    embed_in_batches(prepared, shifted)

    after = _ranges(prepared)
    assert before.keys() == after.keys() and len(before) >= 10
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert prepared.training  # handed back as it came, observing
    observers = [m for m in prepared.modules() if isinstance(m, FakeQuantizeBase)]
    assert observers and all(int(m.observer_enabled[0]) == 1 for m in observers)
    # eval() alone would have moved them: what embed_in_batches guards against
    prepared.eval()
    with torch.no_grad():
        prepared(shifted)
    assert any(not torch.equal(before[k], v) for k, v in _ranges(prepared).items())


def test_scoring_a_qat_learner_on_the_way_does_not_change_what_it_learns(digits_40):
    X_train, y_train, X_test, _ = digits_40
    rows = torch.from_numpy(5 * X_test.astype(np.float32)).unsqueeze(1)  # foreign rows

    class Monitor:
        checks_per_epoch = 2

        def on_check(self, model: nn.Module, progress) -> None:
            embed_in_batches(model, rows)

    plain = IncrementalClassifier(encoder="conv4-small", qat="int8", **FAST)
    plain.fit_task(X_train, y_train)
    watched = IncrementalClassifier(
        encoder="conv4-small", qat="int8", callbacks=[Monitor()], **FAST
    )
    watched.fit_task(X_train, y_train)

    assert FAST["epochs"] < 4  # observers stay on through every epoch
    np.testing.assert_array_equal(watched.embed(X_test), plain.embed(X_test))
