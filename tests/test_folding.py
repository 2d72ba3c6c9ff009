"""Inference passes fold BatchNorm into the convolutions before it (siamcl.training.folding)."""

import numpy as np
import pytest
import torch
from torch import nn

from siamcl import allocator
from siamcl.encoders import build_encoder
from siamcl.training import embed_in_batches
from siamcl.training.folding import FOLD_MIN_VALUES, fold_min_values, folded


def test_a_folded_copy_embeds_as_the_model_and_leaves_it_training():
    torch.manual_seed(0)
    encoder = build_encoder("conv4", (1, 28, 28), 32)
    encoder.train()
    encoder(torch.randn(64, 1, 28, 28))  # running statistics away from their start
    images = torch.randn(fold_min_values() // (28 * 28) + 1, 1, 28, 28)
    before = {k: v.clone() for k, v in encoder.state_dict().items()}

    embedded = embed_in_batches(encoder, images)
    with torch.no_grad():
        exact = encoder.eval()(images).numpy()
    np.testing.assert_allclose(embedded, exact, atol=1e-5)

    copy = folded(encoder)
    assert copy is not encoder
    assert not any(isinstance(m, nn.BatchNorm2d) for m in copy.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in encoder.modules())
    assert all(torch.equal(v, encoder.state_dict()[k]) for k, v in before.items())


def test_models_it_cannot_fold_embed_as_they_are():
    class Branching(nn.Module):  # data-dependent control flow: torch.fx cannot trace it
        def __init__(self):
            super().__init__()
            self.conv, self.norm = nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.norm(self.conv(x)).flatten(1)
            return y if y.sum() > 0 else -y

    branching = Branching().eval()
    assert folded(branching) is branching
    assert folded(branching.train()) is branching  # a training model is never folded
    plain = nn.Sequential(nn.Flatten(), nn.Linear(64, 4)).eval()
    assert folded(plain) is plain  # nothing to fold
    rows = torch.randn(fold_min_values() // 64 + 1, 1, 8, 8)
    assert embed_in_batches(branching, rows).shape == (len(rows), 144)


@pytest.mark.parametrize("setting", ["system", "retained (heap blocks up to 256 MiB)"])
def test_only_passes_over_enough_input_values_fold(monkeypatch, setting):
    """Folding costs the same at any input size and saves a share of every row, so whether
    a pass folds depends on its input values, not its rows; and on the allocator: with freed
    memory retained an unfolded pass costs less, so it takes a longer pass to repay."""
    from siamcl.training import embedding

    monkeypatch.setitem(allocator._state, "setting", setting)
    threshold = fold_min_values()
    assert threshold == FOLD_MIN_VALUES["system" if setting == "system" else "retained"]
    calls = []
    monkeypatch.setattr(embedding, "folded", lambda model: calls.append(model) or model)
    rows = threshold // (28 * 28) + 1  # enough at 28x28, not at 8x8
    small = build_encoder("conv4", (1, 8, 8), 16)
    embed_in_batches(small, torch.randn(rows, 1, 8, 8))
    assert calls == []
    big = build_encoder("conv4", (1, 28, 28), 16)
    embed_in_batches(big, torch.randn(rows, 1, 28, 28))
    assert calls == [big]
    assert FOLD_MIN_VALUES["system"] < FOLD_MIN_VALUES["retained"]
