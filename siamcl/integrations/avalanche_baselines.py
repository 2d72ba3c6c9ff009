"""Avalanche's continual-learning baselines on a siamcl backbone, built by name.

Every baseline gets the same backbone (a fresh :func:`~siamcl.encoders.build_encoder` body,
seeded), a linear head over all the stream's classes, Adam, cross-entropy and the same
exemplar budget, with each method's documented setting where it has one:

* ``naive``: fine-tuning (Avalanche ``Naive``);
* ``replay``: ``Replay``, ``memory_total`` exemplars balanced over experiences;
* ``der``: ``DER`` in its DER++ form: ``memory_total`` class-balanced exemplars stored with
  the logits the model gave them at the end of their experience, a replayed batch of
  ``batch_size`` samples (at most ``memory_total``) each step, logit matching weighted
  ``alpha=0.1`` and replayed cross-entropy ``beta=0.5`` (Avalanche 0.6's ``DER`` defaults;
  the paper, Buzzega et al. 2020, tunes both per dataset and buffer size);
* ``er_ace``: ``ER_ACE`` (Caccia et al. 2022), ``memory_total`` class-balanced exemplars,
  asymmetric cross-entropy (incoming samples scored over the classes of their batch only,
  replayed ones over all), Avalanche's defaults except the replayed batch: ``batch_size``
  samples (at most ``memory_total``) instead of Avalanche's 10, which matches the paper's
  online stream of 10 samples a step: as there, replayed and incoming batches are equal;
* ``ewc``: ``EWC``, separate penalties, ``ewc_lambda=0.4`` (Avalanche's Split MNIST example);
* ``lwf``: ``LwF``, temperature 1 and ``alpha_t = t**2 / (t + 1)`` for experience ``t``
  (0, 0.5, 1.33, 2.25, 3.2 for five: Avalanche's Split MNIST example);
* ``icarl``: ``ICaRL``, herding, nearest-mean-of-exemplars, ``memory_total`` in all;
* ``gdumb``: ``GDumb``, retrains from scratch on its ``memory_total`` class-balanced
  exemplars at each experience (``gdumb_epochs`` over that small memory);
* ``slda``: ``StreamingLDA`` (Hayes et al. 2020) over a frozen backbone that is first trained
  with cross-entropy on the first experience for ``epochs`` epochs (the paper's base
  initialisation; its cost is inside the first experience's measurement);
* ``joint``: ``JointTraining`` on the whole stream at once, the upper bound.

``precision`` ``"bf16"`` (or ``"auto"`` where bfloat16 is native) trains every baseline's
forward passes in mixed precision (:class:`~siamcl.integrations.avalanche_precision.MixedPrecision`).
``frozen_layers`` ``k`` > 0 trains every experience after the first above the backbone's
first ``k`` layers, as ``IncrementalClassifier(frozen_layers=k)`` does
(:class:`~siamcl.integrations.avalanche_freezing.FrozenLeadingLayers`).
``whitening`` (a shrinkage) or ``prototypes_per_class=1`` reads a baseline that trains a
backbone and a head (:data:`READABLE`) out by class means of its backbone's features when it
evaluates, whitened or not, its training unchanged
(:class:`~siamcl.integrations.avalanche_readout.PrototypeReadoutPlugin`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from siamcl._extras import needs_extra
from siamcl.encoders import build_encoder
from siamcl.integrations.avalanche_freezing import FrozenLeadingLayers
from siamcl.integrations.avalanche_precision import MixedPrecision
from siamcl.integrations.avalanche_readout import PrototypeReadoutPlugin
from siamcl.integrations.avalanche_streams import dataset_arrays
from siamcl.learners.head import HeadClassifier
from siamcl.losses import CrossEntropyTerm, Objective
from siamcl.training import (
    BatchPreparation,
    ShuffledBatches,
    TrainingLoop,
    adam,
    prefer_channels_last,
    resolve_precision,
)

with needs_extra("the Avalanche baselines"):
    from avalanche.core import BasePlugin, SupervisedPlugin
    from avalanche.training import (
        DER,
        ER_ACE,
        EWC,
        GDumb,
        ICaRL,
        JointTraining,
        LwF,
        Naive,
        Replay,
        StreamingLDA,
    )
    from avalanche.training.templates import SupervisedTemplate

__all__ = [
    "BASELINES",
    "FREEZABLE",
    "READABLE",
    "BaselineSettings",
    "build_baseline",
    "check_readout",
]

BASELINES = ("naive", "replay", "der", "er_ace", "ewc", "lwf", "icarl", "gdumb", "slda", "joint")
# Those whose one backbone trains through every experience: GDumb starts again from scratch,
# StreamingLDA's backbone is frozen anyway, joint training has one experience, and iCaRL's
# model is Avalanche's own feature extractor (FrozenLeadingLayers finds no backbone there).
FREEZABLE = ("naive", "replay", "der", "er_ace", "ewc", "lwf")
# Those a prototype readout can replace the head of: iCaRL reads out by class means already,
# StreamingLDA's classifier is its own.
READABLE = (*FREEZABLE, "gdumb", "joint")
EWC_LAMBDA = 0.4
LWF_TEMPERATURE = 1.0
DER_ALPHA = 0.1
DER_BETA = 0.5


@dataclass
class BaselineSettings:
    """What every baseline shares: data shape, classes, budget and optimiser."""

    input_shape: tuple[int, ...]
    n_classes: int
    n_experiences: int
    epochs: int = 3
    gdumb_epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3
    memory_total: int = 200
    encoder: str = "conv4"
    features: int = 64
    device: str = "cpu"
    seed: int = 0
    precision: str = "fp32"
    frozen_layers: int = 0
    whitening: float | None = None
    prototypes_per_class: int | None = None

    @property
    def read_out(self) -> bool:
        """Whether the baseline is read out by prototypes instead of its head."""
        return self.whitening is not None or self.prototypes_per_class is not None

    def epochs_of(self, name: str) -> int:
        """Training epochs per experience of a baseline (StreamingLDA: one pass)."""
        return {"gdumb": self.gdumb_epochs, "slda": 1}.get(name, self.epochs)


def build_baseline(name: str, settings: BaselineSettings, evaluator: Any) -> SupervisedTemplate:
    """A fresh Avalanche strategy named in :data:`BASELINES`, reporting to ``evaluator``."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose from {BASELINES}")
    if settings.frozen_layers and name not in FREEZABLE:
        raise ValueError(
            f"frozen_layers applies to baselines that train one backbone through the stream "
            f"{FREEZABLE}; not to {name!r}"
        )
    check_readout(name, settings.whitening, settings.prototypes_per_class)
    strategy = _strategy(name, settings, evaluator)
    if settings.read_out:  # first: before the evaluator's meter closes and the buffer updates
        strategy.plugins.insert(0, PrototypeReadoutPlugin(settings.whitening))
    dtype = resolve_precision(settings.precision, settings.device)
    if dtype is not None:
        strategy.plugins.append(MixedPrecision(dtype, settings.device))
    if settings.frozen_layers:
        strategy.plugins.append(FrozenLeadingLayers(settings.frozen_layers))
    return strategy


