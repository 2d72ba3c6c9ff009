"""Exemplars replayed inside an Avalanche experience's dataset, built on public Avalanche API.

Avalanche batches are collated element by element, so the replayed exemplars must come out of
the joined dataset with the same structure as the experience's own samples. Benchmarks differ
there: ``nc_benchmark`` serves ``(input, int label, task label)``, ``class_incremental_benchmark``
serves whatever its datasets give, e.g. ``(input, label tensor)`` from a ``TensorDataset`` or
``(input, int label)`` from ``as_classification_dataset``. :func:`with_exemplars` therefore
shapes each exemplar like one of the experience's samples, gives the replay part the same data
attributes (``targets``, and task labels where the experience has them) and joins the two with
``AvalancheDataset.concat``. The exemplars are stored model-ready, so the replay part has no
transforms of its own and the experience's transforms are not applied to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from siamcl._extras import needs_extra

with needs_extra("the Avalanche plugin"):
    from avalanche.benchmarks.utils import (
        AvalancheDataset,
        DataAttribute,
        TaskLabels,
        make_avalanche_dataset,
    )

__all__ = ["ExemplarItems", "with_exemplars"]

REPLAY_TASK_LABEL = 0  # a single-head learner: exemplars carry no task of their own


class ExemplarItems(Dataset):
    """Exemplar rows as samples shaped like ``template``, one sample of the experience.

    Element 0 is the exemplar (a tensor of the template input's floating dtype), element 1 its
    label in the template label's type (Python int, numpy integer or tensor); any further
    elements the experience's samples carry themselves are copied from the template.
    """

    def __init__(self, samples: torch.Tensor, labels: Sequence[int], template: Sequence[Any]):
        if len(samples) != len(labels):
            raise ValueError(f"{len(samples)} exemplars but {len(labels)} labels")
        if len(template) < 2:
            raise ValueError("an experience's samples must hold at least (input, label)")
        dtype = template[0].dtype if _is_float_tensor(template[0]) else torch.float32
        self.samples = samples.to(dtype)
        self.labels = [_label_like(template[1], int(label)) for label in labels]
        self.rest = tuple(template[2:])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        return (self.samples[index], self.labels[index], *self.rest)


def with_exemplars(
    dataset: AvalancheDataset, exemplars: np.ndarray, labels: np.ndarray
) -> AvalancheDataset:
    """``dataset`` followed by the exemplars (model-ready inputs) and their labels."""
    if len(exemplars) == 0:
        return dataset
    template = _base_sample(dataset)
    items = ExemplarItems(torch.from_numpy(np.asarray(exemplars)), labels.tolist(), template)
    attributes = [DataAttribute([int(label) for label in labels], "targets")]
    if hasattr(dataset, "targets_task_labels"):
        attributes.append(TaskLabels([REPLAY_TASK_LABEL] * len(items)))
    replay = make_avalanche_dataset(items, data_attributes=attributes)
    return dataset.concat(replay)


def _base_sample(dataset: AvalancheDataset) -> Sequence[Any]:
    """One sample of ``dataset`` without the task label Avalanche appends to it."""
    if len(dataset) == 0:
        return (torch.empty(0), 0)
    sample = list(dataset[0])
    task_labels = getattr(dataset, "targets_task_labels", None)
    if isinstance(task_labels, DataAttribute) and task_labels.use_in_getitem:
        sample = sample[:-1]
    return sample


def _is_float_tensor(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.is_floating_point()


def _label_like(template: Any, label: int) -> Any:
    if isinstance(template, torch.Tensor):
        return torch.tensor(label, dtype=template.dtype).reshape(template.shape)
    if isinstance(template, np.generic):
        return type(template)(label)
    return label
