"""The default optimizer: Adam, fused wherever torch has a kernel for every parameter."""

import pytest
import torch
from torch import nn

from siamcl.training import adam
from siamcl.training.optimizers import fusable


def test_adam_is_fused_on_the_cpu_over_parameter_groups():
    model, proxies = nn.Linear(3, 2), nn.Parameter(torch.zeros(4, 2))
    optimizer = adam(lr=0.01, weight_decay=1e-4)(
        [{"params": model.parameters()}, {"params": proxies}]
    )
    assert optimizer.defaults["fused"] is True
    assert optimizer.defaults["lr"] == 0.01 and optimizer.defaults["weight_decay"] == 1e-4
    assert [len(g["params"]) for g in optimizer.param_groups] == [2, 1]


def test_fusable_refuses_what_the_fused_kernel_cannot_take():
    assert fusable(nn.Linear(2, 2).parameters())
    assert not fusable([torch.zeros(2, dtype=torch.int64)])
    assert not fusable([torch.zeros(2, device="meta")])
    assert not fusable([])


def test_fused_adam_takes_the_steps_the_default_adam_takes():
    torch.manual_seed(0)
    fused_model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    loop_model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    loop_model.load_state_dict(fused_model.state_dict())
    fused = adam(lr=0.01, weight_decay=1e-4)(fused_model.parameters())
    loop = torch.optim.Adam(loop_model.parameters(), lr=0.01, weight_decay=1e-4, foreach=False)
    X, y = torch.randn(64, 8), torch.randint(0, 4, (64,))
    for _ in range(20):
        for model, optimizer in ((fused_model, fused), (loop_model, loop)):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(X), y).backward()
            optimizer.step()
    for a, b in zip(fused_model.parameters(), loop_model.parameters()):
        assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()


@pytest.mark.parametrize("name", ["replay", "er_ace"])
def test_avalanche_baselines_train_with_the_same_adam(name):
    pytest.importorskip("avalanche")
    from avalanche_settings import evaluator, small_settings

    from siamcl.integrations.avalanche_baselines import build_baseline

    strategy = build_baseline(name, small_settings(), evaluator())
    assert strategy.optimizer.defaults["fused"] is True
