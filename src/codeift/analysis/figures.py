"""The study's figures, saved without date stamps so identical data gives identical bytes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from codeift.analysis import controls, evidence
from codeift.analysis.tables import tasks_in_order, variants_in_order
from codeift.io import atomic_path
from codeift.study import BASE, domain_rank, variant_proportion, variant_rank

BASE_COLOUR = "#8c8c8c"
_PNG_METADATA = {"Software": None}
_DPI = 100


def variant_colour(variant: str) -> tuple[float, float, float, float] | str:
    """One colour per variant in every figure: grey for base, viridis position = proportion.

    The position depends only on the percentage (not on which proportions a run happens to
    have), so code50 looks the same in every figure and in every study configuration.
    """
    proportion = variant_proportion(variant)
    if proportion is None:
        return BASE_COLOUR
    fraction = min(max(proportion, 0), 100) / 100
    return colormaps["viridis"](0.05 + 0.85 * fraction)


def backbone_colours(backbones: Sequence[str]) -> dict[str, tuple[float, float, float, float]]:
    """Qualitative colours for backbones, assigned in sorted order so reruns agree."""
    palette = colormaps["tab10"]
    return {name: palette(index % 10) for index, name in enumerate(sorted(backbones))}


def _save_png(figure: Figure, path: Path) -> None:
    """Save without a Software/date stamp so identical data gives identical bytes."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=_DPI, metadata=_PNG_METADATA)


def _grouped_bars(
    ax: Axes,
    table: pl.DataFrame,
    variants: list[str],
    backbones: list[str],
) -> None:
    """One group per backbone, one bar per variant in a fixed slot (absent variant = gap).

    With `ci_low`/`ci_high` columns each bar gets its interval; a base row also becomes a
    dashed reference line across its backbone's group.
    """
    width = 0.8 / max(len(variants), 1)
    with_ci = {"ci_low", "ci_high"} <= set(table.columns)
    lookup = {(row["backbone"], row["variant"]): row for row in table.iter_rows(named=True)}
    centres = np.arange(len(backbones))
    for slot, variant in enumerate(variants):
        offsets = centres - 0.4 + width * (slot + 0.5)
        rows = [(x, lookup.get((b, variant))) for x, b in zip(offsets, backbones, strict=True)]
        present = [(x, row) for x, row in rows if row is not None]
        xs = [x for x, _ in present]
        ys = [100 * row["accuracy"] for _, row in present]
        ax.bar(xs, ys, width=width, color=variant_colour(variant), label=variant)
        if with_ci and present:
            low = [
                y - 100 * _or(row["ci_low"], row["accuracy"])
                for y, (_, row) in zip(ys, present, strict=True)
            ]
            high = [
                100 * _or(row["ci_high"], row["accuracy"]) - y
                for y, (_, row) in zip(ys, present, strict=True)
            ]
            ax.errorbar(xs, ys, yerr=[low, high], fmt="none", ecolor="black", lw=0.8, capsize=2)
    for centre, backbone in zip(centres, backbones, strict=True):
        base = lookup.get((backbone, BASE))
        if base is not None:
            ax.hlines(
                100 * base["accuracy"],
                centre - 0.45,
                centre + 0.45,
                colors="black",
                linestyles="--",
                lw=1,
            )
    ax.set_xticks(centres, backbones)
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)


