"""File helpers behind siamcl's atomic, checksummed saves (classifier, store, checkpoint)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["fsync_path", "sha256_file"]


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a file, or a directory's entries, to disk (directories where the OS allows it)."""
    try:
        descriptor = os.open(Path(path), os.O_RDONLY)
    except OSError:
        if Path(path).is_dir():
            return
        raise
    try:
        os.fsync(descriptor)
    except OSError:
        if not Path(path).is_dir():
            raise
    finally:
        os.close(descriptor)
