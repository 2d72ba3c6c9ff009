"""Batch sources: which rows each training step sees, drawn from a generator the learner owns.

A source has ``__len__`` (steps per epoch) and ``epoch(generator)``, an iterator of
:class:`~siamcl.training.Batch` es of canonical inputs. :class:`BalancedBatches` serves class-
incremental tasks (old classes' few exemplars are not drowned out), :class:`EpisodeBatches`
few-shot episodes, :class:`ShuffledBatches` plain shuffled epochs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch

from siamcl.training.batch import Batch

__all__ = ["BalancedBatches", "EpisodeBatches", "ShuffledBatches", "balanced_epoch"]


def balanced_epoch(
    labels: np.ndarray, balance: float, generator: torch.Generator, replacement: bool = False
) -> torch.Tensor:
    """Row indices for one epoch, as many as ``labels``, each class drawn with weight
    ``count ** -balance`` a row.

    ``balance=0`` samples rows as they come; ``balance=1`` draws every class equally often, so
    a handful of replayed exemplars is not drowned by a new task's hundreds of samples. By
    default each class gets its share of the epoch (rounded by largest remainder) and is drawn
    without replacement, through a fresh permutation of its rows each time they run out: an
    epoch of classes of equal size is a permutation of every row, as a shuffled epoch is,
    where draws with replacement (``replacement=True``, multinomial) leave about a third of
    the rows unseen and repeat others.
    """
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    if replacement:
        weights = torch.from_numpy(counts[inverse].astype(np.float64) ** -balance)
        return torch.multinomial(weights, len(labels), replacement=True, generator=generator)
    share = counts.astype(np.float64) ** (1.0 - balance)
    quota = share / share.sum() * len(labels)
    draws = np.floor(quota).astype(np.int64)
    remainder = len(labels) - int(draws.sum())
    draws[np.argsort(draws - quota, kind="stable")[:remainder]] += 1
    parts = []
    for code, wanted in enumerate(draws):
        members = torch.from_numpy(np.flatnonzero(inverse == code))
        rounds = -(-int(wanted) // len(members))
        cycled = [members[torch.randperm(len(members), generator=generator)] for _ in range(rounds)]
        parts.append(torch.cat(cycled)[:wanted] if cycled else members[:0])
    rows = torch.cat(parts)
    return rows[torch.randperm(len(rows), generator=generator)]


class _RowBatches:
    """Slices of an epoch's row order into batches; batches under ``min_size`` are skipped."""

    def __init__(
        self,
        inputs: torch.Tensor,
        labels: np.ndarray,
        batch_size: int,
        min_size: int = 1,
        share: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ):
        self.inputs = inputs
        self.labels = np.asarray(labels)
        self.label_tensor = torch.from_numpy(self.labels)
        self.batch_size = batch_size
        self.min_size = min_size
        self.share = share

    def __len__(self) -> int:
        return max(1, int(np.ceil(len(self.labels) / self.batch_size)))

    def order(self, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def epoch(self, generator: torch.Generator) -> Iterator[Batch]:
        order = self.order(generator)
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            if self.share is not None:
                rows = self.share(rows)
            if len(rows) < self.min_size:
                continue
            yield Batch(self.inputs[rows], self.label_tensor[rows], rows)


class BalancedBatches(_RowBatches):
    """Epochs drawn by :func:`balanced_epoch`, cut into batches.

    ``share`` picks this process's part of each batch in a distributed job.
    """

    def __init__(
        self, inputs, labels, batch_size, balance=0.5, min_size=1, share=None, replacement=False
    ):
        super().__init__(inputs, labels, batch_size, min_size, share)
        self.balance = balance
        self.replacement = replacement

    def order(self, generator: torch.Generator) -> torch.Tensor:
        return balanced_epoch(self.labels, self.balance, generator, self.replacement)


class ShuffledBatches(_RowBatches):
    """Every row once per epoch, in a random order."""

    def order(self, generator: torch.Generator) -> torch.Tensor:
        return torch.randperm(len(self.labels), generator=generator)


class EpisodeBatches:
    """``steps`` episodes per epoch: ``ways`` classes, ``per_class`` images of each.

    ``by_class`` lists each class's rows. With ``groups`` (class positions that may fill an
    episode together, e.g. one alphabet), ``within_group`` of the episodes draw all their
    classes from one group, the way one-shot runs are drawn. Episode choices come from a
    numpy generator seeded with ``seed``; a batch's labels are its class's position
    (0..ways-1), so each block of ``per_class`` rows is one class.
    """

    def __init__(
        self,
        images: torch.Tensor,
        by_class: Sequence[np.ndarray],
        ways: int,
        per_class: int,
        steps: int,
        seed: int,
        groups: Sequence[np.ndarray] = (),
        within_group: float = 0.0,
    ):
        self.images = images
        self.by_class = by_class
        self.ways = ways
        self.per_class = per_class
        self.steps = steps
        self.groups = groups
        self.within_group = within_group
        self.rng = np.random.default_rng(seed)
        self.labels = torch.arange(ways).repeat_interleave(per_class)

    def __len__(self) -> int:
        return self.steps

    def epoch(self, generator: torch.Generator | None = None) -> Iterator[Batch]:
        rng = self.rng
        for _ in range(self.steps):
            if self.groups and rng.random() < self.within_group:
                group = self.groups[rng.integers(len(self.groups))]
                chosen = rng.choice(group, self.ways, replace=False)
            else:
                chosen = rng.choice(len(self.by_class), self.ways, replace=False)
            rows = np.concatenate(
                [rng.choice(self.by_class[c], self.per_class, False) for c in chosen]
            )
            yield Batch(self.images[rows], self.labels, torch.from_numpy(rows))
