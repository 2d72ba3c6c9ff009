"""Quantization-aware training: train with fake quantization, then convert to a real quantized model.

The schemes (the formats a network is prepared for and converted to):

``"int8"``
    int8 weights (symmetric, one scale per output channel) and uint8 activations (7 bits on
    CPUs without VNNI, as PyTorch's x86 configuration chooses) for every ``Conv`` and ``Linear``
    layer, with BatchNorm folded into the convolution before it (Conv-BN and Conv-BN-ReLU are
    fused while training, so the fake-quantised weights are the folded ones). Fake
    quantization comes from PyTorch's FX graph-mode QAT with the x86 backend config;
    conversion gives ``torch.ao.nn.quantized`` modules that run on fbgemm/oneDNN int8 kernels on
    the CPU with no compile step. It is the default because it is the fastest eager path
    measured (``benchmarks/results/int8_paths``: conv4, one thread, 0.262x the fp32 bytes,
    0.08x the batch-256 and 0.60x the batch-1 latency).
``"int8-pt2e"``
    The same quantization through torchao's PT2E flow (:mod:`siamcl.compress.pt2e`):
    ``torch.export``, ``prepare_qat_pt2e`` with the ``X86InductorQuantizer``, ``convert_pt2e``,
    then an eager lowering to oneDNN int8 ops. Measured against FX in one run: 0.259x the
    bytes, 0.095x the batch-256 latency (1.16x FX's) and 0.66x at batch 1, so it is opt-in.
    torchao's converted graph run as it is was 1.9x slower than fp32; under
    ``torch.compile`` it matched FX at batch 256 and beat it at batch 1 (0.51x fp32), after
    46 s of compiling for batch 256 and 5 s more for batch 1 on two cores, and a compiled
    model cannot be saved, so it is not used. The first PT2E conversion in a process takes
    about 15 s (torchao exports its patterns), later ones about 5 s; a saved classifier is
    rebuilt from its fake-quantised weights and converted again on load. Its encoder cannot
    be exported to ONNX.
``"int4"``
    int4 weight-only quantization of ``Linear`` layers through torchao's
    :class:`~torchao.quantization.qat.QATConfig` with ``IntxWeightOnlyConfig`` (one scale per
    group of 32 inputs, or per output channel where the input size is not a multiple of 32).
    On the CPU torchao keeps each int4 value in its own byte, so the saving is that of int8.

Post-training quantization, ``"int8-ptq"`` and ``"int8-pt2e-ptq"`` (:data:`POST_TRAINING`):
the same formats, trained in float throughout (every epoch runs the float network the graph
was prepared from, :mod:`siamcl.compress.float_phase`) and quantized after training, its
ranges calibrated on rows of the task's training data. Training costs what float training
costs; QAT's fake-quantised epochs cost 1.7-1.9x a float step
(``benchmarks/results/qat_step``). Which loses less accuracy depends on the network: for
conv4 on mnist5k the calibrated conversion after float epochs scores as the float network does
(``siamcl bench energy --parts multiclass``).

In an :class:`~siamcl.encoders.EmbeddingNetwork` only the body is quantized; the final L2
normalisation stays float so that embeddings keep unit length exactly.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from siamcl.compress import float_phase
from siamcl.compress.model_caches import model_caches_released
from siamcl.compress.pt2e import (
    convert_pt2e_int8,
    is_pt2e_model,
    prepare_pt2e_int8,
    set_pt2e_quantizers,
)
from siamcl.encoders import EmbeddingNetwork
from siamcl.training.precision import POST_TRAINING_SUFFIX, has_vnni

__all__ = [
    "POST_TRAINING",
    "SCHEMES",
    "FloatTraining",
    "QuantizationAwareTraining",
    "check_scheme",
    "convert_qat",
    "freeze_qat",
    "prepare_qat",
    "schedule_qat",
    "training_scheme",
]

SCHEMES = ("int8", "int8-pt2e", "int4")  # the formats a network is prepared for and converted to
# the int8 formats trained in float and quantized after training: "int8-ptq", "int8-pt2e-ptq"
POST_TRAINING = tuple(s + POST_TRAINING_SUFFIX for s in SCHEMES if s.startswith("int8"))
INT4_GROUP_SIZE = 32
_INT8_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


class FloatTraining:
    """Training without quantization: prepare and convert return the model itself.

    The counterpart of :class:`QuantizationAwareTraining`, so a learner calls the same three
    steps whatever it trains.
    """

    scheme = None

    def prepare(self, model: nn.Module, example_inputs: torch.Tensor) -> nn.Module:
        return model

    def on_epoch_start(self, model: nn.Module, epoch: int, epochs: int) -> None:
        """Nothing to schedule in float training."""

    def on_train_end(self, model: nn.Module) -> None:
        """Nothing to do after float training."""

    def settle(self, model: nn.Module, inputs: torch.Tensor, standardise: Any) -> None:
        """Nothing to settle in a float network."""

    def convert(self, model: nn.Module, calibration: torch.Tensor | None = None) -> nn.Module:
        return model


class QuantizationAwareTraining(FloatTraining):
    """Quantization-aware training as three steps a learner and the training loop call.

    :meth:`prepare` inserts fake quantization (:func:`prepare_qat`), :meth:`on_epoch_start`
    (a training-loop callback) sets it for each epoch (:func:`schedule_qat`), and
    :meth:`convert` gives the real quantized model (:func:`convert_qat`) used to predict.
    Float epochs of the int8 schemes run the float network the graph was prepared from
    (:mod:`siamcl.compress.float_phase`), so a conversion after them calibrates on rows of
    training data first, and :meth:`settle` does so in place when training ends in one.
    ``post_training`` makes every epoch a float epoch: post-training quantization.
    """

    def __init__(self, scheme: str, post_training: bool = False):
        self.scheme = _require_scheme(scheme)
        self.post_training = post_training
        if post_training and scheme == "int4":
            raise ValueError("int4 has no post-training form here: use qat='int4'")

    def prepare(self, model: nn.Module, example_inputs: torch.Tensor) -> nn.Module:
        return prepare_qat(model, self.scheme, example_inputs)

    def on_epoch_start(self, model: nn.Module, epoch: int, epochs: int) -> None:
        schedule_qat(model, epoch, epochs, post_training=self.post_training)

    def settle(self, model: nn.Module, inputs: torch.Tensor, standardise: Any) -> None:
        """After training: a network that ended in float epochs gets its ranges from rows of
        its training ``inputs`` (:func:`~siamcl.compress.calibration_rows`, in place), so it
        converts, now and once saved, as deployed."""
        if float_phase.needs_calibration(model):
            float_phase.calibrate(model, float_phase.calibration_rows(inputs, standardise))

    def convert(self, model: nn.Module, calibration: torch.Tensor | None = None) -> nn.Module:
        return convert_qat(model, self.scheme, calibration)


def training_scheme(scheme: str | None, device: str = "cpu") -> FloatTraining:
    """The training steps for a ``qat`` parameter: None for float, else a scheme in
    :data:`SCHEMES` or :data:`POST_TRAINING` (quantized models run on the CPU, so ``device``
    must be one). The result's ``scheme`` is the format, ``"int8"`` for ``"int8-ptq"``."""
    if check_scheme(scheme) is None:
        return FloatTraining()
    if torch.device(device).type != "cpu":
        raise ValueError(f"quantized models run on the CPU: use device='cpu' with qat={scheme!r}")
    if scheme in POST_TRAINING:
        return QuantizationAwareTraining(
            scheme.removesuffix(POST_TRAINING_SUFFIX), post_training=True
        )
    return QuantizationAwareTraining(scheme)


