"""How ``siamcl bench cl`` results are shown: the markdown report and accuracy-energy plot.

The report gives the run record, one paragraph on the shared setup, the summary table (one
row per method, mean over seeds) and the acceptance bar; the plot places every method by
training energy and final accuracy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from siamcl.bench.cl_methods import LABELS, SIAMESE_ROWS
from siamcl.reporting import markdown_table
from siamcl.reporting.figures import pyplot
from siamcl.reporting.records import machine_line

__all__ = ["plot_results", "render_markdown", "summary_table"]

SUMMARY_HEADERS = [
    "method",
    "epochs/task",
    "final accuracy",
    "forgetting",
    "train energy J (method)",
    "energy vs Siamese",
    "CPU s",
    "wall s",
    "GFLOPs",
    "peak RSS MiB",
    "retained KiB",
]


def summary_table(summary: list[dict[str, Any]]) -> str:
    """One row per method: accuracy, forgetting and training cost; failed methods say why."""
    return markdown_table(SUMMARY_HEADERS, [_summary_row(row) for row in summary])


def _summary_row(row: dict[str, Any]) -> list[Any]:
    if "accuracy_mean" not in row:
        failed = [row["label"], row["epochs"], "failed: " + "; ".join(row["errors"])]
        return failed + [""] * (len(SUMMARY_HEADERS) - 3)
    return [
        row["label"] + (f" ({len(row['errors'])} failed)" if row["errors"] else ""),
        row["epochs"],
        f"{row['accuracy_mean']:.3f} ± {row['accuracy_std']:.3f}",
        "n/a" if row["forgetting_mean"] is None else f"{row['forgetting_mean']:.3f}",
        f"{row['energy_j']:.0f} ({row['energy_method']})",
        "" if row["energy_ratio"] is None else f"{row['energy_ratio']:.2f}x",
        f"{row['cpu_s']:.1f}",
        f"{row['wall_s']:.1f}",
        "" if row["flops"] is None else f"{row['flops'] / 1e9:.0f}",
        f"{row['peak_rss_mib']:.0f}",
        f"{row['retained_bytes'] / 1024:.0f}",
    ]


def render_markdown(results: dict[str, Any]) -> str:
    """The result file's markdown: run record, setup, summary table and the bar."""
    bar_lines = [_bar_line(name, check) for name, check in results["bar"].items()]
    return (
        _header(results)
        + f"{_setup(results['settings'])}\n\n"
        + f"{summary_table(results['summary'])}\n\n"
        + "## Bar (Siamese accuracy >= Replay and iCaRL; energy <= 0.5x Replay)\n\n"
        + ("\n".join(bar_lines) if bar_lines else "- not evaluated (Replay or iCaRL missing)")
        + "\n"
    )


def _header(results: dict[str, Any]) -> str:
    """Title and run record, ending in a blank line."""
    settings = results["settings"]
    machine = results["machine"]
    threads = f"{machine['torch_threads']} torch threads"
    return (
        f"# Class-incremental {settings['dataset']}: Siamese learner vs Avalanche baselines\n\n"
        f"Command: `{results['command']}`  \nSeeds: {results['seeds']}  \n"
        f"Machine: {machine_line(machine, threads)}  \n"
        f"Date: {results['date']}  \n"
        f"Run time: {sum(r['run_wall_s'] for r in results['runs']) / 60:.0f} min wall for all "
        f"methods and seeds, evaluation included\n\n"
    )


def _setup(settings: dict[str, Any]) -> str:
    """The shared setup, the epochs of each kind of method and what the costs cover."""
    return (
        f"{settings['tasks']} experiences, {settings['backbone']} for every method, "
        f"{settings['optimizer']}, batch {settings['batch_size']}, exemplar budget "
        f"{settings['memory_per_class']} per class (Replay, DER++, ER-ACE, iCaRL and GDumb: "
        f"the same total, filled from the first experience). Accuracy: on all test classes "
        f"after the last experience, mean ± std over seeds; forgetting: mean over experiences "
        f"of best minus final accuracy. The Siamese learner trains "
        f"{settings['epochs']['siamese']} epoch(s) a task, the baselines {settings['epochs']['naive']} (GDumb "
        f"{settings['epochs']['gdumb']} over its small memory, StreamingLDA one pass after "
        f"training its backbone on the first experience); the row at the baselines' epochs "
        f"shows the Siamese learner's cost at equal epochs. Training cost covers each "
        f"experience's training, memory update and "
        f"prototype or class-mean computation (not evaluation); energy is a CPU-time estimate "
        f"where no counter is readable, comparable only within this run. Retained: exemplars, "
        f"prototypes and state kept between experiences besides the model (copies of models "
        f"included)."
    )


def _bar_line(name: str, check: dict[str, Any]) -> str:
    """One Siamese row against the bar: accuracy against Replay and iCaRL, energy ratio."""
    return (
        f"- {LABELS[name]}: accuracy {check['accuracy']:.3f} vs Replay "
        f"{check['replay_accuracy']:.3f} and iCaRL {check['icarl_accuracy']:.3f} "
        f"({'met' if check['accuracy_at_least_replay_and_icarl'] else 'NOT met'}); "
        f"training energy {check['energy_vs_replay']:.2f}x Replay's "
        f"({'met' if check['energy_at_most_half_of_replay'] else 'NOT met'}, bar 0.5x, aim 0.3x)"
    )


def plot_results(results: dict[str, Any], path: str) -> None:
    """Final accuracy against training energy, one point per method (Siamese rows as stars),
    with error bars over seeds."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(9, 4.8))
    colours = [*plt.get_cmap("tab10").colors, "black", "darkkhaki", "teal", "navy"]
    for position, row in enumerate(results["summary"]):
        if "accuracy_mean" in row:
            _plot_method(axes, results["runs"], row, colours[position % len(colours)])
    axes.set_xscale("log")
    axes.set_xlabel("training energy, J (" + _energy_methods(results) + ")")
    axes.set_ylabel("final accuracy")
    axes.set_title(f"Class-incremental {results['settings']['dataset']}: accuracy vs energy")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _plot_method(axes: Any, runs: list[dict[str, Any]], row: dict[str, Any], colour: Any) -> None:
    """One method's mean point, with the spread of its seeds' energy and accuracy."""
    siamese = row["method"] in SIAMESE_ROWS
    energies = [
        r["report"]["energy_j"] for r in runs if r["method"] == row["method"] and "report" in r
    ]
    axes.errorbar(
        row["energy_j"],
        row["accuracy_mean"],
        xerr=np.std(energies, ddof=1) if len(energies) > 1 else None,
        yerr=row["accuracy_std"],
        fmt="*" if siamese else "o",
        markersize=12 if siamese else 7,
        capsize=3,
        color=colour,
        label=row["label"],
    )


def _energy_methods(results: dict[str, Any]) -> str:
    methods = {row["energy_method"] for row in results["summary"] if "energy_method" in row}
    return "/".join(sorted(methods)) or "n/a"
