"""Turn per-example score files into the study's tables and figures.

Accuracies are macro averages (every task weighs the same whatever its test-set size), as in the
paper, so a large task cannot drown out a small one when domains or whole models are compared.
Deltas are always taken at the same level of aggregation against the same backbone's `code0`
(instruction tuning without coding data) and `base` (no tuning) rows.
"""

from __future__ import annotations

import json
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

from codeift import controls, evidence
from codeift.io import atomic_path, write_text
from codeift.stats import AnalysisSettings

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
_VARIANT_RE = re.compile(r"^code(\d+)(?:r(\d+))?$")
_MODEL_KEYS = ["backbone", "family", "size_label", "variant", "proportion"]
_TABLE_FILES = ("overall", "domain", "task")
EVIDENCE_FILES = (
    "intervals",
    "comparisons",
    "consistency",
    "best_proportion",
    "reasoning_mode",
    "seeds",
    "controls",
)
FIGURE_FILES = ("overall", "domain", "task", "reasoning_mode", "controls")
_PNG_METADATA = {"Software": None}
_DPI = 100


# ---------------------------------------------------------------- loading


def load_scores(paths: Sequence[str | Path]) -> pl.DataFrame:
    """Concatenate score files, failing loudly so a half-written stage never reaches a table."""
    if not paths:
        raise ValueError("load_scores: no score files given")
    frames = [_read_score_file(Path(path)) for path in paths]
    scores = split_replicates(pl.concat(frames, how="diagonal_relaxed"))
    keys = ["backbone", "variant", "task", "id", *(["seed"] if "seed" in scores.columns else [])]
    duplicated = scores.select(keys).is_duplicated()
    if duplicated.any():
        first = scores.filter(duplicated).row(0, named=True)
        raise ValueError(
            "load_scores: example scored twice (same file given twice?): "
            f"{first['backbone']}/{first['variant']}/{first['task']} id={first['id']}"
        )
    return scores


def split_replicates(scores: pl.DataFrame) -> pl.DataFrame:
    """Replicate arms (code{p}r{r}) become seed r of arm code{p}; first seeds get seed 0.

    Every table then reads one outcome per example and arm (evidence.first_seed), the seeds
    table reports the spread, and the null control pairs the seeds.
    """
    replicate = pl.col("variant").str.extract(r"^code\d+r(\d+)$", 1)
    if "seed" in scores.columns or scores.select(replicate.is_not_null().any()).item() is False:
        return scores
    return scores.with_columns(
        replicate.cast(pl.Int64).fill_null(0).alias("seed"),
        pl.col("variant").str.replace(r"^(code\d+)r\d+$", "${1}"),
    )


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


def write_tables(
    scores: pl.DataFrame,
    outdir: Path,
    settings: AnalysisSettings | None = None,
    found: dict[str, pl.DataFrame] | None = None,
) -> dict[str, Path]:
    """Write CSV (machine use), Markdown (reading) and a summary report; returns name -> path.

    `found` passes evidence tables already computed (by run_analysis, which also plots them).
    """
    settings = settings or AnalysisSettings()
    found = found if found is not None else evidence_tables(scores, settings)
    scores = evidence.first_seed(scores)
    tables = {
        "overall": overall_table(scores),
        "domain": domain_table(scores),
        "task": task_table(scores),
    }
    outdir = Path(outdir)
    written: dict[str, Path] = {}
    for name in _TABLE_FILES:
        written.update(_write_pair(tables[name], markdown_table(tables[name]), outdir, name))
    for name, table in found.items():
        text = _EVIDENCE_NOTES[name] + "\n\n" + evidence_markdown(name, table)
        written.update(_write_pair(table, text, outdir, name))
    summary_path = outdir / "summary.md"
    report = summary_report(scores, tables["overall"], tables["domain"], found, settings)
    write_text(report, summary_path)
    written["summary.md"] = summary_path
    return written


def _write_pair(table: pl.DataFrame, markdown: str, outdir: Path, name: str) -> dict[str, Path]:
    """One table as CSV and as Markdown; returns their names and paths."""
    csv_path, md_path = outdir / f"{name}.csv", outdir / f"{name}.md"
    write_text(table.write_csv(float_precision=6, null_value=""), csv_path)
    write_text(markdown + "\n", md_path)
    return {f"{name}.csv": csv_path, f"{name}.md": md_path}


