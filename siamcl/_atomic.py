"""Atomic, checksummed directory writes: one mechanism for every save siamcl makes.

A classifier, a prototype store and a stream checkpoint are each written into a staging
directory beside the target, flushed to disk, and put in place in one step
(:func:`atomic_directory`). Over an existing directory the two are exchanged atomically
(Linux ``renameat2(RENAME_EXCHANGE)``), so the target path holds a complete directory, old or
new, at every instant; where the exchange is not available the old directory is renamed aside
first and :func:`recover` (run by every save and load) puts it back if a kill came between
the two renames. Leftover staging and set-aside directories are removed by the next save. :func:`file_checksums` lists the sha256 of every file a manifest vouches for;
:func:`write_json` writes a manifest and flushes it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_directory",
    "file_checksums",
    "fsync_path",
    "recover",
    "sha256_file",
    "write_json",
]

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


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
    """Yield an empty staging directory; on success it replaces ``target`` in one step.

    On any error (or interrupt) the staging directory is removed and ``target`` is left as it
    was. Raises ValueError when ``target`` is a file.
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise ValueError(f"cannot save to {target}: it is a file, not a directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    recover(target)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield staging
        fsync_path(staging)
        _swap_into_place(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _remove_leftovers(target)


def recover(target: str | os.PathLike) -> None:
    """Undo what a save killed between its two renames left: if ``target`` is missing and a
    set-aside copy of it exists, put the newest copy back."""
    target = Path(target)
    if target.exists() or not target.parent.is_dir():
        return
    aside = sorted(target.parent.glob(f".{target.name}.old-*"), key=lambda p: p.stat().st_mtime)
    if aside:
        os.rename(aside[-1], target)
        fsync_path(target.parent)


def _remove_leftovers(target: Path) -> None:
    """Staging and set-aside directories of earlier, interrupted saves of ``target``."""
    for pattern in (f".{target.name}.tmp-*", f".{target.name}.old-*"):
        for leftover in target.parent.glob(pattern):
            shutil.rmtree(leftover, ignore_errors=True)


def _swap_into_place(staging: Path, target: Path) -> None:
    """Put ``staging`` at ``target``: exchanged atomically with an existing directory where
    the system can, else renamed aside first (restored if the second rename fails)."""
    if not target.exists():
        os.rename(staging, target)
        fsync_path(target.parent)
        return
    if _exchange(staging, target):
        fsync_path(target.parent)
        shutil.rmtree(staging, ignore_errors=True)  # now holds the previous directory
        return
    retired = target.with_name(f".{target.name}.old-{uuid.uuid4().hex}")
    os.rename(target, retired)
    try:
        os.rename(staging, target)
    except BaseException:
        os.rename(retired, target)
        raise
    fsync_path(target.parent)
    shutil.rmtree(retired, ignore_errors=True)


def _exchange(first: Path, second: Path) -> bool:
    """Swap two directories in one step (Linux renameat2); False where not supported."""
    renameat2 = getattr(_libc(), "renameat2", None)
    if renameat2 is None:
        return False
    done = renameat2(
        _AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE
    )
    if done == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(error, os.strerror(error), str(second))


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
