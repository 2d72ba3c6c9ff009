"""Random affine distortions drawn independently for every image of a batch.

Small rotations, scalings, shears and shifts are the augmentation that makes few examples of
handwriting go far. torchvision's batched transforms share one draw across a batch; here each
image gets its own matrix through ``affine_grid``/``grid_sample``, in one vectorised call.
:class:`AffineViews` is the test-time counterpart: a fixed set of warps whose embeddings a
classifier averages, the same for every image.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property, partial

import torch
import torch.nn.functional as F

__all__ = ["AffineViews", "RandomAffine", "warp"]


@dataclass(frozen=True)
class RandomAffine:
    """Per-image random affine warp of a ``[N, C, H, W]`` batch.

    ``degrees`` rotation range, ``scale`` (low, high), ``shear`` degrees, ``translate`` as a
    fraction of the image size. Background is filled with the canonical background (zero).
    ``elastic`` (0: none) adds a smooth random displacement on top, a wobble of the pen
    rather than of the page: offsets drawn uniformly up to ``elastic`` (a fraction of the
    image size) at a 4x4 grid of control points, interpolated over the image, and sampled
    in the same ``grid_sample`` call as the affine warp.
    """

    degrees: float = 10.0
    scale: tuple[float, float] = (0.9, 1.1)
    shear: float = 8.0
    translate: float = 0.08
    elastic: float = 0.0

    def __call__(
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        if images.ndim != 4:
            return images
        theta = self.matrices(images.shape[0], generator)
        offsets = self._displacement(images, generator) if self.elastic else None
        return warp(images, theta, offsets)

    def _displacement(
        self, images: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        """Smooth offsets ``[N, H, W, 2]`` in ``grid_sample``'s coordinates (2 = image size)."""
        n, _, height, width = images.shape
        control = (torch.rand(n, 2, 4, 4, generator=generator) * 2 - 1) * (2 * self.elastic)
        field = F.interpolate(control, size=(height, width), mode="bicubic", align_corners=True)
        return field.permute(0, 2, 3, 1).to(images)

    def scaled(self, factor: float) -> RandomAffine:
        """The same distortion with every range (angles, zoom, shear, shift, elastic) times
        ``factor``."""
        if not factor >= 0:
            raise ValueError(f"a distortion scale must be non-negative, got {factor!r}")
        low, high = self.scale
        return RandomAffine(
            degrees=self.degrees * factor,
            scale=(1 - (1 - low) * factor, 1 + (high - 1) * factor),
            shear=self.shear * factor,
            translate=self.translate * factor,
            elastic=self.elastic * factor,
        )

    def matrices(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` random affine matrices ``[n, 2, 3]`` in ``affine_grid``'s convention."""

        def uniform(low: float, high: float) -> torch.Tensor:
            return torch.rand(n, generator=generator) * (high - low) + low

        angle = uniform(-self.degrees, self.degrees) * math.pi / 180
        shear = uniform(-self.shear, self.shear) * math.pi / 180
        zoom = uniform(*self.scale)
        shift_x = uniform(-self.translate, self.translate) * 2
        shift_y = uniform(-self.translate, self.translate) * 2
        cos, sin, tan = torch.cos(angle), torch.sin(angle), torch.tan(shear)
        return torch.stack(
            [
                torch.stack([cos / zoom, (-sin + tan * cos) / zoom, shift_x], dim=1),
                torch.stack([sin / zoom, (cos + tan * sin) / zoom, shift_y], dim=1),
            ],
            dim=1,
        )


@dataclass(frozen=True)
class AffineViews:
    """``count`` fixed views of an image: the image itself and ``count - 1`` affine warps.

    The warps are drawn once from ``seed`` (with ``distortion``'s ranges) and every image gets
    the same ones, so an image's views do not depend on the batch it arrives in. Averaging the
    embeddings of these views steadies one-shot comparisons, where a single drawing stands
    for its class.
    """

    count: int
    seed: int = 0
    distortion: RandomAffine = field(default_factory=RandomAffine)

    def __post_init__(self) -> None:
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise ValueError(f"views must be a positive integer, got {self.count!r}")

    @cached_property
    def _matrices(self) -> torch.Tensor:
        """The ``count - 1`` warps, drawn on first use and kept: batches reuse them."""
        generator = torch.Generator().manual_seed(self.seed)
        return self.distortion.matrices(self.count - 1, generator)

    def __iter__(self) -> Iterator[Callable[[torch.Tensor], torch.Tensor]]:
        yield lambda images: images
        for theta in self._matrices:
            yield partial(_warp_all, theta=theta)

    def __len__(self) -> int:
        return self.count


def warp(
    images: torch.Tensor, theta: torch.Tensor, offsets: torch.Tensor | None = None
) -> torch.Tensor:
    """Warp ``[N, C, H, W]`` images by matrices ``theta`` ``[N, 2, 3]``, plus per-pixel
    ``offsets`` ``[N, H, W, 2]`` of the sampling grid if given; background stays 0."""
    grid = F.affine_grid(theta.to(images), list(images.shape), align_corners=False)
    if offsets is not None:
        grid = grid + offsets
    return F.grid_sample(images, grid, padding_mode="zeros", align_corners=False)


def _warp_all(images: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    return warp(images, theta.expand(images.shape[0], 2, 3))
