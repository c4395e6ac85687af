"""The study's result tables (task, domain, overall accuracy with deltas), the evidence tables
and the mix table, in a deterministic row order.

Accuracies are macro averages (every task weighs the same whatever its test-set size), as in the
paper, so a large task cannot drown out a small one when domains or whole models are compared.
Deltas are always taken at the same level of aggregation against the same backbone's `code0`
(instruction tuning without coding data) and `base` (no tuning) rows.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import polars as pl

from codeift.analysis import controls, evidence, power
from codeift.analysis.load import check_variants, with_program_view
from codeift.errors import AnalysisError
from codeift.settings import AnalysisSettings, MixSettings
from codeift.study import (
    BASE,
    DOMAINS,
    LEVELS,
    REFERENCE_ARM,
    domain_rank,
    level_rank,
    variant_name,
    variant_rank,
)

MODEL_KEYS = ["backbone", "family", "size_label", "variant", "proportion"]


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


def variants_in_order(table: pl.DataFrame) -> list[str]:
    return sorted(table["variant"].unique().to_list(), key=variant_rank)


def tasks_in_order(table: pl.DataFrame) -> list[tuple[str, str]]:
    pairs = table.select("task", "domain").unique().rows()
    return sorted(pairs, key=lambda pair: (domain_rank(pair[1]), pair[1], pair[0]))


def task_table(scores: pl.DataFrame) -> pl.DataFrame:
    """Per backbone x variant x task accuracy, the unit every other table averages over."""
    check_variants(scores)
    table = scores.group_by([*MODEL_KEYS, "domain", "task"]).agg(
        pl.len().cast(pl.Int64).alias("n"),
        pl.col("correct").fill_null(False).sum().cast(pl.Int64).alias("n_correct"),
        pl.col("missing_reason").is_not_null().sum().cast(pl.Int64).alias("n_missing"),
    )
    table = table.with_columns((pl.col("n_correct") / pl.col("n")).alias("accuracy"))
    return _sort_rows(_add_deltas(table, ["backbone", *LEVELS["task"]]))


def domain_table(scores: pl.DataFrame) -> pl.DataFrame:
    """Per backbone x variant x domain macro accuracy, so each task in a domain counts equally."""
    return _sort_rows(_macro(task_table(scores), LEVELS["domain"]))


def overall_table(scores: pl.DataFrame) -> pl.DataFrame:
    """Per backbone x variant macro accuracy over all tasks, the paper's headline number."""
    return _sort_rows(_macro(task_table(scores), LEVELS["overall"]))


# The result table of each level (codeift.study.RESULT_TABLES names them).
LEVEL_TABLES: dict[str, Callable[[pl.DataFrame], pl.DataFrame]] = {
    "task": task_table,
    "domain": domain_table,
    "overall": overall_table,
}


def _macro(tasks: pl.DataFrame, keys: Sequence[str]) -> pl.DataFrame:
    """Average task accuracies within a group, then recompute deltas at that level."""
    table = tasks.group_by([*MODEL_KEYS, *keys]).agg(
        pl.len().cast(pl.Int64).alias("n_tasks"),
        pl.col("n").sum(),
        pl.col("n_missing").sum(),
        pl.col("accuracy").mean(),
    )
    return _add_deltas(table, ["backbone", *keys])


def _add_deltas(
    table: pl.DataFrame, keys: list[str], value: str = "accuracy", prefix: str = "delta"
) -> pl.DataFrame:
    """Subtract the same backbone's code0 / base `value` at this level (null when absent), as
    `{prefix}_vs_code0` and `{prefix}_vs_base`."""
    for variant, name in ((REFERENCE_ARM, "code0"), (BASE, "base")):
        reference = table.filter(pl.col("variant") == variant).select(
            *keys, pl.col(value).alias("_reference")
        )
        table = (
            table.join(reference, on=keys, how="left")
            .with_columns((pl.col(value) - pl.col("_reference")).alias(f"{prefix}_vs_{name}"))
            .drop("_reference")
        )
    return table


# ---------------------------------------------------------------- the two views of an answer

_COMPARISON_KEYS = ["level", "backbone", "variant", "domain", "task"]


