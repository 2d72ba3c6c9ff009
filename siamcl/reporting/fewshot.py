"""How ``siamcl bench fewshot`` results are shown: the markdown report and the accuracy curve.

The report gives the run record and training cost, the N-way one-shot accuracy per held-out
alphabet, and the few-shot class-incremental streams (final figures, then the accuracy after
each alphabet); the plot draws accuracy as characters accumulate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from siamcl.reporting import markdown_table
from siamcl.reporting.figures import pyplot
from siamcl.reporting.records import machine_line

__all__ = ["one_shot_table", "plot_curves", "render_markdown"]


def render_markdown(results: dict[str, Any], plot: Path | None) -> str:
    """The result file's markdown; ``plot`` is linked by name when given."""
    lines = [*_header(results), "", *_training_lines(results["training"]["reports"])]
    lines += ["", *_one_shot_section(results["one_shot"]), ""]
    lines += [
        "## Few-shot class-incremental: alphabets arrive one after another",
        "",
        _stream_table(results["incremental"]),
        "",
        "Accuracy on all characters seen so far, after each alphabet:",
        "",
        _curve_table(results["incremental"]),
    ]
    if plot is not None:
        lines += ["", f"![accuracy as characters accumulate]({plot.name})"]
    return "\n".join(lines)


def _header(results: dict[str, Any]) -> list[str]:
    """Title, run record and which alphabets were trained on and held out."""
    machine = results["machine"]
    return [
        "# Few-shot learning on Omniglot",
        "",
        f"Command: `{results['command']}`  ",
        f"Seeds: {results['seeds']}  ",
        f"Machine: {machine_line(machine)}  ",
        f"Date: {results['date']}  ",
        f"Trained on: {', '.join(results['settings']['train_alphabets'])}  ",
        f"Held out: {', '.join(results['settings']['held_out'])}",
    ]


def _training_lines(reports: list[dict[str, Any]]) -> list[str]:
    """One line per training report of the encoder."""
    return [
        f"Training: {report['wall_s']:.0f} s wall, {report['cpu_s']:.0f} s CPU, "
        f"{report['energy_j']:.0f} J ({report['energy_method']}), "
        f"{report['samples_seen']} samples seen."
        for report in reports
    ]


def _one_shot_section(one_shot: dict[str, Any]) -> list[str]:
    """Heading, mean accuracy sentence and the per-alphabet table of the one-shot runs."""
    return [
        f"## {one_shot['ways']}-way one-shot, within alphabet ({len(one_shot['runs'])} runs)",
        "",
        (
            f"Mean accuracy **{one_shot['mean_accuracy']:.3f}** with {one_shot['embed_views']} "
            f"view(s) per image; evaluation took {one_shot['seconds']:.1f} s."
        ),
        "",
        one_shot_table(one_shot),
    ]


def one_shot_table(one_shot: dict[str, Any]) -> str:
    """Accuracy per alphabet, beside the single-view accuracy when views were averaged and
    the accuracies with balanced and matched transduction when they were measured."""
    views = one_shot["embed_views"]
    headers = ["alphabet", "accuracy" if views == 1 else f"accuracy ({views} views)"]
    extra = []
    if one_shot.get("single_view") is not None:
        headers.append("accuracy (1 view)")
        extra.append(one_shot["single_view"])
    for key, header in (("transductive", "transductive (balanced)"), ("matched", "matched")):
        if one_shot.get(key) is not None:
            headers.append(header)
            extra.append(one_shot[key])
    rows = [
        [a, v, *(e["by_alphabet"][a] for e in extra)] for a, v in one_shot["by_alphabet"].items()
    ]
    if extra:
        rows.append(["mean", one_shot["mean_accuracy"], *(e["mean_accuracy"] for e in extra)])
    return markdown_table(headers, rows)


def _stream_table(streams: list[dict[str, Any]]) -> str:
    """Final accuracy, forgetting and cost of each method, shot count and seed."""
    headers = [
        "method",
        "shots",
        "seed",
        "characters",
        "final accuracy",
        "forgetting",
        "learning s",
        "energy J",
    ]
    rows = [
        [
            r["method"],
            r["shots"],
            r["seed"],
            r["classes"],
            r["accuracy"],
            r["forgetting"],
            r["wall_s"],
            f"{r['energy_j']:.0f} ({r['report']['energy_method']})",
        ]
        for r in streams
    ]
    return markdown_table(headers, rows)


def _curve_table(streams: list[dict[str, Any]]) -> str:
    """Accuracy on every character seen so far, after each alphabet of each stream."""
    rows = [
        [r["method"], r["shots"], r["seed"], p["alphabet"], p["classes_seen"], p["accuracy"]]
        for r in streams
        for p in r["curve"]
    ]
    headers = ["method", "shots", "seed", "after alphabet", "characters", "accuracy"]
    return markdown_table(headers, rows)


def plot_curves(rows: list[dict[str, Any]], path: Path) -> Path:
    """Accuracy on all characters seen against characters seen, per method and shot count
    (mean over seeds)."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(6.4, 4.2))
    for method, style in (("siamese", "-"), ("softmax-finetune", "--")):
        for k in sorted({r["shots"] for r in rows}):
            curves = [r["curve"] for r in rows if r["method"] == method and r["shots"] == k]
            if not curves:
                continue
            x = [point["classes_seen"] for point in curves[0]]
            y = np.mean([[point["accuracy"] for point in c] for c in curves], axis=0)
            axis.plot(x, y, style, marker="o", label=f"{method}, {k}-shot")
    axis.set_xlabel("characters seen so far")
    axis.set_ylabel("accuracy on all characters seen")
    axis.set_ylim(0, 1)
    axis.grid(alpha=0.3)
    axis.legend()
    axis.set_title("Few-shot class-incremental Omniglot (held-out alphabets)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
