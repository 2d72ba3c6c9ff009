"""SiameseStrategy: siamcl's incremental learner as an Avalanche strategy.

It is Avalanche's ``SupervisedTemplate`` with siamcl's pieces plugged into the template's
hooks, the pieces :class:`~siamcl.IncrementalClassifier` is built from (see
:mod:`siamcl.training`):

* each training step is siamcl's :func:`~siamcl.training.train_step` (the one place siamcl
  computes gradients), with the template's callbacks at the same points as in Avalanche's own
  loop; its objective is an :class:`~siamcl.losses.Objective`: a pytorch-metric-learning loss
  plus embedding distillation against the encoder as it stood after the previous experience.
  The loss's own parameters (pml proxies) are trained with the model's, by the optimizer
  given (Adam by default);
* ``train_dataset_adaptation()`` appends the exemplars of an
  :class:`~siamcl.replay.ExemplarMemory` to the experience's data, and
  ``make_train_dataloader()`` draws batches with :func:`~siamcl.training.balanced_epoch`;
* after each experience an internal plugin selects exemplars and rebuilds every class's
  prototype in a :class:`~siamcl.PrototypeStore` with
  :func:`~siamcl.training.rebuild_prototypes`;
* the model is a :class:`PrototypeModel`: embeddings in training mode, prototype scores over
  Avalanche's class ids in eval mode, so Avalanche's accuracy, forgetting and confusion
  metrics work unchanged.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from siamcl._extras import needs_extra
from siamcl.augment import RandomAffine
from siamcl.compress import FrozenTeacher
from siamcl.integrations.avalanche_model import (
    MASK_VALUE,
    BalancedSampler,
    EmbeddingCache,
    PrototypeModel,
    build_encoder_for,
)
from siamcl.integrations.avalanche_replay import with_exemplars
from siamcl.integrations.avalanche_streams import dataset_arrays
from siamcl.losses import DistillationTerm, MetricTerm, Objective, build_loss
from siamcl.replay import ExemplarMemory
from siamcl.store import PrototypeStore
from siamcl.training import (
    Batch,
    StepHooks,
    adam,
    embed_in_batches,
    prefer_channels_last,
    rebuild_prototypes,
    train_step,
)
from siamcl.training.precision import resolve_precision

with needs_extra("the Avalanche plugin"):
    from avalanche.core import SupervisedPlugin
    from avalanche.models.dynamic_optimizers import update_optimizer
    from avalanche.training.templates import SupervisedTemplate

__all__ = ["MASK_VALUE", "BalancedSampler", "PrototypeModel", "SiameseStrategy"]


class SiameseStrategy(SupervisedTemplate):
    """Metric-learned encoder, exemplar replay, distillation and a FAISS prototype store.

    encoder: an ``nn.Module`` mapping a batch to ``[N, D]`` (wrapped in L2 normalisation if
        needed), or a name from :data:`siamcl.encoders.ENCODERS` with ``input_shape`` (one
        sample's shape as the benchmark's transforms deliver it, e.g. ``(1, 28, 28)``).
    optimizer: defaults to Adam(``lr``, ``weight_decay``). With ``schedule=True`` its state
        is reset and its learning rate follows a cosine over each experience, as
        :class:`~siamcl.IncrementalClassifier` trains each task.
    The other parameters mean what they mean for :class:`~siamcl.IncrementalClassifier`;
    ``precision`` (``"fp32"``, ``"bf16"``, ``"auto"``) runs training's forward passes and
    the embedding passes for exemplars and prototypes mixed-precision
    (:mod:`siamcl.training.precision`); Avalanche's evaluation runs in float32.
    The remaining keywords (``evaluator``, ``eval_every``, ...) go to Avalanche's
    ``SupervisedTemplate``.
    """

    def __init__(
        self,
        *,
        encoder: str | nn.Module = "conv4",
        input_shape: Sequence[int] | None = None,
        embedding_dim: int = 64,
        loss: Any = "multisimilarity",
        miner: Any = None,
        optimizer: torch.optim.Optimizer | None = None,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        schedule: bool = True,
        memory_per_class: int | None = 20,
        memory_total: int | None = None,
        selection: str = "herding",
        distill_weight: float = 1.0,
        balance: float = 0.5,
        index: str = "Flat",
        metric: str = "cosine",
        prototypes_per_class: int = 1,
        vote_k: int = 1,
        augment: bool | Callable[..., torch.Tensor] = True,
        temperature: float = 0.1,
        seed: int = 0,
        train_mb_size: int = 128,
        train_epochs: int = 8,
        eval_mb_size: int | None = 512,
        device: str | torch.device = "cpu",
        precision: str = "fp32",
        plugins: Sequence[SupervisedPlugin] | None = None,
        **base_kwargs: Any,
    ):
        self.store_params = {"metric": metric, "index": index, "seed": seed}
        self.store_params.update(prototypes_per_class=prototypes_per_class, vote_k=vote_k)
        _check_settings(train_mb_size, distill_weight, balance)
        self.autocast_dtype = resolve_precision(precision, device)
        if isinstance(encoder, str):  # a bad metric or index string fails here, not later
            PrototypeStore(dim=embedding_dim, **self.store_params)
        self.metric_loss, self.distill_weight = build_loss(loss, miner), distill_weight
        self.objective = self.make_objective(None)
        network = build_encoder_for(encoder, input_shape, embedding_dim, seed)
        model = PrototypeModel(prefer_channels_last(network), temperature)
        if optimizer is None:
            trainable = [*model.parameters(), *self.metric_loss.parameters()]
            optimizer = adam(lr, weight_decay)(trainable)
        self.memory = ExemplarMemory.with_budget(memory_per_class, memory_total, selection, seed)
        self.balance, self.schedule, self.seed = balance, schedule, seed
        self.augment = RandomAffine() if augment is True else (augment or None)
        self.generator = torch.Generator().manual_seed(seed)
        super().__init__(
            model=model,
            optimizer=optimizer,
            criterion=nn.CrossEntropyLoss(),  # the eval loss; training uses the objective
            train_mb_size=train_mb_size,
            train_epochs=train_epochs,
            eval_mb_size=eval_mb_size,
            device=device,
            plugins=[_PrototypePlugin(), *(plugins or [])],
            **base_kwargs,
        )

    def make_objective(self, previous: nn.Module | None) -> Objective:
        """The metric loss, plus distillation toward ``previous`` (the encoder as it stood
        after the last experience) when there is one."""
        terms = [("metric", 1.0, MetricTerm(self.metric_loss))]
        if previous is not None:
            teacher = DistillationTerm(FrozenTeacher(previous, autocast_dtype=self.autocast_dtype))
            terms.append(("previous", self.distill_weight, teacher))
        return Objective(terms)

    @property
    def store(self) -> PrototypeStore | None:
        """The prototype store (``None`` before the first experience)."""
        return self.model.store

    def retained_bytes(self) -> dict[str, int]:
        """Bytes kept between experiences besides the encoder: exemplars and prototypes."""
        store = self.model.store
        return {"replay": self.memory.nbytes, "store": store.nbytes if store is not None else 0}

    def embed(self, inputs: torch.Tensor | np.ndarray) -> np.ndarray:
        """Embeddings of model-ready inputs (as the benchmark's transforms deliver them)."""
        if isinstance(inputs, np.ndarray):
            inputs = torch.from_numpy(inputs.astype(np.float32))
        encoder, dtype = self.model.encoder, self.autocast_dtype  # as it trains
        return embed_in_batches(encoder, inputs, device=self.device, autocast_dtype=dtype)

    # -- template hooks ---------------------------------------------------------------
    def criterion(self) -> torch.Tensor:
        """Training: the objective (metric loss + distillation); eval: cross-entropy on
        prototype scores."""
        if self.is_training:
            return self.objective(self.mb_output, Batch(self.mb_x, self.mb_y))
        scores = self.mb_output
        missing = int(self.mb_y.max()) + 1 - scores.shape[1]
        if missing > 0:  # classes of later experiences: masked columns
            scores = F.pad(scores, (0, missing), value=MASK_VALUE)
        return self._criterion(scores, self.mb_y)

    def make_optimizer(self, **kwargs: Any) -> None:
        """The optimizer holds the model's parameters and the loss's own (pml proxies)."""
        trainable = dict(self.model.named_parameters())
        trainable.update({f"loss.{n}": p for n, p in self.metric_loss.named_parameters()})
        self.optimized_param_id = update_optimizer(
            self.optimizer,
            trainable,
            self.optimized_param_id,
            reset_state=kwargs.get("reset_optimizer_state", False),
            remove_params=kwargs.get("remove_params", False),
            verbose=kwargs.get("verbose_optimizer", False),
        )

    def training_epoch(self, **kwargs: Any) -> None:
        """Avalanche's epoch, each step run by siamcl's :func:`~siamcl.training.train_step`
        with the template's callbacks where Avalanche's own loop calls them."""
        hooks = _TemplateHooks(self, kwargs)
        self.metric_loss.to(self.device)
        for minibatch in self.dataloader:
            if self._stop_training:
                break
            self.mbatch = minibatch
            self._unpack_minibatch()
            self._before_training_iteration(**kwargs)
            self.loss = self._make_empty_loss()
            self._before_forward(**kwargs)
            batch = Batch(self.mb_x, self.mb_y)
            self.loss = train_step(
                self.model, self.objective, self.optimizer, batch, hooks, self.autocast_dtype
            )
            self._after_update(**kwargs)
            self._after_training_iteration(**kwargs)

    def train_dataset_adaptation(self, **kwargs: Any) -> None:
        """The experience's data plus the exemplars held in memory, shaped like the
        experience's samples (see :func:`~siamcl.integrations.avalanche_replay.with_exemplars`)."""
        super().train_dataset_adaptation(**kwargs)
        exemplars, labels = self.memory.arrays()
        if exemplars is None:
            return
        self.adapted_dataset = with_exemplars(self.adapted_dataset, exemplars, labels).train()

    def make_train_dataloader(self, num_workers: int = 0, **kwargs: Any) -> None:
        """Batches drawn class-balanced by :func:`~siamcl.training.balanced_epoch`."""
        experience_index = self.clock.train_exp_counter
        self.generator = torch.Generator().manual_seed(self.seed * 1000 + experience_index)
        labels = np.fromiter(self.adapted_dataset.targets, dtype=np.int64)
        self.dataloader = DataLoader(
            self.adapted_dataset,
            batch_size=self.train_mb_size,
            sampler=BalancedSampler(labels, self.balance, self.generator),
            num_workers=num_workers,
            collate_fn=self.adapted_dataset.collate_fn,
            drop_last=len(labels) % self.train_mb_size == 1,  # no single-sample batch
        )


def _check_settings(train_mb_size: int, distill_weight: float, balance: float) -> None:
    if train_mb_size < 2:
        raise ValueError("train_mb_size must be at least 2: a metric loss compares pairs")
    for name, value in (("distill_weight", distill_weight), ("balance", balance)):
        if not value >= 0:
            raise ValueError(f"{name} must be non-negative, got {value!r}")


class _PrototypePlugin(SupervisedPlugin):
    """Per-experience steps of :class:`SiameseStrategy` that run as template callbacks."""

    def __init__(self):
        super().__init__()
        self.scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
        self.initial_lrs: list[float] | None = None

    def before_training_exp(self, strategy: SiameseStrategy, **kwargs: Any) -> None:
        teacher = copy.deepcopy(strategy.model.encoder) if strategy.store is not None else None
        strategy.objective = strategy.make_objective(teacher)
        if strategy.schedule:
            optimizer = strategy.optimizer
            if self.initial_lrs is None:
                self.initial_lrs = [group["lr"] for group in optimizer.param_groups]
            optimizer.state.clear()
            for group, lr in zip(optimizer.param_groups, self.initial_lrs):
                group["lr"] = group["initial_lr"] = lr
            steps = strategy.train_epochs * max(1, len(strategy.dataloader))
            self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)

    def before_forward(self, strategy: SiameseStrategy, **kwargs: Any) -> None:
        batch = strategy.mbatch[0]
        if strategy.augment is None or batch.ndim != 4:
            return
        background = batch.amin(dim=(1, 2, 3), keepdim=True)  # darkest value of each image
        warped = strategy.augment((batch - background).cpu(), strategy.generator)
        strategy.mbatch[0] = warped.to(batch.device) + background

    def after_update(self, strategy: SiameseStrategy, **kwargs: Any) -> None:
        if self.scheduler is not None:
            self.scheduler.step()

    def after_training_exp(self, strategy: SiameseStrategy, **kwargs: Any) -> None:
        """Choose exemplars and rebuild every known class's prototype with the new encoder."""
        inputs, labels = _experience_arrays(strategy)
        embed = EmbeddingCache(strategy.embed, inputs)
        strategy.memory.add(inputs.numpy().astype(np.float16), labels, embed=embed)
        previous = strategy.model.store
        strategy.model.store = rebuild_prototypes(
            PrototypeStore(dim=embed.dim, **strategy.store_params),
            embed,
            embed.embeddings,
            labels,
            strategy.memory,
            previous,
        )
        strategy.objective = strategy.make_objective(None)
        self.scheduler = None


class _TemplateHooks(StepHooks):
    """The template's callbacks at their points inside :func:`~siamcl.training.train_step`."""

    def __init__(self, strategy: SiameseStrategy, kwargs: dict[str, Any]):
        self.strategy = strategy
        self.kwargs = kwargs

    def after_forward(self, outputs: torch.Tensor) -> None:
        self.strategy.mb_output = outputs
        self.strategy._after_forward(**self.kwargs)

    def before_backward(self, loss: torch.Tensor) -> torch.Tensor:
        self.strategy.loss = loss
        self.strategy._before_backward(**self.kwargs)
        return self.strategy.loss  # a plugin may have added a penalty

    def after_backward(self) -> None:
        self.strategy._after_backward(**self.kwargs)

    def before_update(self) -> None:
        self.strategy._before_update(**self.kwargs)


def _experience_arrays(strategy: SiameseStrategy) -> tuple[torch.Tensor, np.ndarray]:
    """The current experience's inputs (eval transforms, so no augmentation) and labels."""
    return dataset_arrays(strategy.experience.dataset.eval(), strategy.eval_mb_size)
