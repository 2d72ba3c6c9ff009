"""The prototype readout for any Avalanche strategy whose model is a backbone and a head.

:class:`PrototypeReadoutPlugin` gives an Avalanche strategy (Replay, ER-ACE, DER++, ...) the
readout siamcl's learners classify with: after each training experience it embeds the
experience's training data and the strategy's replay buffer with the model's backbone
(L2-normalised), estimates their within-class whitening (optional), and keeps each class's
mean; while the strategy evaluates, the model's head is replaced by a :class:`PrototypeHead`
that scores each known class by the cosine of a sample's whitened features with its mean.
The head is restored after evaluation, so training is unchanged: only how the trained
backbone is read out differs (siamcl's :class:`~siamcl.learners.readout.PrototypeReadout`
does the same for its own ``SoftmaxClassifier``).

The scores are a matrix product with the class means, as a linear head's are: there are as
many prototypes as classes, so this is a head, not a search (siamcl's FAISS store serves its
own learners, where a class may have many prototypes).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from siamcl._extras import needs_extra
from siamcl.integrations.avalanche_streams import dataset_arrays
from siamcl.training import embed_in_batches
from siamcl.whitening import whiten_rows, within_class_whitening

with needs_extra("the Avalanche plugin"):
    from avalanche.core import SupervisedPlugin

__all__ = ["PrototypeHead", "PrototypeReadoutPlugin"]


class PrototypeHead(nn.Module):
    """Logits over ``n_outputs`` classes from features: the cosine of the whitened,
    normalised features with each known class's mean (``means`` rows, for ``classes``),
    ``-inf`` for classes not yet seen."""

    def __init__(
        self, whitening: torch.Tensor, means: torch.Tensor, classes: torch.Tensor, n_outputs: int
    ):
        super().__init__()
        self.register_buffer("whitening", whitening)
        self.register_buffer("means", F.normalize(means, dim=1))
        self.register_buffer("classes", classes)
        self.n_outputs = n_outputs

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        rows = F.normalize(F.normalize(features.float(), dim=1) @ self.whitening.T, dim=1)
        logits = rows.new_full((len(rows), self.n_outputs), float("-inf"))
        logits[:, self.classes] = rows @ self.means.T
        return logits


class PrototypeReadoutPlugin(SupervisedPlugin):
    """Read a strategy's model out by class means of its backbone's features when it
    evaluates (see the module docstring).

    ``whitening``: None (plain class means) or a shrinkage in [0, 1] for the within-class
    whitening of the features (:func:`~siamcl.whitening.within_class_whitening`).
    ``backbone`` / ``head``: the names of the model's feature extractor and classifier
    (siamcl's ``HeadClassifier`` and many Avalanche models: ``backbone`` and ``head``). Put
    it before the evaluator (``strategy.plugins.insert(0, plugin)``) for the readout to be
    counted in an experience's training cost, and before a replay plugin so that the buffer
    it reads holds the earlier experiences' exemplars; a class of the experience is read from
    the experience's own data either way.
    """

    def __init__(
        self, whitening: float | None = 0.1, backbone: str = "backbone", head: str = "head"
    ):
        super().__init__()
        if whitening is not None and not 0 <= whitening <= 1:
            raise ValueError(f"whitening must be None or in [0, 1], got {whitening!r}")
        self.whitening = whitening
        self.backbone, self.head = backbone, head
        self.prototype_head: PrototypeHead | None = None
        self._trained_head: nn.Module | None = None

    def after_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        model = strategy.model
        for name in (self.backbone, self.head):
            if not isinstance(getattr(model, name, None), nn.Module):
                raise TypeError(
                    f"PrototypeReadoutPlugin reads model.{self.backbone} out in place of "
                    f"model.{self.head}, but {type(model).__name__} has no module {name!r}"
                )
        features, labels = self._rows(strategy, getattr(model, self.backbone))
        dim = features.shape[1]
        matrix = np.eye(dim)
        if self.whitening is not None:
            matrix = within_class_whitening(features, labels, self.whitening)
        whitened = torch.from_numpy(whiten_rows(features, matrix))
        classes = np.unique(labels)
        means = torch.stack([whitened[torch.from_numpy(labels == c)].mean(0) for c in classes])
        n_outputs = getattr(model, self.head).out_features
        self.prototype_head = PrototypeHead(
            torch.from_numpy(matrix).float(), means, torch.from_numpy(classes), n_outputs
        ).to(strategy.device)

    def before_eval(self, strategy: Any, **kwargs: Any) -> None:
        if self.prototype_head is None:
            return  # nothing trained yet: the model's own head answers
        self._trained_head = getattr(strategy.model, self.head)
        setattr(strategy.model, self.head, self.prototype_head)

    def after_eval(self, strategy: Any, **kwargs: Any) -> None:
        if self._trained_head is not None:
            setattr(strategy.model, self.head, self._trained_head)
            self._trained_head = None

    def _rows(self, strategy: Any, backbone: nn.Module) -> tuple[np.ndarray, np.ndarray]:
        """Normalised features and labels of the experience's training data, then of the
        replay buffer's exemplars of every other class."""
        features, labels = _embedded(backbone, strategy.experience.dataset.eval(), strategy)
        buffer = _replay_buffer(strategy)
        if buffer is not None and len(buffer):
            held, held_labels = _embedded(backbone, buffer.eval(), strategy)
            earlier = ~np.isin(held_labels, labels)
            features = np.concatenate([features, held[earlier]])
            labels = np.concatenate([labels, held_labels[earlier]])
        return features, labels


def _replay_buffer(strategy: Any) -> Any:
    """The strategy's exemplar buffer (an Avalanche dataset), or None: a replay plugin's
    storage policy (Replay, GDumb) or the strategy's own (DER, ER-ACE)."""
    holders = [strategy, *strategy.plugins]
    for holder in holders:
        policy = getattr(holder, "storage_policy", None)
        if policy is not None and getattr(policy, "buffer", None) is not None:
            return policy.buffer
    return None


def _embedded(backbone: nn.Module, dataset: Any, strategy: Any) -> tuple[np.ndarray, np.ndarray]:
    """L2-normalised backbone features and labels of every sample of ``dataset``; its loader
    has a generator of its own, so a readout leaves the strategy's random draws (its batches,
    its buffer) as they would have been without it."""
    inputs, labels = dataset_arrays(dataset, generator=torch.Generator())
    features = embed_in_batches(backbone, inputs, device=strategy.device)
    return features / np.linalg.norm(features, axis=1, keepdims=True).clip(1e-12), labels