def check_readout(name: str, whitening: float | None, prototypes_per_class: int | None) -> None:
    """Refuse a prototype readout of a baseline without a head to replace, or with more than
    one prototype a class (the plugin keeps one class mean a class)."""
    if whitening is None and prototypes_per_class is None:
        return
    if name not in READABLE:
        raise ValueError(
            f"a prototype readout replaces the head of {list(READABLE)}; {name!r} has none"
        )
    if prototypes_per_class not in (None, 1):
        raise ValueError(
            f"a baseline is read out by one class mean a class, not {prototypes_per_class}"
        )


def _strategy(name: str, settings: BaselineSettings, evaluator: Any) -> SupervisedTemplate:
    body = _backbone(settings)
    head = nn.Linear(settings.features, settings.n_classes)
    common = {
        "train_mb_size": settings.batch_size,
        "train_epochs": settings.epochs_of(name),
        "eval_mb_size": 512,
        "device": settings.device,
        "evaluator": evaluator,
    }
    if name == "icarl":
        return ICaRL(
            feature_extractor=body,
            classifier=head,
            optimizer=_adam(nn.ModuleList([body, head]), settings),
            memory_size=settings.memory_total,
            buffer_transform=None,
            fixed_memory=True,
            **common,
        )
    if name == "slda":
        return StreamingLDA(
            slda_model=body,
            criterion=nn.CrossEntropyLoss(),
            input_size=settings.features,
            num_classes=settings.n_classes,
            plugins=[BaseInitialisation(settings.features, settings.n_classes, settings)],
            **common,
        )
    model = HeadClassifier(body, settings.features, settings.n_classes)
    model.head = head
    supervised = dict(
        model=model, optimizer=_adam(model, settings), criterion=nn.CrossEntropyLoss(), **common
    )
    return _head_strategy(name, settings, supervised)


