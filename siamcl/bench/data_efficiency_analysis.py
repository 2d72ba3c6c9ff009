"""The data-efficiency study's design and what is derived from its runs.

The settings and methods compared, the least samples a class keeps, and the share of
full-data accuracy a fraction must reach; from the per-seed rows: the mean over seeds, the
smallest fraction reaching that share, the seed-paired Siamese-vs-standard comparison, and
the least data with which the Siamese learner matches the standard network.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "METHODS",
    "MIN_PER_CLASS",
    "SETTINGS",
    "TARGET_SHARE",
    "energy_method",
    "less_data_to_match",
    "percent",
    "present",
    "siamese_ahead",
    "smallest_fractions",
    "summarise",
]

SETTINGS: tuple[str, ...] = ("multiclass", "class-incremental")
METHODS: tuple[str, ...] = ("siamese", "softmax")
TARGET_SHARE = 0.9
MIN_PER_CLASS = 2  # a metric loss needs a positive pair within each class


def summarise(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and standard deviation over seeds per (setting, fraction, method)."""
    groups: dict[tuple[str, float, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["setting"], row["fraction"], row["method"]), []).append(row)
    summary = []
    for (setting, fraction, method), members in groups.items():
        accuracy = np.array([m["accuracy"] for m in members])
        energy = np.array([m["energy_j"] for m in members])
        summary.append(
            {
                "setting": setting,
                "fraction": fraction,
                "method": method,
                "seeds": len(members),
                "samples_per_class": members[0]["samples_per_class"],
                "epochs": members[0]["epochs"],
                "accuracy": float(accuracy.mean()),
                "accuracy_std": float(accuracy.std()),
                "forgetting": float(np.mean([m["forgetting"] for m in members])),
                "energy_j": float(energy.mean()),
                "energy_method": energy_method(members),
                "cpu_s": float(np.mean([m["cpu_s"] for m in members])),
            }
        )
    order = {name: i for i, name in enumerate(SETTINGS)}
    summary.sort(key=lambda s: (order.get(s["setting"], 99), s["fraction"], s["method"]))
    return summary


def energy_method(members: Sequence[dict[str, Any]]) -> str:
    """The energy method shared by ``members``, or ``"mixed"``."""
    methods = {m["energy_method"] for m in members}
    return methods.pop() if len(methods) == 1 else "mixed"


def smallest_fractions(summary: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per setting and method: the smallest fraction reaching 90% of its full-data accuracy.

    The reference is the accuracy at the largest fraction run (100% in a full run); the
    fraction with the best accuracy is recorded too, since more data need not help.
    """
    found = []
    for setting in present(summary, "setting"):
        for method in present(summary, "method"):
            points = sorted(
                (s["fraction"], s["accuracy"])
                for s in summary
                if s["setting"] == setting and s["method"] == method
            )
            if not points:
                continue
            reference_fraction, reference = points[-1]
            target = TARGET_SHARE * reference
            reached = next(f for f, accuracy in points if accuracy >= target)
            best_fraction, best = max(points, key=lambda point: (point[1], -point[0]))
            found.append(
                {
                    "setting": setting,
                    "method": method,
                    "reference_fraction": reference_fraction,
                    "reference_accuracy": reference,
                    "target_accuracy": target,
                    "fraction": reached,
                    "best_fraction": best_fraction,
                    "best_accuracy": best,
                }
            )
    return found


def siamese_ahead(
    summary: Sequence[dict[str, Any]], runs: Sequence[dict[str, Any]] = ()
) -> list[dict[str, Any]]:
    """Per setting and fraction: Siamese minus standard mean accuracy, and who is ahead.

    With the per-seed ``runs``, also how many seeds the Siamese learner wins (paired by seed).
    """
    table = {(s["setting"], s["fraction"], s["method"]): s for s in summary}
    by_seed = {(r["setting"], r["fraction"], r["method"], r["seed"]): r["accuracy"] for r in runs}
    rows = []
    for setting in present(summary, "setting"):
        for fraction in sorted({s["fraction"] for s in summary if s["setting"] == setting}):
            siamese = table.get((setting, fraction, "siamese"))
            softmax = table.get((setting, fraction, "softmax"))
            if siamese is None or softmax is None:
                continue
            gap = siamese["accuracy"] - softmax["accuracy"]
            seeds = sorted(
                seed
                for (s, f, m, seed) in by_seed
                if (s, f, m) == (setting, fraction, "siamese")
                and (setting, fraction, "softmax", seed) in by_seed
            )
            wins = sum(
                by_seed[(setting, fraction, "siamese", seed)]
                > by_seed[(setting, fraction, "softmax", seed)]
                for seed in seeds
            )
            rows.append(
                {
                    "setting": setting,
                    "fraction": fraction,
                    "gap": gap,
                    "siamese_ahead": bool(gap > 0),
                    "seeds_ahead": wins,
                    "seeds_compared": len(seeds),
                    "energy_ratio": siamese["energy_j"] / softmax["energy_j"]
                    if softmax["energy_j"]
                    else None,
                }
            )
    return rows


def less_data_to_match(summary: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per setting: the smallest fraction at which the Siamese learner's mean accuracy reaches
    the standard network's, trained on all of the data (the largest fraction run) and at the
    fraction where the standard network did best (where more data did not help it), with the
    share of data and of energy that took against the standard network's run.
    ``fraction`` is None where the Siamese learner never reached it."""
    found = []
    for setting in present(summary, "setting"):
        runs = {
            method: sorted(
                (s for s in summary if s["setting"] == setting and s["method"] == method),
                key=lambda s: s["fraction"],
            )
            for method in METHODS
        }
        if not runs["siamese"] or not runs["softmax"]:
            continue
        all_data = runs["softmax"][-1]
        best = max(runs["softmax"], key=lambda s: (s["accuracy"], -s["fraction"]))
        references = [("all the data", all_data)]
        if best is not all_data:
            references.append(("its best fraction", best))
        for reference_name, reference in references:
            match = next(
                (s for s in runs["siamese"] if s["accuracy"] >= reference["accuracy"]), None
            )
            found.append(
                {
                    "setting": setting,
                    "reference": reference_name,
                    "standard_fraction": reference["fraction"],
                    "standard_accuracy": reference["accuracy"],
                    "standard_energy_j": reference["energy_j"],
                    **_match_figures(match, reference),
                }
            )
    return found


def _match_figures(match: dict[str, Any] | None, reference: dict[str, Any]) -> dict[str, Any]:
    """The Siamese run that matched ``reference`` (None: none did): its fraction and accuracy,
    and its data and energy over the reference's."""
    if match is None:
        return dict.fromkeys(("fraction", "accuracy", "data_ratio", "energy_ratio"))
    energy = reference["energy_j"]
    return {
        "fraction": match["fraction"],
        "accuracy": match["accuracy"],
        "data_ratio": match["fraction"] / reference["fraction"],
        "energy_ratio": match["energy_j"] / energy if energy else None,
    }


def present(summary: Sequence[dict[str, Any]], key: str) -> list[Any]:
    """The values of ``key`` in ``summary``, each once, in order of appearance."""
    seen: list[Any] = []
    for s in summary:
        if s[key] not in seen:
            seen.append(s[key])
    return seen


def percent(fraction: float) -> str:
    """A fraction as a percentage label: 0.05 -> '5%'."""
    return f"{100 * fraction:g}%"
