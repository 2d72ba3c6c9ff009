"""Atomic, checksummed directory writes: one mechanism for every save siamcl makes.

A classifier, a prototype store and a stream checkpoint are each written into a staging
directory beside the target, flushed to disk, and renamed into place in one step
(:func:`atomic_directory`); a previous directory of that name is moved aside first and deleted
only once the new one is in place (put back if the rename fails). A kill at any moment
leaves either the old directory or the new one, never a half-written one under the target
name. :func:`file_checksums` lists the sha256 of every file a manifest vouches for;
:func:`write_json` writes a manifest and flushes it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["atomic_directory", "file_checksums", "fsync_path", "sha256_file", "write_json"]


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


def file_checksums(directory: Path, exclude: Iterable[str] = ()) -> dict[str, str]:
    """sha256 of every file under ``directory`` (paths relative to it), each flushed to disk."""
    skipped = set(exclude)
    checksums = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        name = path.relative_to(directory).as_posix()
        if name in skipped:
            continue
        fsync_path(path)
        checksums[name] = sha256_file(path)
    return checksums


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON and flush it to disk."""
    with open(path, "w") as handle:
        json.dump(data, handle, indent=2)
        handle.flush()
        os.fsync(handle.fileno())


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty staging directory; on success it replaces ``target`` in one rename.

    On any error (or interrupt) the staging directory is removed and ``target`` is left as it
    was. Raises ValueError when ``target`` is a file.
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise ValueError(f"cannot save to {target}: it is a file, not a directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield staging
        fsync_path(staging)
        _swap_into_place(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _swap_into_place(staging: Path, target: Path) -> None:
    """Rename ``staging`` to ``target``; an existing ``target`` is moved aside first and
    deleted only once the new directory is in place (restored if the rename fails)."""
    retired = None
    if target.exists():
        retired = target.with_name(f".{target.name}.old-{uuid.uuid4().hex}")
        os.rename(target, retired)
    try:
        os.rename(staging, target)
    except BaseException:
        if retired is not None:
            os.rename(retired, target)
        raise
    fsync_path(target.parent)
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)
