"""Mixed-precision training: bfloat16 forward passes, float32 objective, checked choices."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from siamcl import IncrementalClassifier
from siamcl.baselines import SoftmaxClassifier
from siamcl.losses import CrossEntropyTerm, Objective
from siamcl.training import Batch, ShuffledBatches, TrainingLoop, adam, train_step
from siamcl.training import precision as precision_module
from siamcl.training.precision import native_bf16, resolve_precision


@pytest.fixture
def quiet():
    """bfloat16 asked for on a CPU that emulates it warns; the tests here know."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="bfloat16 is not native")
        yield


def test_precision_names_resolve_and_bad_ones_are_refused(monkeypatch):
    assert resolve_precision("fp32", "cpu") is None
    assert resolve_precision("auto", "cpu") == (torch.bfloat16 if native_bf16("cpu") else None)
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp16", "cpu")
    monkeypatch.setattr(precision_module, "_cpu_bf16", lambda: False)
    assert resolve_precision("auto", "cpu") is None  # emulated: auto keeps float32
    with pytest.warns(UserWarning, match="bfloat16 is not native on cpu"):
        assert resolve_precision("bf16", "cpu") == torch.bfloat16
    monkeypatch.setattr(precision_module, "_cpu_bf16", lambda: True)
    assert resolve_precision("auto", "cpu") == torch.bfloat16


