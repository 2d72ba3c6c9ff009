"""Learners: thin compositions of the training loop, objectives, memory and the store.

- :class:`IncrementalClassifier`: Siamese encoder + FAISS prototype store + replay.
- :class:`SoftmaxClassifier`: the standard network it is compared with.
- :class:`EpisodicTrainer`: episodic training for one-shot use, returning a classifier.
- :func:`prototype_readout` / :class:`PrototypeReadout`: a softmax network's backbone read out
  by prototypes in the store, as a classifier.
"""

from siamcl.learners.episodic import EpisodicTrainer
from siamcl.learners.incremental import IncrementalClassifier, NotFittedError
from siamcl.learners.readout import PrototypeReadout, prototype_readout
from siamcl.learners.softmax import SoftmaxClassifier

__all__ = [
    "EpisodicTrainer",
    "IncrementalClassifier",
    "NotFittedError",
    "PrototypeReadout",
    "SoftmaxClassifier",
    "prototype_readout",
]
