"""The training loop every learner runs: epochs of batches, one objective, one optimizer.

What differs between learners is what they give the loop, not flags inside it: a batch
source (balanced task batches, few-shot episodes), a batch preparation (augmentation,
standardisation), an :class:`~siamcl.losses.Objective` (metric loss, distillation,
cross-entropy...), an optimizer factory, and callbacks for what happens between epochs
(quantization-aware training's schedule, sharing BatchNorm statistics between processes)
and, for a monitor that asks for them, at checks inside an epoch.
:func:`train_step` is the one place siamcl computes gradients; Avalanche's template calls it
through :class:`StepHooks`.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn
from tqdm.auto import tqdm

from siamcl.accounting.meter import ResourceMeter
from siamcl.training.batch import Batch, BatchPreparation, device_of
from siamcl.training.freezing import hold_frozen_norms
from siamcl.training.memory_format import prefer_channels_last
from siamcl.training.optimizers import adam
from siamcl.training.precision import autocast, resolve_precision
from siamcl.training.stopping import Progress, StoppingPolicy, first_stop

__all__ = [
    "BatchSource",
    "Callback",
    "LoopResult",
    "OptimizerFactory",
    "StepHooks",
    "TrainingLoop",
    "cosine_schedule",
    "parameter_groups",
    "train_step",
]

OptimizerFactory = Callable[[Any], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer, int], Any]


class BatchSource(Protocol):
    """Steps per epoch (``len``) and the batches of one epoch, drawn from ``generator``."""

    def __len__(self) -> int: ...

    def epoch(self, generator: torch.Generator) -> Iterator[Batch]: ...


class Callback:
    """Things done between steps; override what you need (every method does nothing here).
    The loop accepts any object and calls the methods it has of these."""

    checks_per_epoch: int = 1  # how often in an epoch :meth:`on_check` runs

    def on_epoch_start(self, model: nn.Module, epoch: int, epochs: int) -> None:
        """Before the first batch of ``epoch`` (0-based) of ``epochs``."""

    def on_check(self, model: nn.Module, progress: Progress) -> None:
        """At ``checks_per_epoch`` evenly spaced points of each epoch, the last its end
        (before validation and :meth:`on_epoch_end` there). The time spent here is not
        counted as training (``progress.cpu_s`` and ``energy_j`` are training's alone), so a
        monitor can score the model on the way without inflating the cost it records; the
        model is handed over in training mode and must be left so."""

    def on_epoch_end(self, model: nn.Module, progress: Progress) -> None:
        """After each epoch, once validation has run; its time, as :meth:`on_check`'s, is
        not counted as training."""

    def on_train_end(self, model: nn.Module) -> None:
        """After the last step, before the model is put in eval mode."""


class StepHooks:
    """Points inside :func:`train_step` where a framework's callbacks run (Avalanche's)."""

    def after_forward(self, outputs: torch.Tensor) -> None: ...

    def before_backward(self, loss: torch.Tensor) -> torch.Tensor:
        """May return a changed loss (a regularisation plugin adds its penalty here)."""
        return loss

    def after_backward(self) -> None: ...

    def before_update(self) -> None: ...


def cosine_schedule(optimizer: torch.optim.Optimizer, steps: int) -> Any:
    """Learning rates decaying along a cosine over ``steps`` steps."""
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)


def parameter_groups(model: nn.Module, objective: nn.Module) -> list[dict[str, Any]]:
    """The model's parameters, then the objective's own (pml proxies), as optimizer groups."""
    groups = [{"params": [p for p in model.parameters() if p.requires_grad]}]
    own = [p for p in objective.parameters() if p.requires_grad]
    if own:
        groups.append({"params": own})
    return groups


def train_step(
    model: nn.Module,
    objective: Callable[[torch.Tensor, Batch], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    batch: Batch,
    hooks: StepHooks | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Forward, objective, backward and update on one batch; returns the (detached) loss.

    With ``autocast_dtype`` (:func:`~siamcl.training.precision.resolve_precision`) the
    forward pass runs mixed-precision and the objective sees its outputs as float32."""
    with autocast(autocast_dtype, batch.inputs.device):
        outputs = model(batch.inputs)
    if autocast_dtype is not None:
        outputs = outputs.float()
    if hooks is not None:
        hooks.after_forward(outputs)
    loss = objective(outputs, batch)
    optimizer.zero_grad(set_to_none=True)
    if hooks is not None:
        loss = hooks.before_backward(loss)
    loss.backward()
    if hooks is not None:
        hooks.after_backward()
        hooks.before_update()
    optimizer.step()
    return loss.detach()


