"""The one training loop: what every learner composes, seeds, objectives and optimizers."""

from __future__ import annotations

import functools
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from pytorch_metric_learning import losses

from siamcl import IncrementalClassifier
from siamcl.baselines import SoftmaxClassifier
from siamcl.data import class_incremental, load_dataset
from siamcl.losses import CrossEntropyTerm, Objective
from siamcl.training import (
    Batch,
    EnergyBudget,
    Patience,
    ShuffledBatches,
    StepBudget,
    TargetScore,
    TrainingLoop,
    adam,
)


@pytest.fixture(scope="module")
def digits():
    X, y, X_test, y_test = load_dataset("digits")
    rows = np.concatenate([np.flatnonzero(y == c)[:30] for c in range(6)])
    return X[rows], y[rows], X_test[np.isin(y_test, range(6))], y_test[np.isin(y_test, range(6))]


FAST = {"epochs": 2, "batch_size": 32, "flops": "off", "memory_per_class": 5}


def _softmax_run(X, y, X_test, seed=0):
    clf = SoftmaxClassifier(**FAST, seed=seed)
    for task in class_incremental(X, y, n_tasks=3, seed=0):
        clf.fit_task(task.X, task.y)
    return clf.predict(X_test)


def test_softmax_baseline_repeats_whatever_the_global_generator_holds(digits):
    X, y, X_test, _ = digits
    torch.manual_seed(1)
    first = _softmax_run(X, y, X_test)
    torch.manual_seed(2)  # the head's new rows must not come from torch's global generator
    torch.rand(1000)
    second = _softmax_run(X, y, X_test)
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, _softmax_run(X, y, X_test, seed=1))


SCRIPT = """
import sys, numpy as np, torch
from siamcl import IncrementalClassifier
from siamcl.baselines import SoftmaxClassifier
from siamcl.data import class_incremental, load_dataset
torch.manual_seed(int(sys.argv[1]))
X, y, X_test, _ = load_dataset("digits")
keep = np.concatenate([np.flatnonzero(y == c)[:20] for c in range(4)])
X, y = X[keep], y[keep]
for learner in (IncrementalClassifier, SoftmaxClassifier):
    clf = learner(epochs=1, batch_size=32, flops="off", memory_per_class=3, seed=0)
    for task in class_incremental(X, y, n_tasks=2, seed=0):
        clf.fit_task(task.X, task.y)
    print(learner.__name__, clf.predict(X_test[:200]).tolist())
"""


