"""Metric-learning losses by name, each paired with a miner, from pytorch-metric-learning.

A :class:`MetricLoss` composes a pml loss and an optional pml miner the way pml intends
(``loss(embeddings, labels, miner(embeddings, labels))``); :func:`build_loss` picks a pairing
that works well on L2-normalised embeddings without tuning.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from pytorch_metric_learning import losses, miners
from pytorch_metric_learning.distances import CosineSimilarity
from pytorch_metric_learning.losses import BaseMetricLossFunction
from pytorch_metric_learning.miners import BaseMiner

__all__ = ["LOSSES", "MetricLoss", "build_loss"]


@dataclass
class MetricLoss:
    """A pml loss with an optional miner that selects the pairs or triplets it sees."""

    loss: BaseMetricLossFunction
    miner: BaseMiner | None = None

    def __call__(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
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


def build_loss(
    spec: str | BaseMetricLossFunction | MetricLoss, miner: BaseMiner | None = None
) -> MetricLoss:
    """Return a :class:`MetricLoss` for a name in :data:`LOSSES` or a pml loss object.

    ``miner`` replaces the default miner of a named loss, or adds one to a pml loss object.
    """
    if isinstance(spec, MetricLoss):
        return spec if miner is None else MetricLoss(spec.loss, miner)
    if isinstance(spec, BaseMetricLossFunction):
        return MetricLoss(spec, miner)
    if not isinstance(spec, str):
        raise TypeError(
            f"loss must be a name or a pytorch-metric-learning loss, got {type(spec).__name__}"
        )
    if spec not in LOSSES:
        raise ValueError(f"unknown loss {spec!r}; known losses: {sorted(LOSSES)}")
    built = LOSSES[spec]()
    return built if miner is None else MetricLoss(built.loss, miner)
