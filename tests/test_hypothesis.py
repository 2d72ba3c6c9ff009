"""Property tests: hostile inputs to the public API either work or fail with a clear
ValueError/TypeError, and a failed call leaves what was learned exactly as it was.

Inputs cover every shape from 0-d to 5-d (zero-size sides included), integer, float, bool,
complex and object dtypes, NaN/inf and extreme values, Python lists, None and strings; labels
cover huge, negative, non-integral, boolean, duplicated and mismatched ones. The classifier
under test is tiny (an MLP on 6-dimensional vectors) so well over a thousand examples run in
well under a minute.
"""

import copy

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from siamcl import IncrementalClassifier, PrototypeStore

settings.register_profile(
    "siamcl-ci",
    deadline=None,  # a first call may pay for lazy imports; speed is not the property here
    derandomize=True,  # the same examples on every run, so CI failures reproduce
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
CI = settings.get_profile("siamcl-ci")

FEATURES = 6
CLEAR_ERRORS = (ValueError, TypeError)
DTYPES = [
    np.float32,
    np.float64,
    np.float16,
    np.int64,
    np.int32,
    np.uint8,
    np.int8,
    np.uint64,
    np.bool_,
    np.complex64,
]


@pytest.fixture(scope="module")
def fitted():
    """A tiny classifier of classes -3, 0 and 5 (vectors), and a fixed probe set."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, FEATURES)) * 3
    rows = np.repeat([0, 1, 2], 12)
    X = (centres[rows] + rng.normal(size=(len(rows), FEATURES))).astype(np.float32)
    clf = IncrementalClassifier(
        epochs=2, batch_size=16, embedding_dim=8, memory_per_class=3, flops="off"
    )
    clf.fit_task(X, np.array([-3, 0, 5])[rows])
    probe = (centres[[0, 1, 2, 0, 1, 2]] + rng.normal(size=(6, FEATURES))).astype(np.float32)
    return clf, probe


def state(clf, probe):
    """What a failed call must not change."""
    labels, counts = clf.memory_.arrays()[1], None
    if len(labels):
        counts = np.unique(labels, return_counts=True)
    return {
        "predictions": clf.predict(probe).tolist(),
        "proba": clf.predict_proba(probe).round(6).tolist(),
        "classes": clf.classes_.tolist(),
        "reports": len(clf.reports),
        "memory": None if counts is None else [c.tolist() for c in counts],
    }


# ---------------------------------------------------------------- strategies

finite = st.floats(-5, 5, width=32)
extreme = st.sampled_from([np.nan, np.inf, -np.inf, 1e38, -1e38, 1e-45, 0.0])
# most arrays are finite throughout; the rest hold NaN, infinities or extremes here and there
float_elements = st.sampled_from([finite, finite, finite, st.one_of(finite, extreme)])


FEATURE_COUNTS = st.sampled_from([FEATURES] * 4 + [0, 1, 5, 7])


@st.composite
def vectors(draw, features=FEATURE_COUNTS):
    """Nearly valid inputs: [N, D] arrays, now and then with a wrong D, N=0 or odd values."""
    n = draw(st.integers(0, 8))
    d = draw(features)
    dtype = draw(st.sampled_from([np.float32, np.float64, np.uint8, np.int64, np.float16]))
    if np.issubdtype(dtype, np.floating):
        return draw(hnp.arrays(dtype, (n, d), elements=draw(float_elements)))
    return draw(hnp.arrays(dtype, (n, d)))


any_array = hnp.arrays(
    st.sampled_from(DTYPES), hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=5)
)
not_arrays = st.one_of(
    st.none(),
    st.text(max_size=4),
    st.integers(),
    st.lists(st.lists(finite, min_size=FEATURES, max_size=FEATURES), max_size=4),
    st.lists(st.text(max_size=2), max_size=3),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    st.builds(lambda a: np.array(a, dtype=object), st.lists(st.integers(), max_size=4)),
)
inputs = st.one_of(vectors(), vectors(), any_array, not_arrays)


def labels_for(n: int):
    """Labels for ``n`` samples: usually ``n`` of them, of any integer or hostile kind."""
    length = st.one_of(st.just(n), st.just(n), st.just(n), st.integers(0, n + 2))
    huge = st.sampled_from([2**63 - 1, -(2**63), 2**62, -(10**12)])
    integer = st.one_of(st.sampled_from([-3, 0, 5, 7, -1]), st.integers(-50, 50), huge)
    return length.flatmap(
        lambda m: st.one_of(
            hnp.arrays(np.int64, (m,), elements=integer),
            hnp.arrays(np.int64, (m,), elements=integer),
            hnp.arrays(np.int64, (m,), elements=integer),
            hnp.arrays(st.sampled_from([np.int8, np.uint8, np.uint64, np.int32]), (m,)),
            hnp.arrays(np.float64, (m,), elements=st.one_of(st.integers(-9, 9), st.floats())),
            hnp.arrays(np.bool_, (m,)),
            hnp.arrays(np.int64, (m, 1), elements=integer),
            st.lists(st.integers(-(2**70), 2**70), min_size=m, max_size=m),
            st.lists(st.text(max_size=2), min_size=m, max_size=m),
            st.none(),
        )
    )


def rows(X) -> int:
    shape = getattr(X, "shape", None)
    if shape:
        return int(shape[0])
    return len(X) if isinstance(X, list) else 0


@st.composite
def inputs_and_labels(draw, X_strategy=inputs):
    X = draw(X_strategy)
    return X, draw(labels_for(rows(X)))


@st.composite
def support_sets(draw, features=FEATURES):
    """Valid-looking few-shot support sets: duplicated, known, negative or huge labels."""
    n = draw(st.integers(1, 6))
    X = draw(hnp.arrays(np.float32, (n, features), elements=finite))
    labels = st.one_of(
        st.sampled_from([-3, 0, 5, 7, 7, -1]), st.sampled_from([2**63 - 1, -(2**63)])
    )
    return X, np.array(draw(st.lists(labels, min_size=n, max_size=n)), dtype=np.int64)


pairs = st.one_of(support_sets(), inputs_and_labels())


def outcome(call):
    """Run ``call``: its result, or None when it failed with a clear error (others raise)."""
    try:
        result = call()
    except CLEAR_ERRORS as error:
        assert str(error), "an error must say what went wrong"
        event(f"failed with {type(error).__name__}")
        return None
    event("worked")
    return result


# ---------------------------------------------------------------- the classifier


@settings(CI, max_examples=350)
@given(X=inputs, method=st.sampled_from(["predict", "predict_proba", "embed"]))
def test_queries_work_or_fail_clearly_and_never_change_state(fitted, X, method):
    clf, probe = fitted
    before = state(clf, probe)
    result = outcome(lambda: getattr(clf, method)(X))
    if result is not None:
        n = rows(X)
        if method == "predict":
            assert result.shape == (n,) and set(result.tolist()) <= {-3, 0, 5}
        elif method == "predict_proba":
            assert result.shape == (n, 3) and np.allclose(result.sum(axis=1), 1, atol=1e-4)
        else:
            assert result.shape == (n, 8) and np.isfinite(result).all()
    assert state(clf, probe) == before


@settings(CI, max_examples=150)
@given(data=pairs, weights=st.none() | st.lists(st.floats(0, 1), max_size=9))
def test_score_works_or_fails_clearly(fitted, data, weights):
    clf, probe = fitted
    before = state(clf, probe)
    X, y = data
    weights = None if weights is None else np.asarray(weights)
    result = outcome(lambda: clf.score(X, y, sample_weight=weights))
    if result is not None:
        assert 0.0 <= result <= 1.0 or np.isnan(result)
    assert state(clf, probe) == before


@settings(CI, max_examples=300)
@given(data=pairs)
def test_add_classes_works_or_fails_and_changes_nothing(fitted, data):
    clf, probe = fitted
    clf = copy.deepcopy(clf)
    before = state(clf, probe)
    X, y = data
    if outcome(lambda: clf.add_classes(X, y)) is None:
        assert state(clf, probe) == before
        return
    after = state(clf, probe)
    added = set(np.asarray(y).ravel().tolist())
    assert set(after["classes"]) == set(before["classes"]) | added
    assert after["reports"] == before["reports"] + 1
    assert set(after["predictions"]) <= set(after["classes"])


@settings(CI, max_examples=100)
@given(
    data=pairs,
    method=st.sampled_from(["fit_task", "partial_fit", "fit"]),
)
def test_training_works_or_fails_and_changes_nothing(fitted, data, method):
    clf, probe = fitted
    clf = copy.deepcopy(clf)
    before = state(clf, probe)
    X, y = data
    if outcome(lambda: getattr(clf, method)(X, y)) is None:
        assert state(clf, probe) == before
        return
    assert set(clf.predict(probe).tolist()) <= set(clf.classes_.tolist())
    assert len(clf.reports) == (1 if method == "fit" else before["reports"] + 1)


hostile_values = st.one_of(
    st.integers(-3, 3),
    st.sampled_from([2**70, -(2**70), 0.5, np.nan, np.inf, -1e-9, "many", None, True, (), [2]]),
)


@settings(CI, max_examples=80)
@given(
    name=st.sampled_from(
        ["epochs", "batch_size", "lr", "weight_decay", "distill_weight", "balance",
         "temperature", "memory_per_class", "embedding_dim", "vote_k", "prototypes_per_class",
         "metric", "index", "selection", "seed"]
    ),
    value=hostile_values,
)  # fmt: skip
def test_hostile_parameters_fail_before_training_changes_anything(fitted, name, value):
    assume(not (name == "epochs" and value == 2**70))  # valid, but would train for ever
    clf, probe = fitted
    clf = copy.deepcopy(clf)
    before = state(clf, probe)
    clf.set_params(**{name: value})
    X = probe.repeat(3, axis=0)
    y = np.array([-3, 0, 5] * 6)
    if outcome(lambda: clf.fit_task(X, y)) is None:
        clf.set_params(**{name: getattr(fitted[0], name)})
        assert state(clf, probe) == before


# ---------------------------------------------------------------- the prototype store


@pytest.fixture(scope="module")
def store():
    rng = np.random.default_rng(1)
    store = PrototypeStore(dim=4, metric="cosine")
    store.add(rng.normal(size=(9, 4)).astype(np.float32), np.repeat([1, 2, -(2**40)], 3))
    return store


def store_state(store, probe):
    return store.classes.tolist(), store.prototypes().tolist(), store.classify(probe).tolist()


store_vectors = st.one_of(
    float_elements.flatmap(
        lambda elements: hnp.arrays(
            st.sampled_from([np.float32, np.float64]),
            st.tuples(st.integers(0, 6), st.sampled_from([4, 4, 4, 3, 0])),
            elements=elements,
        )
    ),
    any_array,
    not_arrays,
)


@settings(CI, max_examples=250)
@given(
    data=st.one_of(support_sets(features=4), inputs_and_labels(store_vectors)),
    method=st.sampled_from(["add", "update", "search", "classify", "class_scores", "remove"]),
    k=st.sampled_from([1, 2, 0, -1, 10**6, 2.5, "3", None]),
)
def test_store_works_or_fails_and_changes_nothing(store, data, method, k):
    store = copy.deepcopy(store)
    probe = np.eye(4, dtype=np.float32)
    before = store_state(store, probe)
    X, y = data
    calls = {
        "add": lambda: store.add(X, y),
        "update": lambda: store.update(X, y),
        "search": lambda: store.search(X, k),
        "classify": lambda: store.classify(X),
        "class_scores": lambda: store.class_scores(X),
        "remove": lambda: store.remove_class(y if not isinstance(y, np.ndarray) else k),
    }
    result = outcome(calls[method])
    if result is None or method in ("search", "classify", "class_scores"):
        assert store_state(store, probe) == before
    if result is not None and method == "classify":
        assert set(result.tolist()) <= set(before[0])