def check_scheme(scheme: str | None) -> str | None:
    """Return ``scheme`` if it is ``None`` or one of :data:`SCHEMES` or :data:`POST_TRAINING`,
    else raise ValueError."""
    if scheme is None or (isinstance(scheme, str) and scheme in (*SCHEMES, *POST_TRAINING)):
        return scheme
    choices = (*SCHEMES, *POST_TRAINING)
    raise ValueError(f"unknown quantization scheme {scheme!r}; choose one of {choices} or None")


@model_caches_released()  # torch's per-module caches would keep every network alive
def prepare_qat(model: nn.Module, scheme: str, example_inputs: torch.Tensor) -> nn.Module:
    """A copy of ``model`` with fake quantization inserted, in training mode.

    ``example_inputs`` is one batch the model accepts (used to trace it). Raises ValueError
    when the scheme is unknown or the model has no layer the scheme quantizes. An int8 graph
    (either flow) keeps the float copy it was prepared from, sharing its weights, to run in
    float epochs (:mod:`siamcl.compress.float_phase`).
    """
    scheme = _require_scheme(scheme)
    if isinstance(model, EmbeddingNetwork):
        return EmbeddingNetwork(prepare_qat(model.body, scheme, example_inputs))
    _require_quantizable(model, scheme)
    model = copy.deepcopy(model).cpu().train()
    if scheme == "int4":
        from torchao.quantization import quantize_
        from torchao.quantization.qat import QATConfig

        for name, config in _int4_configs(model).items():
            quantize_(model, QATConfig(config, step="prepare"), filter_fn=_named(name))
        return model
    if scheme == "int8-pt2e":
        return prepare_pt2e_int8(model, example_inputs)
    from torch.ao.quantization.quantize_fx import prepare_qat_fx

    with _quiet_torch_ao():
        try:
            prepared = prepare_qat_fx(model, _int8_qconfig_mapping(), (example_inputs[:2].cpu(),))
        except Exception as error:  # torch.fx cannot trace data-dependent control flow
            raise ValueError(
                f"cannot prepare {type(model).__name__} for int8 QAT: torch.fx failed to trace "
                f"it ({error})"
            ) from error
    float_phase.attach_float_network(prepared, model)  # prepared in place: weights shared
    return prepared