def test_learners_repeat_in_fresh_processes():
    outputs = [
        subprocess.run(
            [sys.executable, "-c", SCRIPT, str(global_seed)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for global_seed in (0, 5)
    ]
    assert outputs[0] == outputs[1]
    assert "IncrementalClassifier" in outputs[0] and "SoftmaxClassifier" in outputs[0]


def test_proxy_loss_parameters_are_trained(digits):
    X, y, X_test, y_test = digits
    proxy = losses.ProxyAnchorLoss(num_classes=10, embedding_size=32)
    before = proxy.proxies.detach().clone()
    clf = IncrementalClassifier(loss=proxy, embedding_dim=32, seed=0, **FAST)
    clf.fit_task(X, y)
    trained = clf.metric_loss_.loss.proxies.detach()
    assert not torch.allclose(trained, before), "the proxies never moved"
    np.testing.assert_array_equal(proxy.proxies.detach(), before)  # the parameter is not changed
    assert clf.score(X_test, y_test) > 0.5  # six classes: chance is 1/6


def test_cross_batch_memory_is_accepted(digits):
    X, y, X_test, y_test = digits
    memory = losses.CrossBatchMemory(losses.ContrastiveLoss(), embedding_size=32, memory_size=64)
    clf = IncrementalClassifier(loss=memory, embedding_dim=32, seed=0, **FAST)
    clf.fit_task(X, y)
    assert clf.score(X_test, y_test) > 0.4


def test_optimizer_factory_is_honoured(digits):
    X, y, _, _ = digits
    made = []

    def sgd(groups):
        made.append(torch.optim.SGD(groups, lr=0.05, momentum=0.9))
        return made[-1]

    clf = IncrementalClassifier(optimizer=sgd, seed=0, **FAST)
    clf.fit_task(X, y)
    assert len(made) == 1 and made[0].state, "the SGD given was not the one that trained"
    with pytest.raises(ValueError, match="optimizer must be None or a callable"):
        IncrementalClassifier(optimizer="sgd", **FAST).fit_task(X, y)
    partial = functools.partial(torch.optim.SGD, lr=0.05)
    softmax = SoftmaxClassifier(optimizer=partial, seed=0, **FAST)
    softmax.fit_task(X, y)
    assert softmax.score(X, y) > 0.3


def test_loop_trains_a_model_on_a_shuffled_source():
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(200, 5, generator=generator)
    labels = (inputs[:, 0] > 0).long().numpy()
    model = torch.nn.Linear(5, 2)
    with torch.no_grad():  # the same start every call
        model.weight.copy_(torch.randn(2, 5, generator=torch.Generator().manual_seed(1)))
        model.bias.zero_()
    objective = Objective([("cross_entropy", 1.0, CrossEntropyTerm())])
    result = TrainingLoop(epochs=20, optimizer=adam(0.05)).run(
        model, objective, ShuffledBatches(inputs, labels, 32), generator
    )
    assert len(result.losses) == 20 and result.stopped_by == "epochs (20)"
    accuracy = (model(inputs).argmax(1).numpy() == labels).mean()
    assert accuracy > 0.9
    assert not model.training


def test_objective_drops_zero_weights_and_needs_a_term():
    term = CrossEntropyTerm()
    objective = Objective([("a", 1.0, term), ("b", 0.0, CrossEntropyTerm())])
    assert list(objective.terms) == ["a"]
    logits, labels = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    value = objective(logits, Batch(logits, labels))
    assert torch.isclose(value, torch.nn.functional.cross_entropy(logits, labels))
    with pytest.raises(ValueError, match="at least one term"):
        Objective([("b", 0.0, term)])


def _tiny_loop(**options):
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(64, 5, generator=generator)
    labels = (inputs[:, 0] > 0).long().numpy()
    model = torch.nn.Linear(5, 2)
    with torch.no_grad():  # the same start every call
        model.weight.copy_(torch.randn(2, 5, generator=torch.Generator().manual_seed(1)))
        model.bias.zero_()
    objective = Objective([("cross_entropy", 1.0, CrossEntropyTerm())])
    loop = TrainingLoop(epochs=10, **options)
    return loop.run(model, objective, ShuffledBatches(inputs, labels, 16), generator)


def test_stopping_policies_end_training_and_say_why():
    assert _tiny_loop().stopped_by == "epochs (10)"
    scores = iter([0.5, 0.6, 0.6, 0.6, 0.9, 0.9])
    result = _tiny_loop(validate=lambda model: next(scores), stopping=[Patience(2)])
    assert result.stopped_by == "no improvement for 2 epochs" and result.progress.epochs == 4
    assert result.progress.scores == [0.5, 0.6, 0.6, 0.6]
    scores = iter([0.5, 0.8, 0.9])
    result = _tiny_loop(validate=lambda model: next(scores), stopping=[TargetScore(0.75)])
    assert result.stopped_by == "target score (0.75) reached" and result.progress.epochs == 2
    result = _tiny_loop(stopping=[StepBudget(9)])
    assert result.stopped_by == "step budget (9)" and result.progress.steps == 12  # 4 a epoch
    result = _tiny_loop(stopping=[EnergyBudget(0.0)])
    assert result.stopped_by == "energy budget (0 J)" and result.progress.epochs == 1


def test_a_learner_stops_at_its_validation_target_and_reports_it():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 12)) * 4
    y = np.repeat(np.arange(4), 30)
    X = (centres[y] + rng.normal(size=(len(y), 12))).astype(np.float32)
    early = {"encoder": "mlp", "epochs": 30, "batch_size": 32, "flops": "off", "seed": 0}
    early.update(validation_fraction=0.2, stopping=[TargetScore(0.9)])
    for learner in (IncrementalClassifier, SoftmaxClassifier):  # softmax: scored by its head
        clf = learner(**early)
        report = clf.fit_task(X, y)
        assert report.stopped_by == "target score (0.9) reached"
        assert report.extra["epochs_run"] < 30 and report.extra["validation_score"] >= 0.9
        assert report.extra["validation_cpu_s"] > 0 and report.extra["rows_trained"] == 96
        assert clf.score(X, y) > 0.5  # chance is 0.25
    plain = IncrementalClassifier(epochs=2, batch_size=32, flops="off", seed=0).fit_task(X, y)
    assert plain.stopped_by == "epochs (2)" and "validation_score" not in plain.extra
    with pytest.raises(ValueError, match="validation_fraction must be in"):
        IncrementalClassifier(validation_fraction=0.7).fit_task(X, y)
    with pytest.raises(ValueError, match="Patience stops on validation"):
        SoftmaxClassifier(stopping=[Patience(2)]).fit_task(X, y)
    with pytest.raises(TypeError, match=r"a list of policies, e.g. \[StepBudget\(steps=9\)\]"):
        IncrementalClassifier(stopping=StepBudget(9)).fit_task(X, y)
    for waits in (TargetScore(0.9), Patience(2)):  # with no scores they would never stop
        unscored = IncrementalClassifier(stopping=[StepBudget(9), waits], flops="off")
        with pytest.raises(ValueError, match=f"{type(waits).__name__} stops on validation"):
            unscored.fit_task(X, y)
        assert not unscored.is_fitted


class _BusyMonitor:
    """Records what the loop reports after each epoch, then burns CPU that must not count."""

    def __init__(self):
        self.seen = []

    def on_epoch_end(self, model, progress):
        self.seen.append((progress.epochs, progress.steps, progress.cpu_s, progress.energy_j))
        start = time.process_time()
        while time.process_time() - start < 0.2:
            pass


