"""Paired comparisons of two explainers over the same images: a bootstrap confidence interval of
the mean difference and the Wilcoxon signed-rank test, with numpy and the standard library.

The verdict follows the interval: "better" or "worse" when the ``level`` percentile bootstrap
interval of the mean paired difference excludes zero, else "not distinguishable". With fewer
than :data:`MIN_IMAGES` images it is always "not distinguishable": there the percentile
bootstrap has too few distinct resamples to cover (two images of the same sign give an
interval that excludes zero), and no two-sided test at 5 % can reject (the exact Wilcoxon p is
at least 2/2^n = 0.0625 for n = 5). The Wilcoxon p-value
is reported beside it: exact (the distribution of the signed-rank sum over all 2^n sign
patterns) for n ≤ 25 nonzero differences without ties, otherwise the normal approximation with
the tie correction and no continuity correction; zero differences are dropped (Wilcoxon's
method) and p = 1 when none are left.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "EXACT_MAX",
    "MIN_IMAGES",
    "RESAMPLES",
    "Comparison",
    "average_ranks",
    "bootstrap_ci",
    "paired_comparison",
    "wilcoxon_p",
]

EXACT_MAX = 25
"""Up to this many nonzero differences without ties, the Wilcoxon p-value is exact."""
RESAMPLES = 10000
"""Bootstrap resamples by default."""
MIN_IMAGES = 6
"""Fewer paired images than this never give a "better"/"worse" verdict."""


@dataclass(frozen=True)
class Comparison:
    """``a`` against ``b`` over ``n`` paired values: mean of ``a − b``, its CI and Wilcoxon's p."""

    mean_diff: float
    low: float
    high: float
    wilcoxon_p: float
    n: int
    higher_is_better: bool = True
    level: float = 0.95

    @property
    def verdict(self) -> str:
        """``"better"``/``"worse"`` (``a`` than ``b``) when the CI excludes 0 (and ``n`` ≥
        :data:`MIN_IMAGES`), else ``"not distinguishable"``."""
        if self.n < MIN_IMAGES or not (self.low > 0 or self.high < 0):
            return "not distinguishable"
        return "better" if (self.low > 0) == self.higher_is_better else "worse"

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {
            "mean_diff": self.mean_diff,
            "ci_low": self.low,
            "ci_high": self.high,
            "ci_level": self.level,
            "wilcoxon_p": self.wilcoxon_p,
            "images": self.n,
            "higher_is_better": self.higher_is_better,
            "verdict": self.verdict,
        }


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of ``values`` (1-D), tied values sharing the mean of their ranks."""
    v = np.asarray(values, dtype=np.float64).ravel()
    order = np.argsort(v, kind="stable")
    sorted_v = v[order]
    starts = np.r_[True, sorted_v[1:] != sorted_v[:-1]]
    group = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    last = np.r_[first[1:], len(v)] - 1
    ranks = np.empty(len(v), dtype=np.float64)
    ranks[order] = (first[group] + last[group]) / 2 + 1
    return ranks


def wilcoxon_p(d: Sequence[float] | np.ndarray) -> float:
    """Two-sided p-value of the Wilcoxon signed-rank test that the differences ``d`` centre on 0."""
    diffs = np.asarray(d, dtype=np.float64).ravel()
    diffs = diffs[diffs != 0]
    n = len(diffs)
    if n == 0:
        return 1.0
    ranks = average_ranks(np.abs(diffs))
    t_plus = float(ranks[diffs > 0].sum())
    _, counts = np.unique(np.abs(diffs), return_counts=True)
    if n <= EXACT_MAX and counts.max() == 1:
        # number of sign patterns with each rank sum 0..n(n+1)/2: product of (1 + z^r), r = 1..n
        dist = np.zeros(n * (n + 1) // 2 + 1, dtype=np.float64)
        dist[0] = 1.0
        for r in range(1, n + 1):
            dist[r:] = dist[r:] + dist[:-r].copy()
        t = int(round(t_plus))
        below, above = dist[: t + 1].sum(), dist[t:].sum()
        return float(min(1.0, 2 * min(below, above) / 2.0**n))
    mean = n * (n + 1) / 4
    var = n * (n + 1) * (2 * n + 1) / 24 - float((counts**3 - counts).sum()) / 48
    if var <= 0:
        return 1.0
    z = (t_plus - mean) / math.sqrt(var)
    return float(min(1.0, math.erfc(abs(z) / math.sqrt(2))))


def bootstrap_ci(d: np.ndarray, *, level: float, resamples: int, seed: int) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``d``: images resampled with replacement."""
    rng = np.random.default_rng(seed)
    n = len(d)
    means = np.empty(resamples, dtype=np.float64)
    chunk = max(1, 2_000_000 // max(n, 1))  # bounds the index matrix to ~16 MB
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        means[start : start + size] = d[rng.integers(0, n, (size, n))].mean(axis=1)
    alpha = (1 - level) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(low), float(high)


def paired_comparison(
    a: Sequence[float],
    b: Sequence[float],
    *,
    higher_is_better: bool = True,
    level: float = 0.95,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> Comparison:
    """Compare paired scores ``a[i]``, ``b[i]`` (same image ``i``): see the module docstring."""
    x, y = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"paired values need equal lengths, got {len(x)} and {len(y)}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("paired values must be finite; drop the images whose score is NaN or infinite")
    if not 0 < level < 1 or resamples < 1:
        raise ValueError(f"level must be in (0, 1) and resamples at least 1, got {level} and {resamples}")
    d = x - y
    n = len(d)
    if n == 0:
        return Comparison(math.nan, math.nan, math.nan, 1.0, 0, higher_is_better, level)
    low, high = bootstrap_ci(d, level=level, resamples=resamples, seed=seed)
    return Comparison(float(d.mean()), low, high, wilcoxon_p(d), n, higher_is_better, level)
