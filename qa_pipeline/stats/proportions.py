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
    low = np.where(n > 0, np.clip(low, 0.0, 1.0), np.nan)
    high = np.where(n > 0, np.clip(high, 0.0, 1.0), np.nan)
    return low, high


def safe_rate(numerator, denominator) -> np.ndarray:
    """numerator / denominator, NaN (published as NULL) where the denominator is 0."""
    numerator = np.asarray(numerator, dtype=float)
    denominator = np.asarray(denominator, dtype=float)
    out = np.full(numerator.shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out