@dataclass
class TrainingLoop:
    """Runs up to ``epochs`` epochs of a batch source through :func:`train_step`.

    ``optimizer`` is a factory called with the parameter groups of the model and of the
    objective (:func:`parameter_groups`), so a loss with parameters of its own is trained
    too; ``schedule`` (a factory of ``(optimizer, total steps)``, or None) sets learning
    rates per step. ``meter`` (a :class:`~siamcl.ResourceMeter`) times and counts every step.
    A convolutional model trains with channels-last weights
    (:mod:`~siamcl.training.memory_format`) unless ``channels_last`` is False or the model
    is wrapped for distributed training. ``precision`` (``"fp32"``, ``"bf16"`` or ``"auto"``,
    :mod:`~siamcl.training.precision`) runs forward passes mixed-precision.
    After each epoch, or ``checks_per_epoch`` times an epoch (evenly spaced, the last at its
    end), ``validate(model)`` (if given) scores the model on held-out data, timed apart from
    training, and the ``stopping`` policies may end training early, mid-epoch too
    (:mod:`siamcl.training.stopping`). :meth:`run` returns the :class:`LoopResult`.
    """

    epochs: int = 1
    optimizer: OptimizerFactory = field(default_factory=adam)
    schedule: SchedulerFactory | None = cosine_schedule
    prepare: Callable[[Batch], Batch] = field(default_factory=BatchPreparation)
    callbacks: Sequence[Callback] = ()
    meter: Any = None
    progress: bool = False
    description: str = "training"
    stopping: Sequence[StoppingPolicy] = ()
    validate: Callable[[nn.Module], float] | None = None
    channels_last: bool = True
    precision: str = "fp32"
    checks_per_epoch: int = 1

    def run(
        self,
        model: nn.Module,
        objective: nn.Module,
        source: BatchSource,
        generator: torch.Generator | None = None,
        trained: nn.Module | None = None,
    ) -> LoopResult:
        """Train ``model`` in place. ``trained`` is the module callbacks and validation see
        when ``model`` wraps it (DistributedDataParallel)."""
        trained = model if trained is None else trained
        if self.channels_last and trained is model:  # a DDP wrapper keeps its layout
            prefer_channels_last(model)
        optimizer = self.optimizer(parameter_groups(model, objective))
        dtype = resolve_precision(self.precision, device_of(trained))
        steps = self.epochs * len(source)
        scheduler = self.schedule(optimizer, steps) if self.schedule is not None else None
        result = LoopResult(stopped_by=f"epochs ({self.epochs})")
        hold_frozen_norms(model.train())  # frozen layers' batch norms keep their statistics
        objective.train()
        with tqdm(
            total=steps, desc=self.description, leave=False, disable=not self.progress
        ) as bar:

            def step(batch: Batch) -> torch.Tensor:
                batch = self.prepare(batch)
                return train_step(model, objective, optimizer, batch, autocast_dtype=dtype)

            run = _Run(model, trained, step, scheduler, result, bar, self._plan(len(source)))
            result.progress.steps_per_epoch = len(source)
            result.progress.checks_per_epoch = len(run.plan.own)
            for epoch in range(self.epochs):
                reason = self._epoch(run, epoch, iter(source.epoch(generator)))
                if reason is not None:
                    result.stopped_by = reason
                    break
                hold_frozen_norms(model.train())
        _call(self.callbacks, "on_train_end", trained)
        trained.eval()
        return result

    def _epoch(self, run: _Run, epoch: int, batches: Iterator[Batch]) -> str | None:
        """One epoch, metered in stretches between checks (which are not counted); why to
        stop, if a policy says so at a check or at the epoch's end."""
        progress, ends, losses, done, reason = run.result.progress, run.plan.ends, [], 0, None
        for end in ends:
            last = end == ends[-1]  # takes whatever the epoch has left
            with _measured_epoch(self.meter, progress):
                if done == 0:
                    _call(self.callbacks, "on_epoch_start", run.trained, epoch, self.epochs)
                losses += self._steps(run, batches, None if last else end - done)
            done = end
            if last:
                break
            _call(run.plan.callbacks_at(end), "on_check", run.trained, progress)
            reason = self._validate(run.trained, run.result) if end in run.plan.own else None
            hold_frozen_norms(run.model.train())
            if reason is not None:
                break
        if losses:
            run.result.losses.append(float(losses[-1]))
        if reason is not None:
            return reason
        progress.epochs = epoch + 1
        return self._after_epoch(run.trained, run.result)

    def _steps(self, run: _Run, batches: Iterator[Batch], count: int | None) -> list[torch.Tensor]:
        """``count`` steps (None: every batch left), each metered; their (detached) losses."""
        losses = []
        for batch in itertools.islice(batches, count):
            with self._metered(len(batch.labels)):  # frozen layers' FLOPs too
                losses.append(run.step(batch))
            if run.scheduler is not None:
                run.scheduler.step()
            run.result.progress.steps += 1
            run.bar.update(1)
            if self.progress:
                run.bar.set_postfix(loss=f"{losses[-1].item():.3f}")
        return losses

    def _plan(self, steps_per_epoch: int) -> _CheckPlan:
        """Where in an epoch the loop validates and asks its stopping policies (its own
        ``checks_per_epoch`` points) and where each callback with ``on_check`` is called (at
        the callback's ``checks_per_epoch``)."""
        callbacks = [
            (c, _check_steps(steps_per_epoch, getattr(c, "checks_per_epoch", 1)))
            for c in self.callbacks
            if hasattr(c, "on_check")
        ]
        return _CheckPlan(_check_steps(steps_per_epoch, self.checks_per_epoch), callbacks)

    def _validate(self, model: nn.Module, result: LoopResult) -> str | None:
        """Inside an epoch: validate, then ask the stopping policies."""
        self._score(model, result)
        return first_stop(self.stopping, result.progress)

    def _after_epoch(self, model: nn.Module, result: LoopResult) -> str | None:
        """At an epoch's end, outside the meter's windows: every callback's check, validation,
        the callbacks' epoch ends, then (unless it was the last) the stopping policies."""
        _call(self.callbacks, "on_check", model, result.progress)
        self._score(model, result)
        _call(self.callbacks, "on_epoch_end", model, result.progress)
        if result.progress.epochs >= self.epochs:
            return None
        return first_stop(self.stopping, result.progress)

    def _score(self, model: nn.Module, result: LoopResult) -> None:
        """The validation score, if the loop validates, its CPU seconds kept apart."""
        if self.validate is not None:
            start = time.process_time()
            result.progress.scores.append(float(self.validate(model)))
            result.validation_cpu_s += time.process_time() - start

    def _metered(self, n_samples: int):
        if self.meter is None:
            return contextlib.nullcontext()
        return self.meter.batch(n_samples=n_samples)


