"""Tests for lrpcli.evaluation.stats: Wilcoxon p-values from tables and by hand, the bootstrap CI."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lrpcli.evaluation.stats import Comparison, average_ranks, bootstrap_ci, paired_comparison, wilcoxon_p


def test_average_ranks_share_ties() -> None:
    assert average_ranks(np.array([10.0, 20.0, 20.0, 5.0])).tolist() == [2.0, 3.5, 3.5, 1.0]
    assert average_ranks(np.array([3.0, 3.0, 3.0])).tolist() == [2.0, 2.0, 2.0]


def test_wilcoxon_exact_p_values_from_the_tables() -> None:
    assert wilcoxon_p([1, 2, 3, 4, 5]) == pytest.approx(2 / 32)  # all 5 positive: T+ = 15 of 2^5
    assert wilcoxon_p([0.5, 1, 2, 3, 4, 5]) == pytest.approx(2 / 64)
    assert wilcoxon_p([-1, -2, -3, -4, -5, -6]) == pytest.approx(2 / 64)  # two-sided
    # T+ = 13, T− = 2: sign patterns with T− ≤ 2 are {}, {1}, {2}: p = 2 · 3/32
    assert wilcoxon_p([1, -2, 3, 4, 5]) == pytest.approx(6 / 32)
    assert wilcoxon_p([0, 0, 1, 2, 3, 4, 5]) == pytest.approx(2 / 32)  # zeros are dropped
    assert wilcoxon_p([0, 0]) == 1.0 and wilcoxon_p([]) == 1.0
    assert wilcoxon_p([1, -1]) == 1.0  # a tie: normal approximation, T+ at its mean


def test_wilcoxon_normal_approximation_with_the_tie_correction() -> None:
    # |d| = 1, 1, 2, 2, 3, 1: the 1s share rank 2, the 2s rank 4.5; T+ = 2 + 2 + 4.5 + 4.5 + 6 = 19
    # var = 6·7·13/24 − ((3³ − 3) + (2³ − 2))/48 = 22.125; z = (19 − 10.5)/√22.125
    expected = math.erfc(8.5 / math.sqrt(22.125) / math.sqrt(2))
    assert wilcoxon_p([1, 1, 2, 2, 3, -1]) == pytest.approx(expected, rel=1e-12)
    # n = 26 > 25, all positive: T+ = 351, mean 175.5, var 26·27·53/24
    big = wilcoxon_p(np.arange(1, 27, dtype=float))
    assert big == pytest.approx(math.erfc(175.5 / math.sqrt(26 * 27 * 53 / 24) / math.sqrt(2)), rel=1e-12)


def test_constant_shift_is_better_and_direction_is_respected() -> None:
    b = np.random.default_rng(0).integers(-5, 5, size=12).astype(float)  # integers: b + 0.5 − b is exact
    up = paired_comparison(b + 0.5, b)
    assert (up.mean_diff, up.low, up.high) == (0.5, 0.5, 0.5)
    # 12 tied |d|: T+ = 78, mean 39, var = 12·13·25/24 − (12³ − 12)/48 = 126.75
    assert up.wilcoxon_p == pytest.approx(math.erfc(39 / math.sqrt(126.75) / math.sqrt(2)), rel=1e-12)
    assert up.verdict == "better" and up.n == 12
    assert paired_comparison(b + 0.5, b, higher_is_better=False).verdict == "worse"
    assert paired_comparison(b - 0.5, b).verdict == "worse"


def test_symmetric_noise_is_not_distinguishable() -> None:
    d = np.array([-3.0, -2.0, -1.0, 1.0, 2.0, 3.0])
    cmp = paired_comparison(d, np.zeros(6))
    assert cmp.low < 0 < cmp.high and cmp.mean_diff == 0.0
    assert cmp.verdict == "not distinguishable" and cmp.wilcoxon_p == pytest.approx(1.0)


def test_bootstrap_is_seeded_and_about_as_wide_as_the_normal_interval() -> None:
    d = np.random.default_rng(1).normal(1.0, 1.0, size=40)
    a = bootstrap_ci(d, level=0.95, resamples=4000, seed=3)
    assert a == bootstrap_ci(d, level=0.95, resamples=4000, seed=3)
    assert a != bootstrap_ci(d, level=0.95, resamples=4000, seed=4)
    half = 1.96 * d.std(ddof=1) / math.sqrt(len(d))
    assert (a[1] - a[0]) / 2 == pytest.approx(half, rel=0.15)
    assert a[0] < d.mean() < a[1]


def test_small_or_bad_inputs() -> None:
    one = paired_comparison([2.0], [1.0])
    assert one.n == 1 and one.verdict == "not distinguishable"  # no interval from one image
    # five images all better: the interval excludes 0, but five are too few for a verdict
    five = paired_comparison([2.0, 3.0, 4.0, 5.0, 6.0], [1.0] * 5)
    assert five.low > 0 and five.verdict == "not distinguishable"
    assert paired_comparison([2.0, 3.0, 4.0, 5.0, 6.0, 7.0], [1.0] * 6).verdict == "better"
    empty = paired_comparison([], [])
    assert empty.n == 0 and math.isnan(empty.mean_diff) and empty.verdict == "not distinguishable"
    with pytest.raises(ValueError, match="equal lengths"):
        paired_comparison([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="finite"):
        paired_comparison([1.0, float("nan")], [1.0, 2.0])
    cmp = Comparison(1.0, 0.2, 1.8, 0.03, 9)
    assert cmp.to_dict() == {
        "mean_diff": 1.0, "ci_low": 0.2, "ci_high": 1.8, "ci_level": 0.95, "wilcoxon_p": 0.03,
        "images": 9, "higher_is_better": True, "verdict": "better",
    }  # fmt: skip
