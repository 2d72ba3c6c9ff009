"""Within-class whitening: make the directions in which one class varies count less.

After training, the embeddings of one character still spread along a few directions (how
it was drawn, how it was distorted); nearest-prototype classification then confuses classes
that differ along those directions with drawings that merely vary along them. Whitening by
the within-class covariance (the linear step of linear discriminant analysis, and of
within-class covariance normalisation in speaker verification) divides each direction by how
much a class varies along it. The covariance is estimated on the training classes, with
each image seen under a few random distortions, and shrunk towards a multiple of the
identity (scikit-learn's :class:`~sklearn.covariance.ShrunkCovariance`), since a few hundred
classes estimate a 128x128 covariance poorly.

Whitening is linear, so it folds into the encoder's last linear projection
(:func:`fold_whitening`): the encoder keeps its architecture, and saving, loading, export and
the prototype store need nothing new. As every encoder L2-normalises its output, whitening
the unit embeddings and whitening the projection give the same directions.

On one-shot Omniglot (docs/fewshot.md) it raised 20-way one-shot accuracy and the one-shot
class-incremental stream over all held-out characters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "fold_whitening",
    "projection_of",
    "whiten_encoder",
    "whiten_rows",
    "within_class_whitening",
]


def within_class_whitening(embeddings: Any, labels: Any, shrinkage: float = 0.3) -> np.ndarray:
    """The symmetric ``[D, D]`` matrix ``C^-1/2`` of the shrunk within-class covariance ``C``.

    ``embeddings`` is ``[N, D]``; ``labels`` gives each row's class. ``C`` is the covariance
    of the rows around their class means, shrunk as ``(1 - shrinkage) C + shrinkage mu I``
    (``mu`` the mean variance). The matrix is scaled so its largest factor is 1: only
    directions matter to cosine similarity, and the projection it is folded into keeps its
    scale.
    """
    from sklearn.covariance import ShrunkCovariance  # at first use, not at import time

    embeddings = np.asarray(embeddings, dtype=np.float64)
    labels = np.asarray(labels)
    if embeddings.ndim != 2 or labels.shape != (len(embeddings),):
        raise ValueError(
            f"need embeddings [N, D] and one label per row, got {embeddings.shape} and "
            f"{labels.shape}"
        )
    if not 0 <= shrinkage <= 1:
        raise ValueError(f"shrinkage must lie in [0, 1], got {shrinkage!r}")
    classes, inverse = np.unique(labels, return_inverse=True)
    if len(classes) == len(labels):
        raise ValueError("within-class whitening needs at least one class with two rows")
    sums = np.zeros((len(classes), embeddings.shape[1]))
    np.add.at(sums, inverse, embeddings)
    means = sums / np.bincount(inverse)[:, None]
    deviations = embeddings - means[inverse]
    covariance = ShrunkCovariance(shrinkage=shrinkage, assume_centered=True).fit(deviations)
    values, vectors = np.linalg.eigh(covariance.covariance_)
    if values.min() <= 0:
        raise ValueError(
            "the within-class covariance is singular: use a shrinkage above 0 or more rows"
        )
    factors = values**-0.5
    return (vectors * (factors / factors.max())) @ vectors.T


def whiten_rows(embeddings: np.ndarray, whitening: np.ndarray) -> np.ndarray:
    """Unit embeddings whitened and normalised again: what an encoder with ``whitening``
    folded in gives for the images these (one-view) embeddings came from."""
    rows = embeddings @ whitening.T
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True).clip(1e-12)).astype(np.float32)


def projection_of(encoder: nn.Module) -> nn.Linear:
    """The linear layer the encoder's embedding comes out of, before its L2 normalisation.

    Every built-in encoder ends in one; an encoder of one's own that does not (its body
    ends in an activation, say) raises ValueError.
    """
    body = getattr(encoder, "body", encoder)
    last = body[-1] if isinstance(body, nn.Sequential) and len(body) else body
    if type(last) is not nn.Linear:
        raise ValueError(
            "whitening folds into the encoder's last linear projection, but this encoder ends "
            f"in {type(last).__name__}; use an encoder ending in nn.Linear (every built-in "
            "encoder does) or turn whitening off"
        )
    return last


def fold_whitening(encoder: nn.Module, whitening: Any) -> None:
    """Replace the encoder's projection ``z = A x + b`` by ``W z`` (in place)."""
    projection = projection_of(encoder)
    weight = projection.weight
    matrix = torch.as_tensor(np.asarray(whitening), dtype=weight.dtype, device=weight.device)
    if matrix.shape != (projection.out_features, projection.out_features):
        raise ValueError(
            f"whitening must be [{projection.out_features}, {projection.out_features}], "
            f"got {tuple(matrix.shape)}"
        )
    with torch.no_grad():
        projection.weight.copy_(matrix @ projection.weight)
        if projection.bias is not None:
            projection.bias.copy_(matrix @ projection.bias)


@torch.no_grad()
def whiten_encoder(
    encoder: nn.Module,
    images: torch.Tensor,
    labels: np.ndarray,
    standardise: Callable[[torch.Tensor], torch.Tensor],
    distort: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None,
    generator: torch.Generator,
    shrinkage: float = 0.3,
    distortions: int = 4,
    batch_size: int = 512,
) -> np.ndarray:
    """Estimate the within-class whitening of ``encoder`` on ``images`` of classes ``labels``
    (each seen under ``distortions`` random draws of ``distort``, or once as given) and fold
    it into the encoder. Returns the whitening matrix."""
    device = projection_of(encoder).weight.device  # refuses before any work
    training = encoder.training
    encoder.eval()
    try:
        draws = distortions if distort is not None else 1
        rows = []
        for _ in range(draws):
            for start in range(0, len(images), batch_size):
                batch = images[start : start + batch_size]
                if distort is not None:
                    batch = distort(batch, generator)
                rows.append(encoder(standardise(batch).to(device)).cpu())
        embeddings = torch.cat(rows).double().numpy()
        whitening = within_class_whitening(embeddings, np.tile(labels, draws), shrinkage)
        fold_whitening(encoder, whitening)
    finally:
        encoder.train(training)
    return whitening
