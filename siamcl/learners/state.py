"""What a classifier has learned, held as one immutable snapshot.

Every method that answers (``predict``, ``predict_proba``, ``embed``, ``score``) reads the
snapshot once, and every method that learns (``fit_task``, ``add_classes``,
``reset_classes``) replaces it in one assignment, so a prediction made while another thread
learns uses one model, the one before or the one after, never parts of both. The familiar
attributes (``encoder_``, ``store_``, ...) read from the snapshot; assigning one replaces the
snapshot with a copy holding the new value.
"""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["Learned", "learned_attribute"]


@dataclasses.dataclass(frozen=True)
class Learned:
    """One consistent set of everything learned (``qat`` is the scheme it was trained with)."""

    preprocessor: Any
    encoder: Any
    trainable_encoder: Any
    metric_loss: Any
    memory: Any
    store: Any
    reports: tuple[Any, ...]
    qat: str | None


def learned_attribute(name: str, doc: str) -> property:
    """``<name>_``: the snapshot's field, settable by replacing the snapshot."""

    def read(owner: Any) -> Any:
        state = owner.__dict__.get("learned_")
        if state is None:
            raise AttributeError(f"{type(owner).__name__} has no attribute {name}_: not fitted")
        value = getattr(state, name)
        return list(value) if name == "reports" else value

    def write(owner: Any, value: Any) -> None:
        state = owner.__dict__.get("learned_")
        if state is None:
            raise AttributeError(f"{name}_ is learned by fitting; fit the classifier first")
        if name == "reports":
            value = tuple(value)
        owner.__dict__["learned_"] = dataclasses.replace(state, **{name: value})

    return property(read, write, doc=doc)
