"""Frozen leading layers: which layers freeze, that they stay as they were, and the checks."""

import numpy as np
import pytest
import torch
from torch import nn

from siamcl import IncrementalClassifier
from siamcl.data import class_incremental, load_dataset
from siamcl.encoders import build_encoder
from siamcl.learners import SoftmaxClassifier
from siamcl.losses import CrossEntropyTerm, Objective
from siamcl.training import ShuffledBatches, TrainingLoop
from siamcl.training.freezing import freeze_leading_layers, hold_frozen_norms, leading_layers


@pytest.fixture(scope="module")
def two_tasks():
    """mnist5k digits 0-3 as two tasks of two classes, 60 training images a class."""
    X_train, y_train, X_test, y_test = load_dataset("mnist5k")
    keep = np.concatenate([np.flatnonzero(y_train == c)[:60] for c in range(4)])
    tasks = class_incremental(X_train[keep], y_train[keep], n_tasks=2, class_order=[0, 1, 2, 3])
    test = np.isin(y_test, range(4))
    return tasks, X_test[test], y_test[test]


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_the_first_layers_stop_requiring_gradients_and_the_rest_do_not():
    encoder = build_encoder("conv4", (1, 16, 16))
    freeze_leading_layers(encoder, 2)
    layers = leading_layers(encoder)
    assert [any(p.requires_grad for p in layer.parameters()) for layer in layers[:2]] == [
        False,
        False,
    ]
    assert all(p.requires_grad for layer in layers[2:] for p in layer.parameters())
    assert freeze_leading_layers(encoder, 0) is encoder  # 0: nothing to do


def test_a_frozen_batch_norm_keeps_its_statistics_while_the_model_trains():
    encoder = build_encoder("conv4", (1, 16, 16))
    freeze_leading_layers(encoder, 1)
    frozen_norm, trained_norm = leading_layers(encoder)[0][1], leading_layers(encoder)[1][1]
    before = frozen_norm.running_mean.clone(), trained_norm.running_mean.clone()
    hold_frozen_norms(encoder.train())
    assert not frozen_norm.training and trained_norm.training
    encoder(torch.randn(8, 1, 16, 16) * 3 + 1)
    assert torch.equal(frozen_norm.running_mean, before[0])
    assert not torch.equal(trained_norm.running_mean, before[1])


def test_the_training_loop_leaves_frozen_layers_as_they_were():
    encoder = build_encoder("conv4", (1, 16, 16))
    freeze_leading_layers(encoder, 2)
    frozen, trained = nn.Sequential(*leading_layers(encoder)[:2]), leading_layers(encoder)[-1]
    before_frozen, before_trained = _state(frozen), _state(trained)
    generator = torch.Generator().manual_seed(0)
    X = torch.randn(32, 1, 16, 16, generator=generator)
    batches = ShuffledBatches(X, np.arange(32) % 4, batch_size=16)
    objective = Objective([("cross_entropy", 1.0, CrossEntropyTerm())])
    TrainingLoop(epochs=2).run(encoder, objective, batches, generator)
    assert all(torch.equal(v, _state(frozen)[k]) for k, v in before_frozen.items())
    assert not torch.equal(before_trained["weight"], trained.weight)
    assert all(p.grad is None for p in frozen.parameters())  # backward stopped above them


def test_later_tasks_train_only_the_layers_above_the_frozen_ones(two_tasks):
    tasks, X_test, y_test = two_tasks
    settings = {"epochs": 2, "batch_size": 32, "memory_per_class": 10, "flops": "off"}
    clf = IncrementalClassifier(**settings, input_size=16, frozen_layers=1, seed=0)
    clf.fit_task(tasks[0].X, tasks[0].y)
    first_block, last = (
        leading_layers(clf.trainable_encoder_)[0],
        leading_layers(clf.trainable_encoder_)[-1],
    )
    after_first = _state(first_block), _state(last)
    fresh = leading_layers(clf.new_encoder(clf.preprocessor_.input_shape))[0]
    assert not torch.equal(fresh[0].weight, first_block[0].weight)  # the first task trains it
    clf.fit_task(tasks[1].X, tasks[1].y)
    first_block = leading_layers(clf.trainable_encoder_)[0]
    last = leading_layers(clf.trainable_encoder_)[-1]
    assert all(torch.equal(v, _state(first_block)[k]) for k, v in after_first[0].items())
    assert not torch.equal(after_first[1]["weight"], last.weight)
    assert clf.score(X_test, y_test) > 0.7  # four classes: chance is 0.25