def evidence_tables(
    scores: pl.DataFrame, settings: AnalysisSettings, planted: dict[str, str] | None = None
) -> dict[str, pl.DataFrame]:
    """Intervals, paired comparisons, consistency, best proportion, reasoning modes, seeds and
    the controls (planted effects from `planted`, the null control from replicate seeds).

    The seeds table is always written (an empty one with its header when the scores have no
    `seed` column), so the workflow's list of outputs does not depend on the data.
    """
    comparisons = evidence.comparison_table(scores, settings)
    seeds = evidence.seed_spread_table(scores)
    consistency = _by_domain(evidence.consistency_table(comparisons), ["proportion"])
    return {
        "intervals": _by_domain(
            evidence.interval_table(scores, settings), ["level", "backbone", "proportion"]
        ),
        "comparisons": _by_domain(comparisons, ["level", "backbone", "proportion"]),
        "consistency": consistency,
        "best_proportion": _by_domain(
            evidence.best_proportion_table(scores, settings), ["backbone"]
        ),
        "reasoning_mode": evidence.reasoning_mode_table(scores),
        "seeds": pl.DataFrame(schema=_SEED_SCHEMA) if seeds is None else seeds,
        "controls": controls.control_table(scores, comparisons, planted or {}, settings),
    }


def _by_domain(table: pl.DataFrame, before: list[str]) -> pl.DataFrame:
    """Sort by `before`, then domains in the paper's order (overall/null last), then task."""
    names = [name for name in table["domain"].unique().to_list() if name is not None]
    order = {name: domain_rank(name) for name in names}
    order["overall"] = len(DOMAIN_ORDER) + 1
    rank = pl.col("domain").replace_strict(order, default=len(DOMAIN_ORDER) + 2)
    level = (
        [pl.col("level").replace_strict({"task": 0, "domain": 1, "overall": 2}).alias("_level")]
        if "level" in before
        else []
    )
    renamed = {"level": "_level", "proportion": "_proportion"}
    keys = [renamed.get(key, key) for key in before]
    tail = ["task"] if "task" in table.columns else []
    helpers = [rank.alias("_domain"), *level]
    if "proportion" in before:
        helpers.append(pl.col("proportion").fill_null(-1).alias("_proportion"))
    return (
        table.with_columns(helpers)
        .sort([*keys, "_domain", "domain", *tail], nulls_last=True, maintain_order=True)
        .drop([name for name in ("_domain", "_proportion", "_level") if name in keys + ["_domain"]])
    )


_SEED_SCHEMA = {
    "backbone": pl.Utf8,
    "variant": pl.Utf8,
    "proportion": pl.Int64,
    "task": pl.Utf8,
    "n_seeds": pl.Int64,
    "mean": pl.Float64,
    "std": pl.Float64,
    "min": pl.Float64,
    "max": pl.Float64,
}
_EVIDENCE_NOTES = {
    "intervals": "Accuracy (%) with percentile bootstrap intervals over test examples; domain "
    "and overall rows are macro averages of the task resamples.",
    "comparisons": "Every tuned proportion against the same backbone's code0 on the same "
    "examples. Task rows: exact McNemar test; domain/overall rows: paired bootstrap of the "
    "macro difference. Δ and its interval in percentage points; OR = discordant-pair odds "
    "ratio (items only the variant solves / items only code0 solves); Holm adjusts over "
    "every row.",
    "consistency": "Do backbones agree on the direction of the change against code0? "
    "Agreement = share of backbones moving in the majority direction; ρ (Spearman) and τ "
    "(Kendall) = mean over backbone pairs of the rank correlation of per-task changes.",
    "best_proportion": "Best coding share per backbone and task among the tuned variants, the "
    "shares not distinguishable from it (exact McNemar p ≥ α against the best, unadjusted), "
    "and with three or more shares the optimum of a quadratic fit of accuracy on the share.",
    "reasoning_mode": "How each response reasons: code (a program the scorer ran, nothing "
    "else), text (no program), both, or none (no program and no text outside code fences: "
    "empty or markup only). Share of responses and accuracy within each mode.",
    "seeds": "Spread of accuracy over training seeds of the same arm (empty when the scores "
    "carry no `seed` column: one seed per arm).",
    "controls": "Positive control: per task with a planted direction (config `controls."
    "planted`), the most-code arm against code0 (exact McNemar, Holm over the comparisons "
    "table); recovered = significant in the planted direction. Unplanted: tasks planted not "
    "to move. Null control: each replicate arm (same proportion, other mix order and SFT seed) "
    "against its first seed, exact McNemar at the raw level α.",
}


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


