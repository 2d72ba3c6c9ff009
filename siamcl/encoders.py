"""Embedding networks by name.

Every encoder maps a batch of inputs to L2-normalised embeddings ``[N, D]``, so that cosine
similarity and Euclidean distance rank neighbours the same way and prototypes (class means)
live on a comparable scale. Built-in bodies are wrapped in :class:`EmbeddingNetwork`, and so
is any user ``nn.Module`` passed to :func:`build_encoder`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ENCODERS",
    "EmbeddingNetwork",
    "build_encoder",
    "conv4",
    "conv4_flat",
    "conv4_flat_pool_first",
    "conv4_half",
    "conv4_small",
    "koch",
    "mlp",
]


class EmbeddingNetwork(nn.Module):
    """A body followed by L2 normalisation of its ``[N, D]`` output."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.body(x), dim=1)


def _conv_block(in_channels: int, out_channels: int, pool_first: bool = False) -> nn.Sequential:
    """Convolution, batch norm, ReLU and 2x2 max-pooling; with ``pool_first`` the pooling
    comes straight after the convolution, so batch norm and ReLU see a quarter of the map."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)
    pool = nn.MaxPool2d(2, ceil_mode=True)
    norm = [nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]
    return nn.Sequential(conv, pool, *norm) if pool_first else nn.Sequential(conv, *norm, pool)


def _conv4_blocks(channels: int, width: int, pool_first: bool = False) -> list[nn.Module]:
    return [_conv_block(channels, width, pool_first)] + [
        _conv_block(width, width, pool_first) for _ in range(3)
    ]


def conv4(input_shape: tuple[int, ...], embedding_dim: int = 64, width: int = 64) -> nn.Module:
    """Four conv-BN-ReLU-pool blocks, the usual few-shot backbone, averaged over the last
    feature map, then a linear projection."""
    _require_image(input_shape, "conv4")
    return nn.Sequential(
        *_conv4_blocks(input_shape[0], width),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(width, embedding_dim),
    )


def conv4_flat(
    input_shape: tuple[int, ...], embedding_dim: int = 64, width: int = 64, pool_first: bool = False
) -> nn.Module:
    """``conv4`` with its last feature map flattened into the projection instead of averaged.

    The projection then sees where each feature lies (a 28x28 character leaves a 2x2 map, the
    quarters of the drawing), which the average throws away; the convolutions, and so nearly
    all of the cost, are conv4's. On one-shot Omniglot (128-d) it scored 0.6 points higher
    inductively and 0.7 with transduction, three seeds (docs/fewshot.md). ``pool_first``:
    see :func:`conv4_flat_pool_first`.
    """
    _require_image(input_shape, "conv4-flat")
    channels, *sizes = input_shape
    for _ in range(4):  # each block halves the map, rounding up (ceil_mode pooling)
        sizes = [-(-size // 2) for size in sizes]
    return nn.Sequential(
        *_conv4_blocks(channels, width, pool_first),
        nn.Flatten(),
        nn.Linear(width * sizes[0] * sizes[1], embedding_dim),
    )


def conv4_flat_pool_first(
    input_shape: tuple[int, ...], embedding_dim: int = 64, width: int = 64
) -> nn.Module:
    """``conv4-flat`` with each block pooling before its batch norm and ReLU.

    In ``conv4-flat`` batch norm and ReLU (forward and backward) pass over whole feature maps
    and took about a third of a 28x28 training step's profiled CPU time; after the pooling
    they run on a quarter of the map, and the step takes 0.87x the CPU time
    (``benchmarks/episodic_step.py``). Max-pooling commutes with ReLU but not with batch
    norm, whose statistics now come from the pooled maps: a different network, kept because
    it measured as accurate on one-shot Omniglot (docs/fewshot.md), not an exact rewrite.
    """
    return conv4_flat(input_shape, embedding_dim, width, pool_first=True)


def conv4_half(input_shape: tuple[int, ...], embedding_dim: int = 64) -> nn.Module:
    """``conv4`` with half the channels (32), about a quarter of its multiply-adds: a cheaper
    backbone where a point of accuracy may be traded for training energy."""
    return conv4(input_shape, embedding_dim, width=32)


def conv4_small(input_shape: tuple[int, ...], embedding_dim: int = 64) -> nn.Module:
    """``conv4`` with a quarter of the channels: a cheap student for distillation."""
    return conv4(input_shape, embedding_dim, width=16)


def koch(input_shape: tuple[int, ...], embedding_dim: int = 64, hidden: int = 4096) -> nn.Module:
    """The Siamese one-shot network of Koch, Zemel and Salakhutdinov (2015).

    Kernel sizes and widths follow the paper (64@10x10, 128@7x7, 128@4x4, 256@4x4, a sigmoid
    fully connected layer); the convolutions are padded and the last map is pooled adaptively so
    the network also accepts images smaller than the paper's 105x105.
    """
    _require_image(input_shape, "koch")
    channels = input_shape[0]
    return nn.Sequential(
        nn.Conv2d(channels, 64, 10, padding=5),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2, ceil_mode=True),
        nn.Conv2d(64, 128, 7, padding=3),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2, ceil_mode=True),
        nn.Conv2d(128, 128, 4, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2, ceil_mode=True),
        nn.Conv2d(128, 256, 4, padding=2),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(6),
        nn.Flatten(),
        nn.Linear(256 * 36, hidden),
        nn.Sigmoid(),
        nn.Linear(hidden, embedding_dim),
    )


def mlp(input_shape: tuple[int, ...], embedding_dim: int = 64, hidden: int = 256) -> nn.Module:
    """Two hidden Linear-BN-ReLU layers for vector (or flattened image) inputs."""
    features = 1
    for size in input_shape:
        features *= size
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(features, hidden),
        nn.BatchNorm1d(hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, hidden),
        nn.BatchNorm1d(hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, embedding_dim),
    )


ENCODERS: dict[str, Callable[..., nn.Module]] = {
    "conv4": conv4,
    "conv4-flat": conv4_flat,
    "conv4-flat-pool-first": conv4_flat_pool_first,
    "conv4-half": conv4_half,
    "conv4-small": conv4_small,
    "koch": koch,
    "mlp": mlp,
}


def build_encoder(
    spec: str | nn.Module, input_shape: tuple[int, ...], embedding_dim: int = 64
) -> EmbeddingNetwork:
    """Return an L2-normalised embedding network for inputs of ``input_shape`` (without N).

    ``spec`` is a name from :data:`ENCODERS` or any ``nn.Module`` mapping a batch to ``[N, D]``;
    a module is checked with one dummy batch so a wrong output shape fails here, not mid-training.
    """
    if isinstance(spec, nn.Module):
        network = spec if isinstance(spec, EmbeddingNetwork) else EmbeddingNetwork(spec)
        _check_output(network, input_shape)
        return network
    if not isinstance(spec, str):
        raise TypeError(f"encoder must be a name or an nn.Module, got {type(spec).__name__}")
    if spec not in ENCODERS:
        raise ValueError(f"unknown encoder {spec!r}; known encoders: {sorted(ENCODERS)}")
    if not isinstance(embedding_dim, int) or embedding_dim < 1:
        raise ValueError(f"embedding_dim must be a positive integer, got {embedding_dim!r}")
    return EmbeddingNetwork(ENCODERS[spec](tuple(input_shape), embedding_dim))


def _require_image(input_shape: tuple[int, ...], name: str) -> None:
    if len(input_shape) != 3:
        raise ValueError(
            f"encoder {name!r} needs image inputs [N, C, H, W] (or [N, H, W]); got inputs of "
            f"shape [N, {', '.join(map(str, input_shape))}]: use encoder='mlp' for vectors"
        )


def _check_output(network: nn.Module, input_shape: tuple[int, ...]) -> None:
    was_training = network.training
    network.eval()
    try:
        with torch.no_grad():
            param = next(network.parameters(), None)
            device = param.device if param is not None else torch.device("cpu")
            out = network(torch.zeros((2, *input_shape), device=device))
    except Exception as error:  # a user module that cannot take this input shape
        raise ValueError(
            f"encoder module failed on inputs of shape [N, {', '.join(map(str, input_shape))}]: "
            f"{error}"
        ) from error
    finally:
        network.train(was_training)
    if out.ndim != 2 or out.shape[0] != 2:
        raise ValueError(f"encoder module must map inputs to [N, D]; got output {tuple(out.shape)}")


def auto_encoder_name(spec: Any, input_shape: tuple[int, ...]) -> Any:
    """The encoder ``"auto"`` stands for (``conv4`` for images, ``mlp`` for vectors)."""
    if isinstance(spec, str) and spec == "auto":
        return "mlp" if len(input_shape) == 1 else "conv4"
    return spec
