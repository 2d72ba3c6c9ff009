"""Markdown and figure of ``siamcl bench energy``: energy to target first, then the rest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from siamcl.reporting.figures import pyplot
from siamcl.reporting.records import commit_label, record_markdown
from siamcl.reporting.tables import markdown_table

__all__ = ["plot_results", "render_markdown"]


def _joules(value: float | None) -> str:
    return "not reached" if value is None else f"{value:,.0f}"


def _reach(point: dict[str, Any] | None) -> str:
    if point is None:
        return "not reached"
    flops = f", {point['flops'] / 1e9:,.0f} GFLOP" if point.get("flops") else ""
    if "checkpoint" in point:  # a multi-class curve's check: epochs in (older records: index)
        where = f"epoch {point.get('epoch', point['checkpoint']):.3g}"
    else:
        where = f"{point['epochs']} ep/task"
    return f"{point['energy_j']:,.0f} J ({point['cpu_s']:.1f} CPU s{flops}; {where})"


def render_markdown(results: dict[str, Any], figure: str | None = None) -> str:
    """The whole report: bars, multi-class and class-incremental tables, what did not save."""
    lines = [
        f"# Energy to target: {results['settings']['dataset']}",
        "",
        record_markdown(results),
        *_summarised_line(results.get("summarised")),
        "",
        (
            "Energy is the training energy until a model first reaches the target accuracy on the "
            f"{_scored_on(results['settings'])} (as MLPerf's time to train), means over seeds of "
            "curves measured in this "
            "run; a prototype learner's figures include the pass that embeds its prototypes' rows. "
            "Where no energy counter is readable it is an estimate from CPU seconds (labelled "
            f"`{_energy_method(results)}`), comparable only within this run."
        ),
        "",
    ]
    if figure:
        lines += [
            f"![accuracy against training energy]({figure})",
            "",
            (
                "Points are means over seeds; their bars, one standard deviation of the "
                "accuracy across seeds."
            ),
            "",
        ]
    lines += _bars_section(results.get("bars", {}))
    if "multiclass" in results:
        lines += _multiclass_section(
            results["multiclass"]["summary"], results["settings"]["targets"]
        )
    if "cil" in results:
        lines += _cil_section(results["cil"]["summary"], results["settings"]["cil_targets"])
        lines += _repeats_note(results["cil"].get("runs", []), results["settings"])
    return "\n".join(lines) + "\n"


def _scored_on(settings: dict[str, Any]) -> str:
    holdout = settings.get("holdout", 0.0)
    if not holdout:
        return "test split"
    return (
        f"**{holdout:.0%} of the training data held out** (stratified; the test split was not "
        "used, so these figures can choose settings)"
    )


def _summarised_line(summarised: dict[str, Any] | None) -> list[str]:
    """Who recomputed the summaries and bars from the runs, if anyone did."""
    if not summarised:
        return []
    line = (
        f"Summaries and bars recomputed from these runs by `{summarised['command']}` "
        f"(commit {commit_label(summarised.get('git'))}, {summarised['date']})  "
    )
    return [line]


def _energy_method(results: dict[str, Any]) -> str:
    methods = {r.get("energy_method") for r in results.get("multiclass", {}).get("summary", [])}
    for row in results.get("cil", {}).get("summary", []):
        methods |= {p["energy_method"] for p in row["points"]}
    return "/".join(sorted(m for m in methods if m)) or "estimate"


def _bars_section(checks: dict[str, Any]) -> list[str]:
    if not checks:
        return []
    rows = []
    for name, check in checks.items():
        ratio = "n/a" if check["ratio"] is None else f"{check['ratio']:.2f}x"
        if check.get("seed_ratios"):  # the same ratio seed by seed: the measurements' spread
            low, high = min(check["seed_ratios"]), max(check["seed_ratios"])
            ratio += f" (seeds {low:.2f}-{high:.2f})"
        note = (
            "; dominated by " + "; ".join(check["dominated_by"])
            if check.get("dominated_by")
            else ""
        ) + _within_error_note(check)
        rows.append(
            [
                name,
                f"{check['target']:.3f}",
                _bar_energy(check),
                f"{check['reference_energy_j']:,.0f}",
                ratio,
                f"<= {check['limit']}x",
                ("met" if check["met"] else "**not met**") + note,
            ]
        )
    header = ["bar", "target accuracy", "energy J", "reference J", "ratio", "limit", ""]
    caption = (
        "A bar is decided on the means over seeds; in brackets, the same ratio seed by seed at "
        "the same checkpoints: the spread within this run (between runs it can be wider). "
        "Where a cheaper point falls short of the target by less than one standard error of "
        "the target's mean, the last column gives it too: a reading its seeds cannot tell "
        "apart from reaching the target."
    )
    return ["## Bars", "", caption, "", markdown_table(header, rows), ""]


def _within_error_note(check: dict[str, Any]) -> str:
    """The bar's cheaper point within one standard error of its target, in words."""
    near = check.get("within_error")
    if not near:
        return ""
    if "budget" in near:  # a stream's budget, or a curve's checkpoint (its mean epoch)
        where = f"{near['epochs']} ep/task"
    else:
        where = f"epoch {near['epoch']:g}" if "epoch" in near else f"check {near['checkpoint']}"
    return (
        f"; {near['accuracy']:.4f} at {where}, {near['short_by']:.4f} short, within one "
        f"standard error of the target ({near['standard_error']:.4f}): "
        f"{near['energy_j']:,.0f} J, {near['ratio']:.2f}x"
    )


