"""Keeping freed memory for reuse instead of handing it back to the kernel after every batch.

glibc's malloc serves a block above its mmap threshold (which it adapts, up to 32 MiB on
64-bit machines) with a fresh ``mmap``, returns it with ``munmap`` when freed, and trims the
heap's free top once it exceeds twice that threshold. A network's activations are such blocks
(conv4 on 28x28 inputs: 25 MiB a layer for 128 images), so batch after batch maps memory anew
and the kernel zero-fills each page on first touch: on the machine measured
(``python benchmarks/allocator.py``) an embedding pass of mnist5k spent 0.70 s in the kernel
beside 1.08 s of its own. :func:`retain_freed_memory` fixes both thresholds higher (blocks up to
``limit`` from the heap, up to twice ``limit`` of free heap kept), so the next batch reuses the
pages the last one freed; the memory kept is bounded by that, and given back beyond it.

The ``siamcl`` command does this at start (``SIAMCL_MALLOC=system`` leaves malloc as it is);
a program using the library calls :func:`retain_freed_memory` itself. It is written by hand
because no maintained package sets malloc's options from inside a running process (jemalloc
and tcmalloc are preloaded before the process starts).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

__all__ = ["RETAINED_LIMIT", "allocator_setting", "retain_freed_memory", "retain_unless_disabled"]

RETAINED_LIMIT = 256 << 20  # heap blocks up to 256 MiB; up to 512 MiB of free heap kept
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)
_state = {"setting": "system"}


def retain_freed_memory(limit: int = RETAINED_LIMIT) -> bool:
    """Serve blocks up to ``limit`` bytes from malloc's heap and keep up to ``2 * limit`` bytes
    of freed heap for reuse. True where applied (glibc); False where this C library has no
    ``mallopt`` (macOS, musl, Windows) or refuses the value, and nothing changes. Applies to
    the whole process, from this call on."""
    if not isinstance(limit, int) or isinstance(limit, bool) or not 0 < limit < 2**30:
        raise ValueError(f"limit must be a positive number of bytes under 1 GiB, got {limit!r}")
    mallopt = _glibc_mallopt()
    if mallopt is None:
        return False
    if not (mallopt(_M_MMAP_THRESHOLD, limit) and mallopt(_M_TRIM_THRESHOLD, 2 * limit)):
        return False
    _state["setting"] = f"retained (heap blocks up to {limit >> 20} MiB, {limit >> 19} MiB kept)"
    return True


def allocator_setting() -> str:
    """How this process's malloc treats large freed blocks, for result records: ``system``
    (the C library's default) or what :func:`retain_freed_memory` set."""
    return _state["setting"]


def retain_unless_disabled() -> bool:
    """The ``siamcl`` command's start: :func:`retain_freed_memory` unless the environment
    says ``SIAMCL_MALLOC=system``."""
    if os.environ.get("SIAMCL_MALLOC", "").strip().lower() == "system":
        return False
    return retain_freed_memory()


def _glibc_mallopt():
    if os.name != "posix":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return mallopt
