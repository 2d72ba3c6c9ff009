"""A folder of images, one sub-folder per class, as arrays: the layout people keep their
own images in (``root/<class name>/<image files>``).

Images may be of any format PIL reads, any size and any mode: they are resized to one size
(the most common one, unless ``size`` is given) and converted to one mode (grayscale when
every image is grayscale, else RGB), so that one classifier can take them all.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from siamcl.data.images import ImageSize, check_size, read_image

__all__ = ["image_files", "load_image_folder"]

# PIL modes without colour: converted to "L", everything else to "RGB"
_GRAYSCALE_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


def image_files(folder: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """The files of ``folder`` (and its sub-folders when ``recursive``), sorted by path.

    Hidden files (names starting with a dot, such as ``.DS_Store``) are left out; every other
    file is taken for an image, so a stray file is reported rather than silently skipped.
    """
    folder = Path(folder)
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(
        path
        for path in found
        if path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )


def class_folders(root: str | os.PathLike) -> list[Path]:
    """The class sub-folders of ``root``, sorted by name; raise if there are none."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"image folder {root} does not exist")
    if not root.is_dir():
        raise ValueError(f"{root} is a file; give a folder with one sub-folder per class")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise ValueError(
            f"{root} holds no class folders: expected {root}/<class name>/<image files>"
        )
    return folders


def image_header(path: Path) -> tuple[tuple[int, int], bool]:
    """``((height, width), grayscale)`` of an image file, read from its header only."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            return (height, width), image.mode in _GRAYSCALE_MODES
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ValueError(f"cannot read image {path}: {error}") from error


def common_format(
    paths: list[Path], size: ImageSize | None = None, grayscale: bool | None = None
) -> tuple[tuple[int, int], bool]:
    """The ``(height, width)`` and mode images are brought to: ``size`` or the most common
    size (the first of equally common ones), and grayscale only if every image is."""
    headers = [image_header(path) for path in paths]
    shape = check_size(size)
    if shape is None:
        shape = Counter(header[0] for header in headers).most_common(1)[0][0]
    if grayscale is None:
        grayscale = all(header[1] for header in headers)
    return shape, bool(grayscale)


def load_image_folder(
    root: str | os.PathLike,
    size: ImageSize | None = None,
    grayscale: bool | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Load ``root/<class name>/<image files>`` as ``(X, y, class_names)``.

    ``X`` is uint8, ``[N, H, W]`` for grayscale images or ``[N, 3, H, W]`` for colour; ``y``
    holds integer labels, ``class_names[label]`` the folder name of each (folders sorted by
    name). ``size`` (an int or ``(height, width)``) sets the size every image is resized to;
    by default it is the most common size. ``grayscale`` forces the mode (None: grayscale
    when every image is, else RGB).

    A missing ``root`` raises FileNotFoundError; a folder with no class folders, a class
    folder with no image, or a file PIL cannot read raises ValueError naming it.
    """
    folders = class_folders(root)
    paths: list[Path] = []
    labels: list[int] = []
    for label, folder in enumerate(folders):
        files = image_files(folder, recursive=True)
        if not files:
            raise ValueError(f"class folder {folder} holds no image files")
        paths += files
        labels += [label] * len(files)
    shape, gray = common_format(paths, size, grayscale)
    X = np.stack([read_image(path, shape, gray) for path in paths]).astype(np.uint8, copy=False)
    return X, np.asarray(labels, dtype=np.int64), [folder.name for folder in folders]
