"""How ``siamcl bench data-efficiency`` results are shown: markdown report and figure.

The report states the setup, a headline (is the Siamese learner ahead at small fractions?),
the Siamese-minus-standard gaps, the smallest fraction reaching 90% of full-data accuracy
and every point; the figure plots accuracy against data fraction and against energy.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from siamcl.bench.data_efficiency_analysis import (
    MIN_PER_CLASS,
    TARGET_SHARE,
    energy_method,
    percent,
    present,
)
from siamcl.reporting import markdown_table
from siamcl.reporting.figures import label_point, pyplot, separate_labels
from siamcl.reporting.records import machine_line

__all__ = [
    "METHOD_LABELS",
    "headline",
    "plot_results",
    "render_markdown",
    "results_figure",
    "summary_table",
]

#: Dots per inch of the figure, drawn and saved alike so labels stay where they were placed.
DPI = 110
METHOD_LABELS = {"siamese": "Siamese (prototypes)", "softmax": "standard (softmax)"}


def headline(ahead: Sequence[dict[str, Any]], up_to: float = 0.1) -> str:
    """One sentence: is the Siamese learner ahead at every fraction up to ``up_to``?"""
    lines = []
    for setting in present(ahead, "setting"):
        points = [a for a in ahead if a["setting"] == setting and a["fraction"] <= up_to]
        if not points:
            continue
        behind = [percent(a["fraction"]) for a in points if not a["siamese_ahead"]]
        wins = sum(a.get("seeds_ahead", 0) for a in points)
        compared = sum(a.get("seeds_compared", 0) for a in points)
        verdict = "yes" if not behind else f"no (behind at {', '.join(behind)})"
        lines.append(
            f"**{setting}: Siamese ahead on the mean at every fraction up to "
            f"{percent(up_to)}: {verdict}**; ahead in {wins} of {compared} seed-paired runs."
        )
    return "  \n".join(lines)


def summary_table(summary: Sequence[dict[str, Any]]) -> str:
    """Every (setting, fraction, method) point, mean over seeds."""
    headers = [
        "setting",
        "fraction",
        "per class",
        "epochs",
        "method",
        "accuracy (mean ± sd)",
        "forgetting",
        "energy J (method)",
        "cpu s",
    ]
    rows = [
        [
            s["setting"],
            percent(s["fraction"]),
            s["samples_per_class"],
            s["epochs"],
            s["method"],
            f"{s['accuracy']:.3f} ± {s['accuracy_std']:.3f}",
            s["forgetting"],
            f"{s['energy_j']:.0f} ({s['energy_method']})",
            s["cpu_s"],
        ]
        for s in summary
    ]
    return markdown_table(headers, rows)


def render_markdown(results: dict[str, Any]) -> str:
    """The result file's markdown: setup, headline comparison, 90% fractions, full table."""
    return (
        _header(results)
        + _setup(results)
        + f"{headline(results['siamese_ahead'])}\n\n"
        + _figure(results.get("plot"))
        + _ahead_section(results["siamese_ahead"])
        + _reach_section(results["reach_90"])
        + _replay_note(results)
        + _match_section(results.get("less_data_to_match", []))
        + "\n\n## All points (mean over seeds)\n\n"
        + summary_table(results["summary"])
        + "\n"
    )


def _figure(name: str | None) -> str:
    """The figure's markdown link, or nothing when it was not drawn."""
    return f"![accuracy against fraction and energy]({name})\n\n" if name else ""


def _header(results: dict[str, Any]) -> str:
    """Title and run record, ending in a blank line."""
    machine = results["machine"]
    return (
        f"# Data efficiency: Siamese vs standard network on {results['settings']['dataset']}\n\n"
        f"Command: `{results['command']}`  \nSeeds: {results['seeds']}  \n"
        f"Machine: {machine_line(machine)}  \nDate: {results['date']}  \n"
        f"Run time: {results.get('run_wall_s', float('nan')) / 60:.1f} min wall for all runs "
        "(training and testing; the machine may have been shared)\n\n"
    )


