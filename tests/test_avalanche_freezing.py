"""Frozen leading layers inside Avalanche: the plugin, and the baselines built with it."""

from __future__ import annotations

import copy
import functools

import numpy as np
import pytest
import torch
from avalanche.core import SupervisedPlugin
from avalanche_settings import STREAM_ACC, evaluator, small_settings
from torch import nn

from siamcl.data import class_incremental
from siamcl.integrations.avalanche import SiameseStrategy, to_avalanche
from siamcl.integrations.avalanche_baselines import (
    FREEZABLE,
    build_baseline,
)
from siamcl.integrations.avalanche_freezing import FrozenLeadingLayers, strategy_backbone
from siamcl.training.freezing import leading_layers

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
settings = functools.partial(small_settings, epochs=2)


def state_of(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in module.state_dict().items()}


def test_replay_trains_its_second_experience_above_the_frozen_first_block(mnist_slice):
    torch.manual_seed(0)
    replay = build_baseline("replay", settings(frozen_layers=1), evaluator())
    assert any(isinstance(p, FrozenLeadingLayers) for p in replay.plugins)
    first_block, second_block = list(strategy_backbone(replay.model).children())[:2]
    stream = mnist_slice.train_stream
    replay.train(stream[0])
    assert all(p.requires_grad for p in first_block.parameters())  # the first task trains it
    after_first, second_before = state_of(first_block), state_of(second_block)
    replay.eval(mnist_slice.test_stream)
    replay.train(stream[1])
    results = replay.eval(mnist_slice.test_stream)
    assert not any(p.requires_grad for p in first_block.parameters())
    for name, value in state_of(first_block).items():  # weights and BN statistics, bit for bit
        torch.testing.assert_close(value, after_first[name], rtol=0, atol=0, msg=name)
    assert all(p.grad is None for p in first_block.parameters())
    moved = [not torch.equal(v, second_before[k]) for k, v in state_of(second_block).items()]
    assert any(moved)  # the layers above trained on
    assert results[STREAM_ACC] >= 0.4  # four digits: chance is 0.25


def test_frozen_batch_norm_stays_in_eval_mode_through_training(mnist_slice):
    torch.manual_seed(0)
    naive = build_baseline("naive", settings(frozen_layers=2, epochs=1), evaluator())
    modes = RecordNormModes()
    naive.plugins.append(modes)
    for experience in mnist_slice.train_stream:
        naive.train(experience)
    assert modes.seen == {0: {(True, True)}, 1: {(False, True)}}  # then held: block 1's norm


class RecordNormModes(SupervisedPlugin):
    """Whether the first and third blocks' batch norms train, at each step, per experience."""

    def __init__(self):
        super().__init__()
        self.seen: dict[int, set] = {}

    def before_training_iteration(self, strategy, **kwargs) -> None:
        blocks = list(strategy_backbone(strategy.model).children())
        mode = (blocks[0][1].training, blocks[2][1].training)
        self.seen.setdefault(strategy.clock.train_exp_counter, set()).add(mode)


def test_the_siamese_strategy_takes_the_plugin(mnist_slice):
    torch.manual_seed(0)
    strategy = SiameseStrategy(
        encoder="conv4",
        input_shape=(1, 28, 28),
        train_epochs=1,
        train_mb_size=16,
        memory_per_class=5,
        plugins=[FrozenLeadingLayers(1)],
        evaluator=evaluator(),
        seed=0,
    )
    first_block, second_block = leading_layers(strategy_backbone(strategy.model))[:2]
    strategy.train(mnist_slice.train_stream[0])
    before, second_before = (copy.deepcopy(b.state_dict()) for b in (first_block, second_block))
    strategy.train(mnist_slice.train_stream[1])
    for name, value in first_block.state_dict().items():
        torch.testing.assert_close(value, before[name], rtol=0, atol=0, msg=name)
    assert not torch.equal(second_block[0].weight, second_before["0.weight"])  # trained on


def test_refusals_name_the_reason():
    with pytest.raises(ValueError, match="count must be a non-negative integer"):
        FrozenLeadingLayers(-1)
    with pytest.raises(ValueError, match="frozen_layers applies to baselines"):
        build_baseline("gdumb", settings(frozen_layers=1), evaluator())
    assert "replay" in FREEZABLE and "slda" not in FREEZABLE
    too_many = build_baseline("replay", settings(frozen_layers=7), evaluator())
    with pytest.raises(ValueError, match="at most 6 can be frozen"):
        too_many.train(tiny_stream().train_stream[0])


def tiny_stream():
    """Eight random 28x28 images of four classes, as a two-experience Avalanche benchmark."""
    rng = np.random.default_rng(0)
    X = rng.integers(0, 255, size=(8, 28, 28)).astype(np.uint8)
    y = np.repeat(np.arange(4), 2)
    return to_avalanche(class_incremental(X, y, n_tasks=2, seed=0), X, y)
