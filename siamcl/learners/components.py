"""How an IncrementalClassifier's parts are built from its parameters.

The encoder (weights drawn from ``seed``), the prototype store, the exemplar memory, the
metric loss and the resource meter are each made here, in one place, from the classifier's
public parameters, for training, for ``from_state`` and for ``reset_classes`` alike.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from siamcl.accounting import ResourceMeter
from siamcl.compress import training_scheme
from siamcl.encoders import auto_encoder_name, build_encoder
from siamcl.losses import MetricLoss, build_loss
from siamcl.replay import ExemplarMemory
from siamcl.store import PrototypeStore
from siamcl.training import prefer_channels_last

__all__ = ["ComponentFactories"]


class ComponentFactories:
    """Mixin: the parts of a Siamese prototype classifier, built from its parameters."""

    def _meter(self, device: torch.device) -> ResourceMeter:
        return ResourceMeter(energy=self.energy, flops=self.flops, device=str(device))

    def new_encoder(self, input_shape: tuple[int, ...]) -> nn.Module:
        """A fresh encoder for inputs of ``input_shape``, its weights drawn from ``seed``."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            spec = (
                copy.deepcopy(self.encoder)
                if isinstance(self.encoder, nn.Module)
                else auto_encoder_name(self.encoder, input_shape)
            )
            return build_encoder(spec, input_shape, self.embedding_dim)

    def _encoder_with(
        self, weights: dict[str, torch.Tensor] | None, input_shape: tuple[int, ...]
    ) -> nn.Module:
        """A new encoder, prepared for training as ``qat`` says, holding ``weights``, in the
        channels-last layout training leaves it in (a resumed stream computes as an
        uninterrupted one). An encoder handed over by a trainer keeps the layout it has."""
        if weights is None:
            raise ValueError("from_state needs trainable_encoder or encoder_weights")
        scheme = training_scheme(self.qat)
        encoder = scheme.prepare(self.new_encoder(input_shape), torch.zeros((2, *input_shape)))
        try:
            encoder.load_state_dict(weights)
        except RuntimeError as error:
            raise ValueError(f"the saved weights do not fit the encoder: {error}") from error
        return prefer_channels_last(encoder)

    def deployed(self, trainable: nn.Module, calibration: torch.Tensor | None = None) -> nn.Module:
        """The encoder this classifier predicts with, made from ``trainable`` (the encoder as
        trained): itself in float, its quantized conversion under ``qat`` (calibrated on
        ``calibration`` rows after float epochs, :mod:`siamcl.compress.float_phase`).
        Validation and a benchmark's checks score this form mid-training, since stopping
        there deploys it."""
        return training_scheme(self.qat).convert(trainable, calibration)

    def _new_store(self, dim: int) -> PrototypeStore:
        return PrototypeStore(
            dim=dim,
            metric=self.metric,
            index=self.index,
            prototypes_per_class=self.prototypes_per_class,
            vote_k=self.vote_k,
            seed=self.seed,
        )

    def _new_memory(self) -> ExemplarMemory:
        return ExemplarMemory.with_budget(
            self.memory_per_class, self.memory_total, self.selection, self.seed
        )

    def _new_loss(self) -> MetricLoss:
        """The metric loss to train, a copy of ``loss``/``miner`` (a pml loss with proxies
        is trained in the copy, which is kept from task to task)."""
        return build_loss(copy.deepcopy(self.loss), copy.deepcopy(self.miner))
