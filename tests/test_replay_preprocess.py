import numpy as np
import pytest
import torch

from siamcl.preprocess import Preprocessor, as_array, as_labels
from siamcl.replay import ExemplarMemory, herding_order


def test_herding_tracks_the_class_mean_better_than_random():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(500, 8))
    target = points.mean(axis=0)
    herded = points[herding_order(points, 10)].mean(axis=0)
    random = points[rng.choice(500, 10, replace=False)].mean(axis=0)
    assert np.linalg.norm(herded - target) < np.linalg.norm(random - target) / 2


def test_per_class_budget_and_bytes():
    memory = ExemplarMemory(per_class=5, selection="random")
    X = np.arange(60, dtype=np.float32).reshape(30, 2)
    y = np.repeat([0, 1, 2], 10)
    memory.add(X, y)
    assert len(memory) == 15 and memory.classes == [0, 1, 2]
    assert memory.nbytes == 15 * 2 * 4


def test_total_budget_shrinks_old_classes_keeping_their_first_exemplars():
    memory = ExemplarMemory(per_class=None, total=12, selection="herding")
    X = np.random.default_rng(1).normal(size=(40, 3))
    y = np.repeat([0, 1], 20)
    memory.add(X, y, embed=lambda a: a)
    first = memory.get(0).copy()
    assert len(first) == 6
    memory.add(X[:20] + 10, np.full(20, 5), embed=lambda a: a)
    assert len(memory) == 12 and len(memory.get(0)) == 4
    assert np.array_equal(memory.get(0), first[:4])


def test_memory_validation():
    with pytest.raises(ValueError, match="exactly one"):
        ExemplarMemory(per_class=2, total=5)
    with pytest.raises(ValueError, match="unknown selection"):
        ExemplarMemory(selection="best")
    with pytest.raises(ValueError, match="embed function"):
        ExemplarMemory(per_class=1).add(np.zeros((2, 2)), np.array([0, 1]))


def test_memory_state_round_trip():
    memory = ExemplarMemory(per_class=3, selection="random", seed=4)
    memory.add(np.arange(20.0).reshape(10, 2), np.repeat([7, -3], 5))
    restored = ExemplarMemory.from_state_dict(memory.state_dict())
    assert restored.classes == memory.classes
    for label in memory.classes:
        assert np.array_equal(restored.get(label), memory.get(label))


def test_preprocessor_inverts_bright_backgrounds_and_resizes():
    white = np.full((4, 10, 10), 255, dtype=np.uint8)
    white[:, 4:6, :] = 0  # dark stroke
    pre = Preprocessor(input_size=(20, 20)).fit(white)
    assert pre.invert is True and pre.input_shape == (1, 20, 20)
    canonical = pre.canonical(white)
    assert canonical.shape == (4, 1, 20, 20)
    assert canonical[:, :, 0, 0].max() < 0.05 and canonical[:, :, 10, :].mean() > 0.5
    out = pre(np.zeros((2, 1, 7, 7), dtype=np.float32))  # other size, channel-first
    assert out.shape == (2, 1, 20, 20)


def test_preprocessor_takes_an_int_size_as_a_square_and_names_a_bad_one():
    images = np.zeros((3, 10, 10), dtype=np.float32)
    assert Preprocessor(input_size=16).fit(images).input_shape == (1, 16, 16)
    with pytest.raises(TypeError, match=r"an int or a \(height, width\) pair of ints, got 'big'"):
        Preprocessor(input_size="big").fit(images)


def test_preprocessor_standardises_and_round_trips():
    X = np.random.default_rng(0).integers(0, 80, size=(50, 8, 8)).astype(np.uint8)
    pre = Preprocessor().fit(X)
    out = pre(X)
    assert abs(out.mean().item()) < 1e-4 and abs(out.std().item() - 1) < 1e-2
    again = Preprocessor.from_state_dict(pre.state_dict())
    assert torch.equal(again(X), out)


def test_preprocessor_rejects_mismatched_inputs():
    pre = Preprocessor().fit(np.zeros((3, 5), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\[N, 5\]"):
        pre(np.zeros((3, 6), dtype=np.float32))
    images = Preprocessor().fit(np.zeros((3, 1, 8, 8), dtype=np.float32))
    with pytest.raises(ValueError, match="1 channel"):
        images(np.zeros((3, 3, 8, 8), dtype=np.float32))


@pytest.mark.parametrize(
    "X, error, message",
    [
        ([[1.0, 2.0]], TypeError, "numpy array or torch tensor"),
        (np.array([["a", "b"]]), TypeError, "dtype"),
        (np.zeros((0, 4)), ValueError, "empty"),
        (np.zeros(4), ValueError, "shape"),
        (np.array([[np.nan, 1.0]]), ValueError, "NaN"),
        (np.array([[np.inf, 1.0]]), ValueError, "NaN or infinite"),
    ],
)
def test_as_array_errors(X, error, message):
    with pytest.raises(error, match=message):
        as_array(X)


def test_as_labels():
    assert as_labels(np.array([1.0, -2.0]), 2).dtype == np.int64
    with pytest.raises(TypeError, match="integer class labels"):
        as_labels(np.array([0.5, 1.0]), 2)
    with pytest.raises(TypeError):
        as_labels(np.array(["a", "b"]), 2)
    with pytest.raises(ValueError, match="3 labels"):
        as_labels(np.array([1, 2, 3]), 2)
