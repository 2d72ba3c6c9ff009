"""Metric-learning losses by name, each paired with a miner, from pytorch-metric-learning.

A :class:`MetricLoss` composes a pml loss and an optional pml miner the way pml intends
(``loss(embeddings, labels, miner(embeddings, labels))``); :func:`build_loss` picks a pairing
that works well on L2-normalised embeddings without tuning. Any pml loss object is accepted,
including losses with parameters of their own (``ProxyAnchorLoss``, ``ArcFaceLoss``: their
proxies are trained with the encoder) and loss wrappers such as ``CrossBatchMemory``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from pytorch_metric_learning import losses, miners
from pytorch_metric_learning.distances import CosineSimilarity
from pytorch_metric_learning.losses import BaseMetricLossFunction
from pytorch_metric_learning.miners import BaseMiner
from torch import nn

__all__ = ["LOSSES", "MetricLoss", "build_loss", "is_pml_loss"]


def is_pml_loss(spec: object) -> bool:
    """Whether ``spec`` is a pytorch-metric-learning loss or loss wrapper object."""
    if isinstance(spec, BaseMetricLossFunction):
        return True
    wrapper = getattr(losses, "CrossBatchMemory", None)
    return wrapper is not None and isinstance(spec, wrapper)


class MetricLoss(nn.Module):
    """A pml loss with an optional miner that selects the pairs or triplets it sees.

    An ``nn.Module``, so a loss's own parameters (proxies) are ``parameters()`` of it and an
    optimizer given those trains them.
    """

    def __init__(self, loss: nn.Module, miner: BaseMiner | None = None):
        super().__init__()
        self.loss = loss
        self.miner = miner

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        tuples = self.miner(embeddings, labels) if self.miner is not None else None
        return self.loss(embeddings, labels, tuples)


def _contrastive() -> MetricLoss:
    return MetricLoss(
        losses.ContrastiveLoss(pos_margin=0.0, neg_margin=1.0),
        miners.PairMarginMiner(pos_margin=0.2, neg_margin=0.8),
    )


def _triplet() -> MetricLoss:
    return MetricLoss(
        losses.TripletMarginLoss(margin=0.2),
        miners.TripletMarginMiner(margin=0.2, type_of_triplets="semihard"),
    )


def _multisimilarity() -> MetricLoss:
    return MetricLoss(
        losses.MultiSimilarityLoss(alpha=2.0, beta=50.0, base=0.5),
        miners.MultiSimilarityMiner(epsilon=0.1),
    )


def _supcon() -> MetricLoss:
    return MetricLoss(losses.SupConLoss(temperature=0.1))


def _ntxent() -> MetricLoss:
    return MetricLoss(losses.NTXentLoss(temperature=0.1, distance=CosineSimilarity()))


LOSSES: dict[str, Callable[[], MetricLoss]] = {
    "contrastive": _contrastive,
    "triplet": _triplet,
    "multisimilarity": _multisimilarity,
    "supcon": _supcon,
    "ntxent": _ntxent,
}


def build_loss(spec: str | nn.Module, miner: BaseMiner | None = None) -> MetricLoss:
    """Return a :class:`MetricLoss` for a name in :data:`LOSSES` or a pml loss object.

    ``miner`` replaces the default miner of a named loss, or adds one to a pml loss object.
    A loss object is used as given (not copied): build a new one for each learner.
    """
    if isinstance(spec, MetricLoss):
        return spec if miner is None else MetricLoss(spec.loss, miner)
    if is_pml_loss(spec):
        return MetricLoss(spec, miner)
    if not isinstance(spec, str):
        raise TypeError(
            f"loss must be a name or a pytorch-metric-learning loss, got {type(spec).__name__}"
        )
    if spec not in LOSSES:
        raise ValueError(f"unknown loss {spec!r}; known losses: {sorted(LOSSES)}")
    built = LOSSES[spec]()
    return built if miner is None else MetricLoss(built.loss, miner)
