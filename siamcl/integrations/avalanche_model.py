"""The model side of :class:`~siamcl.integrations.avalanche.SiameseStrategy`.

:class:`PrototypeModel` answers with embeddings in training mode and prototype scores in eval
mode, so Avalanche's metrics work unchanged; :class:`BalancedSampler` draws class-balanced
batches; :class:`EmbeddingCache` embeds an experience once for exemplar selection and
prototypes; :func:`build_encoder_for` builds a named encoder from the strategy's seed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Sampler

from siamcl.encoders import EmbeddingNetwork, build_encoder
from siamcl.store import PrototypeStore
from siamcl.training import balanced_epoch

__all__ = [
    "MASK_VALUE",
    "BalancedSampler",
    "EmbeddingCache",
    "PrototypeModel",
    "build_encoder_for",
]

MASK_VALUE = -1000.0  # score of a class the store does not hold (Avalanche's masking value)


class PrototypeModel(nn.Module):
    """An embedding encoder that answers with prototype scores in eval mode.

    Training mode returns L2-normalised embeddings ``[N, D]`` for the metric loss. Eval mode
    returns ``[N, C]`` scores, column ``c`` being Avalanche class id ``c``: the similarity to
    the class's nearest prototype in ``store`` divided by ``temperature``, ``MASK_VALUE`` for
    classes the store does not hold. Its argmax is the nearest-prototype label.
    """

    def __init__(self, encoder: nn.Module, temperature: float = 0.1):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature!r}")
        self.encoder = (
            encoder if isinstance(encoder, EmbeddingNetwork) else EmbeddingNetwork(encoder)
        )
        self.temperature = temperature
        self.store: PrototypeStore | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        embeddings = self.encoder(x)
        return embeddings if self.training else self.class_scores(embeddings)

    def class_scores(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Scores ``[N, max class id + 1]`` of embeddings against the store's prototypes."""
        if self.store is None or len(self.store) == 0:
            return torch.full((len(embeddings), 1), MASK_VALUE, device=embeddings.device)
        classes, scores = self.store.class_scores(embeddings.detach().float().cpu().numpy())
        out = torch.full((len(embeddings), int(classes.max()) + 1), MASK_VALUE)
        out[:, torch.from_numpy(classes)] = torch.from_numpy(scores) / self.temperature
        return out.to(embeddings.device)


class BalancedSampler(Sampler[int]):
    """Each epoch, rows drawn by :func:`~siamcl.training.balanced_epoch`."""

    def __init__(self, labels: np.ndarray, balance: float, generator: torch.Generator):
        self.labels = np.asarray(labels)
        self.balance = balance
        self.generator = generator

    def __iter__(self):
        return iter(balanced_epoch(self.labels, self.balance, self.generator).tolist())

    def __len__(self) -> int:
        return len(self.labels)


class EmbeddingCache:
    """Embeds an experience's inputs once for both exemplar selection and prototypes.

    Herding embeds each class's candidates (stored as float16) and the prototype rebuild
    embeds the experience again; rows already embedded are looked up by their float16
    bytes instead of passing through the encoder a second time.
    """

    def __init__(self, embed: Callable[[Any], np.ndarray], inputs: torch.Tensor):
        self.embed = embed
        self.inputs = inputs
        self.embeddings = embed(inputs)
        self.dim = self.embeddings.shape[1]
        rows = inputs.numpy().astype(np.float16).reshape(len(inputs), -1)
        self.rows = {row.tobytes(): position for position, row in enumerate(rows)}

    def __call__(self, batch: torch.Tensor | np.ndarray) -> np.ndarray:
        if batch is self.inputs:
            return self.embeddings
        array = batch.numpy() if isinstance(batch, torch.Tensor) else np.asarray(batch)
        keys = array.astype(np.float16).reshape(len(array), -1)
        positions = [self.rows.get(row.tobytes()) for row in keys]
        if any(position is None for position in positions):
            return self.embed(batch)
        return self.embeddings[positions]


def build_encoder_for(
    encoder: str | nn.Module, input_shape: Sequence[int] | None, embedding_dim: int, seed: int
) -> nn.Module:
    if isinstance(encoder, nn.Module):
        return encoder
    if input_shape is None:
        raise ValueError(
            f"encoder {encoder!r} is a name: give input_shape, one sample's shape as the "
            f"benchmark delivers it (e.g. (1, 28, 28)), or pass an nn.Module"
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_encoder(encoder, tuple(input_shape), embedding_dim)