def _bar_energy(check: dict[str, Any]) -> str:
    """A bar's energy; a bar weighed at the best point short of its target says so."""
    reached = check.get("accuracy")
    if check["energy_j"] is None or reached is None or reached >= check["target"]:
        return _joules(check["energy_j"])
    return f"{check['energy_j']:,.0f} (best {reached:.3f}: target not reached)"


def _multiclass_section(summary: list[dict[str, Any]], targets: list[float]) -> list[str]:
    header = [
        "method",
        "final accuracy",
        *[f"to {t:g}" for t in targets],
        "to final model J",
        "rows trained",
        "J per 10k predictions",
        "break-even vs Siamese",
    ]
    rows = []
    for row in summary:
        even = row.get("break_even")
        rows.append(
            [
                row["label"],
                f"{row['accuracy_mean']:.3f} ± {row['accuracy_std']:.3f}",
                *[_reach(row["to_target"][f"{t:g}"]) for t in targets],
                f"{row['training_energy_j']:,.0f}",
                f"{row['rows_trained']:.0f}",
                f"{row['inference_j']:.1f}",
                _break_even(even) if even else "reference",
            ]
        )
    lifecycle = [
        [row["label"], *[f"{v:,.0f}" for v in row["lifecycle_j"].values()]] for row in summary
    ]
    n_header = ["method", *[f"training + {n} predictions J" for n in summary[0]["lifecycle_j"]]]
    return [
        "## Multi-class: energy to target",
        "",
        markdown_table(header, rows),
        "",
        (
            "Students' lifecycle training adds their teacher's (the Siamese learner), which must be "
            "trained first; break-even is the number of predictions after which a model's training "
            "plus inference energy falls below the fp32 Siamese learner's."
        ),
        "",
        markdown_table(n_header, lifecycle),
        "",
    ]


def _break_even(even: dict[str, Any]) -> str:
    if even["predictions"] is None:
        return f"never ({even['why']})"
    return f"{even['predictions']:,} ({even['why']})" if even["predictions"] else even["why"]


def _cil_section(summary: list[dict[str, Any]], targets: list[float]) -> list[str]:
    reach = [
        [row["label"], *[_reach(row["to_target"][f"{t:g}"]) for t in targets]] for row in summary
    ]
    sweep = [
        [
            row["label"],
            p["epochs"],
            f"{p['accuracy']:.3f} ± {p['accuracy_std']:.3f}",
            f"{p['energy_j']:,.0f}",
            f"{p['cpu_s']:.1f}",
            "n/a" if p["flops"] is None else f"{p['flops'] / 1e9:,.0f}",
        ]
        for row in summary
        for p in row["points"]
    ]
    errors = [f"- {row['label']}: {e}" for row in summary for e in row["errors"]]
    return [
        "## Class-incremental: energy to target",
        "",
        markdown_table(["method", *[f"to {t:g}" for t in targets]], reach),
        "",
        (
            "Each method at each epoch budget (final accuracy after the last task, training energy "
            "of the whole stream):"
        ),
        "",
        markdown_table(
            ["method", "epochs/task", "final accuracy", "energy J", "CPU s", "GFLOPs"], sweep
        ),
        "",
        *errors,
    ]