def _setup(results: dict[str, Any]) -> str:
    """Fractions, settings and the budget both methods share, ending in a blank line."""
    settings = results["settings"]
    fractions = ", ".join(percent(f) for f in settings["fractions"])
    steps = " / ".join(f"{n} ({setting})" for setting, n in results["min_steps"].items())
    auto = (
        ", min_steps being the steps a task of the full training set gets"
        if settings["min_steps"] is None
        else ""
    )
    return (
        f"Fractions of the training set: {fractions} (each class keeps that share of its "
        f"samples, at least {MIN_PER_CLASS}). Settings: multi-class (one task) and "
        f"class-incremental ({settings['tasks']} tasks). Both methods: encoder "
        f"`{settings['encoder']}`, batch {settings['batch_size']}, "
        f"{settings['memory_per_class']} exemplars per class, {settings['threads']} torch "
        f"thread(s), at least {settings['epochs']} epochs and at least {steps} optimiser "
        "steps per task: epochs = max(epochs, ceil(min_steps / batches per epoch)), the "
        f"same for both methods{auto}. Energy is per run (all tasks); `estimate` means "
        "CPU-seconds times a per-core power (docs/energy.md).\n\n"
    )


def _ahead_section(ahead: Sequence[dict[str, Any]]) -> str:
    """Siamese minus standard accuracy per setting and fraction, with seed wins."""
    rows = [
        [
            a["setting"],
            percent(a["fraction"]),
            a["gap"],
            "yes" if a["siamese_ahead"] else "no",
            f"{a.get('seeds_ahead', '?')}/{a.get('seeds_compared', '?')}",
            a["energy_ratio"] if a["energy_ratio"] is not None else "",
        ]
        for a in ahead
    ]
    headers = [
        "setting",
        "fraction",
        "accuracy gap",
        "Siamese ahead",
        "seeds ahead",
        "energy ratio",
    ]
    return (
        "## Siamese minus standard accuracy\n\n"
        "Gap: mean Siamese accuracy minus mean standard accuracy; seeds ahead: seeds whose "
        "Siamese run beats the standard run of the same seed; energy ratio: Siamese / "
        "standard energy.\n\n" + markdown_table(headers, rows)
    )


def _reach_section(reach: Sequence[dict[str, Any]]) -> str:
    """The smallest fraction reaching the target share of full-data accuracy, with notes
    where more data did not help."""
    rows = [
        [
            r["setting"],
            r["method"],
            r["reference_accuracy"],
            r["target_accuracy"],
            percent(r["fraction"]),
            f"{r['best_accuracy']:.3f} at {percent(r['best_fraction'])}",
        ]
        for r in reach
    ]
    headers = [
        "setting",
        "method",
        "full-data accuracy",
        "target",
        "smallest fraction",
        "best accuracy",
    ]
    notes = _reach_notes(reach)
    return (
        f"\n\n## Smallest fraction reaching {TARGET_SHARE:.0%} of its own full-data "
        "accuracy\n\n"
        + markdown_table(headers, rows)
        + ("\n\n" + "\n".join(notes) if notes else "")
    )


def _match_section(matches: Sequence[dict[str, Any]]) -> str:
    """The least data with which the Siamese learner matches the standard network, and what
    that cost in energy (empty for results written before this was derived)."""
    if not matches:
        return ""

    def share(value: float | None) -> str:
        return "" if value is None else f"{value:.2f}x"

    rows = [
        [
            m["setting"],
            f"{m['reference']} ({percent(m['standard_fraction'])})",
            m["standard_accuracy"],
            "never" if m["fraction"] is None else percent(m["fraction"]),
            "" if m["accuracy"] is None else m["accuracy"],
            share(m["data_ratio"]),
            share(m["energy_ratio"]),
        ]
        for m in matches
    ]
    headers = [
        "setting",
        "standard network on",
        "its accuracy",
        "Siamese reaches it with",
        "Siamese accuracy",
        "data",
        "energy",
    ]
    return (
        "\n\n## Least data for the Siamese learner to match the standard network\n\n"
        "The smallest fraction at which the Siamese learner's mean accuracy reaches the "
        "standard network's, trained on all of the data and, where more data did not help "
        "it, at its best fraction; data and energy are the Siamese run's over the standard "
        "network's. The step floor (above) keeps small fractions from being undertrained, so "
        "less data saves energy only through smaller batches.\n\n" + markdown_table(headers, rows)
    )


