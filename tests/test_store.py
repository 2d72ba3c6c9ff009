import copy
import itertools
import json
import pickle
import sys
import threading

import faiss
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from siamcl.store import FORMAT_VERSION, PrototypeStore

DIM = 16


def clusters(n_classes=6, per_class=40, dim=DIM, spread=0.3, seed=0, labels=None):
    """Separable Gaussian clusters around random unit directions; returns (X, y)."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((n_classes, dim))
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    centers *= 4
    labels = np.arange(n_classes) if labels is None else np.asarray(labels)
    y = np.repeat(labels, per_class)
    x = np.repeat(centers, per_class, axis=0) + spread * rng.standard_normal((len(y), dim))
    return x.astype(np.float32), y.astype(np.int64)


def snapshot(store, probe):
    """Everything a failed call must leave alone."""
    return (
        store.classes.tolist(),
        store.prototypes().tobytes(),
        store.prototype_labels.tolist(),
        store.class_counts.tolist(),
        store.nbytes,
        store.search(probe, 2)[1].tolist(),
    )


def stored(index="Flat", metric="cosine", **params):
    x, y = clusters()
    store = PrototypeStore(DIM, metric=metric, index=index, **params)
    store.add(x, y)
    return store, x, y


# ---------------------------------------------------------------- classification
@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_nearest_prototype_classifies_separable_clusters(metric):
    x, y = clusters(n_classes=8, per_class=60, spread=1.0)
    train = np.arange(len(y)) % 2 == 0
    store = PrototypeStore(DIM, metric=metric)
    store.add(x[train], y[train])
    assert (store.classify(x[~train]) == y[~train]).mean() > 0.95
    assert len(store) == 8 and store.n_prototypes == 8


def test_prototype_is_the_running_class_mean_and_moves_after_update():
    x, y = clusters(n_classes=3)
    store = PrototypeStore(DIM, metric="l2")
    store.add(x[:50], y[:50])
    store.add(x[50:], y[50:])  # class 1 is split across the two calls
    for label in range(3):
        np.testing.assert_allclose(
            store.prototypes(label)[0], x[y == label].mean(axis=0), rtol=1e-5, atol=1e-5
        )
    assert store.class_counts.tolist() == [40, 40, 40]
    shifted = x[y == 1][:5] + 10
    store.update(shifted, np.ones(5, np.int64))
    np.testing.assert_allclose(store.prototypes(1)[0], shifted.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(store.prototypes(0)[0], x[y == 0].mean(axis=0), atol=1e-5)
    assert store.class_counts.tolist() == [40, 5, 40]


def test_cosine_prototype_is_the_normalised_mean_of_normalised_embeddings():
    x, y = clusters(n_classes=2)
    store = PrototypeStore(DIM, metric="cosine")
    store.add(x, y)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    mean = unit[y == 0].mean(axis=0)
    np.testing.assert_allclose(store.prototypes(0)[0], mean / np.linalg.norm(mean), atol=1e-5)


def test_cosine_and_l2_rank_differently_and_report_their_scores():
    points = np.array([[1, 0], [10, 10]], np.float32)
    query = np.array([[3, 3]], np.float32)
    cosine = PrototypeStore(2, metric="cosine")
    cosine.add(points, [0, 1])
    l2 = PrototypeStore(2, metric="l2")
    l2.add(points, [0, 1])
    cos_scores, cos_labels = cosine.search(query, 2)
    l2_scores, l2_labels = l2.search(query, 2)
    assert cos_labels.tolist() == [[1, 0]] and l2_labels.tolist() == [[0, 1]]
    np.testing.assert_allclose(cos_scores, [[1.0, np.sqrt(0.5)]], rtol=1e-5)  # similarities
    np.testing.assert_allclose(l2_scores, [[13.0, 98.0]], rtol=1e-5)  # squared distances
    assert cos_scores.dtype == np.float32 and cos_labels.dtype == np.int64


def test_class_scores_agree_with_classify_and_search():
    store, x, _ = stored(metric="l2")
    classes, scores = store.class_scores(x[::7])
    assert classes.tolist() == store.classes.tolist() and scores.shape == (len(x[::7]), 6)
    assert np.array_equal(classes[scores.argmax(axis=1)], store.classify(x[::7]))
    distances, labels = store.search(x[::7], 1)
    best = scores[np.arange(len(scores)), np.searchsorted(classes, labels[:, 0])]
    np.testing.assert_allclose(best, -distances[:, 0], rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_class_scores_take_each_class_nearest_prototype(metric):
    store, x, _ = stored(metric=metric, prototypes_per_class=3)
    queries = x[::9]
    classes, scores = store.class_scores(queries)
    unit = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    for column, label in enumerate(classes):
        prototypes = store.prototypes(label)
        if metric == "cosine":
            expected = (unit @ prototypes.T).max(axis=1)
        else:
            expected = -((queries[:, None, :] - prototypes[None]) ** 2).sum(axis=2).min(axis=1)
        np.testing.assert_allclose(scores[:, column], expected, rtol=1e-4, atol=1e-3)


def test_remove_class_forgets_it_everywhere():
    for index in ["Flat", "HNSW32", "IVF2,Flat"]:
        store, x, y = stored(index=index, nprobe=2 if index.startswith("IVF") else None)
        store.remove_class(3)
        assert 3 not in store and store.classes.tolist() == [0, 1, 2, 4, 5]
        assert 3 not in store.prototype_labels and store.n_prototypes == 5
        assert 3 not in store.classify(x)
        assert (store.classify(x[y != 3]) == y[y != 3]).mean() > 0.95
        with pytest.raises(ValueError, match="3"):
            store.remove_class(3)


def test_k_prototypes_per_class_fit_a_bimodal_class():
    rng = np.random.default_rng(0)
    left = rng.normal([-6, 0], 0.5, (100, 2))
    right = rng.normal([6, 0], 0.5, (100, 2))
    middle = rng.normal([0, 0], 0.5, (100, 2))
    x = np.concatenate([left, right, middle]).astype(np.float32)
    y = np.repeat([0, 0, 1], 100)
    one = PrototypeStore(2, metric="l2", prototypes_per_class=1)
    two = PrototypeStore(2, metric="l2", prototypes_per_class=2)
    one.add(x, y)
    two.add(x, y)
    assert (one.classify(x) == y).mean() < 0.7
    assert (two.classify(x) == y).mean() > 0.95
    assert two.prototypes(0).shape == (2, 2) and two.prototypes(1).shape == (2, 2)


def test_k_prototypes_stay_bounded_and_small_classes_keep_their_samples():
    x, y = clusters(n_classes=2, per_class=30)
    store = PrototypeStore(DIM, metric="l2", prototypes_per_class=4)
    store.add(x[:3], y[:3])  # three samples of class 0
    np.testing.assert_allclose(np.sort(store.prototypes(0), axis=0), np.sort(x[:3], axis=0))
    for start in range(3, 60, 9):
        store.add(x[start : start + 9], y[start : start + 9])
        assert all(len(store.prototypes(c)) <= 4 for c in store.classes)
    assert store.class_counts.tolist() == [30, 30]


def test_vote_k_majority_and_tie_goes_to_the_nearest():
    points = np.array([[0, 0], [100, 100], [1, 0], [-1, 0]], np.float32)
    store = PrototypeStore(2, metric="l2", prototypes_per_class=2, vote_k=1)
    store.add(points, [7, 7, 9, 9])
    query = np.array([[0.1, 0]], np.float32)
    assert store.classify(query).tolist() == [7]
    store.vote_k = 3  # neighbours 7, 9, 9
    assert store.classify(query).tolist() == [9]
    store.vote_k = 2  # neighbours 7, 9: a tie, the nearest wins
    assert store.classify(query).tolist() == [7]
    store.vote_k = 50  # more than the prototypes held: all of them vote
    assert store.classify(query).tolist() in ([7], [9])


# ---------------------------------------------------------------- index types
def test_ivf_searches_exactly_until_trained_then_uses_the_index():
    x, y = clusters(n_classes=8)
    flat = PrototypeStore(DIM, metric="l2")
    flat.add(x, y)
    ivf = PrototypeStore(DIM, metric="l2", index="IVF8,Flat")
    assert ivf.min_train_size == 8
    ivf.add(x[y < 4], y[y < 4])
    assert ivf.exact_fallback and not ivf.trained and ivf.faiss_index.ntotal == 0
    assert np.array_equal(ivf.search(x, 3)[1], flat_search(x[y < 4], y[y < 4], x, 3))
    with pytest.raises(ValueError, match="at least 8"):
        ivf.train()
    ivf.add(x[y >= 4], y[y >= 4])
    assert ivf.trained and not ivf.exact_fallback and ivf.faiss_index.ntotal == 8
    ivf.nprobe = 8  # every list: exact
    assert np.array_equal(ivf.search(x, 3)[1], flat.search(x, 3)[1])
    ivf.train()  # retraining on demand keeps the same answers
    assert np.array_equal(ivf.search(x, 3)[1], flat.search(x, 3)[1])


def flat_search(xb, yb, xq, k):
    store = PrototypeStore(DIM, metric="l2")
    store.add(xb, yb)
    return store.search(xq, k)[1]


def test_approximate_misses_are_filled_by_exact_search():
    x, y = clusters(n_classes=8)
    ivf = PrototypeStore(DIM, metric="l2", index="IVF4,Flat", nprobe=1)
    ivf.add(x, y)
    flat = PrototypeStore(DIM, metric="l2")
    flat.add(x, y)
    assert np.array_equal(ivf.search(x[:5], 8)[1], flat.search(x[:5], 8)[1])


def test_training_sizes_follow_faiss():
    assert PrototypeStore(DIM, index="Flat").min_train_size == 1
    assert PrototypeStore(DIM, index="PQ4x4").min_train_size == 16
    assert PrototypeStore(DIM, index="IVF8,PQ4").min_train_size == 256
    assert PrototypeStore(DIM, index="IVF8,Flat", min_train_size=100).min_train_size == 100


def test_pq_trains_once_it_holds_enough_prototypes():
    x, y = clusters(n_classes=20, per_class=2)
    store = PrototypeStore(DIM, metric="l2", index="PQ4x4")
    store.add(x[:10], y[:10])  # 5 classes, 5 prototypes
    assert store.exact_fallback
    store.add(x[10:], y[10:])
    assert store.trained and (store.classify(x) == y).mean() > 0.95


def test_hnsw_with_ef_search_classifies_and_rebuilds_on_removal():
    store, x, y = stored(index="HNSW32", ef_search=64)
    assert store.ef_search == 64 and store.trained
    assert (store.classify(x) == y).mean() > 0.95
    store.update(x[y == 2][:3] * -1, np.full(3, 2))
    store.remove_class(0)
    assert store.faiss_index.ntotal == 5 and (store.classify(x[y == 1]) == 1).all()


def test_search_parameters_must_fit_the_index():
    with pytest.raises(ValueError, match="nprobe"):
        PrototypeStore(DIM, index="Flat", nprobe=4)
    with pytest.raises(ValueError, match="efSearch"):
        PrototypeStore(DIM, index="IVF4,Flat", ef_search=4)
    store = PrototypeStore(DIM, index="HNSW32")
    with pytest.raises(ValueError, match="nprobe"):
        store.nprobe = 3
    assert store.nprobe is None
    store.ef_search = 40
    assert faiss.downcast_index(store.faiss_index.index).hnsw.efSearch == 40
    store.ef_search = None
    assert faiss.downcast_index(store.faiss_index.index).hnsw.efSearch == 16


# ---------------------------------------------------------------- ready-made FAISS indexes
READY_MADE = [
    (lambda: faiss.IndexFlatIP(DIM), "Flat", "cosine", {}),
    (lambda: faiss.IndexHNSWFlat(DIM, 16), "HNSW16", "l2", {}),
    (lambda: faiss.IndexIVFFlat(faiss.IndexFlatL2(DIM), DIM, 4), "IVF4,Flat", "l2", {"nprobe": 2}),
]


@pytest.mark.parametrize("make, spec, metric, params", READY_MADE)
def test_ready_made_index_answers_like_its_factory_string(make, spec, metric, params):
    given = make()
    ready, x, y = stored(index=given, metric=metric, prototypes_per_class=2, **params)
    factory, _, _ = stored(index=spec, metric=metric, prototypes_per_class=2, **params)
    assert given.ntotal == 0  # the store fills its own copy
    assert ready.trained and ready.faiss_index.ntotal == ready.n_prototypes == 12
    assert np.array_equal(ready.classify(x), factory.classify(x))
    assert np.array_equal(ready.search(x, 3)[1], factory.search(x, 3)[1])
    assert type(ready.index) is type(given) and ready.index.ntotal == 0
    for store in (ready, factory):
        store.remove_class(2)
        store.add(x[y == 2][:3] + 1, np.full(3, 9))
    assert np.array_equal(ready.classify(x), factory.classify(x))


def test_ready_made_index_must_fit_the_store():
    full = faiss.IndexFlatIP(DIM)
    full.add(np.ones((3, DIM), np.float32))
    bad = [
        (ValueError, "dimension 8 but the store's dim is 16", faiss.IndexFlatIP(8), "cosine"),
        (ValueError, "already holds 3 vectors: give an empty index", full, "cosine"),
        (ValueError, "uses METRIC_L2 but metric='cosine'", faiss.IndexFlatL2(DIM), "cosine"),
        (
            ValueError,
            "METRIC_INNER_PRODUCT",
            faiss.IndexHNSWFlat(DIM, 16, faiss.METRIC_INNER_PRODUCT),
            "l2",
        ),
        (ValueError, "without an id map", faiss.IndexIDMap(faiss.IndexFlatIP(DIM)), "cosine"),
        (TypeError, "factory string or a faiss.Index", 32, "cosine"),
    ]
    for error, message, index, metric in bad:
        with pytest.raises(error, match=message):
            PrototypeStore(DIM, metric=metric, index=index)
    assert full.ntotal == 3


def test_ready_made_trained_index_keeps_its_training():
    x, y = clusters(n_classes=8)
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatL2(DIM), DIM, 4)
    ivf.train(x)
    store = PrototypeStore(DIM, metric="l2", index=ivf, nprobe=4)
    assert store.trained and store.min_train_size == 1
    store.add(x[:10], y[:10])  # one class: too few to train, but already trained
    assert store.faiss_index.ntotal == 1 and not store.exact_fallback
    store.add(x, y)
    assert (store.classify(x) == y).all()


@pytest.mark.parametrize("make, spec, metric, params", READY_MADE)
def test_ready_made_store_round_trips(tmp_path, make, spec, metric, params):
    store, x, y = stored(index=make(), metric=metric, prototypes_per_class=2, **params)
    store.save(tmp_path / "s")
    meta = json.loads((tmp_path / "s" / "store.json").read_text())
    assert meta["index"] is None and "template.faiss" in meta["checksums"]
    for mmap in (False, True):
        loaded = PrototypeStore.load(tmp_path / "s", mmap=mmap)
        assert np.array_equal(loaded.classify(x), store.classify(x))
        assert np.array_equal(loaded.search(x, 3)[1], store.search(x, 3)[1])
        assert type(loaded.index) is type(make()) and loaded.index.ntotal == 0
        assert (loaded.metric, loaded.nprobe) == (store.metric, store.nprobe)
    grown = PrototypeStore.load(tmp_path / "s")
    grown.remove_class(0)
    grown.add(x[y == 0] * -1, np.zeros(40, np.int64))
    grown.train()
    assert (grown.classify(x[y != 0]) == y[y != 0]).all()
    grown.save(tmp_path / "s")
    assert np.array_equal(PrototypeStore.load(tmp_path / "s").classify(x), grown.classify(x))


# ---------------------------------------------------------------- labels and sizes
def test_any_int64_labels_work_including_floats_that_are_whole_and_tensors():
    labels = [-(2**63) + 1, -5, 0, 2**62, 2**63 - 1]
    x, _ = clusters(n_classes=5, per_class=4, labels=labels)
    y = np.repeat(labels, 4)
    store = PrototypeStore(DIM)
    store.add(torch.from_numpy(x), torch.from_numpy(y))
    assert store.classes.tolist() == sorted(labels)
    assert store.classify(x).tolist() == y.tolist()
    store.add(x[4:8], [-5.0] * 4)  # whole floats are integers
    store.add(x[4:8], [np.int8(-5)] * 4)
    assert store.class_counts.tolist() == [4, 12, 4, 4, 4]
    with pytest.raises(ValueError, match="2\\*\\*53"):
        store.add(x[:1], [float(2**60)])  # not exact as a float
    assert -5 in store and 3 not in store and "a" not in store


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=6, unique=True))
def test_hypothesis_labels_round_trip(labels):
    x, y = clusters(n_classes=len(labels), per_class=2, labels=labels)
    store = PrototypeStore(DIM)
    store.add(x, y)
    assert store.classes.tolist() == sorted(labels)
    assert store.classify(x).tolist() == y.tolist()


def test_nbytes_grows_with_classes_and_counts_the_serialized_index():
    store = PrototypeStore(DIM)
    sizes = [store.nbytes]
    for label in range(5):
        x, _ = clusters(n_classes=1, per_class=3, seed=label)
        store.add(x, np.full(3, label))
        sizes.append(store.nbytes)
    assert all(b > a for a, b in itertools.pairwise(sizes))
    assert store.index_nbytes == faiss.serialize_index(store.faiss_index).size
    assert store.nbytes >= store.index_nbytes + 5 * DIM * (4 + 8)


def test_clear_forgets_every_class():
    store, x, _ = stored()
    store.clear()
    assert len(store) == 0 and store.n_prototypes == 0 and store.faiss_index.ntotal == 0
    with pytest.raises(ValueError, match="store is empty"):
        store.classify(x)


# ---------------------------------------------------------------- bad input
def test_bad_input_raises_and_leaves_the_store_unchanged():
    store, x, y = stored(index="IVF4,Flat")
    probe = x[::11]
    before = snapshot(store, probe)
    bad_calls = [
        (ValueError, "dimension 15 .* dimension is 16", lambda: store.add(x[:, :15], y)),
        (ValueError, "NaN or infinite", lambda: store.add(np.where(x == x[0, 0], np.nan, x), y)),
        (ValueError, "NaN or infinite", lambda: store.update(np.full_like(x, np.inf), y)),
        (TypeError, "integers", lambda: store.add(x[:2], [1.5, 2.0])),
        (TypeError, "integers", lambda: store.add(x[:2], ["a", "b"])),
        (TypeError, "integers", lambda: store.add(x[:2], [True, False])),
        (ValueError, "int64", lambda: store.add(x[:1], [2**64])),
        (ValueError, "2 embeddings but 3 labels", lambda: store.add(x[:2], [1, 2, 3])),
        (ValueError, "2-D", lambda: store.add(x[0], [1])),
        (ValueError, "no embeddings", lambda: store.add(np.empty((0, DIM)), [])),
        (ValueError, "all zeros", lambda: store.add(np.zeros((1, DIM)), [1])),
        (TypeError, "real numbers", lambda: store.add(x.astype(str), y)),
        (ValueError, "no such class", lambda: store.remove_class(42)),
        (TypeError, "integers", lambda: store.remove_class("3")),
        (ValueError, "k=1000 exceeds", lambda: store.search(probe, 1000)),
        (ValueError, "dimension 3", lambda: store.classify(np.ones((2, 3)))),
        (ValueError, "positive", lambda: setattr(store, "vote_k", 0)),
    ]
    for error, message, call in bad_calls:
        with pytest.raises(error, match=message):
            call()
        assert snapshot(store, probe) == before


def test_empty_store_and_bad_constructor_arguments():
    with pytest.raises(ValueError, match="store is empty"):
        PrototypeStore(DIM).classify(np.ones((1, DIM)))
    with pytest.raises(ValueError, match="store is empty"):
        PrototypeStore(DIM).class_scores(np.ones((1, DIM)))
    with pytest.raises(ValueError, match="'Bogus12'"):
        PrototypeStore(DIM, index="Bogus12")
    with pytest.raises(ValueError, match="'PQ5'"):
        PrototypeStore(DIM, index="PQ5")  # 16 is not divisible by 5
    with pytest.raises(ValueError, match="metric 'manhattan'"):
        PrototypeStore(DIM, metric="manhattan")
    with pytest.raises(ValueError, match="IDMap"):
        PrototypeStore(DIM, index="IDMap,Flat")
    with pytest.raises(TypeError, match="dim"):
        PrototypeStore(16.0)
    with pytest.raises(ValueError, match="prototypes_per_class"):
        PrototypeStore(DIM, prototypes_per_class=0)


def test_empty_query_batches_give_empty_answers():
    store, _, _ = stored()
    empty = np.empty((0, DIM), np.float32)
    assert store.classify(empty).shape == (0,)
    scores, labels = store.search(empty, 2)
    assert scores.shape == labels.shape == (0, 2)
    assert store.class_scores(empty)[1].shape == (0, 6)


# ---------------------------------------------------------------- persistence
@pytest.mark.parametrize(
    "index, params",
    [("Flat", {}), ("HNSW32", {"ef_search": 32}), ("IVF4,Flat", {"nprobe": 2}), ("PQ4x4", {})],
)
def test_save_load_round_trip_searches_identically(tmp_path, index, params):
    store, x, _ = stored(index=index, prototypes_per_class=2, vote_k=3, **params)
    expected = store.search(x, 5)
    store.save(tmp_path / "store")
    for mmap in (False, True):
        loaded = PrototypeStore.load(tmp_path / "store", mmap=mmap)
        for got, want in zip(loaded.search(x, 5), expected):
            assert np.array_equal(got, want)
        assert np.array_equal(loaded.classify(x), store.classify(x))
        assert np.array_equal(loaded.prototypes(), store.prototypes())
        assert (loaded.index, loaded.metric, loaded.vote_k, loaded.nprobe, loaded.ef_search) == (
            store.index,
            store.metric,
            3,
            store.nprobe,
            store.ef_search,
        )
        assert loaded.trained == store.trained and loaded.read_only == mmap
    assert loaded.memory_mapped and loaded.mmap_note is None


def test_untrained_store_round_trips_in_fallback(tmp_path):
    x, y = clusters(n_classes=3)
    store = PrototypeStore(DIM, index="IVF8,Flat")
    store.add(x, y)
    store.save(tmp_path / "s")
    loaded = PrototypeStore.load(tmp_path / "s")
    assert loaded.exact_fallback and np.array_equal(loaded.classify(x), store.classify(x))
    more, more_y = clusters(n_classes=6, seed=1, labels=range(10, 16))
    loaded.add(more, more_y)
    assert loaded.trained and len(loaded) == 9


def test_loaded_store_keeps_learning_without_id_clashes(tmp_path):
    store, x, y = stored()
    store.save(tmp_path / "s")
    loaded = PrototypeStore.load(tmp_path / "s")
    extra, extra_y = clusters(n_classes=2, seed=5, labels=[100, 101])
    loaded.add(extra, extra_y)
    loaded.remove_class(0)
    ids = faiss.vector_to_array(loaded.faiss_index.id_map)
    assert len(set(ids.tolist())) == len(ids) == 7
    assert (loaded.classify(extra) == extra_y).all()
    assert (loaded.classify(x[y != 0]) == y[y != 0]).all()


def test_memory_mapped_store_is_read_only(tmp_path):
    store, x, y = stored()
    store.save(tmp_path / "s")
    mapped = PrototypeStore.load(tmp_path / "s", mmap=True)
    for call in (
        lambda: mapped.add(x, y),
        lambda: mapped.update(x, y),
        lambda: mapped.remove_class(0),
        lambda: mapped.clear(),
    ):
        with pytest.raises(ValueError, match="read-only"):
            call()
    assert mapped.nbytes == store.nbytes
    mapped.save(tmp_path / "copy")  # saving elsewhere works
    assert np.array_equal(PrototypeStore.load(tmp_path / "copy").classify(x), y)


def test_save_replaces_a_store_refuses_other_directories_and_leaves_no_temporaries(tmp_path):
    store, _, _ = stored()
    store.save(tmp_path / "s")
    store.remove_class(0)
    store.save(tmp_path / "s")
    assert 0 not in PrototypeStore.load(tmp_path / "s")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="refusing"):
        store.save(tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_crash_mid_save_keeps_the_previous_save(tmp_path, monkeypatch):
    store, _, _ = stored()
    store.save(tmp_path / "s")

    def broken_write(*args):
        raise OSError("disk full")

    store.remove_class(0)
    monkeypatch.setattr(faiss, "write_index", broken_write)
    with pytest.raises(OSError, match="disk full"):
        store.save(tmp_path / "s")
    monkeypatch.undo()
    assert 0 in PrototypeStore.load(tmp_path / "s")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def test_load_rejects_missing_corrupt_foreign_and_newer_directories(tmp_path):
    with pytest.raises(FileNotFoundError, match="no saved store"):
        PrototypeStore.load(tmp_path / "absent")
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileNotFoundError, match="not a directory"):
        PrototypeStore.load(tmp_path / "file")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="store.json is missing"):
        PrototypeStore.load(tmp_path / "empty")

    store, _, _ = stored()

    def saved(name, edit):
        path = store.save(tmp_path / name)
        edit(path)
        return path

    def rewrite_meta(change):
        def edit(path):
            meta = json.loads((path / "store.json").read_text())
            change(meta)
            (path / "store.json").write_text(json.dumps(meta))

        return edit

    def flip_byte(path):
        data = bytearray((path / "index.faiss").read_bytes())
        data[-3] ^= 0xFF
        (path / "index.faiss").write_bytes(bytes(data))

    cases = [
        ("corrupt", lambda p: (p / "store.json").write_text("{not json"), "corrupt"),
        ("foreign", rewrite_meta(lambda m: m.update(format="other.tool")), "not a siamcl"),
        (
            "newer",
            rewrite_meta(lambda m: m.update(format_version=FORMAT_VERSION + 1)),
            "newer than",
        ),
        ("altered", flip_byte, "index.faiss does not match its checksum"),
        ("truncated", lambda p: (p / "prototypes.npy").unlink(), "prototypes.npy is missing"),
        ("no_dim", rewrite_meta(lambda m: m.pop("dim")), "'dim' is missing"),
        ("bad_params", rewrite_meta(lambda m: m["params"].update(vote_k=0)), "invalid param"),
        ("bad_next_id", rewrite_meta(lambda m: m.update(next_id=0)), "next_id 0"),
    ]
    for name, edit, message in cases:
        with pytest.raises(ValueError, match=message):
            PrototypeStore.load(saved(name, edit))


@pytest.mark.parametrize(
    "index", ["HNSW32", lambda: faiss.IndexHNSWFlat(DIM, 32, faiss.METRIC_INNER_PRODUCT)]
)
def test_pickle_and_deepcopy_keep_the_store(tmp_path, index):
    store, x, _ = stored(index=index if isinstance(index, str) else index())
    for clone in (pickle.loads(pickle.dumps(store)), copy.deepcopy(store)):
        assert np.array_equal(clone.search(x, 3)[1], store.search(x, 3)[1])
        clone.remove_class(0)
        assert 0 in store and 0 not in clone


# ---------------------------------------------------------------- threads
def test_classify_while_another_thread_adds_and_removes_classes():
    base_x, base_y = clusters(n_classes=4, dim=DIM, spread=0.1)
    base_x[:, 8:] = 0  # the base classes live in the first 8 dimensions
    store = PrototypeStore(DIM)
    store.add(base_x, base_y)
    queries = base_x[::5]
    expected = base_y[::5]
    errors: list[Exception] = []
    checks = []
    done = threading.Event()
    reading = threading.Event()

    def writer():
        try:
            reading.wait(timeout=30)  # start once the reader runs, so the two overlap
            rng = np.random.default_rng(1)
            for label in range(100, 250):
                other = np.zeros((5, DIM), np.float32)
                other[:, 8:] = rng.standard_normal((5, 8))  # orthogonal to every query
                store.add(other, np.full(5, label))
                if label % 3 == 0:
                    store.remove_class(label - 1)
        except Exception as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)
        finally:
            done.set()

    def reader():
        try:
            while not done.is_set():
                assert np.array_equal(store.classify(queries), expected)
                classes, scores = store.class_scores(queries)
                assert np.array_equal(classes[scores.argmax(axis=1)], expected)
                checks.append(1)
                reading.set()
        except Exception as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)
        finally:
            reading.set()

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often, so unguarded state would show
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        sys.setswitchinterval(switch_interval)
    assert not errors, errors
    assert checks and len(store) == 4 + 150 - 50


def test_statistics_of_parts_summed_give_the_store_of_the_whole() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 8)).astype(np.float32)
    y = rng.integers(0, 4, size=60)
    whole = PrototypeStore(dim=8).add(x, y)
    parts = PrototypeStore(dim=8)
    halves = [parts.class_statistics(x[rows], y[rows]) for rows in (slice(0, 25), slice(25, 60))]
    labels = np.arange(4)
    sums, counts = np.zeros((4, 8)), np.zeros(4, dtype=np.int64)
    for classes, part_sums, part_counts in halves:
        sums[classes] += part_sums
        counts[classes] += part_counts
    parts.add_statistics(labels, sums, counts)
    np.testing.assert_allclose(parts.prototypes(), whole.prototypes(), atol=1e-6)
    assert parts.class_counts.tolist() == whole.class_counts.tolist()
    assert (parts.classify(x) == whole.classify(x)).all()


def test_add_statistics_rejects_bad_shapes_and_kmeans_stores() -> None:
    store = PrototypeStore(dim=4)
    with pytest.raises(ValueError, match="expected sums"):
        store.add_statistics([0, 1], np.ones((2, 3)), [1, 1])
    with pytest.raises(ValueError, match="positive counts"):
        store.add_statistics([0, 1], np.ones((2, 4)), [1, 0])
    with pytest.raises(ValueError, match="prototypes_per_class=1"):
        PrototypeStore(dim=4, prototypes_per_class=2).add_statistics([0], np.ones((1, 4)), [2])
