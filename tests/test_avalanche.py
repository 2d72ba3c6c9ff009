"""Tests of siamcl's Avalanche integration: strategy, energy metrics, stream conversion."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from avalanche.benchmarks import nc_benchmark
from avalanche.benchmarks.scenarios.supervised import class_incremental_benchmark
from avalanche.benchmarks.utils import (
    DataAttribute,
    as_classification_dataset,
    make_avalanche_dataset,
)
from avalanche.core import SupervisedPlugin
from avalanche.evaluation.metrics import accuracy_metrics
from avalanche.training import Naive, Replay
from avalanche.training.plugins import EvaluationPlugin
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from siamcl.data import class_incremental, load_dataset
from siamcl.encoders import build_encoder
from siamcl.integrations.avalanche import (
    LabelledTensors,
    PrototypeModel,
    SiameseStrategy,
    TrainingCost,
    energy_metrics,
    from_avalanche,
    retained_bytes,
    to_avalanche,
)
from siamcl.integrations.avalanche_replay import with_exemplars
from siamcl.integrations.avalanche_strategy import MASK_VALUE
from siamcl.store import PrototypeStore

STREAM_ACC = "Top1_Acc_Stream/eval_phase/test_stream/Task000"
STREAM_ACC_NO_TASK = "Top1_Acc_Stream/eval_phase/test_stream"  # datasets without task labels
COST_NAMES = ("Energy_J", "CPU_s", "Wall_s", "FLOPs", "PeakRSS_MB", "Retained_B", "Samples")

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def synthetic(n_classes: int = 4, per_class: int = 12, labels=None, seed: int = 0):
    """Random uint8 8x8 images whose mean brightness depends on the class."""
    rng = np.random.default_rng(seed)
    labels = list(range(n_classes)) if labels is None else list(labels)
    y = np.repeat(np.asarray(labels, dtype=np.int64), per_class)
    X = rng.integers(0, 60, size=(len(y), 8, 8)).astype(np.uint8)
    for position, label in enumerate(labels):
        X[y == label, position % 8, :] = 250  # a bright row per class
    order = rng.permutation(len(y))
    return X[order], y[order]


def evaluator(*metrics) -> EvaluationPlugin:
    return EvaluationPlugin(accuracy_metrics(experience=True, stream=True), *metrics, loggers=[])


@pytest.fixture(scope="module")
def mnist_class_incremental():
    """The same four digits as a ``class_incremental_benchmark`` over Avalanche datasets."""
    X_train, y_train, X_test, y_test = load_dataset("mnist5k")
    train = np.concatenate([np.flatnonzero(y_train == d)[:40] for d in range(4)])
    test = np.concatenate([np.flatnonzero(y_test == d)[:30] for d in range(4)])
    return two_experience_benchmark(
        "tensor-targets",
        (as_images(X_train[train]), y_train[train]),
        (as_images(X_test[test]), y_test[test]),
    )


def as_images(X: np.ndarray) -> torch.Tensor:
    """uint8 ``[N, H, W]`` images as the float ``[N, 1, H, W]`` inputs a model takes."""
    return torch.from_numpy(X).float().div(255.0).unsqueeze(1)


def avalanche_dataset(kind: str, X: torch.Tensor, y: np.ndarray):
    """A dataset for ``class_incremental_benchmark`` built the ways Avalanche users build one."""
    labels = torch.from_numpy(y)
    if kind == "tensor":  # a plain TensorDataset: the benchmark adds task labels
        return TensorDataset(X, labels)
    if kind == "tensor-targets":  # label tensors, no task labels
        targets = DataAttribute(y.tolist(), "targets")
        return make_avalanche_dataset(TensorDataset(X, labels), data_attributes=[targets])
    return as_classification_dataset(LabelledTensors(X, y))  # int labels, no task labels


def two_experience_benchmark(kind: str, train, test):
    """Two experiences of ``train``'s classes, in sorted order, by one of four constructors."""
    (X, y), (X_test, y_test) = train, test
    classes = sorted(set(y.tolist()))
    if kind == "nc_benchmark":
        return nc_benchmark(
            LabelledTensors(X, y),
            LabelledTensors(X_test, y_test),
            n_experiences=2,
            task_labels=False,
            fixed_class_order=classes,
        )
    if kind == "to_avalanche":
        tasks = class_incremental(X, y, n_tasks=2, seed=0)
        return to_avalanche(tasks, X_test, y_test)  # samples preprocessed by a transform
    return class_incremental_benchmark(
        {"train": avalanche_dataset(kind, X, y), "test": avalanche_dataset(kind, X_test, y_test)},
        class_order=classes,
        num_experiences=2,
    )


