"""Benchmark row names: a method, then suffixes that each set one option.

``replay-16px-half-b32`` is Replay on 16x16 inputs with conv4-half in batches of 32, and
``standard-b64-bf16`` the standard network in batches of 64 in bf16. A name is parsed, not
looked up, so any method takes any suffix (a method refuses, before anything runs, an option
its learner lacks), and a row's table label and the words its bars name it with come from
the same suffixes instead of hand-kept maps of every name.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from siamcl.bench.cl_methods import BASELINE_ROWS, LABELS
from siamcl.learners.readout import READOUT_WHITENING
from siamcl.losses import LOSSES

__all__ = [
    "CIL_BASES",
    "SUFFIXES",
    "WHITENING_SHRINKAGE",
    "Variant",
    "like_for_like",
    "parse_variant",
]

WHITENING_SHRINKAGE = READOUT_WHITENING  # of "-whitened" rows: the library's readout default
# a method: its label in tables and the words a bar names it with; suffixes add to both
CIL_BASES = {
    m: (LABELS[m], LABELS[m].split(" (")[0]) for m in ("siamese", "standard", *BASELINE_ROWS)
}


@dataclass(frozen=True)
class Suffix:
    """``pattern`` (a full match of one ``-`` separated part) sets ``options(*groups)``; a
    table label reads ``label`` and a bar ``phrase``, both formatted with the groups."""

    pattern: str
    options: Callable[..., dict[str, Any]]
    label: str
    phrase: str
    example: str


def _blocks(count: str) -> str:
    return "first block" if count == "1" else f"first {count} blocks"


SUFFIXES = (
    Suffix(
        r"([1-9]\d*)px",
        lambda n: {"input_size": (int(n), int(n))},
        "{0}x{0} inputs",
        "on {0}x{0} inputs",
        "16px",
    ),
    Suffix(
        "whitened",
        lambda: {"whitening": WHITENING_SHRINKAGE},
        "whitened class means",
        "with whitened class means",
        "whitened",
    ),
    Suffix(
        r"k([1-9]\d*)",
        lambda n: {"prototypes_per_class": int(n)},
        "{0} prototypes a class (k-means)",
        "with {0} k-means prototypes a class",
        "k5",
    ),
    Suffix(
        "half",
        lambda: {"encoder": "conv4-half"},
        "conv4-half",
        "with conv4-half",
        "half",
    ),
    Suffix(
        "bf16",
        lambda: {"precision": "bf16"},
        "bf16 mixed precision",
        "in bf16 mixed precision",
        "bf16",
    ),
    Suffix(
        r"d([1-9]\d*)",
        lambda n: {"embedding_dim": int(n)},
        "{0}-d embeddings",
        "with {0}-d embeddings",
        "d128",
    ),
    Suffix(
        r"frozen([1-9]\d*)",
        lambda n: {"frozen_layers": int(n)},
        "{blocks} frozen after the first task",
        "with its {blocks} frozen after the first task",
        "frozen1",
    ),
    Suffix(
        "undistorted",
        lambda: {"augment": False},
        "undistorted batches",
        "on undistorted batches",
        "undistorted",
    ),
    Suffix(
        "cached",
        lambda: {"teacher_targets": "cached"},
        "distillation targets cached",
        "with its distillation targets cached once per image",
        "cached",
    ),
    Suffix(
        r"data([1-9]\d?)",
        lambda n: {"data_fraction": int(n) / 100},
        "{0}% of the data",
        "on {0}% of the data",
        "data75",
    ),
    Suffix(
        f"({'|'.join(sorted(LOSSES))})",  # siamcl.losses' names, the learner's own loss= values
        lambda loss: {"loss": loss},
        "{0} loss",
        "trained with the {0} loss",
        "supcon",
    ),
    Suffix(
        r"metric(0|0\.\d+|[1-9]\d*(?:\.\d+)?)",
        lambda w: {"metric_weight": float(w)},
        "metric loss weight {0}",
        "with the metric loss weighted {0}",
        "metric0",
    ),
    Suffix(
        r"distill(0|0\.\d+|[1-9]\d*(?:\.\d+)?)",
        lambda w: {"distill_weight": float(w)},
        "distillation weight {0}",
        "with distillation toward the previous encoder weighted {0}",
        "distill0",
    ),
    Suffix(
        r"e([1-9]\d*)",
        lambda n: {"epochs": int(n)},
        "{0} epochs",
        "in {0} epochs",
        "e3",
    ),
    Suffix(
        r"lr(0\.\d*[1-9]\d*|[1-9]\d*(?:\.\d+)?)",
        lambda x: {"lr": float(x)},
        "learning rate {0}",
        "at learning rate {0}",
        "lr0.003",
    ),
    Suffix(
        "ptq",
        lambda: {"qat": "int8-ptq"},
        "int8 after training (PTQ)",
        "quantized to int8 after training",
        "ptq",
    ),
    Suffix(
        r"b([1-9]\d*)",
        lambda n: {"batch_size": int(n)},
        "batches of {0}",
        "in batches of {0}",
        "b64",
    ),
)


@dataclass(frozen=True)
class Variant:
    """A parsed row name: its method, the options its suffixes set, and their words."""

    name: str
    method: str
    options: dict[str, Any]
    labels: tuple[str, ...]
    phrases: tuple[str, ...]
    base: tuple[str, str]  # the method's label and bar words

    @property
    def label(self) -> str:
        """The row's label in tables: "Replay, 16x16 inputs, batches of 32"."""
        if not self.labels:
            return self.base[0]
        return ", ".join((self.base[0].split(" (")[0], *self.labels))

    @property
    def bar_name(self) -> str:
        """How a bar names the row: "Replay on 16x16 inputs in batches of 32"."""
        return " ".join((self.base[1], *self.phrases))


