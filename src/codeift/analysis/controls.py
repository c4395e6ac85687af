"""The study's self-checks: does the machinery find an effect we planted, and only that?

Positive control: the config's `controls.planted` says, per task, what the most-code arm should
do against code0 (gain, lose or none; the embedded default's IFT data plants these, see
codeift.data.small_world). A planted gain or loss is recovered when the task-level paired test of
the comparisons table (exact McNemar, Holm-adjusted over the whole table) is significant in the
planted direction, in the view the planted data names for it (`planted_views`: "text", what the
reply says, or "text_or_program", that or what its program prints; codeift.data.small_world).
A planted effect that is not significant where the design could not have detected it (its
smallest detectable difference after Holm, codeift.analysis.power, exceeds `analysis.min_effect`)
is "underpowered", not "missed". Tasks planted not to move are reported beside it: a significant
change there is a finding the small world did not predict.

Null control: a replicate arm (code{p}r{r}: the same proportion, another mix order and SFT seed)
paired with its first seed on every task. Nothing separates them but sampling, so a significant
difference is a false positive; the control passes when their count stays within what the test
level allows: at most the (1 - alpha) quantile of Binomial(n_tests, alpha).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from codeift.analysis import power
from codeift.analysis.stats import mcnemar_exact, paired_counts
from codeift.settings import AnalysisSettings

CONTROL_SCHEMA = {
    "control": pl.Utf8,
    "backbone": pl.Utf8,
    "task": pl.Utf8,
    "expected": pl.Utf8,
    "view": pl.Utf8,
    "variant": pl.Utf8,
    "reference": pl.Utf8,
    "n_pairs": pl.Int64,
    "accuracy": pl.Float64,
    "reference_accuracy": pl.Float64,
    "difference": pl.Float64,
    "only_variant": pl.Int64,
    "only_reference": pl.Int64,
    "p_value": pl.Float64,
    "p_holm": pl.Float64,
    "significant": pl.Boolean,
    "detectable_holm": pl.Float64,
    "verdict": pl.Utf8,
}
_WANTED_SIGN = {"gain": 1, "lose": -1}
# A planted view -> the outcome column it is judged on (codeift.analysis.evidence.METRICS).
VIEW_METRICS = {"text": "correct", "text_or_program": "correct_any"}
DEFAULT_VIEW = "text"


def planted_from_cards(card_paths: Sequence[str | Path]) -> dict[str, str]:
    """What the mixes' IFT data plants (task -> gain|lose|none), as their data cards record it;
    the cards of one study agree, since every mix comes from one pool."""
    return _from_cards(card_paths, "planted")


def planted_views_from_cards(card_paths: Sequence[str | Path]) -> dict[str, str]:
    """The view each planted effect is judged in (task -> text|text_or_program), recorded in
    the mix cards beside its direction."""
    return _from_cards(card_paths, "planted_views")


def _from_cards(card_paths: Sequence[str | Path], key: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for path in card_paths:
        found.update(json.loads(Path(path).read_text(encoding="utf-8")).get(key, {}))
    return found


def most_code_arm(comparisons: pl.DataFrame) -> str | None:
    """The tuned arm with the largest coding share (code100 in the paper's design)."""
    tasks = comparisons.filter(pl.col("level") == "task")
    if tasks.height == 0:
        return None
    return tasks.sort("proportion")["variant"][-1]


def planted_rows(
    comparisons: dict[str, pl.DataFrame],
    planted: dict[str, str],
    views: dict[str, str] | None = None,
    settings: AnalysisSettings | None = None,
) -> list[dict[str, Any]]:
    """One row per backbone x planted task: the most-code arm against code0 in the task's view
    (`comparisons`: view -> comparisons table of that view's metric), and its verdict."""
    settings = settings or AnalysisSettings()
    views = views or {}
    arm = most_code_arm(comparisons[DEFAULT_VIEW])
    if arm is None or not planted:
        return []
    rows = []
    for task, expected in sorted(planted.items()):
        view = views.get(task, DEFAULT_VIEW)
        if view not in comparisons:
            raise ValueError(
                f"planted view of task {task!r}: {view!r} (expected one of "
                f"{', '.join(VIEW_METRICS)})"
            )
        table = comparisons[view]
        tests = table.height
        chosen = table.filter(
            (pl.col("level") == "task") & (pl.col("variant") == arm) & (pl.col("task") == task)
        )
        for row in chosen.sort("backbone").iter_rows(named=True):
            detectable = power.smallest_detectable(
                row["n_pairs"], settings.alpha / max(tests, 1), settings.power, settings.power_churn
            )
            verdict = _planted_verdict(expected, row["difference"], row["significant"])
            if verdict == "missed" and power.underpowered(detectable, settings):
                verdict = "underpowered"
            rows.append(
                {
                    **{key: row[key] for key in CONTROL_SCHEMA if key in row},
                    "control": "positive" if expected in _WANTED_SIGN else "unplanted",
                    "expected": expected,
                    "view": view,
                    "detectable_holm": detectable,
                    "verdict": verdict,
                }
            )
    return sorted(rows, key=lambda r: (r["backbone"], r["task"]))


def _planted_verdict(expected: str, difference: float, significant: bool) -> str:
    if expected not in _WANTED_SIGN:
        return "moved" if significant else "still"
    if significant and difference * _WANTED_SIGN[expected] > 0:
        return "recovered"
    return "opposite" if significant else "missed"


def null_rows(scores: pl.DataFrame, alpha: float) -> list[dict[str, Any]]:
    """Every replicate seed of an arm paired with the arm's first seed, per task (raw p-values:
    the false-positive rate is a per-test rate)."""
    if "seed" not in scores.columns:
        return []
    outcomes = scores.select(
        "backbone", "variant", "task", "seed", "id", pl.col("correct").fill_null(False)
    )
    first = outcomes.group_by("backbone", "variant").agg(pl.col("seed").min().alias("_first"))
    outcomes = outcomes.join(first, on=["backbone", "variant"])
    reference = outcomes.filter(pl.col("seed") == pl.col("_first"))
    replicas = outcomes.filter(pl.col("seed") != pl.col("_first"))
    joined = replicas.join(
        reference.select("backbone", "variant", "task", "id", pl.col("correct").alias("ref")),
        on=["backbone", "variant", "task", "id"],
    )
    rows = []
    for (backbone, variant, task, seed), group in sorted(
        joined.partition_by(["backbone", "variant", "task", "seed"], as_dict=True).items()
    ):
        counts = paired_counts(group["correct"].to_numpy(), group["ref"].to_numpy())
        p_value = mcnemar_exact(counts.only_x, counts.only_y)
        rows.append(
            {
                "control": "null",
                "backbone": backbone,
                "task": task,
                "expected": "none",
                "view": DEFAULT_VIEW,
                "variant": f"{variant}r{seed}",
                "reference": variant,
                "n_pairs": counts.n,
                "accuracy": (counts.both + counts.only_x) / counts.n,
                "reference_accuracy": (counts.both + counts.only_y) / counts.n,
                "difference": counts.difference,
                "only_variant": counts.only_x,
                "only_reference": counts.only_y,
                "p_value": p_value,
                "p_holm": None,
                "significant": p_value < alpha,
                "detectable_holm": None,
                "verdict": "false positive" if p_value < alpha else "still",
            }
        )
    return rows


def control_table(
    scores: pl.DataFrame,
    comparisons: pl.DataFrame | dict[str, pl.DataFrame],
    planted: dict[str, str],
    settings: AnalysisSettings,
    views: dict[str, str] | None = None,
) -> pl.DataFrame:
    """The controls' table. `comparisons`: the text view's comparisons table, or view -> table
    (a task planted in a view with no table of its own is judged in the text view)."""
    if isinstance(comparisons, pl.DataFrame):
        comparisons = {DEFAULT_VIEW: comparisons}
    by_view = {view: comparisons.get(view, comparisons[DEFAULT_VIEW]) for view in VIEW_METRICS}
    rows = planted_rows(by_view, planted, views, settings) + null_rows(scores, settings.alpha)
    return pl.DataFrame(rows, schema=CONTROL_SCHEMA)


def binomial_upper(n: int, p: float, level: float) -> int:
    """Smallest k with P(Binomial(n, p) <= k) >= level."""
    total = 0.0
    for k in range(n + 1):
        total += math.comb(n, k) * p**k * (1 - p) ** (n - k)
        if total >= level - 1e-12:
            return k
    return n


def _verdict_label(row: dict[str, Any]) -> str:
    """A verdict as the summary counts it: an underpowered one names its item count."""
    if row["verdict"] == "underpowered":
        return f"underpowered ({row['n_pairs']} items)"
    return row["verdict"]


def verdicts(table: pl.DataFrame, alpha: float) -> dict[str, Any]:
    """The controls' outcome in numbers, and one line each for the summary."""
    positive = table.filter(pl.col("control") == "positive")
    unplanted = table.filter(pl.col("control") == "unplanted")
    null = table.filter(pl.col("control") == "null")
    recovered = int((positive["verdict"] == "recovered").sum())
    moved = int(unplanted["significant"].sum())
    false_positives = int(null["significant"].sum())
    allowed = binomial_upper(null.height, alpha, 1 - alpha)
    result: dict[str, Any] = {
        "planted": positive.height,
        "recovered": recovered,
        "unplanted": unplanted.height,
        "unplanted_moved": moved,
        "null_tests": null.height,
        "false_positives": false_positives,
        "false_positives_allowed": allowed,
        "lines": [],
    }
    if positive.height:
        others = Counter(
            _verdict_label(row)
            for row in positive.iter_rows(named=True)
            if row["verdict"] != "recovered"
        )
        counts = ", ".join(f"{n} {verdict}" for verdict, n in sorted(others.items()))
        result["lines"].append(
            f"planted effects recovered: {recovered}/{positive.height}"
            + (f" ({counts}; per task in controls.md)" if counts else "")
        )
    if unplanted.height:
        result["lines"].append(
            f"tasks planted not to move that changed significantly: {moved}/{unplanted.height}"
        )
    if null.height:
        status = "passed" if false_positives <= allowed else "FAILED"
        result["lines"].append(
            f"null control {status}: {false_positives} of {null.height} replicate-vs-first-seed "
            f"tests significant at α = {alpha} (expected {alpha * null.height:.1f}; up to "
            f"{allowed} is within the false-positive rate)"
        )
    result["positive_passed"] = bool(positive.height) and recovered == positive.height
    result["null_passed"] = bool(null.height) and false_positives <= allowed
    return result