def _or(value: object, fallback: float) -> float:
    """A float, or the fallback when the value is missing (no interval for an empty arm)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return fallback
    return float(value)


def plot_overall(overall: pl.DataFrame, path: Path) -> None:
    """Grouped bars of macro accuracy: the headline comparison of coding proportions.

    Bars carry bootstrap intervals when the table has them; the untuned base is also drawn as a
    dashed line across its backbone's bars so every tuned bar reads against it.
    """
    variants = variants_in_order(overall)
    backbones = sorted(overall["backbone"].unique().to_list())
    width = max(6.0, 1.0 + 0.45 * len(backbones) * max(len(variants), 1))
    figure = Figure(figsize=(width, 4.5))
    ax = figure.subplots()
    _grouped_bars(ax, overall, variants, backbones)
    ax.set_ylabel("accuracy (%, macro over tasks)")
    ax.set_title("Overall reasoning accuracy by coding proportion")
    handles, labels = ax.get_legend_handles_labels()
    handles.append(Line2D([], [], color="black", linestyle="--", lw=1))
    labels.append("base (untuned)")
    ax.legend(
        handles, labels, title="variant", loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False
    )
    figure.tight_layout()
    _save_png(figure, path)


def domain_gains(domain: pl.DataFrame) -> pl.DataFrame:
    """Change of domain accuracy against each backbone's lowest tuned proportion (code0).

    Falls back to the lowest proportion present when a backbone has no code0, so the heatmap
    still shows the direction of the code effect; `reference` names what was subtracted.
    """
    tuned = domain.filter(pl.col("proportion").is_not_null())
    lowest = pl.col("proportion").min().over("backbone")
    reference = tuned.filter(pl.col("proportion") == lowest).select(
        "backbone", "domain", pl.col("variant").alias("reference"), pl.col("accuracy").alias("_ref")
    )
    return (
        tuned.join(reference, on=["backbone", "domain"], how="inner")
        .filter(pl.col("variant") != pl.col("reference"))
        .with_columns((pl.col("accuracy") - pl.col("_ref")).alias("gain"))
        .drop("_ref")
    )


def plot_domain(domain: pl.DataFrame, path: Path, comparisons: pl.DataFrame | None = None) -> None:
    """Heatmap of gains: domains x (backbone, proportion), change against code0 in points.

    A diverging map centred on zero shows at a glance whether coding data helps a domain and
    whether backbones agree; a star marks a change significant after Holm's adjustment.
    """
    gains = domain_gains(domain)
    domains = sorted(domain["domain"].unique().to_list(), key=lambda d: (domain_rank(d), d))
    columns = sorted(
        gains.select("backbone", "variant", "reference").unique().rows(),
        key=lambda row: (row[0], variant_rank(row[1])),
    )
    significant = _significant_cells(comparisons)
    values = np.full((len(domains), max(len(columns), 1)), np.nan)
    lookup = {
        (b, v, d): g
        for b, v, d, g in gains.select("backbone", "variant", "domain", "gain").iter_rows()
    }
    for j, (backbone, variant, _) in enumerate(columns):
        for i, name in enumerate(domains):
            gain = lookup.get((backbone, variant, name))
            values[i, j] = np.nan if gain is None else 100 * gain
    finite = values[np.isfinite(values)]
    limit = max(float(np.abs(finite).max()) if finite.size else 0.0, 1.0)
    figure = Figure(figsize=(max(5.0, 1.2 * len(columns) + 2.5), 1.0 * len(domains) + 2.0))
    ax = figure.subplots()
    image = ax.imshow(values, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
    for i, name in enumerate(domains):
        for j, (backbone, variant, _) in enumerate(columns):
            if np.isfinite(values[i, j]):
                star = "*" if (backbone, variant, name) in significant else ""
                colour = "white" if abs(values[i, j]) > 0.6 * limit else "black"
                text = f"{values[i, j]:+.1f}{star}"
                ax.text(j, i, text, ha="center", va="center", fontsize=9, color=colour)
    ax.set_yticks(range(len(domains)), domains)
    labels = [f"{b}\n{v} vs {r}" for b, v, r in columns] or ["no tuned pair"]
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    figure.colorbar(image, ax=ax, label="change in accuracy (pp)")
    ax.set_title("Domain accuracy change against code0 (* significant, Holm)")
    figure.tight_layout()
    _save_png(figure, path)


def _significant_cells(comparisons: pl.DataFrame | None) -> set[tuple[str, str, str]]:
    if comparisons is None or comparisons.height == 0:
        return set()
    rows = comparisons.filter((pl.col("level") == "domain") & pl.col("significant"))
    return set(rows.select("backbone", "variant", "domain").rows())


def plot_task(task: pl.DataFrame, path: Path) -> None:
    """Small multiples per task: accuracy against coding proportion, base as a dashed line.

    With `ci_low`/`ci_high` columns every point carries its bootstrap interval; markers take
    the proportion's colour, lines the backbone's.
    """
    tasks = tasks_in_order(task)
    backbones = sorted(task["backbone"].unique().to_list())
    colours = backbone_colours(backbones)
    proportions = sorted(task["proportion"].drop_nulls().unique().to_list())
    ncols = min(4, max(len(tasks), 1))
    nrows = max(math.ceil(len(tasks) / ncols), 1)
    figure = Figure(figsize=(3.2 * ncols + 1.8, 2.7 * nrows + 0.6))
    axes = figure.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False).ravel()
    for ax, (name, dom) in zip(axes, tasks, strict=False):
        _task_panel(ax, task.filter(pl.col("task") == name), backbones, colours, proportions)
        ax.set_title(f"{name} ({dom})", fontsize=9)
    for ax in axes[len(tasks) :]:
        ax.set_visible(False)
    for ax in axes[(nrows - 1) * ncols :]:
        ax.set_xlabel("coding data (%)")
    for ax in axes[::ncols]:
        ax.set_ylabel("accuracy (%)")
    handles, labels = _task_legend(backbones, colours)
    figure.legend(handles, labels, loc="center right", frameon=False, fontsize=8)
    figure.suptitle("Accuracy per task against coding proportion")
    figure.tight_layout(rect=(0, 0, 1 - 1.7 / figure.get_figwidth(), 1))
    _save_png(figure, path)


def _task_panel(
    ax: Axes,
    rows: pl.DataFrame,
    backbones: list[str],
    colours: dict[str, tuple[float, float, float, float]],
    proportions: list[int],
) -> None:
    with_ci = {"ci_low", "ci_high"} <= set(rows.columns)
    for backbone in backbones:
        mine = rows.filter(pl.col("backbone") == backbone)
        tuned = mine.filter(pl.col("proportion").is_not_null()).sort("proportion")
        if tuned.height:
            xs = tuned["proportion"].to_list()
            ys = (100 * tuned["accuracy"]).to_list()
            ax.plot(xs, ys, color=colours[backbone], lw=1.2, zorder=2)
            if with_ci:
                low = [
                    y - 100 * _or(lo, y / 100)
                    for y, lo in zip(ys, tuned["ci_low"].to_list(), strict=True)
                ]
                high = [
                    100 * _or(hi, y / 100) - y
                    for y, hi in zip(ys, tuned["ci_high"].to_list(), strict=True)
                ]
                ax.errorbar(
                    xs,
                    ys,
                    yerr=[low, high],
                    fmt="none",
                    ecolor=colours[backbone],
                    lw=0.8,
                    capsize=2,
                    zorder=1,
                )
            marker_colours = [variant_colour(v) for v in tuned["variant"].to_list()]
            ax.scatter(xs, ys, s=14, c=marker_colours, edgecolors=colours[backbone], zorder=3)
        base = mine.filter(pl.col("variant") == BASE)
        if base.height:
            ax.axhline(100 * base["accuracy"][0], color=colours[backbone], linestyle="--", lw=1)
    ax.set_xticks(proportions or [0, 100])
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)


def plot_reasoning_mode(modes: pl.DataFrame, path: Path) -> None:
    """Stacked shares of text / code / both / none per backbone x variant (the case study)."""
    arms = sorted(
        modes.select("backbone", "variant").unique().rows(),
        key=lambda row: (row[0], variant_rank(row[1])),
    )
    palette = {"text": "#4c72b0", "code": "#dd8452", "both": "#55a868", "none": "#c7c7c7"}
    lookup = {
        (b, v, m): s
        for b, v, m, s in modes.select("backbone", "variant", "mode", "share").iter_rows()
    }
    figure = Figure(figsize=(max(6.0, 0.7 * len(arms) + 2.5), 4.2))
    ax = figure.subplots()
    positions = np.arange(len(arms))
    bottom = np.zeros(len(arms))
    for mode in evidence.MODES:
        heights = np.array([100 * lookup.get((b, v, mode), 0.0) for b, v in arms])
        ax.bar(positions, heights, bottom=bottom, color=palette[mode], label=mode, width=0.7)
        bottom += heights
    ax.set_xticks(positions, [f"{b}\n{v}" for b, v in arms], fontsize=8)
    ax.set_ylim(0, 100)
    ax.set_ylabel("responses (%)")
    ax.set_title("How responses reason: text, code or both")
    ax.legend(title="mode", loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    figure.tight_layout()
    _save_png(figure, path)


def plot_views(views: pl.DataFrame, path: Path) -> None:
    """Overall accuracy per backbone x variant in the text view, with the program-aided gain
    stacked on top (correct_any contains correct, so the gain is never negative)."""
    overall = views.filter(pl.col("level") == "overall")
    arms = sorted(
        overall.select("backbone", "variant").unique().rows(),
        key=lambda row: (row[0], variant_rank(row[1])),
    )
    lookup = {
        (b, v): (text, gain)
        for b, v, text, gain in overall.select(
            "backbone", "variant", "accuracy", "program_gain"
        ).iter_rows()
    }
    text = np.array([100 * lookup[arm][0] for arm in arms])
    gain = np.array([100 * lookup[arm][1] for arm in arms])
    figure = Figure(figsize=(max(6.0, 0.7 * len(arms) + 2.5), 4.2))
    ax = figure.subplots()
    positions = np.arange(len(arms))
    ax.bar(positions, text, color="#4c72b0", width=0.7, label="text (correct)")
    ax.bar(positions, gain, bottom=text, color="#dd8452", width=0.7, label="+ program output")
    ax.set_xticks(positions, [f"{b}\n{v}" for b, v in arms], fontsize=8)
    ax.set_ylim(0, 100)
    ax.set_ylabel("macro accuracy (%)")
    ax.set_title("Text answers and program-aided answers")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    figure.tight_layout()
    _save_png(figure, path)


def _task_legend(
    backbones: list[str], colours: dict[str, tuple[float, float, float, float]]
) -> tuple[list[Line2D], list[str]]:
    """Build legend proxies once so panels with missing backbones do not drop entries."""
    handles = [Line2D([], [], color=colours[b], marker="o", markersize=3) for b in backbones]
    handles.append(Line2D([], [], color="black", linestyle="--", lw=1))
    return handles, [*backbones, "base (untuned)"]


_PLANTED_COLOURS = {"gain": "#2a9d4b", "lose": "#c0392b", "none": "#9e9e9e"}


def plot_controls(table: pl.DataFrame, alpha: float, path: Path) -> None:
    """Per backbone: the most-code arm's change against code0 on every task with a planted
    direction (shading and bar colour = the planted direction, * = significant), and each
    replicate arm's change against its first seed (the null control, black diamonds)."""
    outcome = controls.verdicts(table, alpha)
    backbones = sorted(table["backbone"].unique().to_list())
    order = {"gain": 0, "lose": 1, "none": 2}
    tasks = (
        table.select("task", "expected")
        .unique()
        .sort(pl.col("expected").replace_strict(order, default=3), "task")
    )
    names = list(dict.fromkeys(tasks["task"].to_list()))
    width = max(6.0, 0.55 * len(names) + 2.5)
    figure = Figure(figsize=(width, 2.9 * max(len(backbones), 1) + 1.2))
    axes = figure.subplots(max(len(backbones), 1), 1, squeeze=False).ravel()
    if not backbones:
        axes[0].text(0.5, 0.5, "no controls configured", ha="center", va="center")
        axes[0].set_axis_off()
    for ax, backbone in zip(axes, backbones, strict=False):
        _controls_panel(ax, table.filter(pl.col("backbone") == backbone), names)
        ax.set_title(backbone, fontsize=9, loc="left")
    if backbones:
        axes[-1].set_xticks(range(len(names)), names, rotation=40, ha="right", fontsize=8)
        handles = [
            Line2D([0], [0], color=colour, lw=6, label=f"planted: {name}")
            for name, colour in _PLANTED_COLOURS.items()
        ] + [Line2D([0], [0], marker="D", color="black", lw=0, label="replicate vs first seed")]
        axes[0].legend(handles=handles, loc="upper right", frameon=False, fontsize=7, ncols=2)
    lines = [line.split(" (")[0] for line in outcome["lines"]]
    figure.suptitle("\n".join(lines), fontsize=8, x=0.02, ha="left")
    figure.tight_layout(rect=(0, 0, 1, 1 - 0.14 * max(len(lines), 1) / figure.get_figheight()))
    _save_png(figure, path)


def _controls_panel(ax: Axes, rows: pl.DataFrame, names: list[str]) -> None:
    index = {name: i for i, name in enumerate(names)}
    planted = rows.filter(pl.col("control") != "null")
    for row in planted.iter_rows(named=True):
        x = index[row["task"]]
        ax.axvspan(x - 0.5, x + 0.5, color=_PLANTED_COLOURS[row["expected"]], alpha=0.12, lw=0)
        x, height = index[row["task"]], 100 * (row["difference"] or 0.0)
        ax.bar(x, height, width=0.6, color=_PLANTED_COLOURS[row["expected"]])
        if row["significant"]:
            ax.text(x, height + (3 if height >= 0 else -9), "*", ha="center", fontsize=11)
    null = rows.filter(pl.col("control") == "null")
    for row in null.iter_rows(named=True):
        ax.plot(index[row["task"]] + 0.22, 100 * row["difference"], "D", color="black", ms=4)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_ylim(-105, 105)
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_xticks(range(len(names)), [""] * len(names))
    ax.set_ylabel("Δ accuracy (pp)")
