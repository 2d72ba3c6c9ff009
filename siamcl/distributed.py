"""Data-parallel training across processes on ``torch.distributed`` (launched by ``torchrun``).

Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) :meth:`IncrementalClassifier.fit_task`
trains with :class:`~torch.nn.parallel.DistributedDataParallel` and every rank ends the task
with the same encoder, exemplar memory and prototype store:

- every rank is given the whole task; all ranks draw the same seeded order of rows and each
  takes every ``world``-th row of each batch, as :class:`~torch.utils.data.DistributedSampler`
  does, so ``batch_size`` is the global batch and means the same at any process count;
- the metric loss sees the embeddings of every rank (pytorch-metric-learning's
  ``DistributedLossWrapper`` and ``DistributedMinerWrapper``, non-efficient mode), so loss and
  gradients equal those of one process with the global batch;
- prototypes come from per-class sums and counts of each rank's share of the data, summed
  across ranks (``all_reduce``); exemplar selection embeds each rank's share and gathers it;
- the task's :class:`~siamcl.accounting.TaskReport` sums energy, CPU time, samples and FLOPs
  over ranks, takes the longest wall time, and keeps each rank's peak memory in ``extra``.

The process group is created on first use from torchrun's environment: ``gloo`` for CPU
training, ``nccl`` for CUDA.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from siamcl.accounting import TaskReport

__all__ = ["Ranks", "backend_for", "distributed_objective_loss"]


def backend_for(device: str | torch.device) -> str:
    """``nccl`` for CUDA devices, ``gloo`` otherwise."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


