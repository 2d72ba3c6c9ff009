"""Persistence: saving and loading classifiers, and checkpointed task streams.

Nothing here imports a learner class: saving reads a learner's parameters and public learned
attributes, loading returns parameters and state that the learner's ``from_state`` rebuilds
from, and checkpointing rebuilds through ``type(learner).load``. Every directory is written
atomically through :mod:`siamcl._atomic`.
"""

from siamcl.persistence.checkpoint import StreamCheckpoint, fit_stream
from siamcl.persistence.classifier import Learner, read_classifier, save_classifier

__all__ = ["Learner", "StreamCheckpoint", "fit_stream", "read_classifier", "save_classifier"]
