"""The prototype readout of an Avalanche strategy (siamcl.integrations.avalanche_readout)."""

from __future__ import annotations

import pytest
import torch
from avalanche.training import Naive
from avalanche_settings import STREAM_ACC, evaluator, small_settings
from torch import nn

from siamcl.integrations.avalanche_baselines import build_baseline
from siamcl.integrations.avalanche_readout import PrototypeHead, PrototypeReadoutPlugin

settings = small_settings


def test_the_head_scores_known_classes_by_the_cosine_of_whitened_features():
    whitening = torch.diag(torch.tensor([1.0, 0.5]))
    means = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    head = PrototypeHead(whitening, means, torch.tensor([2, 0]), n_outputs=3)
    logits = head(torch.tensor([[3.0, 0.0], [1.0, 4.0]]))
    assert torch.isinf(logits[:, 1]).all()  # class 1 not seen yet
    # normalised, whitened by diag(1, 0.5), normalised again: (1, 0) and (1, 2) / sqrt(5)
    rows = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [1.0, 2.0]]), dim=1)
    torch.testing.assert_close(logits[:, 2], rows[:, 0])  # against class 2's unit mean (1, 0)
    torch.testing.assert_close(logits[:, 0], rows[:, 1])
    assert logits.argmax(1).tolist() == [2, 0]


def test_replay_read_out_knows_every_class_and_gives_its_head_back(mnist_slice):
    torch.manual_seed(0)
    read_out = build_baseline("replay", settings(whitening=0.1), evaluator())
    plugin = read_out.plugins[0]
    assert isinstance(plugin, PrototypeReadoutPlugin)  # before the replay plugin and evaluator
    torch.manual_seed(0)
    plain = build_baseline("replay", settings(), evaluator())
    accuracy = {}
    for name, strategy in (("read out", read_out), ("head", plain)):
        torch.manual_seed(1)  # both trained from the same random state
        for experience in mnist_slice.train_stream:
            strategy.train(experience)
            accuracy[name] = strategy.eval(mnist_slice.test_stream)[STREAM_ACC]
    # the second experience's readout took the first's classes from the buffer
    assert sorted(plugin.prototype_head.classes.tolist()) == [0, 1, 2, 3]
    assert isinstance(read_out.model.head, nn.Linear)  # restored after evaluation
    assert accuracy["read out"] > 0.6  # four digits: chance is 0.25
    # training is the same: the two models' weights agree, only the readout differs
    for a, b in zip(read_out.model.parameters(), plain.model.parameters()):
        torch.testing.assert_close(a, b)
    assert accuracy["read out"] != accuracy["head"]


def test_plain_class_means_without_whitening(mnist_slice):
    torch.manual_seed(0)
    strategy = build_baseline("naive", settings(prototypes_per_class=1), evaluator())
    strategy.train(mnist_slice.train_stream[0])
    head = strategy.plugins[0].prototype_head
    torch.testing.assert_close(head.whitening, torch.eye(head.whitening.shape[0]))
    assert sorted(head.classes.tolist()) == sorted(
        {int(y) for y in mnist_slice.train_stream[0].dataset.targets}
    )


def test_what_cannot_be_read_out_is_refused(mnist_slice):
    with pytest.raises(ValueError, match="replaces the head of"):
        build_baseline("icarl", settings(whitening=0.1), evaluator())
    with pytest.raises(ValueError, match="one class mean a class"):
        build_baseline("replay", settings(prototypes_per_class=3), evaluator())
    with pytest.raises(ValueError, match=r"whitening must be None or in \[0, 1\]"):
        PrototypeReadoutPlugin(whitening=1.5)
    model = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    strategy = Naive(
        model=model,
        optimizer=optimizer,
        train_mb_size=16,
        train_epochs=1,
        plugins=[PrototypeReadoutPlugin()],
        evaluator=evaluator(),
    )
    with pytest.raises(TypeError, match="Sequential has no module 'backbone'"):
        strategy.train(mnist_slice.train_stream[0])
