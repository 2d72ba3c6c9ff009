"""int8 quantization-aware training through torchao's PT2E flow (qat="int8-pt2e").

The first PT2E preparation and conversion in a process export torchao's graph patterns
(about ten seconds on two cores); later ones reuse them, so the trained models are shared.
"""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from quick_settings import FAST
from torch import nn

from siamcl import IncrementalClassifier
from siamcl.baselines import SoftmaxClassifier
from siamcl.compress import (
    SCHEMES,
    check_scheme,
    convert_qat,
    model_bytes,
    prepare_qat,
    schedule_qat,
    training_scheme,
)
from siamcl.compress.pt2e import is_pt2e_model, set_pt2e_quantizers
from siamcl.encoders import EmbeddingNetwork, build_encoder
from siamcl.preprocess import Preprocessor
from siamcl.training import embed_in_batches


@pytest.fixture(scope="module")
def trained(digits_40):
    """A conv4-small classifier trained with PT2E QAT: (float model, prepared, converted)."""
    X_train, y_train, X_test, _ = digits_40
    preprocessor = Preprocessor().fit(X_train)
    X, y = preprocessor(X_train), torch.from_numpy(y_train)
    torch.manual_seed(0)
    body = build_encoder("conv4-small", (1, 8, 8), 32).body
    model = nn.Sequential(body, nn.ReLU(), nn.Linear(32, 10))
    prepared = prepare_qat(model, "int8-pt2e", X[:2])
    optimizer = torch.optim.Adam(prepared.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    for epoch in range(3):
        schedule_qat(prepared, epoch, 3)
        prepared.train()
        for _ in range(40):
            rows = torch.randint(len(X), (64,), generator=generator)
            loss = F.cross_entropy(prepared(X[rows]), y[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    prepared.eval()
    return model, prepared, convert_qat(prepared, "int8-pt2e"), preprocessor(X_test)


@pytest.fixture(scope="module")
def siamese(digits_40):
    X_train, y_train, _, _ = digits_40
    clf = IncrementalClassifier(encoder="conv4-small", qat="int8-pt2e", **FAST)
    first = y_train < 5
    clf.fit_task(X_train[first], y_train[first])
    return clf


def test_the_scheme_is_accepted_where_qat_is():
    assert "int8-pt2e" in SCHEMES
    assert check_scheme("int8-pt2e") == "int8-pt2e"
    assert training_scheme("int8-pt2e").scheme == "int8-pt2e"
    with pytest.raises(ValueError, match="run on the CPU"):
        training_scheme("int8-pt2e", device="cuda")


def test_pt2e_qat_learns_and_the_converted_model_agrees(trained, digits_40):
    _, prepared, converted, X_test = trained
    y_test = torch.from_numpy(digits_40[3])
    with torch.no_grad():
        fake = prepared(X_test).argmax(1)
        real = converted(X_test).argmax(1)
    assert (real == y_test).float().mean() > 0.6  # chance is 0.1
    assert (real == fake).float().mean() > 0.9
    ops = {str(n.target) for n in converted.graph_module.graph.nodes}
    assert "onednn.qconv_pointwise.default" in ops  # real int8 convolutions, run eagerly
    assert not any("quantized_decomposed" in op for op in ops)


@pytest.mark.parametrize("quant_max", [127, 255])  # 7 bits on CPUs without VNNI, else 8
def test_native_uint8_ops_give_the_values_of_the_decomposed_ones(quant_max):
    import torchao.quantization.pt2e  # noqa: F401  registers quantized_decomposed

    from siamcl.compress.pt2e import _dequantize_uint8, _quantize_uint8

    decomposed = torch.ops.quantized_decomposed
    x = torch.randn(4096, generator=torch.Generator().manual_seed(0)) * 8
    expected = decomposed.quantize_per_tensor(x, 0.03, 62, 0, quant_max, torch.uint8)
    native = _quantize_uint8(x, 0.03, 62, quant_max)
    assert native.dtype == torch.uint8 and int(native.max()) == quant_max
    assert torch.equal(native, expected)
    float_values = decomposed.dequantize_per_tensor(expected, 0.03, 62, 0, quant_max, torch.uint8)
    assert torch.equal(_dequantize_uint8(expected, 0.03, 62), float_values)


def test_pt2e_converted_model_is_small_and_runs_any_batch(trained):
    model, _, converted, X_test = trained
    assert model_bytes(converted) < 0.35 * model_bytes(model)
    with torch.no_grad():
        one = converted(X_test[:1])
        many = converted(X_test[:7])
    torch.testing.assert_close(one, many[:1], atol=1e-5, rtol=0)
    copied = copy.deepcopy(converted).eval()  # copies keep working train/eval methods
    with torch.no_grad():
        torch.testing.assert_close(copied(X_test[:7]), many)


def test_prepared_copies_keep_switching_between_train_and_eval(trained):
    _, prepared, _, X_test = trained
    copied = copy.deepcopy(prepared)
    assert is_pt2e_model(copied)
    copied.eval()
    with torch.no_grad():
        torch.testing.assert_close(copied(X_test[:5]), prepared(X_test[:5]))
    copied.train()
    assert copied.training


def test_embedding_a_prepared_model_leaves_torchaos_observed_ranges_alone(trained):
    _, prepared, _, X_test = trained
    copied = copy.deepcopy(prepared).train()
    set_pt2e_quantizers(copied, fake=True, observe=True)  # as in a training epoch
    ranges = {
        k: v.clone() for k, v in copied.state_dict().items() if k.endswith(("min_val", "max_val"))
    }
    assert ranges

    embed_in_batches(copied, 5 * X_test)

    assert all(torch.equal(v, copied.state_dict()[k]) for k, v in ranges.items())
    assert copied.training


def test_siamese_learner_keeps_l2_float_and_saves_loads_identically(siamese, digits_40, tmp_path):
    X_train, y_train, X_test, y_test = digits_40
    assert isinstance(siamese.encoder_, EmbeddingNetwork)
    assert is_pt2e_model(siamese.trainable_encoder_.body)
    assert siamese.score(X_test, y_test) > 0.3  # half the classes known: at most 0.5
    np.testing.assert_allclose(np.linalg.norm(siamese.embed(X_test), axis=1), 1.0, atol=1e-5)

    siamese.save(tmp_path / "model")
    loaded = IncrementalClassifier.load(tmp_path / "model")
    assert loaded.qat_ == "int8-pt2e"
    np.testing.assert_array_equal(loaded.predict(X_test), siamese.predict(X_test))
    np.testing.assert_allclose(loaded.embed(X_test), siamese.embed(X_test), atol=1e-6)
    rest = y_train >= 5
    loaded.fit_task(X_train[rest], y_train[rest])  # training continues after loading
    assert set(loaded.classes_.tolist()) == set(range(10))


def test_same_seed_gives_the_same_pt2e_model(siamese, digits_40):
    X_train, y_train, X_test, _ = digits_40
    again = IncrementalClassifier(encoder="conv4-small", qat="int8-pt2e", **FAST)
    first = y_train < 5
    again.fit_task(X_train[first], y_train[first])
    np.testing.assert_array_equal(again.predict(X_test), siamese.predict(X_test))
    np.testing.assert_allclose(again.embed(X_test), siamese.embed(X_test), atol=1e-6)


def test_softmax_classifier_with_pt2e_qat(digits_40):
    X_train, y_train, X_test, y_test = digits_40
    clf = SoftmaxClassifier(encoder="conv4-small", qat="int8-pt2e", **{**FAST, "epochs": 6})
    clf.fit_task(X_train, y_train)
    assert is_pt2e_model(clf.trainable_model_.backbone)
    assert clf.score(X_test, y_test) > 0.3  # chance is 0.1; QAT from scratch starts slowly


def test_pt2e_refuses_what_it_cannot_do(siamese, tmp_path):
    from siamcl.export import export_classifier

    with pytest.raises(TypeError, match="prepare_qat"):
        convert_qat(nn.Sequential(nn.Linear(4, 2)), "int8-pt2e")
    with pytest.raises(ValueError, match="no Conv or Linear"):
        prepare_qat(nn.Sequential(nn.ReLU()), "int8-pt2e", torch.zeros(2, 4))

    class Branching(nn.Module):  # control flow on values: torch.export cannot capture it
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(4, 2)

        def forward(self, x):
            return self.linear(x) if x.sum() > 0 else -self.linear(x)

    with pytest.raises(ValueError, match="torch.export failed"):
        prepare_qat(Branching(), "int8-pt2e", torch.ones(2, 4))
    with pytest.raises(ValueError, match="int8-pt2e"):
        export_classifier(siamese, tmp_path / "exported")


def test_torchao_registration_note_is_dropped_and_other_records_pass() -> None:
    import subprocess
    import sys

    script = (
        "import logging, siamcl.compress, torchao\n"
        "logging.getLogger('torch.utils._pytree').warning('another pytree record')\n"
    )
    command = [sys.executable, "-c", script]
    run = subprocess.run(command, check=False, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "KernelPreference" not in run.stderr
    assert "another pytree record" in run.stderr


def _fake_torchao(with_helpers: bool) -> tuple:
    """Stand-ins for torchao's ``pt2e.utils`` and ``pt2e.qat_utils``: an export that counts
    its calls and, with ``with_helpers``, the conv-BN helpers the patch also wraps."""
    import types

    calls = []

    def export(pattern, example_inputs, is_cuda=False, **kwargs):
        calls.append(pattern)
        return {"graph of": pattern.__name__, "shape": tuple(example_inputs[0].shape)}

    utils, qat_utils = types.ModuleType("fake_utils"), types.ModuleType("fake_qat_utils")
    utils._get_aten_graph_module_for_pattern = export
    qat_utils._get_aten_graph_module_for_pattern = export
    if with_helpers:
        qat_utils._fuse_conv_bn_qat_helper = lambda m, conv_fn, inputs, is_cuda: m
        qat_utils._fold_conv_bn_qat_helper = lambda m, conv_fn, inputs, is_cuda: m
    return utils, qat_utils, calls


def test_pattern_exports_are_memoised_once_per_pattern_and_shape() -> None:
    from siamcl.compress.pt2e_patterns import patch_pattern_exports

    utils, qat_utils, calls = _fake_torchao(with_helpers=True)
    assert patch_pattern_exports(utils, qat_utils)
    export = utils._get_aten_graph_module_for_pattern
    assert qat_utils._get_aten_graph_module_for_pattern is export

    def pattern(x):
        return x + 1

    first = export(pattern, (torch.zeros(2, 3),))
    again = export(pattern, (torch.ones(2, 3),))  # same shapes: answered from the cache
    assert first == again and first is not again  # callers may edit their copy
    export(pattern, (torch.zeros(4, 3),))
    assert len(calls) == 2
    assert patch_pattern_exports(utils, qat_utils)
    assert utils._get_aten_graph_module_for_pattern is export  # not wrapped twice


def test_the_installed_torchao_has_its_pattern_exports_memoised() -> None:
    from torchao.quantization.pt2e import qat_utils, utils

    from siamcl.compress.pt2e_patterns import cache_pattern_exports

    cache_pattern_exports()  # torchao renaming its helpers would make conversion 2x slower
    for module in (utils, qat_utils):
        assert module._get_aten_graph_module_for_pattern.siamcl_cached


def test_a_torchao_without_the_private_helpers_is_left_alone(caplog) -> None:
    import logging

    from siamcl.compress.pt2e_patterns import patch_pattern_exports

    utils, qat_utils, _ = _fake_torchao(with_helpers=False)
    export = utils._get_aten_graph_module_for_pattern
    with caplog.at_level(logging.DEBUG, logger="siamcl.compress.pt2e_patterns"):
        assert not patch_pattern_exports(utils, qat_utils)
    assert utils._get_aten_graph_module_for_pattern is export
    assert qat_utils._get_aten_graph_module_for_pattern is export
    assert "fake_qat_utils._fuse_conv_bn_qat_helper" in caplog.text


def test_fake_quantization_restarts_ranges_observed_in_float_epochs(trained):
    prepared = copy.deepcopy(trained[1]).train()
    schedule_qat(prepared, 0, 3)  # float epochs observe a network still learning
    prepared(torch.randn(32, 1, 8, 8))
    schedule_qat(prepared, 2, 3)
    batch = 3 + torch.rand(32, 1, 8, 8)  # in [3, 4): far from the rows seen before
    prepared(batch)

    ranges = [
        (float(m.activation_post_process.min_val), float(m.activation_post_process.max_val))
        for m in prepared.modules()
        if hasattr(m, "fake_quant_enabled") and m.activation_post_process.min_val.numel() == 1
    ]
    # the input's range is this batch's alone: nothing of the float epochs' is averaged in
    assert (pytest.approx(float(batch.min())), pytest.approx(float(batch.max()))) in ranges
