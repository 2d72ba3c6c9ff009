"""Checks of what a command was given, made before any work: the device, and that every
place it will write to can be written. A run that would fail after an hour fails at once."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

__all__ = ["UsageError", "check_arguments", "check_device", "check_writable"]


class UsageError(Exception):
    """A problem with what the user asked for, reported as one line."""


def check_arguments(args: argparse.Namespace) -> None:
    """Raise UsageError for a device this machine lacks or an output that cannot be written."""
    if getattr(args, "device", None) is not None:
        check_device(args.device)
    if getattr(args, "out", None) is not None:
        check_writable(Path(args.out), "--out", folder=getattr(args, "out_is_folder", False))
    if getattr(args, "checkpoint", None):
        check_writable(Path(args.checkpoint), "--checkpoint", folder=True)


def check_device(device: str) -> None:
    """A torch device that exists on this machine."""
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise UsageError(f"--device {device!r} is not a torch device (e.g. cpu, cuda, cuda:1)")
    if parsed.type == "cuda":
        count = torch.cuda.device_count()
        if count == 0:
            raise UsageError(f"--device {device}: no CUDA device is available on this machine")
        if parsed.index is not None and parsed.index >= count:
            raise UsageError(f"--device {device}: this machine has {count} CUDA device(s)")
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"--device {device}: MPS is not available on this machine")
    elif parsed.type not in ("cpu", "cuda", "mps"):
        raise UsageError(f"--device {device}: siamcl runs on cpu, cuda or mps")


def check_writable(path: Path, option: str, folder: bool) -> None:
    """Raise UsageError unless ``path`` (a file, or a folder when ``folder``) can be written."""
    if folder and path.exists() and not path.is_dir():
        raise UsageError(f"{option} {path} is a file; give a folder")
    if not folder and path.is_dir():
        raise UsageError(f"{option} {path} is a folder; give a file name")
    existing = path if folder and path.exists() else path.parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"{option} {path}: {existing} is a file, not a folder")
    target = path if path.exists() and path.is_dir() else existing
    if not os.access(target, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UsageError(f"{option} {path} cannot be written (no permission on {target})")
