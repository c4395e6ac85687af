"""Statistics against cases with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from codeift.analysis import stats
from codeift.settings import AnalysisSettings


def test_mcnemar_exact_matches_hand_computed_binomial() -> None:
    # b=1, c=9: 2 * P(X <= 1), X ~ Bin(10, 1/2) = 2 * 11 / 1024
    assert stats.mcnemar_exact(1, 9) == pytest.approx(22 / 1024)
    assert stats.mcnemar_exact(9, 1) == stats.mcnemar_exact(1, 9)
    assert stats.mcnemar_exact(0, 0) == 1.0
    assert stats.mcnemar_exact(5, 5) == 1.0
    assert stats.mcnemar_exact(0, 6) == pytest.approx(2 / 64)


def test_discordant_odds_ratio_with_and_without_zero_cells() -> None:
    assert stats.discordant_odds_ratio(8, 2) == 4.0
    assert stats.discordant_odds_ratio(3, 0) == pytest.approx(3.5 / 0.5)


def test_paired_counts_and_difference() -> None:
    x = np.array([1, 1, 0, 0, 1], dtype=bool)
    y = np.array([1, 0, 1, 0, 0], dtype=bool)
    counts = stats.paired_counts(x, y)
    assert (counts.both, counts.only_x, counts.only_y, counts.neither) == (1, 2, 1, 1)
    assert counts.difference == pytest.approx(0.2)
    with pytest.raises(ValueError, match="aligned"):
        stats.paired_counts(x, y[:3])


def test_identical_arms_show_no_difference() -> None:
    outcomes = np.random.default_rng(1).random(200) < 0.4
    counts = stats.paired_counts(outcomes, outcomes)
    draws = stats.difference_draws(counts, 1000, np.random.default_rng(0))
    assert np.all(draws == 0)
    assert stats.percentile_interval(draws, 0.05) == (0.0, 0.0)
    assert stats.bootstrap_p_value(draws, counts.difference) == 1.0
    assert stats.mcnemar_exact(counts.only_x, counts.only_y) == 1.0


def test_planted_difference_is_found() -> None:
    rng = np.random.default_rng(2)
    y = rng.random(300) < 0.3
    x = y | (rng.random(300) < 0.3)  # x solves everything y does, plus ~21% more
    counts = stats.paired_counts(x, y)
    assert counts.only_y == 0 and counts.only_x > 40
    draws = stats.difference_draws(counts, 2000, np.random.default_rng(0))
    low, high = stats.percentile_interval(draws, 0.05)
    assert 0 < low < counts.difference < high
    assert stats.bootstrap_p_value(draws, counts.difference) < 0.001
    assert stats.mcnemar_exact(counts.only_x, counts.only_y) < 1e-10


def test_accuracy_interval_covers_the_estimate_and_narrows_with_n() -> None:
    small = stats.accuracy_draws(5, 10, 2000, np.random.default_rng(0))
    large = stats.accuracy_draws(500, 1000, 2000, np.random.default_rng(0))
    lo_s, hi_s = stats.percentile_interval(small, 0.05)
    lo_l, hi_l = stats.percentile_interval(large, 0.05)
    assert lo_s < 0.5 < hi_s and lo_l < 0.5 < hi_l
    assert hi_l - lo_l < (hi_s - lo_s) / 5
    # the binomial interval is close to the normal approximation for large n
    assert hi_l - lo_l == pytest.approx(2 * 1.96 * math.sqrt(0.25 / 1000), rel=0.15)
    assert stats.accuracy_draws(10, 10, 100, np.random.default_rng(0)).tolist() == [1.0] * 100


def test_rng_for_is_stable_per_key() -> None:
    a = stats.rng_for(0, "b1", "code50", "gsm8k").random(3)
    b = stats.rng_for(0, "b1", "code50", "gsm8k").random(3)
    c = stats.rng_for(0, "b1", "code50", "svamp").random(3)
    assert a.tolist() == b.tolist() and a.tolist() != c.tolist()


def test_holm_adjustment_known_values() -> None:
    # sorted p: 0.01, 0.02, 0.04 -> 0.03, 0.04, 0.04 (monotone), order restored
    assert stats.holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    adjusted = stats.holm([float("nan"), 0.01])
    assert math.isnan(adjusted[0]) and adjusted[1] == pytest.approx(0.01)


def test_rank_correlations_known_values() -> None:
    assert stats.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert stats.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # one swap in four: rho = 1 - 6 * 2 / (4 * 15) = 0.8; tau = (5 - 1) / 6
    assert stats.spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert stats.kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    # ties: tau-b of (1,1,2) vs (1,2,3) = 2 / sqrt(2 * 3)
    assert stats.kendall_tau([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / math.sqrt(6))
    assert math.isnan(stats.spearman([1, 1, 1], [1, 2, 3]))
    assert math.isnan(stats.kendall_tau([1], [2]))


def test_quadratic_optimum_interior_and_clipped() -> None:
    # accuracy = -(p - 40)^2 / 10000 + 0.6 peaks at 40%
    ps = [0, 25, 50, 75, 100]
    fit = stats.quadratic_optimum(ps, [0.6 - (p - 40) ** 2 / 10000 for p in ps])
    assert fit is not None
    assert fit.optimum == pytest.approx(40.0)
    assert fit.accuracy_at_optimum == pytest.approx(0.6)
    # increasing line: the optimum is the top of the range
    rising = stats.quadratic_optimum([0, 50, 100], [0.1, 0.2, 0.3])
    assert rising is not None and rising.optimum == 100.0 and rising.a == 0.0
    # convex curve: best end of the range, never the vertex (a minimum)
    valley = stats.quadratic_optimum([0, 50, 100], [0.5, 0.2, 0.4])
    assert valley is not None and valley.optimum == 0.0
    assert stats.quadratic_optimum([0, 100], [0.1, 0.2]) is None


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="bootstrap_samples"):
        AnalysisSettings(bootstrap_samples=10)
    with pytest.raises(ValueError, match="alpha"):
        AnalysisSettings(alpha=1.0)