def views_table(
    scores: pl.DataFrame, comparisons: pl.DataFrame, comparisons_any: pl.DataFrame
) -> pl.DataFrame:
    """Per backbone x variant, per task, domain and overall (macro averages): accuracy in the
    text view (`correct`, the study's metric: what the response says) and in the program-aided
    view (`correct_any`: the text or what the response's program printed when run), and how
    much of the change against code0 comes from running programs.

    `program_gain` = accuracy_any - accuracy; `delta_from_programs` = delta_any_vs_code0 -
    delta_vs_code0 (the variant's gain from programs beyond code0's). `program_ok_share` is the
    share of responses whose program ran and ended ok. The Holm-adjusted p-values come from the
    comparison tables of each view (`comparisons` and `comparisons_any`, each its own family).
    Rows without the program columns count as having no program (load.with_program_view).
    """
    scores = with_program_view(evidence.first_seed(scores))
    check_variants(scores)
    status = pl.col("program_status")
    tasks = scores.group_by([*MODEL_KEYS, "domain", "task"]).agg(
        pl.len().cast(pl.Int64).alias("n"),
        status.is_not_null().sum().cast(pl.Int64).alias("n_programs"),
        (status == "ok").fill_null(False).sum().cast(pl.Int64).alias("n_program_ok"),
        (status == "not_run").fill_null(False).sum().cast(pl.Int64).alias("n_not_run"),
        pl.col("correct").fill_null(False).mean().alias("accuracy"),
        pl.col("correct_any").fill_null(False).mean().alias("accuracy_any"),
    )
    tasks = tasks.with_columns(
        pl.lit(1, dtype=pl.Int64).alias("n_tasks"),
        (pl.col("n_program_ok") / pl.col("n")).alias("program_ok_share"),
    )
    levels = []
    for level, keys in LEVELS.items():
        table = tasks.group_by([*MODEL_KEYS, *keys]).agg(
            pl.col("n_tasks").sum(),
            *(pl.col(name).sum() for name in ("n", "n_programs", "n_program_ok", "n_not_run")),
            *(pl.col(name).mean() for name in ("accuracy", "accuracy_any", "program_ok_share")),
        )
        table = _add_deltas(table, ["backbone", *keys])
        table = _add_deltas(table, ["backbone", *keys], "accuracy_any", "delta_any")
        levels.append(
            table.with_columns(
                pl.lit(level).alias("level"),
                *(
                    pl.lit(None, dtype=pl.Utf8).alias(name)
                    for name in ("domain", "task")
                    if name not in keys
                ),
            )
        )
    table = pl.concat(levels, how="diagonal_relaxed").with_columns(
        (pl.col("accuracy_any") - pl.col("accuracy")).alias("program_gain"),
        (pl.col("delta_any_vs_code0") - pl.col("delta_vs_code0")).alias("delta_from_programs"),
    )
    for source, suffix in ((comparisons, ""), (comparisons_any, "_any")):
        tested = source.select(
            *_COMPARISON_KEYS,
            pl.col("p_holm").alias(f"p_holm{suffix}"),
            pl.col("significant").alias(f"significant{suffix}"),
        )
        table = table.join(tested, on=_COMPARISON_KEYS, how="left", nulls_equal=True)
    ordered = table.select(
        "level",
        "backbone",
        "variant",
        "proportion",
        "domain",
        "task",
        "n_tasks",
        "n",
        "n_programs",
        "n_program_ok",
        "n_not_run",
        "program_ok_share",
        "accuracy",
        "accuracy_any",
        "program_gain",
        "delta_vs_code0",
        "delta_any_vs_code0",
        "delta_from_programs",
        "delta_vs_base",
        "delta_any_vs_base",
        "p_holm",
        "p_holm_any",
        "significant",
        "significant_any",
    )
    return _by_domain(ordered, ["level", "backbone", "proportion"])


def evidence_tables(
    scores: pl.DataFrame,
    settings: AnalysisSettings,
    planted: dict[str, str] | None = None,
    views: dict[str, str] | None = None,
) -> dict[str, pl.DataFrame]:
    """Intervals, paired comparisons, consistency, best proportion, reasoning modes, seeds,
    the controls (planted effects from `planted`, each judged in its view from `views`, the null
    control from replicate seeds), the two views of an answer (text, and text or program
    output) and the power table (each task's smallest detectable difference).

    The seeds table is always written (an empty one with its header when the scores have no
    `seed` column), so the workflow's list of outputs does not depend on the data.
    """
    comparisons = evidence.comparison_table(scores, settings)
    comparisons_any = evidence.comparison_table(with_program_view(scores), settings, "correct_any")
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
        "controls": controls.control_table(
            scores,
            {"text": comparisons, "text_or_program": comparisons_any},
            planted or {},
            settings,
            views,
        ),
        "views": views_table(scores, comparisons, comparisons_any),
        "power": power.power_table(evidence.first_seed(scores), settings, comparisons.height),
    }


def _by_domain(table: pl.DataFrame, before: list[str]) -> pl.DataFrame:
    """Sort by `before`, then domains in the paper's order (overall/null last), then task."""
    names = [name for name in table["domain"].unique().to_list() if name is not None]
    order = {name: domain_rank(name) for name in names}
    order["overall"] = len(DOMAINS) + 1
    rank = pl.col("domain").replace_strict(order, default=len(DOMAINS) + 2)
    level = (
        [pl.col("level").replace_strict({n: level_rank(n) for n in LEVELS}).alias("_level")]
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
            # A card written before a setting existed was drawn with its default.
            settings = {**MixSettings().recorded(), **card.get("mix_settings", {})}
            rows.append(
                {
                    "variant": variant_name(card["proportion"], card.get("replicate", 0)),
                    "proportion": int(card["proportion"]),
                    "examples": int(card["examples"]),
                    "code_examples": int(labels.get("code", 0)),
                    "code_example_share": labels.get("code", 0) / max(int(card["examples"]), 1),
                    "tokens": int(tokens["total"]),
                    "token_measure": str(tokens.get("measure", "")),
                    "code_token_share": float(card["code_token_share"]),
                    "match": str(settings["match"]),
                    "nested": bool(settings["nested"]),
                    "content_hash": str(card["content_hash"]),
                }
            )
        except (KeyError, TypeError) as error:
            raise AnalysisError(f"{path}: mix card lacks {error} (rebuild the mix)") from error
    return pl.DataFrame(rows).sort("proportion", "variant")