def _head_strategy(
    name: str, settings: BaselineSettings, supervised: dict[str, Any]
) -> SupervisedTemplate:
    """A baseline that trains the backbone and its linear head end to end."""
    if name == "naive":
        return Naive(**supervised)
    if name == "replay":
        return Replay(mem_size=settings.memory_total, **supervised)
    if name in ("der", "er_ace"):
        replayed = {
            "mem_size": settings.memory_total,
            "batch_size_mem": max(1, min(settings.batch_size, settings.memory_total)),
        }
        if name == "der":
            strategy = DER(alpha=DER_ALPHA, beta=DER_BETA, **replayed, **supervised)
        else:
            strategy = ER_ACE(**replayed, **supervised)
        strategy.plugins.insert(0, HeldBuffer(strategy.storage_policy))
        return strategy
    if name == "ewc":
        return EWC(ewc_lambda=EWC_LAMBDA, mode="separate", **supervised)
    if name == "lwf":
        alphas = [t * t / (t + 1) for t in range(settings.n_experiences)]
        return LwF(alpha=alphas, temperature=LWF_TEMPERATURE, **supervised)
    if name == "gdumb":
        return GDumb(mem_size=settings.memory_total, **supervised)
    return JointTraining(**supervised)


class HeldBuffer(SupervisedPlugin):
    """Shows a strategy's own exemplar buffer to ``TrainingCost`` as retained state.

    DER and ER-ACE keep their buffer on the strategy rather than in a plugin, where
    :func:`~siamcl.integrations.avalanche_metrics.retained_bytes` looks; this plugin holds it
    (and DER's stored logits, refreshed after each experience's buffer update), and drops the
    last replayed minibatch both leave on the strategy, scratch that would otherwise count as
    retained. It must come before the evaluator in the strategy's plugins.
    """

    SCRATCH = ("batch_logits", "mb_buffer_x", "mb_buffer_y", "mb_buffer_tid", "mb_buffer_out")

    def __init__(self, storage_policy: Any):
        super().__init__()
        self.storage_policy = storage_policy
        self.logits: torch.Tensor | None = None

    def after_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        logits = getattr(self.storage_policy.buffer, "logits", None)
        if logits is not None and len(logits):
            self.logits = torch.stack([torch.as_tensor(row) for row in logits])
        for name in self.SCRATCH:
            if hasattr(strategy, name):
                setattr(strategy, name, None)


class BaseInitialisation(BasePlugin):
    """Train a frozen-feature strategy's backbone on its first experience, then freeze it.

    Deep Streaming LDA assumes a backbone trained beforehand on base classes; here it is
    trained with cross-entropy through a temporary linear head on the first experience.
    A :class:`BasePlugin`: it needs only ``before_training_exp``, and StreamingLDA warns of
    any plugin with the gradient-step callbacks a ``SupervisedPlugin`` carries.
    """

    def __init__(self, features: int, n_classes: int, settings: BaselineSettings):
        super().__init__()
        self.features = features
        self.n_classes = n_classes
        self.settings = settings
        self.done = False

    def before_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        if self.done:
            return
        body = strategy.model
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.settings.seed)
            model = HeadClassifier(body, self.features, self.n_classes).to(strategy.device)
        inputs, labels = dataset_arrays(strategy.adapted_dataset)
        loop = TrainingLoop(
            epochs=self.settings.epochs,
            optimizer=adam(self.settings.lr),
            schedule=None,
            prepare=BatchPreparation(device=strategy.device),
            precision=self.settings.precision,
        )
        source = ShuffledBatches(inputs, labels, self.settings.batch_size)
        objective = Objective([("cross_entropy", 1.0, CrossEntropyTerm())])
        loop.run(model, objective, source, torch.Generator().manual_seed(self.settings.seed))
        body.eval().requires_grad_(False)
        self.done = True


def _backbone(settings: BaselineSettings) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        body = build_encoder(settings.encoder, settings.input_shape, settings.features).body
        return prefer_channels_last(body)  # as siamcl's own learners train


def _adam(model: nn.Module, settings: BaselineSettings) -> torch.optim.Optimizer:
    return adam(settings.lr)(model.parameters())
