"""Turn per-example score files into the study's tables and figures.

Accuracies are macro averages (every task weighs the same whatever its test-set size), as in the
paper, so a large task cannot drown out a small one when domains or whole models are compared.
Deltas are always taken at the same level of aggregation against the same backbone's `code0`
(instruction tuning without coding data) and `base` (no tuning) rows.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import polars as pl
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from codeift.io import atomic_path, write_text

REQUIRED_COLUMNS: dict[str, type[pl.DataType]] = {
    "id": pl.Utf8,
    "task": pl.Utf8,
    "domain": pl.Utf8,
    "missing_reason": pl.Utf8,
    "correct": pl.Boolean,
    "backbone": pl.Utf8,
    "family": pl.Utf8,
    "size_label": pl.Utf8,
    "variant": pl.Utf8,
    "proportion": pl.Int64,
    "engine": pl.Utf8,
}
DOMAIN_ORDER = ("symbolic", "logical", "arithmetic")
BASE = "base"
REFERENCE = "code0"
BASE_COLOUR = "#8c8c8c"
_VARIANT_RE = re.compile(r"^code(\d+)$")
_MODEL_KEYS = ["backbone", "family", "size_label", "variant", "proportion"]
_TABLE_FILES = ("overall", "domain", "task")
_PNG_METADATA = {"Software": None}
_DPI = 100


# ---------------------------------------------------------------- loading


def load_scores(paths: Sequence[str | Path]) -> pl.DataFrame:
    """Concatenate score files, failing loudly so a half-written stage never reaches a table."""
    if not paths:
        raise ValueError("load_scores: no score files given")
    frames = [_read_score_file(Path(path)) for path in paths]
    scores = pl.concat(frames, how="diagonal_relaxed")
    duplicated = scores.select("backbone", "variant", "task", "id").is_duplicated()
    if duplicated.any():
        first = scores.filter(duplicated).row(0, named=True)
        raise ValueError(
            "load_scores: example scored twice (same file given twice?): "
            f"{first['backbone']}/{first['variant']}/{first['task']} id={first['id']}"
        )
    return scores


def _read_score_file(path: Path) -> pl.DataFrame:
    """Read one file and coerce the columns the analysis relies on to their contract dtypes."""
    frame = pl.read_parquet(path)
    missing = [name for name in REQUIRED_COLUMNS if name not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing required column(s): {', '.join(missing)}")
    if frame.height == 0:
        raise ValueError(f"{path}: score file is empty")
    try:
        frame = frame.with_columns(
            pl.col(name).cast(dtype, strict=True) for name, dtype in REQUIRED_COLUMNS.items()
        )
    except (pl.exceptions.InvalidOperationError, pl.exceptions.ComputeError) as error:
        raise ValueError(f"{path}: column has the wrong type: {error}") from error
    try:
        _check_variants(frame)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from error
    return frame


def _check_variants(scores: pl.DataFrame) -> None:
    """Every variant must be base or code{p}, and proportion must agree with the name."""
    pairs = scores.select("variant", "proportion").unique()
    for variant, proportion in pairs.iter_rows():
        expected = variant_proportion(variant)
        if proportion != expected:
            raise ValueError(
                f"variant {variant!r} has proportion {proportion!r}, expected {expected!r}"
            )


# ---------------------------------------------------------------- ordering and colour


def variant_proportion(variant: str) -> int | None:
    """Coding percentage encoded in a variant name (None for the untuned base model)."""
    if variant == BASE:
        return None
    match = _VARIANT_RE.match(variant)
    if match is None:
        raise ValueError(f"unknown variant {variant!r}: expected 'base' or 'code<percent>'")
    return int(match.group(1))


def variant_rank(variant: str) -> int:
    """Sort key: base first, then code variants by numeric proportion (code25 before code50)."""
    proportion = variant_proportion(variant)
    return -1 if proportion is None else proportion


def domain_rank(domain: str) -> int:
    """Sort key following the paper's domain order; unknown domains go last."""
    return DOMAIN_ORDER.index(domain) if domain in DOMAIN_ORDER else len(DOMAIN_ORDER)


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


def _sort_rows(table: pl.DataFrame) -> pl.DataFrame:
    """Deterministic order: backbone, variant (numeric), domain (paper order), task."""
    keys: list[str] = ["backbone", "_variant_rank"]
    extra = [_rank_expr("variant", variant_rank, table)]
    if "domain" in table.columns:
        keys += ["_domain_rank", "domain"]
        extra.append(_rank_expr("domain", domain_rank, table))
    if "task" in table.columns:
        keys.append("task")
    ordered = table.with_columns(extra).sort(keys, maintain_order=True)
    return ordered.drop([key for key in keys if key.startswith("_")])