def test_epoch_end_callbacks_see_progress_and_their_time_is_not_training():
    monitor = _BusyMonitor()
    result = _tiny_loop(callbacks=[monitor])
    assert [seen[:2] for seen in monitor.seen] == [(e, 4 * e) for e in range(1, 11)]
    cpu = [seen[2] for seen in monitor.seen]
    assert cpu == sorted(cpu)
    assert cpu[-1] < 0.2  # ten epochs of a linear model; the monitor burnt 2 s of CPU
    assert result.progress.energy_j == monitor.seen[-1][3] > 0


class _CheckingMonitor(_BusyMonitor):
    """Asks for checks inside each epoch; records checks and epoch ends in order, burns CPU
    at each."""

    def __init__(self, checks_per_epoch):
        super().__init__()
        self.checks_per_epoch, self.order = checks_per_epoch, []

    def on_check(self, model, progress):
        assert model.training  # handed over as it trains, every time:
        model.eval()  # the loop puts it back
        self.order.append(("check", progress.steps, progress.steps / progress.steps_per_epoch))
        super().on_epoch_end(model, progress)

    def on_epoch_end(self, model, progress):
        self.order.append(("epoch end", progress.steps, progress.epochs))


def test_checks_inside_an_epoch_see_progress_cost_nothing_and_change_no_training():
    monitor = _CheckingMonitor(checks_per_epoch=3)  # 4 steps an epoch: checks at 1, 3, 4
    with_checks = _tiny_loop(callbacks=[monitor])
    assert monitor.order[:5] == [
        ("check", 1, 0.25),
        ("check", 3, 0.75),
        ("check", 4, 1.0),
        ("epoch end", 4, 1),
        ("check", 5, 1.25),
    ]
    assert len(monitor.order) == 40
    cpu = [seen[2] for seen in monitor.seen]
    assert cpu == sorted(cpu) and cpu[-1] < 0.2  # the monitor burnt 6 s of CPU
    plain = _tiny_loop()
    assert with_checks.losses == plain.losses  # same batches, same steps, same model
    assert _tiny_loop(callbacks=[_CheckingMonitor(99)]).progress.steps == 40  # at most a step


def test_the_loop_validates_and_stops_inside_an_epoch_when_asked_to():
    scores = iter([0.5, 0.6, 0.8])  # 4 steps an epoch, checked after 2 and 4
    result = _tiny_loop(
        checks_per_epoch=2, validate=lambda model: next(scores), stopping=[TargetScore(0.75)]
    )
    assert result.stopped_by == "target score (0.75) reached"
    assert result.progress.steps == 6 and result.progress.epochs == 1  # half-way through two
    assert result.progress.scores == [0.5, 0.6, 0.8] and len(result.losses) == 2
    monitor = _CheckingMonitor(checks_per_epoch=4)  # its own checks: every step
    scores = iter([0.6, 0.5, 0.5, 0.5, 0.5])
    result = _tiny_loop(
        checks_per_epoch=2,
        callbacks=[monitor],
        validate=lambda model: next(scores),
        stopping=[Patience(2)],  # two epochs: four scores
    )
    assert result.stopped_by == "no improvement for 2 epochs" and result.progress.steps == 10
    assert [steps for where, steps, _ in monitor.order if where == "check"] == list(range(1, 11))
    assert _tiny_loop(checks_per_epoch=4, stopping=[StepBudget(5)]).progress.steps == 5


def test_a_learner_stops_at_its_target_inside_an_epoch():
    X, y, _, _ = load_dataset("digits")  # enough rows for checks a few steps apart
    for learner in (IncrementalClassifier, SoftmaxClassifier):
        options = {"validation_fraction": 0.2, "stopping": [TargetScore(0.5)], "epochs": 3}
        quarter = learner(**{**FAST, **options}, checks_per_epoch=4).fit_task(X, y)
        whole = learner(**{**FAST, **options}).fit_task(X, y)
        assert quarter.stopped_by == whole.stopped_by == "target score (0.5) reached"
        assert quarter.extra["epochs_run"] < whole.extra["epochs_run"]
        assert quarter.extra["epochs_run"] % 1 != 0  # part of an epoch
        assert quarter.extra["validation_score"] >= 0.5 and quarter.energy_j < whole.energy_j
    with pytest.raises(ValueError, match="checks_per_epoch"):
        IncrementalClassifier(checks_per_epoch=0).fit_task(X, y)


def test_learners_pass_their_callbacks_to_the_loop(digits):
    X, y, _, _ = digits
    for learner in (IncrementalClassifier, SoftmaxClassifier):
        monitor = _BusyMonitor()
        learner(**FAST, callbacks=[monitor]).fit_task(X, y)
        assert [seen[0] for seen in monitor.seen] == [1, 2]
