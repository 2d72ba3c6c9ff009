"""Random affine distortions drawn independently for every image of a batch.

Small rotations, scalings, shears and shifts are the augmentation that makes few examples of
handwriting go far. torchvision's batched transforms share one draw across a batch; here each
image gets its own matrix through ``affine_grid``/``grid_sample``, in one vectorised call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["RandomAffine"]


@dataclass
class RandomAffine:
    """Per-image random affine warp of a ``[N, C, H, W]`` batch.

    ``degrees`` rotation range, ``scale`` (low, high), ``shear`` degrees, ``translate`` as a
    fraction of the image size. Background is filled with the canonical background (zero).
    """

    degrees: float = 10.0
    scale: tuple[float, float] = (0.9, 1.1)
    shear: float = 8.0
    translate: float = 0.08

    def __call__(
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        if images.ndim != 4:
            return images
        n = images.shape[0]

        def uniform(low: float, high: float) -> torch.Tensor:
            return torch.rand(n, generator=generator) * (high - low) + low

        angle = uniform(-self.degrees, self.degrees) * math.pi / 180
        shear = uniform(-self.shear, self.shear) * math.pi / 180
        zoom = uniform(*self.scale)
        shift_x = uniform(-self.translate, self.translate) * 2
        shift_y = uniform(-self.translate, self.translate) * 2
        cos, sin, tan = torch.cos(angle), torch.sin(angle), torch.tan(shear)
        theta = torch.stack(
            [
                torch.stack([cos / zoom, (-sin + tan * cos) / zoom, shift_x], dim=1),
                torch.stack([sin / zoom, (cos + tan * sin) / zoom, shift_y], dim=1),
            ],
            dim=1,
        ).to(images)
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        return F.grid_sample(images, grid, padding_mode="zeros", align_corners=False)
