"""Intervals for proportions, vectorised over segments (statsmodels does the arithmetic)."""

from __future__ import annotations

import numpy as np
from statsmodels.stats.proportion import proportion_confint


def wilson_interval(successes, n, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of successes/n; NaN where n = 0 (no audits: no interval)."""
    successes = np.asarray(successes, dtype=float)
    n = np.asarray(n, dtype=float)
    safe_n = np.where(n > 0, n, 1.0)
    low, high = proportion_confint(successes, safe_n, alpha=alpha, method="wilson")
    # the bounds are exactly 0 at x = 0 and exactly 1 at x = n; floating point lands 1e-16 inside,
    # which would put p̂ = 1 above its own upper bound
    low = np.where(successes <= 0, 0.0, np.clip(low, 0.0, 1.0))
    high = np.where(successes >= n, 1.0, np.clip(high, 0.0, 1.0))
    low = np.where(n > 0, low, np.nan)
    high = np.where(n > 0, high, np.nan)
    return low, high


def safe_rate(numerator, denominator) -> np.ndarray:
    """numerator / denominator, NaN (published as NULL) where the denominator is 0."""
    numerator = np.asarray(numerator, dtype=float)
    denominator = np.asarray(denominator, dtype=float)
    out = np.full(numerator.shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def newcombe_difference(x1: int, n1: int, x0: int, n0: int, alpha: float = 0.05) -> tuple[float, float]:
    """95 % interval of p1 − p0 by Newcombe's hybrid score method (method 10 of Newcombe 1998)."""
    from statsmodels.stats.proportion import confint_proportions_2indep

    if n1 <= 0 or n0 <= 0:
        return float("nan"), float("nan")
    low, high = confint_proportions_2indep(x1, n1, x0, n0, method="newcomb", compare="diff", alpha=alpha)
    return float(low), float(high)


def two_proportion_ztest(x1: int, n1: int, x0: int, n0: int) -> tuple[float, float]:
    """Pooled two-proportion z-test of p1 vs p0: (z, two-sided p). NaN when undefined
    (an empty group, or both groups all-error / error-free: no variance to test against)."""
    from statsmodels.stats.proportion import proportions_ztest

    if n1 <= 0 or n0 <= 0:
        return float("nan"), float("nan")
    pooled = (x1 + x0) / (n1 + n0)
    if pooled in (0.0, 1.0):
        return 0.0, 1.0  # identical, degenerate rates: no evidence of a change
    z, p = proportions_ztest(np.array([x1, x0]), np.array([n1, n0]))
    return float(z), float(p)


def benjamini_hochberg(pvalues) -> np.ndarray:
    """BH-adjusted q-values; NaN p-values (untested segments) stay NaN and do not count."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(pvalues, dtype=float)
    q = np.full(p.shape, np.nan)
    tested = ~np.isnan(p)
    if tested.any():
        q[tested] = multipletests(p[tested], method="fdr_bh")[1]
    return q