def _reach_notes(reach: Sequence[dict[str, Any]]) -> list[str]:
    """A note for each method most accurate below full data (a lower reference)."""
    return [
        f"- {METHOD_LABELS.get(r['method'], r['method'])}, {r['setting']}: most accurate at "
        f"{percent(r['best_fraction'])} of the data ({r['best_accuracy']:.3f}), not with all "
        f"of it ({r['reference_accuracy']:.3f}), so its 90% fraction is measured against a "
        "lower reference."
        for r in reach
        if r["best_accuracy"] - r["reference_accuracy"] > 0.01
    ]


def _replay_note(results: dict[str, Any]) -> str:
    """Why forgetting matters in the class-incremental setting (empty without it)."""
    if "class-incremental" not in results["min_steps"]:
        return ""
    return (
        "\n\nIn class-incremental learning the exemplar budget is fixed "
        f"({results['settings']['memory_per_class']} per class), so the more data a task "
        "brings, the smaller the share of replayed old classes in its batches; the "
        "forgetting column shows what that does to each method."
    )


def plot_results(summary: Sequence[dict[str, Any]], path: str | Path, dataset: str) -> Path:
    """Accuracy against fraction (left) and against energy (right), one row per setting."""
    figure = results_figure(summary, dataset)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI)
    pyplot().close(figure)
    return path


def results_figure(summary: Sequence[dict[str, Any]], dataset: str) -> Any:
    """The figure of :func:`plot_results`, laid out, the energy panels' labels apart."""
    plt = pyplot()
    settings = present(summary, "setting")
    figure, axes = plt.subplots(
        len(settings), 2, figsize=(10, 3.6 * len(settings)), squeeze=False, dpi=DPI
    )
    labels: list[list[Any]] = []
    for row, setting in enumerate(settings):
        labels.append([])
        for method in present(summary, "method"):
            points = sorted(
                (s for s in summary if s["setting"] == setting and s["method"] == method),
                key=lambda s: s["fraction"],
            )
            labels[row] += _plot_method(axes[row], points, METHOD_LABELS.get(method, method))
        _style_row(axes[row], summary, setting)
    figure.suptitle(f"Data efficiency on {dataset}")
    figure.tight_layout()
    for row, row_labels in enumerate(labels):
        separate_labels(axes[row][1], row_labels)
    return figure


def _plot_method(axes: Any, points: list[dict[str, Any]], label: str) -> list[Any]:
    """One method's points: accuracy (± sd) against fraction, and against energy, labelled
    with the fraction; returns the labels."""
    fractions = [100 * s["fraction"] for s in points]
    accuracy = [s["accuracy"] for s in points]
    spread = [s["accuracy_std"] for s in points]
    energy = [s["energy_j"] for s in points]
    axes[0].errorbar(fractions, accuracy, yerr=spread, marker="o", capsize=3, label=label)
    line = axes[1].plot(energy, accuracy, marker="o", alpha=0.8, label=label)[0]
    return [
        label_point(
            axes[1],
            percent(point["fraction"]),
            (point["energy_j"], point["accuracy"]),
            fontsize=7,
            color=line.get_color(),
        )
        for point in points
    ]


def _style_row(axes: Any, summary: Sequence[dict[str, Any]], setting: str) -> None:
    """Log axes with plain tick labels, titles, grid and legend for one setting's row."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    axes[0].set(
        xscale="log",
        xlabel="training data used (%)",
        ylabel="accuracy",
        title=f"{setting}: accuracy vs data",
    )
    axes[0].set_xticks([100 * f for f in present(summary, "fraction")])
    axes[0].xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axes[0].xaxis.set_minor_formatter(NullFormatter())
    axes[1].set(
        xscale="log",
        xlabel=f"training energy, J per run ({energy_method(summary)}; labels: data %)",
        ylabel="accuracy",
        title=f"{setting}: accuracy vs energy",
    )
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    axes[1].xaxis.set_major_formatter(plain)
    axes[1].xaxis.set_minor_formatter(plain)
    for axis in axes:
        axis.grid(True, alpha=0.3)
        axis.legend()
