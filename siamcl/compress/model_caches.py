"""Caches in torch and torchao that keep every model they see alive, emptied after each use.

torch.ao's FX quantization and torchao's PT2E flow memoise ``assert_and_get_unique_device``
with ``functools.cache`` (pytorch/pytorch#162550): an unbounded cache keyed by the module
itself, so every network prepared or converted (its weights, observers and graph) stays in
memory for the life of the process, a stream of quantized tasks holding every task's
network. The cache only saves repeated lookups within one prepare or convert call, so siamcl
empties it after each (:func:`model_caches_released`); a call of the user's own between two of
siamcl's pays those lookups again, nothing else.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

__all__ = ["MODULE_KEYED_CACHES", "model_caches_released", "release_model_caches"]

# (module, function): functools caches keyed by nn.Module objects
MODULE_KEYED_CACHES = (
    ("torch.ao.quantization.fx.utils", "assert_and_get_unique_device"),
    ("torchao.utils", "_assert_and_get_unique_device"),
)


def release_model_caches() -> None:
    """Empty every cache of :data:`MODULE_KEYED_CACHES` whose module is loaded (importing
    none: an unloaded module has cached nothing)."""
    for module_name, name in MODULE_KEYED_CACHES:
        cached = getattr(sys.modules.get(module_name), name, None)
        if hasattr(cached, "cache_clear"):
            cached.cache_clear()


@contextlib.contextmanager
def model_caches_released() -> Iterator[None]:
    """Run the block (a prepare or convert call), then :func:`release_model_caches`, also
    when the block fails."""
    try:
        yield
    finally:
        release_model_caches()
