"""The evidence behind the study's claims: intervals, paired tests, consistency, best proportion.

The study's findings are differences between arms (coding shares) of one backbone on the same
test examples, so every comparison here is paired on the example `id`: a model that solves the
same items as its code0 twin shows no difference, however noisy the accuracies look alone.
Task-level tests are exact McNemar tests; domain and overall differences are macro averages of
task differences, tested with the paired bootstrap of those averages.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from itertools import combinations

import numpy as np
import polars as pl

from codeift.analysis.stats import (
    PairedCounts,
    accuracy_draws,
    bootstrap_p_value,
    difference_draws,
    discordant_odds_ratio,
    holm,
    kendall_tau,
    mcnemar_exact,
    paired_counts,
    percentile_interval,
    quadratic_optimum,
    rng_for,
    spearman,
)
from codeift.score.answer_text import text_view
from codeift.settings import AnalysisSettings
from codeift.study import LEVELS, MACRO_LEVELS, REFERENCE_ARM, first_seed_proportion

MODES = ("text", "code", "both", "none")
# The outcome columns a paired comparison can read: the study's metric (the text view) and the
# program-aided one (text or the executed program's output).
METRICS = ("correct", "correct_any")


# ---------------------------------------------------------------- shared helpers


def first_seed(scores: pl.DataFrame) -> pl.DataFrame:
    """Keep one seed per arm (the lowest) so paired analyses see one outcome per example."""
    if "seed" not in scores.columns:
        return scores
    lowest = pl.col("seed") == pl.col("seed").min().over("backbone", "variant")
    return scores.filter(lowest)


def _outcomes(scores: pl.DataFrame, metric: str = "correct") -> pl.DataFrame:
    """The columns paired analyses need, the outcome `metric` read as `correct`; an unscored
    answer counts as wrong, as in task_table."""
    if metric not in METRICS:
        raise ValueError(f"metric {metric!r}: expected one of {', '.join(METRICS)}")
    return first_seed(scores).select(
        "backbone",
        "variant",
        "proportion",
        "domain",
        "task",
        "id",
        pl.col(metric).fill_null(False).alias("correct"),
    )


def _arms(outcomes: pl.DataFrame) -> Iterator[tuple[str, str, str, dict[str, pl.DataFrame]]]:
    """(backbone, domain, task, variant -> id/correct frame) in a deterministic order."""
    keys = outcomes.select("backbone", "domain", "task").unique().sort("backbone", "task")
    for backbone, domain, task in keys.iter_rows():
        rows = outcomes.filter((pl.col("backbone") == backbone) & (pl.col("task") == task))
        arms = {
            variant: frame.select("id", "correct")
            for (variant,), frame in rows.partition_by("variant", as_dict=True).items()
        }
        yield backbone, domain, task, arms


def _pair(x: pl.DataFrame, y: pl.DataFrame) -> PairedCounts:
    """Outcome cells of two arms on the examples both answered (inner join on id)."""
    joined = x.join(y, on="id", how="inner", suffix="_y")
    return paired_counts(joined["correct"].to_numpy(), joined["correct_y"].to_numpy())


# ---------------------------------------------------------------- accuracy intervals


def _macro_groups(
    tasks: pl.DataFrame, draws: dict[tuple[str, str, str], np.ndarray]
) -> Iterator[tuple[str, pl.DataFrame, dict[str, object], np.ndarray]]:
    """Each domain and overall group of task rows (within one backbone x variant; LEVELS), with
    its first row labelled for the level (task None, domain None overall) and the mean of its
    tasks' bootstrap draws: the draws of the level's macro average, never a pooled count."""
    for level in MACRO_LEVELS:
        keys = ["backbone", "variant", *LEVELS[level]]
        for group in tasks.partition_by(keys, maintain_order=True):
            first = group.row(0, named=True)
            sample = np.stack(
                [draws[(first["backbone"], first["variant"], t)] for t in group["task"]]
            ).mean(axis=0)
            label = {**first, "domain": first["domain"] if level == "domain" else None}
            yield level, group, {**label, "task": None}, sample


def interval_table(scores: pl.DataFrame, settings: AnalysisSettings) -> pl.DataFrame:
    """Accuracy with bootstrap CIs at task, domain and overall level for every backbone x variant.

    Domain and overall intervals average the task draws, so they are intervals of the macro
    accuracy the other tables report, not of a pooled (size-weighted) one.
    """
    counts = (
        _outcomes(scores)
        .group_by("backbone", "variant", "proportion", "domain", "task")
        .agg(pl.len().alias("n"), pl.col("correct").sum().alias("k"))
        .sort("backbone", "variant", "task")
    )
    rows: list[dict[str, object]] = []
    draws: dict[tuple[str, str, str], np.ndarray] = {}
    for row in counts.iter_rows(named=True):
        rng = rng_for(settings.seed, "accuracy", row["backbone"], row["variant"], row["task"])
        sample = accuracy_draws(row["k"], row["n"], settings.bootstrap_samples, rng)
        draws[(row["backbone"], row["variant"], row["task"])] = sample
        rows.append(_interval_row("task", row, row["k"] / row["n"], sample, row["n"], settings))
    for level, group, label, sample in _macro_groups(counts, draws):
        accuracy = float((group["k"] / group["n"]).mean())
        rows.append(_interval_row(level, label, accuracy, sample, int(group["n"].sum()), settings))
    return pl.DataFrame(rows, schema=_INTERVAL_SCHEMA)


_INTERVAL_SCHEMA = {
    "level": pl.Utf8,
    "backbone": pl.Utf8,
    "variant": pl.Utf8,
    "proportion": pl.Int64,
    "domain": pl.Utf8,
    "task": pl.Utf8,
    "n": pl.Int64,
    "accuracy": pl.Float64,
    "ci_low": pl.Float64,
    "ci_high": pl.Float64,
}


def _interval_row(
    level: str,
    row: dict[str, object],
    accuracy: float,
    sample: np.ndarray,
    n: int,
    settings: AnalysisSettings,
) -> dict[str, object]:
    low, high = percentile_interval(sample, settings.alpha)
    return {
        "level": level,
        "backbone": row["backbone"],
        "variant": row["variant"],
        "proportion": row["proportion"],
        "domain": row["domain"],
        "task": row["task"],
        "n": n,
        "accuracy": accuracy,
        "ci_low": low,
        "ci_high": high,
    }


# ---------------------------------------------------------------- paired comparisons vs code0


def comparison_table(
    scores: pl.DataFrame, settings: AnalysisSettings, metric: str = "correct"
) -> pl.DataFrame:
    """Every tuned proportion against the same backbone's code0, per task, domain and overall,
    on the outcome column `metric` (one of METRICS; the study's `correct` unless asked).

    Effect sizes: the accuracy difference (percentage points) with a paired-bootstrap CI, and the
    discordant-pair odds ratio (items only the variant solves / items only code0 solves). Holm
    adjusts the p-values over every row of the table, the whole family of tests this run reports.
    """
    rows: list[dict[str, object]] = []
    draws: dict[tuple[str, str, str], np.ndarray] = {}
    task_rows: list[dict[str, object]] = []
    for backbone, domain, task, arms in _arms(_outcomes(scores, metric)):
        if REFERENCE_ARM not in arms:
            continue
        for variant in sorted(arms, key=lambda v: first_seed_proportion(v) or -1):
            if (first_seed_proportion(variant) or 0) <= 0:
                continue
            counts = _pair(arms[variant], arms[REFERENCE_ARM])
            rng = rng_for(settings.seed, "paired", backbone, variant, task)
            sample = difference_draws(counts, settings.bootstrap_samples, rng)
            draws[(backbone, variant, task)] = sample
            low, high = percentile_interval(sample, settings.alpha)
            task_rows.append(
                {
                    "level": "task",
                    "backbone": backbone,
                    "variant": variant,
                    "proportion": first_seed_proportion(variant),
                    "reference": REFERENCE_ARM,
                    "domain": domain,
                    "task": task,
                    "n_tasks": 1,
                    "n_pairs": counts.n,
                    "accuracy": (counts.both + counts.only_x) / counts.n if counts.n else None,
                    "reference_accuracy": (counts.both + counts.only_y) / counts.n
                    if counts.n
                    else None,
                    "difference": counts.difference,
                    "ci_low": low,
                    "ci_high": high,
                    "only_variant": counts.only_x,
                    "only_reference": counts.only_y,
                    "odds_ratio": discordant_odds_ratio(counts.only_x, counts.only_y),
                    "test": "mcnemar_exact",
                    "p_value": mcnemar_exact(counts.only_x, counts.only_y),
                }
            )
    rows += task_rows
    if task_rows:
        tasks = pl.DataFrame(task_rows, schema=_COMPARISON_SCHEMA_BASE)
        rows += _aggregate_comparisons(tasks, draws, settings)
    table = pl.DataFrame(rows, schema=_COMPARISON_SCHEMA_BASE)
    adjusted = holm(table["p_value"].to_list()) if table.height else []
    return table.with_columns(
        pl.Series("p_holm", adjusted, dtype=pl.Float64),
    ).with_columns((pl.col("p_holm") < settings.alpha).alias("significant"))


_COMPARISON_SCHEMA_BASE = {
    "level": pl.Utf8,
    "backbone": pl.Utf8,
    "variant": pl.Utf8,
    "proportion": pl.Int64,
    "reference": pl.Utf8,
    "domain": pl.Utf8,
    "task": pl.Utf8,
    "n_tasks": pl.Int64,
    "n_pairs": pl.Int64,
    "accuracy": pl.Float64,
    "reference_accuracy": pl.Float64,
    "difference": pl.Float64,
    "ci_low": pl.Float64,
    "ci_high": pl.Float64,
    "only_variant": pl.Int64,
    "only_reference": pl.Int64,
    "odds_ratio": pl.Float64,
    "test": pl.Utf8,
    "p_value": pl.Float64,
}


def _aggregate_comparisons(
    tasks: pl.DataFrame, draws: dict[tuple[str, str, str], np.ndarray], settings: AnalysisSettings
) -> list[dict[str, object]]:
    """Domain and overall rows: macro differences, their paired-bootstrap CI and p-value."""
    rows: list[dict[str, object]] = []
    for level, group, first, sample in _macro_groups(tasks, draws):
        difference = float(group["difference"].mean())
        low, high = percentile_interval(sample, settings.alpha)
        only_x, only_y = int(group["only_variant"].sum()), int(group["only_reference"].sum())
        rows.append(
            {
                **{name: first[name] for name in ("backbone", "variant", "proportion")},
                "level": level,
                "reference": REFERENCE_ARM,
                "domain": first["domain"],
                "task": None,
                "n_tasks": group.height,
                "n_pairs": int(group["n_pairs"].sum()),
                "accuracy": float(group["accuracy"].mean()),
                "reference_accuracy": float(group["reference_accuracy"].mean()),
                "difference": difference,
                "ci_low": low,
                "ci_high": high,
                "only_variant": only_x,
                "only_reference": only_y,
                "odds_ratio": discordant_odds_ratio(only_x, only_y),
                "test": "paired_bootstrap",
                "p_value": bootstrap_p_value(sample, difference),
            }
        )
    return rows


# ---------------------------------------------------------------- consistency across backbones


def _direction(difference: float) -> str:
    if abs(difference) <= 1e-12:
        return "flat"
    return "up" if difference > 0 else "down"


def consistency_table(comparisons: pl.DataFrame) -> pl.DataFrame:
    """Per domain (and overall) x proportion: do backbones agree on the direction of the effect?

    `agreement` is the share of backbones moving in the majority direction; the rank
    correlations (mean over backbone pairs) ask whether backbones also agree on which tasks of
    the domain gain most, which a sign count cannot show.
    """
    rows: list[dict[str, object]] = []
    tasks = comparisons.filter(pl.col("level") == "task")
    for level in MACRO_LEVELS:
        groups = comparisons.filter(pl.col("level") == level)
        keys = [*LEVELS[level], "variant"]
        for group in groups.sort("proportion", *keys).partition_by(keys, maintain_order=True):
            first = group.row(0, named=True)
            directions = [_direction(d) for d in group["difference"].to_list()]
            counts = {name: directions.count(name) for name in ("up", "down", "flat")}
            majority = max(counts, key=lambda name: (counts[name], name == "flat"))
            scope = tasks.filter(pl.col("variant") == first["variant"])
            if level == "domain":
                scope = scope.filter(pl.col("domain") == first["domain"])
            rho, tau = _pairwise_rank_agreement(scope)
            rows.append(
                {
                    "domain": first["domain"] if level == "domain" else "overall",
                    "variant": first["variant"],
                    "proportion": first["proportion"],
                    "n_backbones": group.height,
                    "n_up": counts["up"],
                    "n_down": counts["down"],
                    "n_flat": counts["flat"],
                    "majority": majority,
                    "agreement": counts[majority] / group.height,
                    "mean_difference": float(group["difference"].mean()),
                    "n_significant": int(group["significant"].sum()),
                    "spearman": rho,
                    "kendall": tau,
                }
            )
    return pl.DataFrame(rows, schema=_CONSISTENCY_SCHEMA)


_CONSISTENCY_SCHEMA = {
    "domain": pl.Utf8,
    "variant": pl.Utf8,
    "proportion": pl.Int64,
    "n_backbones": pl.Int64,
    "n_up": pl.Int64,
    "n_down": pl.Int64,
    "n_flat": pl.Int64,
    "majority": pl.Utf8,
    "agreement": pl.Float64,
    "mean_difference": pl.Float64,
    "n_significant": pl.Int64,
    "spearman": pl.Float64,
    "kendall": pl.Float64,
}


def _pairwise_rank_agreement(tasks: pl.DataFrame) -> tuple[float | None, float | None]:
    """Mean Spearman and Kendall over backbone pairs of their per-task differences."""
    wide = tasks.pivot(on="backbone", index="task", values="difference").drop_nulls()
    backbones = [name for name in wide.columns if name != "task"]
    rhos, taus = [], []
    for a, b in combinations(sorted(backbones), 2):
        rhos.append(spearman(wide[a].to_list(), wide[b].to_list()))
        taus.append(kendall_tau(wide[a].to_list(), wide[b].to_list()))
    return _nan_mean(rhos), _nan_mean(taus)


def _nan_mean(values: list[float]) -> float | None:
    finite = [value for value in values if not math.isnan(value)]
    return float(np.mean(finite)) if finite else None


# ---------------------------------------------------------------- best proportion


def best_proportion_table(scores: pl.DataFrame, settings: AnalysisSettings) -> pl.DataFrame:
    """Per backbone x task: the best coding share, the shares not distinguishable from it
    (exact McNemar p >= alpha against the best, unadjusted so the set errs on the wide side),
    and with three or more shares a quadratic response curve and its optimum in [0, 100]."""
    rows: list[dict[str, object]] = []
    for backbone, domain, task, arms in _arms(_outcomes(scores)):
        tuned = sorted(
            (v for v in arms if first_seed_proportion(v) is not None), key=first_seed_proportion
        )
        if not tuned:
            continue
        accuracy = {v: float(arms[v]["correct"].mean()) for v in tuned}
        best = max(tuned, key=lambda v: (accuracy[v], -first_seed_proportion(v)))
        tied = [
            v
            for v in tuned
            if v == best or mcnemar_exact(*_discordant(arms[v], arms[best])) >= settings.alpha
        ]
        fit = quadratic_optimum(
            [first_seed_proportion(v) for v in tuned], [accuracy[v] for v in tuned]
        )
        rows.append(
            {
                "backbone": backbone,
                "domain": domain,
                "task": task,
                "n_proportions": len(tuned),
                "best_proportion": first_seed_proportion(best),
                "best_accuracy": accuracy[best],
                "indistinguishable": ", ".join(str(first_seed_proportion(v)) for v in tied),
                "fit_optimum": None if fit is None else fit.optimum,
                "fit_accuracy": None if fit is None else fit.accuracy_at_optimum,
                "fit_curvature": None if fit is None else fit.a,
            }
        )
    return pl.DataFrame(rows, schema=_BEST_SCHEMA)


_BEST_SCHEMA = {
    "backbone": pl.Utf8,
    "domain": pl.Utf8,
    "task": pl.Utf8,
    "n_proportions": pl.Int64,
    "best_proportion": pl.Int64,
    "best_accuracy": pl.Float64,
    "indistinguishable": pl.Utf8,
    "fit_optimum": pl.Float64,
    "fit_accuracy": pl.Float64,
    "fit_curvature": pl.Float64,
}


def _discordant(x: pl.DataFrame, y: pl.DataFrame) -> tuple[int, int]:
    counts = _pair(x, y)
    return counts.only_x, counts.only_y


# ---------------------------------------------------------------- reasoning mode (case study)


def reasoning_mode(scores: pl.DataFrame) -> pl.Series:
    """How each response reasons: "code" (a program and nothing else), "text", "both" or "none".

    A program is what the scorer ran (program_status not null); text is what the scorer's text
    view keeps (codeift.score.answer_text: program source removed). "none" is a response with
    neither: empty, or only program source that did not run (what the untrained tiny models of
    the embedded default often emit).
    """
    has_program = (
        pl.col("program_status").is_not_null()
        if "program_status" in scores.columns
        else pl.lit(False)
    )
    outside = pl.col("response").fill_null("").map_elements(text_view, return_dtype=pl.Utf8)
    has_text = outside.str.strip_chars().str.len_chars() > 0
    mode = (
        pl.when(has_program & has_text)
        .then(pl.lit("both"))
        .when(has_program)
        .then(pl.lit("code"))
        .when(has_text)
        .then(pl.lit("text"))
        .otherwise(pl.lit("none"))
    )
    return scores.select(mode.alias("mode"))["mode"]


def reasoning_mode_table(scores: pl.DataFrame) -> pl.DataFrame:
    """Share of each reasoning mode per backbone x variant, and accuracy within each mode."""
    frame = first_seed(scores).with_columns(reasoning_mode(first_seed(scores)))
    table = frame.group_by("backbone", "variant", "proportion", "mode").agg(
        pl.len().cast(pl.Int64).alias("n"),
        pl.col("correct").fill_null(False).mean().alias("accuracy"),
    )
    total = pl.col("n").sum().over("backbone", "variant")
    table = table.with_columns((pl.col("n") / total).alias("share"))
    order = {mode: index for index, mode in enumerate(MODES)}
    return (
        table.with_columns(
            pl.col("proportion").fill_null(-1).alias("_p"),
            pl.col("mode").replace_strict(order, return_dtype=pl.Int64).alias("_m"),
        )
        .sort("backbone", "_p", "_m")
        .drop("_p", "_m")
        .select("backbone", "variant", "proportion", "mode", "n", "share", "accuracy")
    )


# ---------------------------------------------------------------- seeds


def seed_spread_table(scores: pl.DataFrame) -> pl.DataFrame | None:
    """Spread of accuracy over seeds of one arm, per task and overall (None without `seed`)."""
    if "seed" not in scores.columns:
        return None
    per_seed = scores.group_by("backbone", "variant", "proportion", "task", "seed").agg(
        pl.col("correct").fill_null(False).mean().alias("accuracy")
    )
    overall = (
        per_seed.group_by("backbone", "variant", "proportion", "seed")
        .agg(pl.col("accuracy").mean())
        .with_columns(pl.lit("overall").alias("task"))
    )
    both = pl.concat([per_seed, overall.select(per_seed.columns)])
    return (
        both.group_by("backbone", "variant", "proportion", "task")
        .agg(
            pl.col("seed").n_unique().cast(pl.Int64).alias("n_seeds"),
            pl.col("accuracy").mean().alias("mean"),
            pl.col("accuracy").std(ddof=1).alias("std"),
            pl.col("accuracy").min().alias("min"),
            pl.col("accuracy").max().alias("max"),
        )
        .with_columns(pl.col("proportion").fill_null(-1).alias("_p"))
        .sort("backbone", "_p", "task")
        .drop("_p")
    )