def _repeats_note(runs: list[dict[str, Any]], settings: dict[str, Any]) -> list[str]:
    """What repeating each class-incremental run did: whose energy counts, how far the
    repeats spread, and whether one seed gave one model every time."""
    repeats = settings.get("cil_repeats", 1)
    repeated = [r for r in runs if "repeat_energies_j" in r]
    if repeats < 2 or not repeated:
        return []
    spreads = [max(r["repeat_energies_j"]) / min(r["repeat_energies_j"]) for r in repeated]
    differing = [
        f"{r['method']} (seed {r['seed']}, {r['budget']} epochs)"
        for r in repeated
        if len(set(r["repeat_accuracies"])) > 1
    ]
    return [
        f"Each class-incremental run was repeated {repeats} times in interleaved rounds; the "
        "figures above are those of the repeat of median energy. The largest energy of a run's "
        f"repeats was {min(spreads):.2f}-{max(spreads):.2f}x its smallest. "
        + (
            "Every repeat of a run gave the same final accuracy."
            if not differing
            else f"Repeats gave different final accuracies for: {', '.join(differing)}."
        ),
        "",
    ]


def plot_results(results: dict[str, Any], path: str | Path) -> Path:
    """Accuracy against cumulative training energy, one curve per method (means over seeds,
    bars one standard deviation of the accuracy across seeds) and the targets as horizontal
    lines; the Pareto front of final accuracy and energy dashed, per panel."""
    plt = pyplot()
    panels = [p for p in ("multiclass", "cil") if p in results]
    fig, axes = plt.subplots(1, len(panels), figsize=(10 * len(panels), 5), squeeze=False)
    for axis, part in zip(axes[0], panels):
        summary = results[part]["summary"]
        targets = results["settings"]["targets" if part == "multiclass" else "cil_targets"]
        front = []
        colours = plt.get_cmap("tab20").colors  # twenty distinct colours, markers vary too
        for i, row in enumerate(summary):
            points = row["curve"] if part == "multiclass" else row["points"]
            if not points:
                continue
            spread = [p.get("accuracy_std", 0.0) for p in points]
            axis.errorbar(
                [p["energy_j"] for p in points],
                [p["accuracy"] for p in points],
                yerr=spread if any(spread) else None,
                marker="osD^v<>"[i % 7],
                color=colours[(2 * i) % 20 + (i // 10) % 2],
                label=row["label"],
                markersize=3,
                elinewidth=0.6,
                capsize=1.5,
            )
            front.append(
                points[-1] if part == "multiclass" else max(points, key=lambda p: p["accuracy"])
            )
        for target in targets:
            axis.axhline(target, color="grey", linestyle=":", linewidth=0.8)
        _draw_front(axis, front)
        axis.set_xscale("log")
        axis.xaxis.set_major_locator(plt.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))  # 20, 50, ..
        axis.xaxis.set_minor_formatter(plt.NullFormatter())  # minor labels overlap on log axes
        axis.xaxis.set_major_formatter(plt.FuncFormatter(lambda value, _: f"{value:g}"))
        axis.set_xlabel("cumulative training energy (J)")
        axis.set_ylabel(
            "held-out accuracy" if results["settings"].get("holdout") else "test accuracy"
        )
        axis.set_title(
            "multi-class" if part == "multiclass" else "class-incremental (epoch budgets)"
        )
        lowest = min([p["accuracy"] for p in front] + [min(targets)])
        axis.set_ylim(max(0.0, lowest - 0.1), 1.0)  # the region the targets are in
        axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # off the data
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def _draw_front(axis: Any, points: list[dict[str, Any]]) -> None:
    """The points no other is both cheaper and more accurate than, as a dashed step line."""
    front, best = [], -1.0
    for point in sorted(points, key=lambda p: (p["energy_j"], -p["accuracy"])):
        if point["accuracy"] > best:
            front.append(point)
            best = point["accuracy"]
    if len(front) > 1:
        axis.step(
            [p["energy_j"] for p in front],
            [p["accuracy"] for p in front],
            "k--",
            where="post",
            linewidth=0.8,
            label="Pareto front",
        )