def test_train_step_runs_the_forward_in_bfloat16_and_the_objective_in_float32():
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    seen = {}

    def record(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        seen["layer"] = output.dtype

    model[0].register_forward_hook(record)

    def objective(outputs: torch.Tensor, batch: Batch) -> torch.Tensor:
        seen["objective"] = outputs.dtype
        return nn.functional.cross_entropy(outputs, batch.labels)

    batch = Batch(torch.randn(16, 6), torch.randint(0, 3, (16,)))
    optimizer = torch.optim.Adam(model.parameters())
    loss = train_step(model, objective, optimizer, batch, autocast_dtype=torch.bfloat16)
    assert seen == {"layer": torch.bfloat16, "objective": torch.float32}
    assert loss.dtype == torch.float32 and model[0].weight.dtype == torch.float32
    assert model[0].weight.grad is None or model[0].weight.grad.dtype == torch.float32
    assert not torch.is_autocast_enabled("cpu")  # the context closed with the step


def test_loop_in_mixed_precision_trains_a_model(quiet):
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(200, 5, generator=generator)
    labels = (inputs[:, 0] > 0).long().numpy()
    model = nn.Linear(5, 2)
    objective = Objective([("cross_entropy", 1.0, CrossEntropyTerm())])
    loop = TrainingLoop(epochs=20, optimizer=adam(0.05), precision="bf16")
    result = loop.run(model, objective, ShuffledBatches(inputs, labels, 32), generator)
    assert result.losses[-1] < result.losses[0]
    assert (model(inputs).argmax(1).numpy() == labels).mean() > 0.9
    with pytest.raises(ValueError, match="precision must be one of"):
        TrainingLoop(precision="half").run(
            model, objective, ShuffledBatches(inputs, labels, 32), generator
        )


def test_learners_train_in_bfloat16_above_chance_and_repeat(digits_40, quiet):
    X, y, X_test, y_test = digits_40
    predictions = []
    for _ in range(2):
        clf = IncrementalClassifier(
            encoder="conv4", epochs=3, memory_per_class=0, precision="bf16", seed=3
        )
        clf.fit_task(X, y)
        predictions.append(clf.predict(X_test))
    assert np.mean(predictions[0] == y_test) > 0.7  # ten classes: chance is 0.1
    np.testing.assert_array_equal(predictions[0], predictions[1])  # same seed, same model
    assert {p.dtype for p in clf.encoder_.parameters()} == {torch.float32}  # weights stay fp32
    softmax = SoftmaxClassifier(epochs=6, memory_per_class=0, precision="bf16", seed=3)
    softmax.fit_task(X, y)
    assert softmax.score(X_test, y_test) > 0.5


@pytest.mark.parametrize("learner", [IncrementalClassifier, SoftmaxClassifier])
def test_learners_refuse_an_unknown_precision(learner, digits_40):
    X, y, _, _ = digits_40
    with pytest.raises(ValueError, match=r"precision must be one of \['fp32', 'bf16', 'auto'\]"):
        learner(epochs=1, precision="float16").fit_task(X, y)


def test_a_teacher_runs_in_the_students_precision_and_answers_in_float32():
    from siamcl.compress.teachers import FrozenTeacher

    network, seen = nn.Linear(6, 4), []
    network.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    inputs = torch.randn(3, 6)
    assert FrozenTeacher(network)(inputs).dtype == torch.float32
    mixed = FrozenTeacher(network, autocast_dtype=torch.bfloat16)(inputs)
    assert seen == [torch.float32, torch.bfloat16] and mixed.dtype == torch.float32
    assert not torch.is_autocast_enabled("cpu")


def test_a_second_task_distils_from_the_previous_encoder_in_bfloat16(digits_40, quiet):
    X, y, X_test, y_test = digits_40
    clf = IncrementalClassifier(encoder="conv4", epochs=2, precision="bf16", seed=0)
    first, second = y < 5, y >= 5
    clf.fit_task(X[first], y[first])
    previous = next(m for m in clf.encoder_.modules() if isinstance(m, nn.Conv2d))
    seen = set()

    def record(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if module is previous:  # the task-1 encoder itself, not the copy task 2 trains
            seen.add(output.dtype)

    previous.register_forward_hook(record)
    clf.fit_task(X[second], y[second])
    assert torch.bfloat16 in seen  # the distillation targets' forward ran mixed-precision
    assert np.mean(clf.predict(X_test) == y_test) > 0.5  # ten classes: chance is 0.1


def test_result_records_name_the_cpu_instructions_bf16_and_int8_depend_on():
    from siamcl.reporting.records import machine_info, record_markdown

    machine = machine_info()
    assert machine["cpu_bf16_native"] is native_bf16("cpu")
    assert machine["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    line = next(x for x in record_markdown({"machine": machine}).splitlines() if "Machine" in x)
    assert ("bfloat16 native" if machine["cpu_bf16_native"] else "bfloat16 emulated") in line
    assert ("int8 with VNNI" if machine["cpu_int8_vnni"] else "int8 without VNNI") in line
    assert f"({machine['cpu_capability']}, bfloat16" in line
    older = {k: v for k, v in machine.items() if not k.startswith("cpu_") or k == "cpu_count"}
    older_line = record_markdown({"machine": older})  # a record written before these fields
    assert "VNNI" not in older_line and "bfloat16" not in older_line and "CPUs" in older_line


@pytest.mark.parametrize(
    ("learner", "epochs"), [(IncrementalClassifier, 2), (SoftmaxClassifier, 10)]
)
def test_qat_trains_in_float32_auto_says_so_and_bf16_is_refused_before_training(
    learner, epochs, digits_40
):
    from siamcl.training import precision_with_qat

    X, y, _, _ = digits_40
    with pytest.raises(ValueError, match="precision='bf16' cannot be combined with qat='int8'"):
        learner(epochs=1, qat="int8", precision="bf16").fit_task(X, y)
    assert precision_with_qat("auto", "int8") == "fp32"
    assert precision_with_qat("bf16", None) == "bf16"
    clf = learner(epochs=epochs, qat="int8", precision="auto", memory_per_class=0, seed=0)
    clf.fit_task(X, y)  # fake quantization ran in float32, whatever the CPU
    assert clf.score(X, y) > 0.3  # ten classes: chance is 0.1


@pytest.fixture
def conv_dtypes():
    """(training mode, output dtype) of every Conv2d forward while the fixture is open."""
    seen: list[tuple[bool, torch.dtype]] = []

    def record(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if isinstance(module, nn.Conv2d):
            seen.append((module.training, output.dtype))

    handle = nn.modules.module.register_module_forward_hook(record)
    yield seen
    handle.remove()


def test_embed_in_batches_runs_under_autocast_and_answers_in_float32(quiet):
    from siamcl.encoders import build_encoder
    from siamcl.training import embed_in_batches

    torch.manual_seed(0)
    encoder = build_encoder("conv4", (1, 16, 16), 32)
    inputs = torch.randn(40, 1, 16, 16)
    full = embed_in_batches(encoder, inputs)
    mixed = embed_in_batches(encoder, inputs, autocast_dtype=torch.bfloat16)
    assert full.dtype == mixed.dtype == np.float32
    cosines = (
        np.sum(full * mixed, axis=1) / np.linalg.norm(full, axis=1) / np.linalg.norm(mixed, axis=1)
    )
    assert cosines.min() > 0.99 and not np.allclose(full, mixed, atol=1e-6)  # rounded, not lost
    assert not torch.is_autocast_enabled("cpu")


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_every_embedding_pass_runs_in_the_learners_precision(
    precision, digits_40, conv_dtypes, quiet
):
    X, y, X_test, _ = digits_40
    expected = torch.bfloat16 if precision == "bf16" else torch.float32
    clf = IncrementalClassifier(encoder="conv4", epochs=1, precision=precision, seed=0)
    clf.fit_task(X[y < 5], y[y < 5])
    clf.fit_task(X[y >= 5], y[y >= 5])  # herding, the memory's prototypes, the teacher
    clf.add_classes(X_test[:3], np.array([10, 10, 10]))
    clf.predict(X_test)
    softmax = SoftmaxClassifier(epochs=1, memory_per_class=0, precision=precision, seed=0)
    softmax.fit_task(X, y)
    softmax.predict(X_test)
    embedding_passes = {dtype for training, dtype in conv_dtypes if not training}
    assert embedding_passes == {expected}
    assert {dtype for training, dtype in conv_dtypes if training} == {expected}


def test_forward_dtype_keeps_qat_in_float32():
    from siamcl.training import forward_dtype

    assert forward_dtype("auto", "int8", "cpu") is None  # the converted model embeds in fp32
    assert forward_dtype("fp32", None, "cpu") is None
    with pytest.raises(ValueError, match="cannot be combined with qat"):
        forward_dtype("bf16", "int8", "cpu")
