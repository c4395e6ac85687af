"""Small, dependency-free statistics for comparing arms on the same test examples.

Everything here works on counts, because a score is a 0/1 outcome per example: resampling
examples with replacement is then exactly a binomial (one arm) or multinomial (paired outcome
cells) draw, which makes thousands of bootstrap resamples a single vectorised numpy call.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PairedCounts:
    """Outcome cells of two arms on the same examples (x = the arm tested, y = the reference)."""

    both: int
    only_x: int
    only_y: int
    neither: int

    @property
    def n(self) -> int:
        return self.both + self.only_x + self.only_y + self.neither

    @property
    def difference(self) -> float:
        """Accuracy of x minus accuracy of y."""
        return (self.only_x - self.only_y) / self.n if self.n else 0.0


def paired_counts(x: np.ndarray, y: np.ndarray) -> PairedCounts:
    """Count the four outcome cells of two aligned boolean vectors."""
    x = np.asarray(x, dtype=bool)
    y = np.asarray(y, dtype=bool)
    if x.shape != y.shape:
        raise ValueError("paired_counts: arms must be aligned on the same examples")
    return PairedCounts(
        both=int(np.sum(x & y)),
        only_x=int(np.sum(x & ~y)),
        only_y=int(np.sum(~x & y)),
        neither=int(np.sum(~x & ~y)),
    )


def rng_for(seed: int, *key: object) -> np.random.Generator:
    """A generator per named quantity, so a row's interval does not depend on the other rows."""
    tag = zlib.crc32("\x1f".join(str(part) for part in key).encode())
    return np.random.default_rng([seed, tag])


def accuracy_draws(n_correct: int, n: int, samples: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap accuracies of one arm: resampling n 0/1 outcomes is a Binomial(n, k/n) draw."""
    if n == 0:
        return np.full(samples, np.nan)
    return rng.binomial(n, n_correct / n, size=samples) / n


def difference_draws(counts: PairedCounts, samples: int, rng: np.random.Generator) -> np.ndarray:
    """Paired bootstrap of the accuracy difference: resample example pairs (multinomial cells)."""
    if counts.n == 0:
        return np.full(samples, np.nan)
    cells = np.array([counts.both, counts.only_x, counts.only_y, counts.neither]) / counts.n
    draws = rng.multinomial(counts.n, cells, size=samples)
    return (draws[:, 1] - draws[:, 2]) / counts.n


def percentile_interval(draws: np.ndarray, alpha: float) -> tuple[float, float]:
    """Two-sided percentile interval of bootstrap draws (NaN draws mean no data)."""
    if draws.size == 0 or np.isnan(draws).all():
        return (math.nan, math.nan)
    low, high = np.quantile(draws, [alpha / 2, 1 - alpha / 2])
    return (float(low), float(high))


def bootstrap_p_value(draws: np.ndarray, observed: float) -> float:
    """Two-sided p of 'no difference' from draws shifted to the null (centred percentile test).

    Counts resamples whose deviation from the observed difference is at least as large as the
    observed difference itself; the +1 keeps p above zero with a finite number of resamples.
    """
    if draws.size == 0 or np.isnan(draws).all():
        return math.nan
    extreme = np.sum(np.abs(draws - observed) >= abs(observed) - 1e-12)
    return float((1 + extreme) / (1 + draws.size))


def mcnemar_exact(only_x: int, only_y: int) -> float:
    """Exact two-sided McNemar p: the discordant pairs are Binomial(b + c, 1/2) under no effect."""
    total = only_x + only_y
    if total == 0:
        return 1.0
    tail = sum(math.comb(total, i) for i in range(min(only_x, only_y) + 1))
    return min(1.0, 2 * tail / 2**total)


def discordant_odds_ratio(only_x: int, only_y: int) -> float:
    """Conditional odds ratio b/c of McNemar's test; 0.5 is added to both when either is zero."""
    if only_x == 0 or only_y == 0:
        return (only_x + 0.5) / (only_y + 0.5)
    return only_x / only_y


def holm(p_values: list[float]) -> list[float]:
    """Holm step-down adjusted p-values (family-wise error control), NaN entries left as NaN."""
    values = np.asarray(p_values, dtype=float)
    adjusted = np.full(values.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(values))
    order = valid[np.argsort(values[valid], kind="stable")]
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * values[index]))
        adjusted[index] = running
    return adjusted.tolist()


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks with ties given their average rank (what Spearman's rho needs)."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), dtype=float)
    ranks[order] = np.arange(1, len(values) + 1)
    for value in np.unique(values):
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman's rho (Pearson on average ranks); NaN when either side is constant or n < 2."""
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(a) != len(b):
        raise ValueError("spearman: x and y differ in length")
    if len(a) < 2:
        return math.nan
    ra, rb = _ranks(a), _ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return math.nan
    return float(np.corrcoef(ra, rb)[0, 1])


def kendall_tau(x: list[float], y: list[float]) -> float:
    """Kendall's tau-b (tie-corrected); NaN when either side is constant or n < 2."""
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(a) != len(b):
        raise ValueError("kendall_tau: x and y differ in length")
    upper = np.triu_indices(len(a), k=1)
    da = np.sign(a[:, None] - a[None, :])[upper]
    db = np.sign(b[:, None] - b[None, :])[upper]
    denominator = math.sqrt(float(np.sum(da != 0)) * float(np.sum(db != 0)))
    if denominator == 0:
        return math.nan
    return float(np.sum(da * db) / denominator)


@dataclass(frozen=True)
class QuadraticFit:
    """accuracy ~ a p^2 + b p + c over coding share p (%), and where it peaks within [0, 100]."""

    a: float
    b: float
    c: float
    optimum: float
    accuracy_at_optimum: float


def quadratic_optimum(proportions: list[float], accuracies: list[float]) -> QuadraticFit | None:
    """Least-squares quadratic; the optimum is its vertex clipped to [0, 100] (None if < 3 points).

    With a concave fit the vertex is the interior peak; otherwise the best end of the range is.
    """
    p = np.asarray(proportions, dtype=float)
    y = np.asarray(accuracies, dtype=float)
    if len(np.unique(p)) < 3:
        return None
    a, b, c = (float(v) for v in np.polyfit(p, y, 2))
    if abs(a) < 1e-12:  # a straight line up to float noise: no interior peak
        a = 0.0
    candidates = [0.0, 100.0]
    if a < 0:
        candidates.append(min(max(-b / (2 * a), 0.0), 100.0))
    values = [a * q * q + b * q + c for q in candidates]
    best = int(np.argmax(values))
    return QuadraticFit(a, b, c, candidates[best], values[best])