def freeze_qat(model: nn.Module) -> nn.Module:
    """Stop a prepared model's observers and BatchNorm statistics from changing (in place).

    Evaluation of a prepared int8 model otherwise keeps updating its quantization ranges.
    """
    from torch.ao.nn.intrinsic.qat import freeze_bn_stats
    from torch.ao.quantization import disable_observer

    model.apply(disable_observer)
    model.apply(freeze_bn_stats)
    if any(is_pt2e_model(m) for m in model.modules()):  # BatchNorm follows eval() there
        set_pt2e_quantizers(model, fake=True, observe=False)
    return model


def schedule_qat(model: nn.Module, epoch: int, epochs: int, post_training: bool = False) -> None:
    """Set a prepared model's fake quantization for ``epoch`` (0-based) of ``epochs`` (in place).

    QAT works best as fine-tuning of a network that has already learned in float, so when
    training from scratch the first two thirds of the epochs run in float and the last third
    trains with fake quantization (with a single epoch, all of it does), its ranges observed
    afresh from its first batch: ranges averaged over float epochs lag a network still
    learning, and fake quantization from the first step slows learning (ranges estimated on
    an untrained network clip what it later produces). An int8 graph (either flow) runs its
    float network in float epochs (:mod:`siamcl.compress.float_phase`). With four or more epochs
    the last one also freezes the observers and BatchNorm statistics, so the network settles
    on the ranges it will be converted with. Every setting is made explicitly, so a model can
    be scheduled again for the next task. With ``post_training`` every epoch is a float
    epoch: the network is quantized after training (an int8 graph only).
    """
    from torch.ao.nn.intrinsic.qat import freeze_bn_stats, update_bn_stats
    from torch.ao.quantization import (
        disable_fake_quant,
        disable_observer,
        enable_fake_quant,
        enable_observer,
    )

    fake = not post_training and epoch >= (2 * epochs) // 3
    observe = not (epochs >= 4 and epoch == epochs - 1)
    model.apply(enable_fake_quant if fake else disable_fake_quant)
    model.apply(enable_observer if observe else disable_observer)
    model.apply(update_bn_stats if observe else freeze_bn_stats)
    float_phase.run_float(model, not fake)
    if any(is_pt2e_model(m) for m in model.modules()):  # torchao's int8 fake quantizers
        set_pt2e_quantizers(model, fake, observe)
    for module in model.modules():  # torchao's int4 fake quantizers
        quantizer = getattr(module, "weight_fake_quantizer", None)
        if quantizer is not None and hasattr(quantizer, "enabled"):
            quantizer.enabled = fake


