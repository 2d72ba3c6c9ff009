"""Class-balanced epochs (siamcl.training.sampling.balanced_epoch): shares, cycling, seeds."""

import numpy as np
import pytest
import torch

from siamcl.training import BalancedBatches, balanced_epoch


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("balance", [0.0, 0.5, 1.0])
def test_classes_of_equal_size_give_every_row_once(balance):
    labels = np.repeat(np.arange(4), 25)
    rows = balanced_epoch(labels, balance, _generator())
    assert sorted(rows.tolist()) == list(range(100))
    assert rows.tolist() != list(range(100))  # shuffled, not in order


def test_full_balance_draws_each_class_equally_and_cycles_a_small_one():
    labels = np.array([0] * 90 + [1] * 6 + [2] * 4)  # two classes of exemplars beside a task
    rows = balanced_epoch(labels, 1.0, _generator()).numpy()
    drawn = np.bincount(labels[rows], minlength=3)
    assert drawn.sum() == 100 and drawn.max() - drawn.min() <= 1
    for label in (1, 2):  # each of a small class's rows drawn as often as the others, +-1
        times = np.bincount(rows[labels[rows] == label], minlength=100)[labels == label]
        assert times.min() >= 1 and times.max() - times.min() <= 1
    big = np.bincount(rows, minlength=100)[labels == 0]
    assert big.max() == 1  # the large class is drawn without repeats


def test_shares_follow_count_to_the_power_of_one_minus_balance():
    labels = np.array([0] * 64 + [1] * 16)
    rows = balanced_epoch(labels, 0.5, _generator())
    drawn = np.bincount(labels[rows.numpy()])
    # weights sqrt(64) : sqrt(16) = 2 : 1 of the 80 draws
    assert drawn.tolist() == [53, 27]  # 53.3 and 26.7, the larger remainder rounded up


def test_same_seed_same_epoch_other_seed_other_epoch():
    labels = np.repeat(np.arange(3), [40, 7, 3])
    first = balanced_epoch(labels, 0.5, _generator(5))
    assert torch.equal(first, balanced_epoch(labels, 0.5, _generator(5)))
    assert not torch.equal(first, balanced_epoch(labels, 0.5, _generator(6)))


def test_draws_with_replacement_leave_rows_out_and_repeat_others():
    labels = np.repeat(np.arange(4), 250)
    rows = balanced_epoch(labels, 0.5, _generator(), replacement=True)
    seen = len(np.unique(rows.numpy()))
    assert len(rows) == 1000 and 550 < seen < 720  # about 1 - 1/e of the rows


def test_balanced_batches_cover_every_row_of_an_equal_class_epoch():
    inputs = torch.arange(60, dtype=torch.float32).view(60, 1)
    labels = np.repeat(np.arange(3), 20)
    source = BalancedBatches(inputs, labels, batch_size=16)
    batches = list(source.epoch(_generator()))
    assert len(batches) == len(source) == 4
    rows = torch.cat([b.rows for b in batches])
    assert sorted(rows.tolist()) == list(range(60))
    for batch in batches:
        assert torch.equal(batch.inputs[:, 0].long(), batch.rows)
        assert torch.equal(batch.labels, torch.from_numpy(labels)[batch.rows])