BENCHMARK_KINDS = ("tensor", "tensor-targets", "classification", "nc_benchmark", "to_avalanche")


# -- stream conversion ------------------------------------------------------------------


@pytest.mark.parametrize("labels", [range(6), [7, 3, 42, 10, 5, 0]])
def test_round_trip_keeps_every_sample_and_label(labels):
    X, y = synthetic(6, 10, labels)
    X_test, y_test = synthetic(6, 4, labels, seed=1)
    tasks = class_incremental(X, y, n_tasks=3, seed=2)
    benchmark = to_avalanche(tasks, X_test, y_test)
    assert len(benchmark.train_stream) == 3
    back, X_back, y_back = from_avalanche(benchmark)
    for task, returned in zip(tasks, back):
        assert returned.classes == task.classes
        assert returned.X.dtype == task.X.dtype
        for label in task.classes:  # Avalanche groups by class; order within a class holds
            np.testing.assert_array_equal(returned.X[returned.y == label], task.X[task.y == label])
    for label in set(y_test.tolist()):
        np.testing.assert_array_equal(X_back[y_back == label], X_test[y_test == label])


def test_benchmark_serves_preprocessed_inputs_with_avalanche_class_ids():
    X, y = synthetic(4, 10, [9, 4, 6, 2])
    tasks = class_incremental(X, y, n_tasks=2, seed=0)
    benchmark = to_avalanche(tasks, *synthetic(4, 3, [9, 4, 6, 2], seed=1))
    sample, label, task_label = benchmark.train_stream[0].dataset[0]
    assert sample.dtype == torch.float32 and tuple(sample.shape) == (1, 8, 8)
    assert label in (0, 1) and task_label == 0  # remapped in stream order
    assert benchmark.classes_order_original_ids == [c for t in tasks for c in t.classes]


def test_to_avalanche_rejects_bad_streams():
    X, y = synthetic(4, 5)
    tasks = class_incremental(X, y, n_tasks=2, seed=0)
    with pytest.raises(ValueError, match="disjoint"):
        to_avalanche([tasks[0], tasks[0]], X, y)
    with pytest.raises(ValueError, match="no samples of classes"):
        to_avalanche(tasks, X[y != tasks[1].classes[0]], y[y != tasks[1].classes[0]])
    negative = class_incremental(X, y - 2, n_tasks=2, seed=0)
    with pytest.raises(ValueError, match="non-negative"):
        to_avalanche(negative, X, y - 2)
    with pytest.raises(ValueError, match="empty"):
        to_avalanche([], X, y)
    with pytest.raises(TypeError, match="Task"):
        to_avalanche([(X, y)], X, y)


# -- prototype model --------------------------------------------------------------------


def test_prototype_model_scores_follow_avalanche_class_ids():
    model = PrototypeModel(nn.Flatten(), temperature=0.5).eval()
    assert torch.equal(model(torch.ones(2, 3)), torch.full((2, 1), MASK_VALUE))
    store = PrototypeStore(dim=3)
    store.add(np.eye(3, dtype=np.float32)[[0, 1]], np.array([3, 1]))
    model.store = store
    queries = torch.tensor([[1.0, 0.1, 0.0], [0.0, 1.0, 0.2]])
    scores = model(queries)
    assert scores.shape == (2, 4)
    assert torch.all(scores[:, [0, 2]] == MASK_VALUE)
    assert scores.argmax(dim=1).tolist() == store.classify(model.encoder(queries).numpy()).tolist()
    assert model.train()(queries).shape == (2, 3)  # training mode: embeddings


# -- strategy and metrics ---------------------------------------------------------------