def test_a_loaded_classifier_keeps_freezing(two_tasks, tmp_path):
    tasks, X_test, _ = two_tasks
    settings = {"epochs": 1, "batch_size": 32, "memory_per_class": 10, "flops": "off"}
    clf = IncrementalClassifier(**settings, input_size=16, frozen_layers=1, seed=0)
    clf.fit_task(tasks[0].X, tasks[0].y)
    clf.save(tmp_path / "model")
    loaded = IncrementalClassifier.load(tmp_path / "model")
    assert loaded.get_params()["frozen_layers"] == 1
    first_block = _state(leading_layers(loaded.trainable_encoder_)[0])
    loaded.fit_task(tasks[1].X, tasks[1].y)
    after = _state(leading_layers(loaded.trainable_encoder_)[0])
    assert all(torch.equal(v, after[k]) for k, v in first_block.items())
    clf.fit_task(tasks[1].X, tasks[1].y)  # the same stream without the save and load
    np.testing.assert_array_equal(clf.predict(X_test), loaded.predict(X_test))


def test_frozen_layers_are_refused_where_they_cannot_apply(two_tasks):
    tasks = two_tasks[0]
    X, y = tasks[0].X, tasks[0].y
    with pytest.raises(ValueError, match="at most 6 can be frozen"):
        IncrementalClassifier(epochs=1, frozen_layers=7, flops="off").fit_task(X, y)
    with pytest.raises(ValueError, match="frozen_layers freezes a float encoder"):
        IncrementalClassifier(epochs=1, frozen_layers=1, qat="int8", flops="off").fit_task(X, y)
    with pytest.raises(ValueError, match="frozen_layers"):
        IncrementalClassifier(epochs=1, frozen_layers=-1).fit_task(X, y)

    class Custom(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(784, 8)

        def forward(self, x):
            return self.linear(x.flatten(1))

    with pytest.raises(TypeError, match=r"nn\.Sequential of layers"):
        IncrementalClassifier(encoder=Custom(), epochs=1, frozen_layers=1).fit_task(X, y)


def test_the_standard_network_freezes_its_backbone_the_same_way(two_tasks):
    tasks, X_test, y_test = two_tasks
    settings = {"epochs": 2, "batch_size": 32, "memory_per_class": 10, "flops": "off"}
    clf = SoftmaxClassifier(**settings, input_size=(16, 16), frozen_layers=1, seed=0)
    clf.fit_task(tasks[0].X, tasks[0].y)
    first_block = leading_layers(clf.trainable_model_.backbone)[0]
    assert all(p.requires_grad for p in first_block.parameters())  # the first task trains it
    after_first, head = _state(first_block), clf.trainable_model_.head.weight.detach().clone()
    clf.fit_task(tasks[1].X, tasks[1].y)
    first_block = leading_layers(clf.trainable_model_.backbone)[0]
    assert not any(p.requires_grad for p in first_block.parameters())
    assert all(torch.equal(v, _state(first_block)[k]) for k, v in after_first.items())
    assert not torch.equal(head, clf.trainable_model_.head.weight[: len(head)])  # trained on
    assert clf.score(X_test, y_test) > 0.5  # four classes: chance is 0.25
    X, y = tasks[0].X, tasks[0].y
    with pytest.raises(ValueError, match="at most 6 can be frozen"):
        SoftmaxClassifier(epochs=1, frozen_layers=7, flops="off").fit_task(X, y)
    with pytest.raises(ValueError, match="frozen_layers freezes a float backbone"):
        SoftmaxClassifier(epochs=1, frozen_layers=1, qat="int8", flops="off").fit_task(X, y)


def test_frozen_layers_run_once_a_batch_for_the_student_and_the_teacher(two_tasks, monkeypatch):
    from siamcl.learners import siamese_task

    tasks, X_test, _ = two_tasks
    settings = {"epochs": 1, "batch_size": 32, "memory_per_class": 10, "flops": "off"}

    def stream(share: bool) -> tuple[IncrementalClassifier, int]:
        if not share:  # the student and the previous encoder each run the frozen block
            monkeypatch.setattr(siamese_task, "shared_frozen_layers", lambda clf, ranks: 0)
        clf = IncrementalClassifier(**settings, input_size=(16, 16), frozen_layers=1, seed=0)
        clf.fit_task(tasks[0].X, tasks[0].y)
        teacher_block = leading_layers(clf.encoder_)[0]
        calls = []  # a hook is copied with the module: count the teacher's block's own calls
        hook = teacher_block.register_forward_hook(lambda block, *_: calls.append(block))
        clf.fit_task(tasks[1].X, tasks[1].y)
        hook.remove()
        monkeypatch.undo()
        return clf, sum(block is teacher_block for block in calls)

    shared, teacher_calls = stream(share=True)
    separate, separate_calls = stream(share=False)
    assert teacher_calls == 0 and separate_calls == shared.reports[-1].extra["steps"]
    np.testing.assert_array_equal(shared.embed(X_test), separate.embed(X_test))  # exactly
    np.testing.assert_array_equal(shared.predict(X_test), separate.predict(X_test))