@dataclass
class _CheckPlan:
    """Checks within an epoch, as steps into it: the loop's own, and each callback's."""

    own: set[int]
    callbacks: list[tuple[Any, set[int]]]

    @property
    def ends(self) -> list[int]:
        """Where the metered stretches of an epoch end: at every check (the last, its end)."""
        return sorted(self.own.union(*(steps for _, steps in self.callbacks)))

    def callbacks_at(self, step: int) -> list[Any]:
        return [callback for callback, steps in self.callbacks if step in steps]


@dataclass
class _Run:
    """What one :meth:`TrainingLoop.run` threads through its epochs."""

    model: nn.Module
    trained: nn.Module
    step: Callable[[Batch], torch.Tensor]
    scheduler: Any
    result: LoopResult
    bar: Any
    plan: _CheckPlan


def _check_steps(steps_per_epoch: int, checks: int) -> set[int]:
    """The ends (steps into an epoch) of ``checks`` near-equal stretches of an epoch: never
    more than its steps, at least its end."""
    checks = max(1, min(int(checks), steps_per_epoch))
    return {round(steps_per_epoch * (i + 1) / checks) for i in range(checks)}


def _call(callbacks: Sequence[Any], method: str, *args: Any) -> None:
    """``callback.method(*args)`` for each callback that has ``method``."""
    for callback in callbacks:
        hook = getattr(callback, method, None)
        if hook is not None:
            hook(*args)


@dataclass
class LoopResult:
    """How training went: why it stopped, the progress made, the last loss of each epoch,
    and the CPU seconds spent validating (not part of training)."""

    stopped_by: str
    progress: Progress = field(default_factory=Progress)
    losses: list[float] = field(default_factory=list)
    validation_cpu_s: float = 0.0


@contextlib.contextmanager
def _measured_epoch(meter: Any, progress: Progress) -> Iterator[None]:
    """One epoch inside a window of the learner's ``meter``
    (:meth:`~siamcl.ResourceMeter.part_meter`: its counter where one is readable, else its
    estimate), whose joules and CPU seconds are added to ``progress``, so an energy budget
    stops on the figure the task's report gives. Validation and callbacks' epoch ends fall
    between the windows. Without a meter, the estimate."""
    if meter is not None:
        window = meter.part_meter()
    else:
        window = ResourceMeter(energy="estimate", flops="off")
    with window:
        yield
    report = window.report()
    progress.energy_j += report.energy_j
    progress.cpu_s += report.cpu_s
    progress.energy_method = report.energy_method