def test_siamese_strategy_learns_above_chance_in_avalanches_own_metrics(mnist_slice):
    cost = TrainingCost(flops="sample")
    strategy = SiameseStrategy(
        encoder="conv4-small",
        input_shape=(1, 28, 28),
        train_epochs=3,
        train_mb_size=32,
        memory_per_class=5,
        evaluator=evaluator(cost),
        seed=0,
    )
    results = {}
    for experience in mnist_slice.train_stream:
        results.update(strategy.train(experience))
        results.update(strategy.eval(mnist_slice.test_stream))
    assert results[STREAM_ACC] >= 0.6  # four digits: chance is 0.25
    assert sorted(strategy.store.classes.tolist()) == [0, 1, 2, 3]
    assert len(strategy.memory) == 4 * 5
    for level, suffix in (("Exp", "/Exp001"), ("Stream", "")):
        for name in COST_NAMES:
            key = f"{name}_{level}/train_phase/train_stream/Task000{suffix}"
            assert results[key] > 0, key
    assert results["Retained_B_Stream/train_phase/train_stream/Task000"] == sum(
        strategy.retained_bytes().values()
    )
    assert strategy.retained_bytes()["replay"] == strategy.memory.nbytes
    assert len(cost.reports) == 2 and all(r.energy_j > 0 for r in cost.reports)


def test_siamese_strategy_learns_on_a_class_incremental_benchmark(mnist_class_incremental):
    benchmark = mnist_class_incremental
    strategy = SiameseStrategy(
        encoder="conv4-small",
        input_shape=(1, 28, 28),
        train_epochs=3,
        train_mb_size=32,
        memory_per_class=5,
        evaluator=evaluator(),
        seed=0,
    )
    results = {}
    for experience in benchmark.train_stream:
        results.update(strategy.train(experience))
        results.update(strategy.eval(benchmark.test_stream))
    assert results[STREAM_ACC_NO_TASK] >= 0.6  # four digits: chance is 0.25
    assert results["Top1_Acc_Exp/eval_phase/test_stream/Exp000"] >= 0.5  # first digits kept
    _, memory_labels = strategy.memory.arrays()
    assert sorted(set(memory_labels.tolist())) == [0, 1, 2, 3]
    assert len(strategy.memory) == 4 * 5
    assert sorted(strategy.store.classes.tolist()) == [0, 1, 2, 3]


class DatasetLabels(SupervisedPlugin):
    """Records the labels of each experience's training data, exemplars included."""

    def __init__(self):
        super().__init__()
        self.labels: list[list[int]] = []

    def after_train_dataset_adaptation(self, strategy, **kwargs) -> None:
        self.labels.append([int(label) for label in strategy.adapted_dataset.targets])


@pytest.mark.parametrize("kind", BENCHMARK_KINDS)
def test_siamese_strategy_replays_exemplars_on_every_benchmark_kind(kind):
    X, y = synthetic(4, 12)
    X_test, y_test = synthetic(4, 4, seed=1)
    benchmark = two_experience_benchmark(kind, (as_images(X), y), (as_images(X_test), y_test))
    torch.manual_seed(0)
    trained_on = DatasetLabels()
    strategy = SiameseStrategy(
        encoder=nn.Sequential(nn.Flatten(), nn.Linear(64, 16)),
        train_epochs=1,
        train_mb_size=8,
        memory_per_class=3,
        evaluator=evaluator(),
        plugins=[trained_on],
        seed=0,
    )
    first, second = benchmark.train_stream
    strategy.train(first)
    strategy.train(second)  # the exemplars of the first experience join the second's data
    first_classes = sorted(set(trained_on.labels[0]))
    assert len(trained_on.labels[1]) == len(second.dataset) + 2 * 3
    assert sorted(set(trained_on.labels[1][-6:])) == first_classes
    _, memory_labels = strategy.memory.arrays()
    assert sorted(set(memory_labels.tolist())) == [0, 1, 2, 3]
    assert sorted(strategy.store.classes.tolist()) == [0, 1, 2, 3]


@pytest.mark.parametrize("kind", BENCHMARK_KINDS)
def test_replayed_exemplars_batch_with_the_experiences_samples_as_stored(kind):
    X, y = synthetic(4, 6)
    benchmark = two_experience_benchmark(kind, (as_images(X), y), (as_images(X), y))
    dataset = benchmark.train_stream[1].dataset.train()
    exemplars = np.random.default_rng(0).normal(size=(3, 1, 8, 8)).astype(np.float16)
    joined = with_exemplars(dataset, exemplars, np.array([0, 1, 0])).train()
    assert list(joined.targets)[-3:] == [0, 1, 0]
    batch = next(iter(DataLoader(joined, batch_size=len(joined), collate_fn=joined.collate_fn)))
    own = next(iter(DataLoader(dataset, batch_size=2, collate_fn=dataset.collate_fn)))
    assert len(batch) == len(own)
    assert [type(part) for part in batch] == [type(part) for part in own]
    stored = torch.from_numpy(exemplars).float()
    torch.testing.assert_close(batch[0][-3:], stored)  # the benchmark's transforms not applied
    assert torch.as_tensor(batch[1][-3:]).tolist() == [0, 1, 0]


