"""Image files to uint8 arrays, decoded with PIL.

Grayscale images come back as ``[N, H, W]``; colour images as ``[N, 3, H, W]`` (channels
first, the layout every siamcl model takes). Pixel values are left as stored: no inversion
or normalisation, which the fitted classifier applies itself.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from siamcl._checks import ImageSize, check_size


def to_array(image: Image.Image, size: tuple[int, int] | None, grayscale: bool) -> np.ndarray:
    """Convert a PIL image to uint8 ``[H, W]`` (grayscale) or ``[3, H, W]`` (colour)."""
    image = image.convert("L" if grayscale else "RGB")
    if size is not None and image.size != (size[1], size[0]):
        image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    pixels = np.asarray(image, dtype=np.uint8)
    return pixels if grayscale else pixels.transpose(2, 0, 1)


def decode_bytes(
    data: bytes, name: str, size: tuple[int, int] | None = None, grayscale: bool = True
) -> np.ndarray:
    """Decode one encoded image (PNG, JPEG, ...) from bytes; ``name`` is used in errors."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return to_array(image, size, grayscale)
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ValueError(f"cannot decode image {name}: {error}") from error


def read_image(
    path: str | os.PathLike, size: tuple[int, int] | None = None, grayscale: bool = True
) -> np.ndarray:
    """Read one image file; missing -> FileNotFoundError, undecodable -> ValueError."""
    file = Path(path)
    if not file.is_file():
        what = "is not a file" if file.exists() else "does not exist"
        raise FileNotFoundError(f"image file {file} {what}")
    return decode_bytes(file.read_bytes(), str(file), size, grayscale)


def stack_images(images: Sequence[np.ndarray], names: Sequence[str]) -> np.ndarray:
    """Stack decoded images into one array, or raise naming the first that differs in shape."""
    first = images[0].shape
    for image, name in zip(images, names):
        if image.shape != first:
            raise ValueError(
                f"image {name} has shape {image.shape} but {names[0]} has {first}; "
                "pass size=(height, width) to resize them all"
            )
    return np.stack(images).astype(np.uint8, copy=False)


def load_images(
    paths: Sequence[str | os.PathLike],
    size: ImageSize | None = None,
    grayscale: bool = True,
) -> np.ndarray:
    """Load image files (PNG, JPEG, anything PIL reads) into one uint8 array.

    Returns ``[N, H, W]`` when ``grayscale`` (the default) else ``[N, 3, H, W]``. Without
    ``size`` every image must have the same size; with ``size`` (an int, or a
    ``(height, width)`` pair) each one is resized bilinearly.
    """
    if isinstance(paths, (str, bytes, os.PathLike)):
        raise TypeError("paths must be a sequence of image paths, not a single path")
    paths = list(paths)
    if not paths:
        raise ValueError("paths is empty: no images to load")
    shape = check_size(size)
    images = [read_image(path, shape, grayscale) for path in paths]
    return stack_images(images, [str(path) for path in paths])
