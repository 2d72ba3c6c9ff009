"""Embedding a data set with a trained encoder, and rebuilding prototypes from it.

:func:`embed_in_batches` is how every learner embeds (for prototypes, exemplar selection and
predictions alike); :func:`rebuild_prototypes` refreshes every known class's prototypes after
the encoder changed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from siamcl.augment import AffineViews
from siamcl.distributed import Ranks
from siamcl.replay import ExemplarMemory
from siamcl.store import PrototypeStore
from siamcl.training.folding import fold_min_values, folded
from siamcl.training.precision import autocast

__all__ = ["embed_in_batches", "evaluating", "rebuild_prototypes"]

# the training batch: conv4's first activation at 28x28 is 25 MiB for 128 images (100 MiB for
# 512), small enough for malloc to reuse freed blocks (siamcl.allocator), for less peak memory
EMBED_BATCH = 128


def embed_in_batches(
    encoder: nn.Module,
    inputs: torch.Tensor,
    standardise: Callable[[torch.Tensor], torch.Tensor] = lambda x: x,
    device: torch.device | str = "cpu",
    views: AffineViews | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> np.ndarray:
    """Embeddings of ``inputs`` in eval mode without gradients, as a float32 array; over
    :func:`~siamcl.training.folding.fold_min_values` input values or more, by a copy of
    ``encoder`` with its BatchNorm layers folded into the convolutions before them.

    With ``autocast_dtype`` (the learner's :func:`~siamcl.training.precision.forward_dtype`)
    the forward passes run under autocast, as training's do.

    With ``views``, each input's embedding is the L2-normalised mean of the embeddings of its
    views (the input and fixed affine warps of it, :class:`~siamcl.augment.AffineViews`).
    """
    outputs = []
    with evaluating(encoder), torch.no_grad(), autocast(autocast_dtype, device):
        if inputs.numel() >= fold_min_values():  # BatchNorm folded into a copy (training.folding)
            encoder = folded(encoder)
        for start in range(0, len(inputs), EMBED_BATCH):
            batch = inputs[start : start + EMBED_BATCH].float()
            if views is None:
                outputs.append(encoder(standardise(batch).to(device)).float().cpu())
                continue
            total = sum(encoder(standardise(view(batch)).to(device)).float() for view in views)
            outputs.append(F.normalize(total, dim=1).cpu())
    return torch.cat(outputs).numpy()


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode with the range observers of its fake quantizers paused, both
    restored after. ``eval()`` alone leaves torch.ao's and torchao's observers recording, so
    scoring a quantization-aware network mid-training (a validation share, a benchmark's test
    rows) would move the quantization ranges it goes on training with toward the rows scored."""
    observing = [m for m in model.modules() if _observes(m)]
    was_training = model.training
    for module in observing:
        module.enable_observer(False)
    model.eval()
    try:
        yield model
    finally:
        for module in observing:
            module.enable_observer(True)
        model.train(was_training)


def _observes(module: nn.Module) -> bool:
    """Whether ``module`` is a fake quantizer (torch.ao's or torchao's ``FakeQuantizeBase``:
    an ``observer_enabled`` flag and ``enable_observer``) whose observer is on."""
    flag = getattr(module, "observer_enabled", None)
    return isinstance(flag, torch.Tensor) and bool(flag[0]) and hasattr(module, "enable_observer")


def rebuild_prototypes(
    store: PrototypeStore,
    embed: Callable[[np.ndarray | torch.Tensor], np.ndarray],
    task_embeddings: np.ndarray,
    task_labels: np.ndarray,
    memory: ExemplarMemory,
    previous: PrototypeStore | None,
    ranks: Ranks | None = None,
    kept_transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> PrototypeStore:
    """Fill an empty ``store`` with prototypes of every known class under a new encoder.

    The task's classes use the embeddings of all their samples (``task_embeddings``, computed
    once by the caller, who also chose exemplars from them); earlier classes use their
    exemplars, embedded here (split over ``ranks`` in a distributed job, results gathered, so
    every rank builds the same store); a class with neither (a zero memory budget) keeps its
    prototypes from ``previous``, mapped by ``kept_transform`` when the encoder's output space
    was changed on purpose (a whitening folded into it).
    """
    if len(task_embeddings) != len(task_labels):
        raise ValueError(f"{len(task_embeddings)} embeddings given for {len(task_labels)} labels")
    store.add(task_embeddings, task_labels)
    if ranks is not None:
        embed = ranks.sharded(embed)
    earlier = set(previous.classes.tolist()) if previous is not None else set()
    for label in sorted(earlier - set(np.unique(task_labels).tolist())):
        if label in memory and len(memory.get(label)):
            exemplars = memory.get(label)
            store.add(embed(exemplars), np.full(len(exemplars), label, dtype=np.int64))
        else:
            kept = previous.prototypes(label)
            if kept_transform is not None:
                kept = kept_transform(kept)
            store.add(kept, np.full(len(kept), label, dtype=np.int64))
    return store