@dataclass(frozen=True)
class Ranks:
    """This process's place among the training processes (``world == 1``: not distributed)."""

    rank: int = 0
    world: int = 1

    @classmethod
    def current(cls, device: str | torch.device = "cpu") -> Ranks:
        """The running process group, created from torchrun's environment when needed."""
        launched = int(os.environ.get("WORLD_SIZE", "1")) > 1
        if launched and dist.is_available() and not dist.is_initialized():
            dist.init_process_group(backend_for(device))
        if not (dist.is_available() and dist.is_initialized()):
            return cls()
        return cls(dist.get_rank(), dist.get_world_size())

    @property
    def active(self) -> bool:
        return self.world > 1

    # ------------------------------------------------------------------ sharding

    def batch_share(self, rows: torch.Tensor) -> torch.Tensor:
        """This rank's rows of one global batch: every ``world``-th, from position ``rank``.

        The batch is first cut to a multiple of ``world`` so every rank holds as many rows
        (gathering embeddings needs equal shapes)."""
        if not self.active:
            return rows
        usable = len(rows) - len(rows) % self.world
        return rows[:usable][self.rank :: self.world]

    def part(self, n: int) -> slice:
        """This rank's contiguous part of ``n`` rows (parts differ in size by at most one)."""
        bounds = np.linspace(0, n, self.world + 1).round().astype(int)
        return slice(int(bounds[self.rank]), int(bounds[self.rank + 1]))

    # ------------------------------------------------------------------ collectives

    def sum(self, array: np.ndarray) -> np.ndarray:
        """Element-wise sum of ``array`` over ranks (the same result on every rank)."""
        if not self.active:
            return array
        tensor = torch.from_numpy(np.ascontiguousarray(array))
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor.numpy()

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value`` (any picklable object), in rank order."""
        if not self.active:
            return [value]
        gathered: list[Any] = [None] * self.world
        dist.all_gather_object(gathered, value)
        return gathered

    def sharded(self, embed: Callable[[Any], np.ndarray]) -> Callable[[Any], np.ndarray]:
        """``embed`` with the rows split over ranks and the results gathered in order."""
        if not self.active:
            return embed

        def embed_shared(inputs: Any) -> np.ndarray:
            part = self.part(len(inputs))
            mine = embed(inputs[part]) if part.stop > part.start else None
            return np.concatenate([e for e in self.gather(mine) if e is not None])

        return embed_shared

    def share_module_state(self, module: nn.Module) -> None:
        """Copy rank 0's parameters and buffers (BatchNorm statistics) to every rank."""
        if not self.active:
            return
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)

    def wrap(self, module: nn.Module, device: str | torch.device) -> nn.Module:
        """``module`` as this job trains it: DistributedDataParallel when distributed."""
        if not self.active:
            return module
        device = torch.device(device)
        ids = None
        if device.type == "cuda":
            ids = [device.index if device.index is not None else torch.cuda.current_device()]
        return nn.parallel.DistributedDataParallel(module, device_ids=ids)

    def callback(self) -> _ShareStateAfterTraining:
        """A training-loop callback that makes every rank end with rank 0's module state."""
        return _ShareStateAfterTraining(self)

    def check_same_data(self, fingerprint: str) -> None:
        """Raise on every rank unless all ranks were given the same task."""
        if not self.active:
            return
        prints = self.gather(fingerprint)
        differing = [r for r, p in enumerate(prints) if p != prints[0]]
        if differing:
            raise ValueError(
                f"under torch.distributed every rank must be given the whole task; ranks "
                f"{differing} got other data than rank 0 (each rank takes its own share)"
            )

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def combine(self, report: TaskReport) -> TaskReport:
        """One report for the task across ranks: energy, CPU time, samples and FLOPs summed,
        the longest wall time, the largest peaks; each rank's peak memory in ``extra``."""
        if not self.active:
            return report
        reports = self.gather(report.to_dict())
        flops = [r["flops"] for r in reports]
        methods = {r["energy_method"] for r in reports}
        accel = [r["peak_accel_bytes"] for r in reports if r["peak_accel_bytes"] is not None]
        extra = dict(report.extra, ranks=float(self.world))
        for rank, r in enumerate(reports):
            extra[f"peak_rss_bytes_rank{rank}"] = float(r["peak_rss_bytes"])
            if r["peak_accel_bytes"] is not None:
                extra[f"peak_accel_bytes_rank{rank}"] = float(r["peak_accel_bytes"])
        return TaskReport.from_dict(
            {
                **report.to_dict(),
                "wall_s": max(r["wall_s"] for r in reports),
                "cpu_s": sum(r["cpu_s"] for r in reports),
                "samples_seen": sum(r["samples_seen"] for r in reports),
                "flops": None if None in flops else sum(flops),
                "peak_rss_bytes": max(r["peak_rss_bytes"] for r in reports),
                "peak_accel_bytes": max(accel) if accel else None,
                "energy_j": sum(r["energy_j"] for r in reports),
                "energy_method": methods.pop() if len(methods) == 1 else "mixed",
                "energy_measured": all(r["energy_measured"] for r in reports),
                "energy_note": (f"summed over {self.world} ranks; " + report.energy_note).strip(
                    "; "
                ),
                "extra": extra,
            }
        )


def distributed_objective_loss(metric_loss: Any) -> Any:
    """``metric_loss`` (a :class:`~siamcl.losses.MetricLoss`) seeing every rank's embeddings."""
    from pytorch_metric_learning.utils.distributed import (
        DistributedLossWrapper,
        DistributedMinerWrapper,
    )

    from siamcl.losses import MetricLoss

    miner = None if metric_loss.miner is None else DistributedMinerWrapper(metric_loss.miner)
    return MetricLoss(DistributedLossWrapper(metric_loss.loss), miner)


@dataclass(frozen=True)
class _ShareStateAfterTraining:
    """Training-loop callback: BatchNorm statistics differ per rank; keep rank 0's."""

    ranks: Ranks

    def on_epoch_start(self, model: nn.Module, epoch: int, epochs: int) -> None:
        """Nothing to do between epochs."""

    def on_train_end(self, model: nn.Module) -> None:
        self.ranks.share_module_state(model)
