"""Class-incremental streams between siamcl and Avalanche.

:func:`to_avalanche` turns a siamcl stream (the list of :class:`~siamcl.data.Task` from
:func:`~siamcl.data.class_incremental`) and a test split into an Avalanche ``NCScenario``
built by ``nc_benchmark``, one experience per task with the task's classes. Samples are
stored as given and turned into model inputs by the benchmark's transforms (a fitted
:class:`~siamcl.preprocess.Preprocessor` by default), the Avalanche way, so
:func:`from_avalanche` gives back the same samples and labels (grouped by class within a task).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from siamcl._extras import needs_extra
from siamcl.data.streams import Task, classes_mask
from siamcl.preprocess import Preprocessor, as_array, as_labels

with needs_extra("the Avalanche plugin"):
    from avalanche.benchmarks import nc_benchmark

__all__ = [
    "LabelledTensors",
    "PreprocessTransform",
    "dataset_arrays",
    "from_avalanche",
    "to_avalanche",
]


class LabelledTensors(Dataset):
    """``(sample, label)`` pairs over a tensor of samples, with the ``targets`` Avalanche reads."""

    def __init__(self, samples: torch.Tensor, labels: Sequence[int]):
        if len(samples) != len(labels):
            raise ValueError(f"{len(samples)} samples but {len(labels)} labels")
        self.samples = samples
        self.targets = [int(label) for label in labels]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.samples[index], self.targets[index]


class PreprocessTransform:
    """Per-sample transform applying a fitted siamcl :class:`Preprocessor`.

    Raw samples (uint8 or float, ``[H, W]``, ``[C, H, W]`` or ``[D]``) become the float32
    tensors the encoder is trained on: channels first, resized, polarity fixed, standardised.
    Images already at the fitted size skip the preprocessor's batch checks (the samples
    were checked when the benchmark was built), which makes the transform several times
    cheaper per sample; the result is the same.
    """

    def __init__(self, preprocessor: Preprocessor):
        if not preprocessor.fitted:
            raise ValueError("the preprocessor is not fitted: call Preprocessor().fit(X) first")
        self.preprocessor = preprocessor
        self._shape = preprocessor.input_shape
        self._mean = torch.tensor(preprocessor.mean, dtype=torch.float32)
        self._std = torch.tensor(preprocessor.std, dtype=torch.float32)
        if preprocessor.kind == "image":
            self._mean, self._std = self._mean.view(-1, 1, 1), self._std.view(-1, 1, 1)

    def __call__(self, sample: torch.Tensor | np.ndarray) -> torch.Tensor:
        x = torch.as_tensor(sample)
        if self.preprocessor.kind == "image" and x.ndim == 2:
            x = x.unsqueeze(0)
        if tuple(x.shape) != self._shape:  # resizing and odd layouts: the full path
            return self.preprocessor(x.unsqueeze(0).numpy())[0]
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        if self.preprocessor.invert:
            x = 1.0 - x
        return (x - self._mean) / self._std

    def __repr__(self) -> str:
        return f"PreprocessTransform(input_shape={self.preprocessor.input_shape})"


def to_avalanche(
    tasks: Sequence[Task],
    X_test: Any,
    y_test: Any,
    transform: Any = "preprocess",
    train_transform: Any = None,
) -> Any:
    """An Avalanche class-incremental benchmark with one experience per siamcl task.

    ``transform`` turns a stored sample into a model input in both phases: ``"preprocess"``
    (default) fits a :class:`Preprocessor` on the first task, ``None`` keeps samples as they
    are, any callable is used as given. ``train_transform`` (e.g. an augmentation) replaces it
    in the training phase. Test samples whose class no task holds are left out.

    Labels must be non-negative integers. Labels other than ``0..K-1`` are mapped to
    ``0..K-1`` in stream order (``class_ids_from_zero_from_first_exp``);
    :func:`from_avalanche` maps them back.
    """
    tasks = list(tasks)
    if not tasks:
        raise ValueError("the stream is empty: give at least one task")
    for position, task in enumerate(tasks):
        if not isinstance(task, Task):
            raise TypeError(f"tasks[{position}] must be a siamcl Task, got {type(task).__name__}")
        as_array(task.X, f"tasks[{position}].X")
    class_order = [label for task in tasks for label in task.classes]
    if len(set(class_order)) != len(class_order):
        raise ValueError("tasks share classes: a class-incremental stream has disjoint tasks")
    if min(class_order) < 0:
        raise ValueError(f"Avalanche needs non-negative labels, got {min(class_order)}")
    X_test = as_array(X_test, "X_test")
    y_test = as_labels(y_test, len(X_test), "y_test")
    keep = classes_mask(y_test, class_order)
    missing = sorted(set(class_order) - set(y_test[keep].tolist()))
    if missing:
        raise ValueError(f"the test split has no samples of classes {missing}")
    if transform == "preprocess":
        transform = PreprocessTransform(Preprocessor().fit(tasks[0].X))
    train = LabelledTensors(
        torch.from_numpy(np.concatenate([np.asarray(task.X) for task in tasks])),
        np.concatenate([task.y for task in tasks]),
    )
    test = LabelledTensors(torch.from_numpy(np.ascontiguousarray(X_test[keep])), y_test[keep])
    return nc_benchmark(
        train,
        test,
        n_experiences=len(tasks),
        task_labels=False,
        shuffle=False,
        fixed_class_order=class_order,
        per_exp_classes={index: len(task.classes) for index, task in enumerate(tasks)},
        class_ids_from_zero_from_first_exp=sorted(class_order) != list(range(len(class_order))),
        train_transform=train_transform if train_transform is not None else transform,
        eval_transform=transform,
    )


def from_avalanche(benchmark: Any) -> tuple[list[Task], np.ndarray, np.ndarray]:
    """The siamcl stream, test samples and test labels of an Avalanche benchmark.

    Each experience of ``train_stream`` becomes a :class:`Task`; the ``test_stream``
    experiences are joined into ``(X_test, y_test)``. Samples are read without the
    benchmark's transforms, and labels remapped by ``nc_benchmark`` are mapped back. Within
    an experience Avalanche groups samples by class, in the experience's class order, so a
    task comes back grouped that way (each class's samples in their original order).
    """
    for name in ("train_stream", "test_stream"):
        if not hasattr(benchmark, name):
            raise TypeError(f"an Avalanche benchmark has a {name}; got {type(benchmark).__name__}")
    original = _original_labels(benchmark)
    orders = _class_orders(benchmark)
    tasks = []
    for index, experience in enumerate(benchmark.train_stream):
        X, y = _raw_samples(experience.dataset, original)
        classes = orders[index] if orders is not None else tuple(dict.fromkeys(y.tolist()))
        tasks.append(Task(X=X, y=y, classes=tuple(int(c) for c in classes), index=index))
    parts = [_raw_samples(experience.dataset, original) for experience in benchmark.test_stream]
    if not tasks or not parts:
        raise ValueError("the benchmark has an empty train or test stream")
    X_test = np.concatenate([X for X, _ in parts])
    y_test = np.concatenate([y for _, y in parts])
    return tasks, X_test, y_test


def _original_labels(benchmark: Any) -> np.ndarray | None:
    """Original label of each remapped class id, or None when labels were not remapped."""
    if not getattr(benchmark, "class_ids_from_zero_from_first_exp", False):
        return None
    return np.asarray(benchmark.classes_order_original_ids, dtype=np.int64)


def _class_orders(benchmark: Any) -> list[list[int]] | None:
    """Each experience's classes in stream order (original ids), where the benchmark says."""
    order = getattr(benchmark, "classes_order_original_ids", None)
    counts = getattr(benchmark, "n_classes_per_exp", None)
    if order is None or counts is None:
        return None
    bounds = np.cumsum([0, *counts])
    return [list(order[start:stop]) for start, stop in itertools.pairwise(bounds)]


def _raw_samples(dataset: Any, original: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    raw = dataset.replace_current_transform_group((None, None))
    samples, labels = [], []
    for index in range(len(raw)):
        item = raw[index]
        sample = item[0]
        samples.append(sample.numpy() if isinstance(sample, torch.Tensor) else np.asarray(sample))
        labels.append(int(item[1]))
    y = np.asarray(labels, dtype=np.int64)
    if original is not None:
        y = original[y]
    return np.stack(samples), y


def dataset_arrays(
    dataset: Any, batch_size: int = 512, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, np.ndarray]:
    """Every sample of an Avalanche dataset (its current transforms applied) as one float
    tensor, in order, and the labels. A loader draws a seed from ``generator``, torch's global
    one when None: a caller that must leave the global random state alone passes its own."""
    loader = DataLoader(
        dataset, batch_size=batch_size, collate_fn=dataset.collate_fn, generator=generator
    )
    inputs, labels = [], []
    for batch in loader:
        inputs.append(batch[0].float())
        labels.append(torch.as_tensor(batch[1]))
    return torch.cat(inputs), torch.cat(labels).numpy().astype(np.int64)