@model_caches_released()
def convert_qat(
    model: nn.Module, scheme: str, calibration: torch.Tensor | None = None
) -> nn.Module:
    """A copy of a model from :func:`prepare_qat`, converted to real quantized layers (CPU,
    eval). A model that trained in float since its ranges were observed is calibrated on
    ``calibration`` (rows of standardised inputs) first; without them it is refused."""
    scheme = _require_scheme(scheme)
    if isinstance(model, EmbeddingNetwork):
        return EmbeddingNetwork(convert_qat(model.body, scheme, calibration)).eval()
    model = copy.deepcopy(model).cpu().eval()
    if float_phase.needs_calibration(model):
        if calibration is None:
            raise ValueError(
                "the network trained in float epochs since its quantization ranges were "
                "observed: pass calibration rows (siamcl.compress.calibration_rows) to convert it"
            )
        float_phase.calibrate(model, calibration)
    if scheme == "int4":
        from torchao.quantization import quantize_
        from torchao.quantization.qat import QATConfig

        for name, config in _int4_configs(model).items():
            quantize_(model, QATConfig(config, step="convert"), filter_fn=_named(name))
        return model
    if scheme == "int8-pt2e":
        return convert_pt2e_int8(model)
    if not isinstance(model, torch.fx.GraphModule) or is_pt2e_model(model):
        raise TypeError("int8 conversion needs a model returned by prepare_qat(model, 'int8')")
    from torch.ao.quantization.quantize_fx import convert_fx

    with _quiet_torch_ao():
        return convert_fx(freeze_qat(model)).eval()


# ---------------------------------------------------------------------------------- helpers


def _require_scheme(scheme: Any) -> str:
    """A format in :data:`SCHEMES`: what a network is prepared for and converted to."""
    if scheme in POST_TRAINING:
        raise ValueError(
            f"{scheme!r} is how a network trains; it is prepared and converted as "
            f"{scheme.removesuffix(POST_TRAINING_SUFFIX)!r}"
        )
    if check_scheme(scheme) is None:
        raise ValueError(f"a quantization scheme is required; choose one of {SCHEMES}")
    return scheme


def _require_quantizable(model: nn.Module, scheme: str) -> None:
    if scheme == "int4":
        if not any(isinstance(m, nn.Linear) for m in model.modules()):
            raise ValueError(
                f"int4 QAT quantizes Linear layers, and {type(model).__name__} has none; "
                f"use qat='int8' for convolutional layers"
            )
    elif not any(isinstance(m, _INT8_LAYERS) for m in model.modules()):
        raise ValueError(
            f"{type(model).__name__} has no Conv or Linear layer to quantize: QAT would change "
            f"nothing"
        )


def _int8_qconfig_mapping() -> Any:
    """PyTorch's x86 QAT configuration, with 8-bit activations where the CPU has VNNI.

    The x86 default keeps activations to 7 bits because older CPUs' int8 multiply-add
    saturates; CPUs with VNNI accumulate in 32 bits, so the full 8 bits are safe there (as in
    PyTorch's oneDNN configuration) and halve the activations' rounding error.
    """
    from torch.ao.quantization import (
        FusedMovingAvgObsFakeQuantize,
        MovingAverageMinMaxObserver,
        QConfig,
        default_fused_per_channel_wt_fake_quant,
        get_default_qat_qconfig_mapping,
    )

    activation = FusedMovingAvgObsFakeQuantize.with_args(
        observer=MovingAverageMinMaxObserver,
        quant_min=0,
        quant_max=255,
        reduce_range=not has_vnni(),
    )
    qconfig = QConfig(activation=activation, weight=default_fused_per_channel_wt_fake_quant)
    return get_default_qat_qconfig_mapping("x86").set_global(qconfig)


def _int4_base_config(group_size: int | None) -> Any:
    from torchao.quantization import IntxWeightOnlyConfig
    from torchao.quantization.granularity import PerAxis, PerGroup

    granularity = PerAxis(0) if group_size is None else PerGroup(group_size)
    return IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=granularity)


def _int4_configs(model: nn.Module) -> dict[str, Any]:
    """One torchao config per Linear: groups of 32 inputs where they fit, else per channel."""
    configs = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            fits = module.in_features % INT4_GROUP_SIZE == 0
            configs[name] = _int4_base_config(INT4_GROUP_SIZE if fits else None)
    return configs


def _named(target: str):
    def matches(module: nn.Module, fqn: str) -> bool:
        return fqn == target and isinstance(module, nn.Linear)

    return matches


@contextlib.contextmanager
def _quiet_torch_ao() -> Iterator[None]:
    """Silence torch.ao's deprecation notices, which point to the PT2E flow discussed above."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"torch\.ao\.quantization is deprecated")
        warnings.filterwarnings("ignore", message=r"Please use quant_min and quant_max")
        warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor, torch\.quantize")
        yield