def _rank_expr(column: str, rank: Callable[[str], int], table: pl.DataFrame) -> pl.Expr:
    mapping = {value: rank(value) for value in table[column].unique().to_list()}
    return pl.col(column).replace_strict(mapping, return_dtype=pl.Int64).alias(f"_{column}_rank")


def _variants_in_order(table: pl.DataFrame) -> list[str]:
    return sorted(table["variant"].unique().to_list(), key=variant_rank)


def _tasks_in_order(table: pl.DataFrame) -> list[tuple[str, str]]:
    pairs = table.select("task", "domain").unique().rows()
    return sorted(pairs, key=lambda pair: (domain_rank(pair[1]), pair[1], pair[0]))


# ---------------------------------------------------------------- tables


def task_table(scores: pl.DataFrame) -> pl.DataFrame:
    """Per backbone x variant x task accuracy, the unit every other table averages over."""
    _check_variants(scores)
    table = scores.group_by([*_MODEL_KEYS, "domain", "task"]).agg(
        pl.len().cast(pl.Int64).alias("n"),
        pl.col("correct").fill_null(False).sum().cast(pl.Int64).alias("n_correct"),
        pl.col("missing_reason").is_not_null().sum().cast(pl.Int64).alias("n_missing"),
    )
    table = table.with_columns((pl.col("n_correct") / pl.col("n")).alias("accuracy"))
    return _sort_rows(_add_deltas(table, ["backbone", "domain", "task"]))


def domain_table(scores: pl.DataFrame) -> pl.DataFrame:
    """Per backbone x variant x domain macro accuracy, so each task in a domain counts equally."""
    return _sort_rows(_macro(task_table(scores), ["domain"]))


def overall_table(scores: pl.DataFrame) -> pl.DataFrame:
    """Per backbone x variant macro accuracy over all tasks, the paper's headline number."""
    return _sort_rows(_macro(task_table(scores), []))