def _p_value(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return "<0.001" if float(value) < 0.001 else f"{float(value):.3f}"


def _decimal(digits: int) -> Callable[[object], str]:
    def render(value: object) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "n/a"
        return f"{float(value):.{digits}f}"

    return render


def _plain(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return "n/a" if value is None else str(value)


_PP = "(pp)"
# Per table: column -> (header, renderer); columns not listed are left out of the Markdown.
_EVIDENCE_COLUMNS: dict[str, dict[str, tuple[str, Callable[[object], str]]]] = {
    "intervals": {
        "level": ("level", _plain),
        "backbone": ("backbone", _plain),
        "variant": ("variant", _plain),
        "domain": ("domain", _plain),
        "task": ("task", _plain),
        "n": ("examples", _plain),
        "accuracy": ("accuracy (%)", _percent),
        "ci_low": ("CI low", _percent),
        "ci_high": ("CI high", _percent),
    },
    "comparisons": {
        "level": ("level", _plain),
        "backbone": ("backbone", _plain),
        "variant": ("variant", _plain),
        "domain": ("domain", _plain),
        "task": ("task", _plain),
        "n_pairs": ("pairs", _plain),
        "accuracy": ("accuracy (%)", _percent),
        "reference_accuracy": ("code0 (%)", _percent),
        "difference": (f"Δ {_PP}", _points),
        "ci_low": ("CI low", _points),
        "ci_high": ("CI high", _points),
        "only_variant": ("only variant", _plain),
        "only_reference": ("only code0", _plain),
        "odds_ratio": ("OR", _decimal(2)),
        "p_value": ("p", _p_value),
        "p_holm": ("p (Holm)", _p_value),
        "significant": ("significant", _plain),
    },
    "consistency": {
        "domain": ("domain", _plain),
        "variant": ("variant", _plain),
        "n_backbones": ("backbones", _plain),
        "n_up": ("up", _plain),
        "n_down": ("down", _plain),
        "n_flat": ("flat", _plain),
        "majority": ("majority", _plain),
        "agreement": ("agreement", _decimal(2)),
        "mean_difference": (f"mean Δ {_PP}", _points),
        "n_significant": ("significant", _plain),
        "spearman": ("ρ", _decimal(2)),
        "kendall": ("τ", _decimal(2)),
    },
    "best_proportion": {
        "backbone": ("backbone", _plain),
        "domain": ("domain", _plain),
        "task": ("task", _plain),
        "best_proportion": ("best (%)", _plain),
        "best_accuracy": ("accuracy (%)", _percent),
        "indistinguishable": ("indistinguishable (%)", _plain),
        "fit_optimum": ("fitted optimum (%)", _decimal(0)),
        "fit_accuracy": ("fitted accuracy (%)", _percent),
    },
    "reasoning_mode": {
        "backbone": ("backbone", _plain),
        "variant": ("variant", _plain),
        "mode": ("mode", _plain),
        "n": ("responses", _plain),
        "share": ("share (%)", _percent),
        "accuracy": ("accuracy (%)", _percent),
    },
    "controls": {
        "control": ("control", _plain),
        "backbone": ("backbone", _plain),
        "task": ("task", _plain),
        "expected": ("planted", _plain),
        "variant": ("arm", _plain),
        "reference": ("against", _plain),
        "accuracy": ("arm (%)", _percent),
        "reference_accuracy": ("against (%)", _percent),
        "difference": (f"Δ {_PP}", _points),
        "only_variant": ("only arm", _plain),
        "only_reference": ("only against", _plain),
        "p_value": ("p", _p_value),
        "p_holm": ("p (Holm)", _p_value),
        "verdict": ("verdict", _plain),
    },
    "seeds": {
        "backbone": ("backbone", _plain),
        "variant": ("variant", _plain),
        "task": ("task", _plain),
        "n_seeds": ("seeds", _plain),
        "mean": ("mean (%)", _percent),
        "std": (f"sd {_PP}", _percent),
        "min": ("min (%)", _percent),
        "max": ("max (%)", _percent),
    },
}


def evidence_markdown(name: str, table: pl.DataFrame) -> str:
    """Render one evidence table with the precision each column needs (p-values apart)."""
    columns = {k: v for k, v in _EVIDENCE_COLUMNS[name].items() if k in table.columns}
    header = [label for label, _ in columns.values()]
    rows = [
        [render(row[key]) for key, (_, render) in columns.items()]
        for row in table.iter_rows(named=True)
    ]
    return _markdown(header, rows)


def summary_report(
    scores: pl.DataFrame,
    overall: pl.DataFrame,
    domain: pl.DataFrame,
    found: dict[str, pl.DataFrame] | None = None,
    settings: AnalysisSettings | None = None,
) -> str:
    """A short Markdown report: what was evaluated, the headline tables and who wins where,
    then (given the evidence tables) how sure each difference is."""
    sections = [
        "# Coding-data instruction tuning: reasoning results",
        "Accuracies are macro averages over tasks (each task weighs the same); deltas are "
        "percentage points against the same backbone's code0 (tuned without coding data) "
        "and base (untuned) model.",
        "## What was evaluated\n\n" + _evaluated_section(scores),
        *([_controls_section(found["controls"], settings or AnalysisSettings())] if found else []),
        "## Overall accuracy\n\n" + markdown_table(overall),
        "## Best variant per backbone\n\n" + _best_overall_section(overall),
        "## Accuracy per domain\n\n" + markdown_table(domain),
        "## Winning variant per domain\n\n" + _domain_winner_section(domain),
    ]
    if found is not None:
        sections += _evidence_sections(found, settings or AnalysisSettings())
    return "\n\n".join(sections) + "\n"


def _evidence_sections(found: dict[str, pl.DataFrame], settings: AnalysisSettings) -> list[str]:
    """Short readable sections over the evidence tables; the full tables sit beside summary.md."""
    comparisons = found["comparisons"]
    headline = comparisons.filter(pl.col("level") != "task")
    n_tests = comparisons.height
    n_task = comparisons.filter(pl.col("level") == "task").height
    n_significant = int(comparisons["significant"].sum()) if n_tests else 0
    tests = (
        f"{n_tests} tests were run ({n_task} per task with the exact McNemar test, "
        f"{n_tests - n_task} per domain or overall with the paired bootstrap, "
        f"{settings.bootstrap_samples} resamples, seed {settings.seed}); "
        f"{n_significant} remain significant at α = {settings.alpha} after Holm's adjustment "
        "over all of them. Full table: `comparisons.md`."
    )
    if n_tests == 0:
        tests = "No paired comparison: no backbone has both code0 and another tuned proportion."
    modes = found["reasoning_mode"]
    return [
        "## Change against code0, with uncertainty\n\n"
        + tests
        + ("\n\n" + evidence_markdown("comparisons", headline) if headline.height else ""),
        "## Consistency across backbones\n\n"
        + _EVIDENCE_NOTES["consistency"]
        + "\n\n"
        + evidence_markdown("consistency", found["consistency"]),
        "## Best coding share per task\n\n"
        + _EVIDENCE_NOTES["best_proportion"]
        + "\n\n"
        + evidence_markdown("best_proportion", found["best_proportion"]),
        "## How responses reason\n\n"
        + _EVIDENCE_NOTES["reasoning_mode"]
        + "\n\n"
        + evidence_markdown("reasoning_mode", modes),
        "## Seeds\n\n"
        + (
            evidence_markdown("seeds", found["seeds"].filter(pl.col("task") == "overall"))
            if found["seeds"].height
            else "One seed per arm: no spread over seeds to report (`seeds.md` is empty)."
        ),
        "Accuracy intervals per task, domain and model: `intervals.md`.",
    ]


def _controls_section(table: pl.DataFrame, settings: AnalysisSettings) -> str:
    """The controls' verdicts, one line each (README, "The small world")."""
    outcome = controls.verdicts(table, settings.alpha)
    if not outcome["lines"]:
        return (
            "## Controls\n\nNone configured: no planted directions (`controls.planted`) and no "
            "replicate arms (`replicates`)."
        )
    lines = "\n".join(f"- {line}" for line in outcome["lines"])
    return (
        "## Controls\n\n" + lines + "\n\nPer task: `controls.md`; figure: `figures/controls.png`."
    )


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
    variants = _variants_in_order(overall)
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


def _task_legend(
    backbones: list[str], colours: dict[str, tuple[float, float, float, float]]
) -> tuple[list[Line2D], list[str]]:
    """Build legend proxies once so panels with missing backbones do not drop entries."""
    handles = [Line2D([], [], color=colours[b], marker="o", markersize=3) for b in backbones]
    handles.append(Line2D([], [], color="black", linestyle="--", lw=1))
    return handles, [*backbones, "base (untuned)"]


# ---------------------------------------------------------------- entry point


def mix_table(card_paths: Sequence[str | Path]) -> pl.DataFrame:
    """What each arm was trained on, from the mix data cards: the independent variable as built.

    Coding answers are longer, so an example-matched mix gives code a larger share of training
    tokens than of examples; reading both shares beside the results keeps that visible.
    """
    rows = []
    for path in card_paths:
        card = json.loads(Path(path).read_text(encoding="utf-8"))
        try:
            labels, tokens = card["labels"], card["tokens"]
            settings = card.get("mix_settings", {})
            rows.append(
                {
                    "variant": f"code{card['proportion']}"
                    + (f"r{card['replicate']}" if card.get("replicate") else ""),
                    "proportion": int(card["proportion"]),
                    "examples": int(card["examples"]),
                    "code_examples": int(labels.get("code", 0)),
                    "code_example_share": labels.get("code", 0) / max(int(card["examples"]), 1),
                    "tokens": int(tokens["total"]),
                    "token_measure": str(tokens.get("measure", "")),
                    "code_token_share": float(card["code_token_share"]),
                    "match": str(settings.get("match", "examples")),
                    "nested": bool(settings.get("nested", True)),
                    "content_hash": str(card["content_hash"]),
                }
            )
        except (KeyError, TypeError) as error:
            raise ValueError(f"{path}: mix card lacks {error} (rebuild the mix)") from error
    return pl.DataFrame(rows).sort("proportion", "variant")


def mix_markdown(mixes: pl.DataFrame) -> str:
    header = (
        "| variant | examples | code examples (%) | tokens | code tokens (%) | match | nested |"
    )
    lines = [header, "|---|---|---|---|---|---|---|"]
    for row in mixes.iter_rows(named=True):
        lines.append(
            f"| {row['variant']} | {row['examples']} | {100 * row['code_example_share']:.1f} "
            f"| {row['tokens']} | {100 * row['code_token_share']:.1f} | {row['match']} "
            f"| {'yes' if row['nested'] else 'no'} |"
        )
    return "\n".join(lines)


def write_mix_tables(card_paths: Sequence[str | Path], outdir: Path) -> None:
    """mixes.csv/.md and a section of summary.md (written before, by write_tables)."""
    mixes = mix_table(card_paths)
    markdown = mix_markdown(mixes)
    _write_pair(mixes, markdown, Path(outdir), "mixes")
    summary = Path(outdir) / "summary.md"
    section = (
        "\n## What each arm was trained on\n\nFrom the mix data cards "
        "(`ift/mixes/code{p}.card.json`): examples and training tokens, and the coding share "
        "of each.\n\n" + markdown + "\n"
    )
    write_text(summary.read_text(encoding="utf-8") + section, summary)


def run_analysis(
    score_paths: Sequence[str | Path],
    outdir: Path,
    figdir: Path,
    settings: AnalysisSettings | None = None,
    card_paths: Sequence[str | Path] = (),
    planted: dict[str, str] | None = None,
) -> None:
    """Load every score file, write all tables, the summary and the figures."""
    settings = settings or AnalysisSettings()
    scores = load_scores(score_paths)
    found = evidence_tables(scores, settings, planted)
    write_tables(scores, Path(outdir), settings, found)
    scores = evidence.first_seed(scores)
    if card_paths:
        write_mix_tables(card_paths, Path(outdir))
    intervals = found["intervals"].select(
        "level", "backbone", "variant", "domain", "task", "ci_low", "ci_high"
    )
    figdir = Path(figdir)
    plot_overall(
        _with_intervals(overall_table(scores), intervals, "overall"), figdir / "overall.png"
    )
    plot_domain(domain_table(scores), figdir / "domain.png", found["comparisons"])
    plot_task(_with_intervals(task_table(scores), intervals, "task"), figdir / "task.png")
    plot_reasoning_mode(found["reasoning_mode"], figdir / "reasoning_mode.png")
    plot_controls(found["controls"], settings.alpha, figdir / "controls.png")


def _with_intervals(table: pl.DataFrame, intervals: pl.DataFrame, level: str) -> pl.DataFrame:
    """Attach the bootstrap interval of each row (joined on the keys of that level)."""
    keys = ["backbone", "variant"] + (["domain", "task"] if level == "task" else [])
    rows = intervals.filter(pl.col("level") == level).select(*keys, "ci_low", "ci_high")
    return table.join(rows, on=keys, how="left", nulls_equal=True)


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