def test_siamese_strategy_trains_with_the_optimizer_given_and_the_losss_proxies(mnist_slice):
    from pytorch_metric_learning import losses

    proxy = losses.ProxyAnchorLoss(num_classes=4, embedding_size=16)
    before = proxy.proxies.detach().clone()
    encoder = build_encoder("conv4-small", (1, 28, 28), 16)
    sgd = torch.optim.SGD([*encoder.parameters(), *proxy.parameters()], lr=0.05, momentum=0.9)
    strategy = SiameseStrategy(
        encoder=encoder,
        loss=proxy,
        optimizer=sgd,
        train_epochs=1,
        train_mb_size=32,
        evaluator=evaluator(),
        seed=0,
    )
    strategy.train(mnist_slice.train_stream[0])
    assert strategy.optimizer is sgd
    assert any("momentum_buffer" in state for state in sgd.state.values())
    assert not torch.allclose(proxy.proxies.detach(), before), "the proxies never moved"


def test_energy_metrics_report_for_a_plain_avalanche_strategy():
    X, y = synthetic(4, 16)
    tasks = class_incremental(X, y, n_tasks=2, seed=0)
    benchmark = to_avalanche(tasks, *synthetic(4, 4, seed=1))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 4))
    metrics = energy_metrics(energy="estimate", flops="all")
    strategy = Naive(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        criterion=nn.CrossEntropyLoss(),
        train_mb_size=8,
        train_epochs=2,
        evaluator=evaluator(*metrics),
    )
    results = {}
    for experience in benchmark.train_stream:
        results.update(strategy.train(experience))
    energies = [results[f"Energy_J_Exp/train_phase/train_stream/Task000/Exp00{i}"] for i in (0, 1)]
    assert all(e > 0 for e in energies)
    assert results["Energy_J_Stream/train_phase/train_stream/Task000"] == pytest.approx(
        sum(energies)
    )
    assert results["EnergyMethod_Exp/train_phase/train_stream/Task000/Exp001"] == "estimate"
    assert results["Samples_Exp/train_phase/train_stream/Task000/Exp001"] == 2 * 32
    # every batch counted (flops="all"): per sample, forward 2*(64*16) + 2*(16*4); backward
    # the weight gradients of both layers and the input gradient of the second
    expected_flops = 64 * (2 * 2 * 64 * 16 + 3 * 2 * 16 * 4)
    assert results["FLOPs_Exp/train_phase/train_stream/Task000/Exp001"] == expected_flops
    assert results["Retained_B_Exp/train_phase/train_stream/Task000/Exp001"] == 0


def test_retained_bytes_counts_a_replay_buffer_as_stored():
    X, y = synthetic(4, 16)
    tasks = class_incremental(X, y, n_tasks=2, seed=0)
    benchmark = to_avalanche(tasks, *synthetic(4, 4, seed=1))
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 4))
    strategy = Replay(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        criterion=nn.CrossEntropyLoss(),
        mem_size=10,
        train_mb_size=8,
        evaluator=evaluator(),
    )
    strategy.train(benchmark.train_stream[0])
    sizes = retained_bytes(strategy)
    assert sizes["ReplayPlugin.storage_policy"] >= 10 * 64  # ten uint8 8x8 samples (+ weights)
    assert sizes["ReplayPlugin.storage_policy"] < 10 * 64 + 1024


def test_training_cost_rejects_unknown_options():
    with pytest.raises(ValueError, match="energy"):
        TrainingCost(energy="battery")
    with pytest.raises(ValueError, match="flops"):
        TrainingCost(flops="most")
    with pytest.raises(ValueError, match="nothing to report"):
        TrainingCost(experience=False, stream=False)


def test_siamese_strategy_needs_an_input_shape_for_a_named_encoder():
    with pytest.raises(ValueError, match="input_shape"):
        SiameseStrategy(encoder="conv4")
    with pytest.raises(ValueError, match="unknown loss"):
        SiameseStrategy(encoder=nn.Flatten(), loss="hinge-ish")
    with pytest.raises(ValueError, match="train_mb_size"):
        SiameseStrategy(encoder=nn.Linear(4, 2), train_mb_size=1)


# -- baselines --------------------------------------------------------------------------