def _macro(tasks: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """Average task accuracies within a group, then recompute deltas at that level."""
    table = tasks.group_by([*_MODEL_KEYS, *keys]).agg(
        pl.len().cast(pl.Int64).alias("n_tasks"),
        pl.col("n").sum(),
        pl.col("n_missing").sum(),
        pl.col("accuracy").mean(),
    )
    return _add_deltas(table, ["backbone", *keys])


def _add_deltas(table: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """Subtract the same backbone's code0 / base accuracy at this level (null when absent)."""
    for variant, column in ((REFERENCE, "delta_vs_code0"), (BASE, "delta_vs_base")):
        reference = table.filter(pl.col("variant") == variant).select(
            *keys, pl.col("accuracy").alias("_reference")
        )
        table = (
            table.join(reference, on=keys, how="left")
            .with_columns((pl.col("accuracy") - pl.col("_reference")).alias(column))
            .drop("_reference")
        )
    return table


# ---------------------------------------------------------------- writing tables


def write_tables(scores: pl.DataFrame, outdir: Path) -> dict[str, Path]:
    """Write CSV (machine use), Markdown (reading) and a summary report; returns name -> path."""
    tables = {
        "overall": overall_table(scores),
        "domain": domain_table(scores),
        "task": task_table(scores),
    }
    outdir = Path(outdir)
    written: dict[str, Path] = {}
    for name in _TABLE_FILES:
        csv_path = outdir / f"{name}.csv"
        write_text(tables[name].write_csv(float_precision=6, null_value=""), csv_path)
        written[f"{name}.csv"] = csv_path
        md_path = outdir / f"{name}.md"
        write_text(markdown_table(tables[name]) + "\n", md_path)
        written[f"{name}.md"] = md_path
    summary_path = outdir / "summary.md"
    write_text(summary_report(scores, tables["overall"], tables["domain"]), summary_path)
    written["summary.md"] = summary_path
    return written


_MD_COLUMNS = {
    "backbone": "backbone",
    "variant": "variant",
    "domain": "domain",
    "task": "task",
    "n_tasks": "tasks",
    "n": "examples",
    "n_correct": "correct",
    "n_missing": "missing",
    "accuracy": "accuracy (%)",
    "delta_vs_code0": "Δ vs code0 (pp)",
    "delta_vs_base": "Δ vs base (pp)",
}


def markdown_table(table: pl.DataFrame) -> str:
    """Render a result table with percentages to one decimal, the precision the paper reports."""
    columns = [name for name in _MD_COLUMNS if name in table.columns]
    header = [_MD_COLUMNS[name] for name in columns]
    rows = [[_md_cell(name, row[name]) for name in columns] for row in table.iter_rows(named=True)]
    return _markdown(header, rows)


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _md_cell(column: str, value: object) -> str:
    if column == "accuracy":
        return _percent(value)
    if column.startswith("delta_"):
        return _points(value)
    return "n/a" if value is None else str(value)


def _percent(value: object) -> str:
    return "n/a" if value is None else f"{100 * float(value):.1f}"


def _points(value: object) -> str:
    # + 0.0 turns a rounded -0.0 (float noise around an exact tie) into +0.0
    return "n/a" if value is None else f"{round(100 * float(value), 1) + 0.0:+.1f}"


def summary_report(scores: pl.DataFrame, overall: pl.DataFrame, domain: pl.DataFrame) -> str:
    """A short Markdown report: what was evaluated, the headline tables and who wins where."""
    sections = [
        "# Coding-data instruction tuning: reasoning results",
        "Accuracies are macro averages over tasks (each task weighs the same); deltas are "
        "percentage points against the same backbone's code0 (tuned without coding data) "
        "and base (untuned) model.",
        "## What was evaluated\n\n" + _evaluated_section(scores),
        "## Overall accuracy\n\n" + markdown_table(overall),
        "## Best variant per backbone\n\n" + _best_overall_section(overall),
        "## Accuracy per domain\n\n" + markdown_table(domain),
        "## Winning variant per domain\n\n" + _domain_winner_section(domain),
    ]
    return "\n\n".join(sections) + "\n"


def _evaluated_section(scores: pl.DataFrame) -> str:
    backbones = scores.select("backbone", "family", "size_label").unique().sort("backbone")
    engines = sorted(scores["engine"].unique().drop_nulls().to_list())
    variants = _variants_in_order(scores)
    lines = [
        "- Backbones: " + ", ".join(f"{b} ({f}, {s})" for b, f, s in backbones.iter_rows()),
        "- Variants: " + ", ".join(variants),
        "- Engines: " + (", ".join(engines) if engines else "n/a"),
        f"- Scored examples: {scores.height}",
        "",
    ]
    counts = scores.group_by("task", "domain", "backbone", "variant").agg(pl.len().alias("n"))
    per_task = counts.group_by("task", "domain").agg(
        pl.col("n").min().alias("lo"), pl.col("n").max().alias("hi")
    )
    spans = {(t, d): (lo, hi) for t, d, lo, hi in per_task.iter_rows()}
    rows = []
    for task, dom in _tasks_in_order(scores):
        lo, hi = spans[(task, dom)]
        rows.append([task, dom, str(lo) if lo == hi else f"{lo}–{hi}"])
    lines.append(_markdown(["task", "domain", "examples per model"], rows))
    return "\n".join(lines)


def _winners(group: pl.DataFrame) -> tuple[list[str], float]:
    """Variants with the top accuracy; ties within float noise are all reported."""
    best = max(group["accuracy"].to_list())
    tied = group.filter((pl.col("accuracy") - best).abs() <= 1e-12)
    return _variants_in_order(tied), best


def _best_overall_section(overall: pl.DataFrame) -> str:
    rows = []
    for backbone in sorted(overall["backbone"].unique().to_list()):
        group = overall.filter(pl.col("backbone") == backbone)
        winners, best = _winners(group)
        row = group.filter(pl.col("variant") == winners[0]).row(0, named=True)
        rows.append(
            [
                backbone,
                " / ".join(winners),
                _percent(best),
                _points(row["delta_vs_code0"]),
                _points(row["delta_vs_base"]),
            ]
        )
    header = ["backbone", "best variant", "accuracy (%)", "Δ vs code0 (pp)", "Δ vs base (pp)"]
    return _markdown(header, rows)


def _domain_winner_section(domain: pl.DataFrame) -> str:
    domains = sorted(domain["domain"].unique().to_list(), key=lambda d: (domain_rank(d), d))
    rows = []
    for backbone in sorted(domain["backbone"].unique().to_list()):
        row = [backbone]
        for name in domains:
            group = domain.filter((pl.col("backbone") == backbone) & (pl.col("domain") == name))
            if group.height == 0:
                row.append("n/a")
                continue
            winners, best = _winners(group)
            row.append(f"{' / '.join(winners)} ({_percent(best)})")
        rows.append(row)
    return _markdown(["backbone", *domains], rows)


# ---------------------------------------------------------------- figures


def _save_png(figure: Figure, path: Path) -> None:
    """Save without a Software/date stamp so identical data gives identical bytes."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=_DPI, metadata=_PNG_METADATA)


def _grouped_bars(ax: Axes, table: pl.DataFrame, variants: list[str], backbones: list[str]) -> None:
    """One group per backbone, one bar per variant in a fixed slot (absent variant = gap)."""
    width = 0.8 / max(len(variants), 1)
    lookup = {(b, v): a for b, v, a in table.select("backbone", "variant", "accuracy").iter_rows()}
    centres = np.arange(len(backbones))
    for slot, variant in enumerate(variants):
        offsets = centres - 0.4 + width * (slot + 0.5)
        heights = [lookup.get((backbone, variant)) for backbone in backbones]
        xs = [x for x, h in zip(offsets, heights, strict=True) if h is not None]
        ys = [100 * h for h in heights if h is not None]
        ax.bar(xs, ys, width=width, color=variant_colour(variant), label=variant)
    ax.set_xticks(centres, backbones)
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)


def plot_overall(overall: pl.DataFrame, path: Path) -> None:
    """Grouped bars of macro accuracy: the headline comparison of coding proportions."""
    variants = _variants_in_order(overall)
    backbones = sorted(overall["backbone"].unique().to_list())
    width = max(6.0, 1.0 + 0.45 * len(backbones) * max(len(variants), 1))
    figure = Figure(figsize=(width, 4.5))
    ax = figure.subplots()
    _grouped_bars(ax, overall, variants, backbones)
    ax.set_ylabel("accuracy (%, macro over tasks)")
    ax.set_title("Overall reasoning accuracy by coding proportion")
    ax.legend(title="variant", loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    figure.tight_layout()
    _save_png(figure, path)


def plot_domain(domain: pl.DataFrame, path: Path) -> None:
    """One grouped-bar panel per domain (backbones x variants), panels stacked vertically.

    Bars rather than a heatmap of change vs code0: they work when a run has no code0, they show
    absolute levels (a +5 pp gain at 20% means something else than at 80%), and they reuse the
    overall figure's variant colours so the two figures read the same way. Stacking keeps the
    figure readable when many backbones or proportions widen each panel.
    """
    domains = sorted(domain["domain"].unique().to_list(), key=lambda d: (domain_rank(d), d))
    variants = _variants_in_order(domain)
    backbones = sorted(domain["backbone"].unique().to_list())
    width = max(6.0, 1.0 + 0.45 * len(backbones) * max(len(variants), 1))
    figure = Figure(figsize=(width + 1.5, 2.6 * len(domains) + 0.8))
    axes = figure.subplots(len(domains), 1, sharex=True, squeeze=False)[:, 0]
    for ax, name in zip(axes, domains, strict=True):
        _grouped_bars(ax, domain.filter(pl.col("domain") == name), variants, backbones)
        ax.set_title(name)
        ax.set_ylabel("accuracy (%)")
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, title="variant", loc="center right", frameon=False)
    figure.suptitle("Reasoning accuracy per domain (macro over the domain's tasks)")
    figure.tight_layout(rect=(0, 0, 1 - 1.3 / figure.get_figwidth(), 1))
    _save_png(figure, path)


def plot_task(task: pl.DataFrame, path: Path) -> None:
    """Small multiples per task: accuracy against coding proportion, base as a dashed line."""
    tasks = _tasks_in_order(task)
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
    for backbone in backbones:
        mine = rows.filter(pl.col("backbone") == backbone)
        tuned = mine.filter(pl.col("proportion").is_not_null()).sort("proportion")
        if tuned.height:
            ax.plot(
                tuned["proportion"].to_list(),
                (100 * tuned["accuracy"]).to_list(),
                marker="o",
                markersize=3,
                color=colours[backbone],
            )
        base = mine.filter(pl.col("variant") == BASE)
        if base.height:
            ax.axhline(100 * base["accuracy"][0], color=colours[backbone], linestyle="--", lw=1)
    ax.set_xticks(proportions or [0, 100])
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)


def _task_legend(
    backbones: list[str], colours: dict[str, tuple[float, float, float, float]]
) -> tuple[list[Line2D], list[str]]:
    """Build legend proxies once so panels with missing backbones do not drop entries."""
    handles = [Line2D([], [], color=colours[b], marker="o", markersize=3) for b in backbones]
    handles.append(Line2D([], [], color="black", linestyle="--", lw=1))
    return handles, [*backbones, "base (untuned)"]


# ---------------------------------------------------------------- entry point


def run_analysis(score_paths: Sequence[str | Path], outdir: Path, figdir: Path) -> None:
    """Load every score file, write all tables and the three figures."""
    scores = load_scores(score_paths)
    write_tables(scores, Path(outdir))
    figdir = Path(figdir)
    plot_overall(overall_table(scores), figdir / "overall.png")
    plot_domain(domain_table(scores), figdir / "domain.png")
    plot_task(task_table(scores), figdir / "task.png")
