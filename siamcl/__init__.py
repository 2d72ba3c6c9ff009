"""siamcl: Siamese metric-learning networks for class-incremental and few-shot learning.

Classes live as prototypes in a FAISS index, so new classes need no softmax head and old ones
are not overwritten; every task reports its energy, time, FLOPs and memory.
"""

from siamcl.accounting import ResourceMeter, TaskReport
from siamcl.learners.incremental import IncrementalClassifier
from siamcl.store import PrototypeStore

__all__ = ["IncrementalClassifier", "PrototypeStore", "ResourceMeter", "TaskReport"]
__version__ = "0.1.0"
