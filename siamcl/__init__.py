"""siamcl: Siamese metric-learning networks for class-incremental and few-shot learning.

Classes live as prototypes in a FAISS index, so new classes need no softmax head and old ones
are not overwritten; every task reports its energy, time, FLOPs and memory.

The public names are imported on first use (PEP 562), so ``import siamcl`` and the ``siamcl``
command start without loading torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from siamcl.accounting import ResourceMeter, TaskReport
    from siamcl.learners.incremental import IncrementalClassifier
    from siamcl.store import PrototypeStore

__all__ = ["IncrementalClassifier", "PrototypeStore", "ResourceMeter", "TaskReport"]
__version__ = "0.1.0"

_HOMES = {
    "IncrementalClassifier": "siamcl.learners.incremental",
    "PrototypeStore": "siamcl.store",
    "ResourceMeter": "siamcl.accounting",
    "TaskReport": "siamcl.accounting",
}


def __getattr__(name: str) -> Any:
    """Import a public name from its module the first time it is asked for."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'siamcl' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
