"""siamcl: Siamese metric-learning networks for class-incremental and few-shot learning.

Classes live as prototypes in a FAISS index, so new classes need no softmax head and old ones
are not overwritten; every task reports its energy, time, FLOPs and memory.

The public names are imported on first use (PEP 562), so ``import siamcl`` and the ``siamcl``
command start without loading torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from siamcl._lazy import lazy_names

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


__getattr__, __dir__ = lazy_names(globals(), _HOMES)
