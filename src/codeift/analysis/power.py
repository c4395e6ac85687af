"""Power up front: the smallest accuracy difference a study's item count can detect.

A planted effect that is not significant means two different things: the effect is not there,
or the design could not have seen it. A task of 10 items cannot reach significance after Holm's
adjustment over a few dozen tests whatever the models do (10 discordant pairs, all one way, give
p = 0.002), so its silence says nothing. The summary therefore states, per task, the smallest
difference the paired test detects with the configured power (`analysis.power`) at the
configured alpha, and the positive control calls a planted effect the design cannot detect
"underpowered (n items)", not "missed".

The model of a paired design (the exact McNemar test of `codeift.analysis.stats`): each item is
discordant in the effect's direction with probability `churn + d` and in the other with
probability `churn` (`analysis.power_churn`: items that flip both ways between two arms for
reasons of their own), so the accuracy difference is `d`. Power is the probability that the test
rejects at `level` in the effect's direction, computed exactly over the binomial number of
discordant pairs and their split.
"""

from __future__ import annotations

import math
from functools import lru_cache

import polars as pl

from codeift.analysis.stats import mcnemar_exact
from codeift.settings import AnalysisSettings

POWER_SCHEMA = {
    "task": pl.Utf8,
    "domain": pl.Utf8,
    "n_items": pl.Int64,
    "alpha": pl.Float64,
    "tests": pl.Int64,
    "detectable": pl.Float64,
    "detectable_holm": pl.Float64,
}


def _log_pmf(k: int, n: int, p: float) -> float:
    if p <= 0.0:
        return 0.0 if k == 0 else -math.inf
    if p >= 1.0:
        return 0.0 if k == n else -math.inf
    return (
        math.lgamma(n + 1)
        - math.lgamma(k + 1)
        - math.lgamma(n - k + 1)
        + k * math.log(p)
        + (n - k) * math.log1p(-p)
    )


@lru_cache(maxsize=4096)
def _critical(discordant: int, level: float) -> int | None:
    """Fewest pairs in the effect's direction, of `discordant`, that the test rejects at
    `level` (None: not even all of them)."""
    for wins in range((discordant + 1) // 2, discordant + 1):
        if wins > discordant - wins and mcnemar_exact(wins, discordant - wins) < level:
            return wins
    return None


def mcnemar_power(n: int, difference: float, churn: float, level: float) -> float:
    """Probability that the exact McNemar test on `n` pairs rejects at `level` in the direction
    of a true accuracy difference `difference`, with `churn` of the items flipping each way."""
    if n <= 0 or difference <= 0:
        return 0.0
    forward, backward = churn + difference, churn
    discordance = min(1.0, forward + backward)
    share = forward / discordance if discordance else 0.0
    power = 0.0
    for discordant in range(n + 1):
        wins = _critical(discordant, level)
        if wins is None:
            continue
        weight = math.exp(_log_pmf(discordant, n, discordance))
        if weight < 1e-15:
            continue
        tail = sum(math.exp(_log_pmf(j, discordant, share)) for j in range(wins, discordant + 1))
        power += weight * tail
    return min(1.0, power)


def smallest_detectable(n: int, level: float, power: float, churn: float) -> float | None:
    """The smallest accuracy difference (0-1) detected with `power` by `n` pairs at `level`, to
    0.01; None when not even the largest possible one is (1 - 2 * churn)."""
    largest = 1.0 - 2 * churn
    if mcnemar_power(n, largest, churn, level) < power:
        return None
    low, high = 0.0, largest
    while high - low > 0.005:
        middle = (low + high) / 2
        if mcnemar_power(n, middle, churn, level) >= power:
            high = middle
        else:
            low = middle
    return math.ceil(high * 100) / 100


def power_table(
    scores: pl.DataFrame, settings: AnalysisSettings, tests: int | None = None
) -> pl.DataFrame:
    """Per task: its item count, the smallest difference detectable at alpha, and after Holm's
    adjustment over `tests` comparisons (judged at alpha / tests, the level the strongest of
    them meets: a bound that holds whichever rank the task's test takes)."""
    items = (
        scores.group_by("domain", "task")
        .agg(pl.col("id").n_unique().alias("n_items"))
        .sort("domain", "task")
    )
    tests = max(1, tests or 1)
    rows = []
    for row in items.iter_rows(named=True):
        n, target, churn = row["n_items"], settings.power, settings.power_churn
        raw = smallest_detectable(n, settings.alpha, target, churn)
        holm = smallest_detectable(n, settings.alpha / tests, target, churn)
        rows.append(
            {
                **row,
                "alpha": settings.alpha,
                "tests": tests,
                "detectable": raw,
                "detectable_holm": holm,
            }
        )
    return pl.DataFrame(rows, schema=POWER_SCHEMA)


def underpowered(detectable_holm: float | None, settings: AnalysisSettings) -> bool:
    """Whether a design cannot detect the planted effect size it must (`analysis.min_effect`)."""
    return detectable_holm is None or detectable_holm > settings.min_effect


def planned_tests(config: dict) -> int:
    """How many rows the study's comparisons table will hold (the Holm family): per backbone and
    tuned proportion above 0, one per task, one per domain and one overall (replicate arms are
    seeds of their arm, not tests against code0)."""
    tuned = [p for p in config["proportions"] if p > 0] if 0 in config["proportions"] else []
    domains = {spec["domain"] for spec in config["tasks"].values()}
    return len(config["backbones"]) * len(tuned) * (len(config["tasks"]) + len(domains) + 1)


def design_table(config: dict) -> pl.DataFrame:
    """The power table of a study before it runs, from its config alone (`codeift power`): each
    task's item count (`tasks.NAME.size`) and the difference it can detect."""
    settings = AnalysisSettings.from_mapping(config.get("analysis"))
    rows = [
        {"domain": spec["domain"], "task": task, "id": f"{task}-{index}"}
        for task, spec in config["tasks"].items()
        for index in range(int(spec.get("size", 0)))
    ]
    items = pl.DataFrame(rows, schema={"domain": pl.Utf8, "task": pl.Utf8, "id": pl.Utf8})
    return power_table(items, settings, planned_tests(config))