def parse_variant(name: str, bases: Mapping[str, tuple[str, str]] = CIL_BASES) -> Variant:
    """``name``'s method (the longest of ``bases`` it starts with) and its suffixes' options;
    ValueError naming what is wrong for an unknown method, an unknown suffix, or two
    suffixes setting the same option."""
    method = max((m for m in bases if name == m or name.startswith(m + "-")), key=len, default="")
    if not method:
        raise ValueError(f"{name!r}: unknown method; methods are {list(bases)}")
    parts = name.removeprefix(method).split("-")[1:]
    options: dict[str, Any] = {}
    labels, phrases = [], []
    for part in parts:
        suffix, match = next(
            ((s, m) for s in SUFFIXES if (m := re.fullmatch(s.pattern, part))), (None, None)
        )
        if suffix is None or match is None:
            known = ", ".join(f"-{s.example}" for s in SUFFIXES)
            raise ValueError(f"{name!r}: unknown suffix -{part}; suffixes are {known}")
        groups = match.groups()
        chosen = suffix.options(*groups)
        repeated = sorted(set(chosen) & set(options))
        if repeated:
            raise ValueError(f"{name!r}: two suffixes set {repeated}")
        options.update(chosen)
        words = {"blocks": _blocks(groups[0]) if groups else ""}
        labels.append(suffix.label.format(*groups, **words))
        phrases.append(suffix.phrase.format(*groups, **words))
    return Variant(name, method, options, tuple(labels), tuple(phrases), bases[method])


def like_for_like(
    name: str,
    present: Collection[str],
    reference: str,
    bases: Mapping[str, tuple[str, str]] = CIL_BASES,
) -> list[str]:
    """The rows of method ``reference`` that ``name`` is weighed against: the plain one, and
    of the rows ``present`` the ``reference`` rows given the most of ``name``'s options and
    none it lacks (like for like as far as the run allows; ``name``'s own options, such as
    whitening, may have no counterpart)."""
    options = parse_variant(name, bases).options.items()
    rows = [parse_variant(other, bases) for other in present if other != reference]
    alike = [v for v in rows if v.method == reference and v.options.items() <= options]
    most = max((len(v.options) for v in alike), default=0)
    return [reference, *sorted(v.name for v in alike if len(v.options) == most)]