def baseline_settings(**overrides):
    from siamcl.integrations.avalanche_baselines import BaselineSettings

    values = {"input_shape": (1, 28, 28), "n_classes": 4, "n_experiences": 2, "epochs": 2}
    return BaselineSettings(**{**values, "batch_size": 16, "memory_total": 20, **overrides})


def test_der_and_er_ace_are_built_with_the_shared_budget_and_their_settings():
    from avalanche.training import DER, ER_ACE

    from siamcl.integrations.avalanche_baselines import BASELINES, build_baseline

    assert {"der", "er_ace"} <= set(BASELINES)
    der = build_baseline("der", baseline_settings(), evaluator())
    assert isinstance(der, DER) and (der.alpha, der.beta) == (0.1, 0.5)  # DER++
    er_ace = build_baseline("er_ace", baseline_settings(), evaluator())
    assert isinstance(er_ace, ER_ACE)
    for strategy in (der, er_ace):
        assert (strategy.mem_size, strategy.batch_size_mem) == (20, 16)
        assert strategy.model.head.out_features == 4  # logits over every stream class
    small = build_baseline("der", baseline_settings(memory_total=8), evaluator())
    assert small.batch_size_mem == 8  # a replayed batch never outgrows the memory
    with pytest.raises(ValueError, match="unknown baseline"):
        build_baseline("der+++", baseline_settings(), evaluator())


def test_streaming_lda_takes_its_base_initialisation_without_a_warning():
    from avalanche.training import StreamingLDA

    from siamcl.integrations.avalanche_baselines import build_baseline

    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*incompatible callbacks")
        slda = build_baseline("slda", baseline_settings(), evaluator())
    assert isinstance(slda, StreamingLDA)


@pytest.mark.parametrize("name", ["der", "er_ace"])
def test_replay_baselines_keep_the_first_experience_and_count_their_buffer(name, mnist_slice):
    from siamcl.integrations.avalanche_baselines import build_baseline

    torch.manual_seed(0)
    cost = TrainingCost(energy="estimate")
    strategy = build_baseline(name, baseline_settings(), evaluator(cost))
    results = {}
    for experience in mnist_slice.train_stream:
        strategy.train(experience)
        results.update(strategy.eval(mnist_slice.test_stream))
    assert results[STREAM_ACC] >= 0.4  # four digits: chance is 0.25
    assert results["Top1_Acc_Exp/eval_phase/test_stream/Task000/Exp000"] >= 0.6  # replayed
    buffer = strategy.storage_policy.buffer
    assert len(buffer) == 20 and sorted({int(y) for y in buffer.targets}) == [0, 1, 2, 3]
    retained = cost.reports[-1].retained_bytes
    assert retained["HeldBuffer.storage_policy"] >= 20 * 28 * 28  # the exemplars, as stored
    assert not any(key.startswith(type(strategy).__name__) for key in retained)  # no scratch
    if name == "der":  # DER++ keeps each exemplar's logits over all four classes
        assert torch.stack(list(buffer.logits)).shape == (20, 4)
        assert retained["HeldBuffer.logits"] == 20 * 4 * 4


# -- the cl bench's summary -------------------------------------------------------------


def fake_run(method: str, seed: int, accuracy: float, energy: float) -> dict:
    report = {
        "energy_j": energy,
        "energy_method": "estimate",
        "cpu_s": energy / 10,
        "wall_s": energy / 5,
        "flops": 1_000,
        "peak_rss_bytes": 2**20,
        "retained_bytes": {"replay": 2048},
    }
    return {
        "method": method,
        "seed": seed,
        "epochs": 3,
        "accuracy": accuracy,
        "forgetting": 0.1,
        "report": report,
    }


def test_cl_summary_keeps_failed_rows_and_checks_the_bar():
    from siamcl.bench.cl import bar_check, summarise, summary_table

    runs = [
        fake_run("siamese", 0, 0.90, 10.0),
        fake_run("siamese", 1, 0.92, 12.0),
        fake_run("replay", 0, 0.50, 40.0),
        fake_run("replay", 1, 0.60, 36.0),
        fake_run("icarl", 0, 0.80, 30.0),
        fake_run("icarl", 1, 0.70, 30.0),
        {"method": "ewc", "seed": 0, "epochs": 3, "error": "RuntimeError: boom"},
    ]
    summary = summarise(runs, ["siamese", "replay", "icarl", "ewc"])
    rows = {row["method"]: row for row in summary}
    assert rows["replay"]["accuracy_mean"] == pytest.approx(0.55)
    assert rows["replay"]["energy_ratio"] == pytest.approx((40 / 10 + 36 / 12) / 2)
    assert rows["ewc"]["errors"] == ["seed 0: RuntimeError: boom"]
    assert "failed: seed 0: RuntimeError: boom" in summary_table(summary)
    bar = bar_check(summary)["siamese"]
    assert bar["energy_vs_replay"] == pytest.approx(11 / 38)
    assert bar["met"]
    runs[0]["accuracy"] = 0.5  # mean 0.71 < iCaRL's 0.75
    assert not bar_check(summarise(runs, ["siamese", "replay", "icarl"]))["siamese"]["met"]


def test_embedding_cache_embeds_an_experience_once():
    from siamcl.integrations.avalanche_model import EmbeddingCache as _EmbeddingCache

    calls = []
    weights = torch.randn(6, 3)

    def embed(batch):
        calls.append(len(batch))
        batch = torch.as_tensor(np.asarray(batch, dtype=np.float32))
        return (batch.reshape(len(batch), -1) @ weights).numpy()

    inputs = torch.randn(10, 1, 2, 3)
    cache = _EmbeddingCache(embed, inputs)
    subset = inputs.numpy().astype(np.float16)[[7, 2, 5]]
    np.testing.assert_allclose(cache(subset), embed(inputs)[[7, 2, 5]], rtol=1e-6)
    assert cache(inputs) is cache.embeddings
    assert calls == [10, 10]  # the cache's own pass and the reference above, nothing else
    unseen = np.ones((2, 1, 2, 3), dtype=np.float16)
    np.testing.assert_allclose(cache(unseen), embed(unseen), rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_preprocess_transform_matches_the_preprocessor(dtype):
    from siamcl.integrations.avalanche_streams import PreprocessTransform
    from siamcl.preprocess import Preprocessor

    X, _ = synthetic(3, 5)
    X = 255 - X if dtype == np.uint8 else (255 - X).astype(np.float32) / 255.0  # dark on bright
    preprocessor = Preprocessor().fit(X)
    assert preprocessor.invert
    transform = PreprocessTransform(preprocessor)
    expected = preprocessor(X)
    for index in (0, 7):
        torch.testing.assert_close(transform(torch.from_numpy(X[index])), expected[index])
    resized = PreprocessTransform(Preprocessor(input_size=(6, 6)).fit(X))
    assert resized(X[0]).shape == (1, 6, 6)


# -- mixed precision ---------------------------------------------------------------------


def test_mixed_precision_plugin_wraps_only_the_training_forward():
    from types import SimpleNamespace

    from siamcl.integrations.avalanche_precision import MixedPrecision

    plugin, layer = MixedPrecision(torch.bfloat16), nn.Linear(4, 3)
    strategy = SimpleNamespace(mb_output=None, mb_buffer_out=None)
    plugin.before_forward(strategy)
    assert torch.is_autocast_enabled("cpu")
    strategy.mb_output = layer(torch.randn(5, 4))
    strategy.mb_buffer_out = layer(torch.randn(2, 4))
    assert strategy.mb_output.dtype == torch.bfloat16
    plugin.after_forward(strategy)
    assert not torch.is_autocast_enabled("cpu")  # criterion and backward in float32
    assert strategy.mb_output.dtype == strategy.mb_buffer_out.dtype == torch.float32
    plugin.before_forward(strategy)  # a step that raised before after_forward ...
    plugin.before_forward(strategy)  # ... leaves no context behind
    plugin.after_training_exp(strategy)
    assert not torch.is_autocast_enabled("cpu")


def test_baselines_and_the_siamese_strategy_train_in_mixed_precision(mnist_slice):
    from siamcl.integrations.avalanche_baselines import build_baseline
    from siamcl.integrations.avalanche_precision import MixedPrecision

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="bfloat16 is not native")
        replay = build_baseline("replay", baseline_settings(precision="bf16"), evaluator())
        results = {}
        for experience in mnist_slice.train_stream:
            replay.train(experience)
            results.update(replay.eval(mnist_slice.test_stream))
    assert any(isinstance(p, MixedPrecision) for p in replay.plugins)
    assert results[STREAM_ACC] >= 0.4  # four digits: chance is 0.25
    plain = build_baseline("replay", baseline_settings(), evaluator())
    assert not any(isinstance(p, MixedPrecision) for p in plain.plugins)
    with pytest.raises(ValueError, match="precision must be one of"):
        SiameseStrategy(encoder=nn.Flatten(), precision="half")
