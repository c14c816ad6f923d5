"""The Bernoulli CUSUM: sequential monitoring of an error rate, one audit at a time.

For audits x₁, x₂, … (1 = error) and an in-control error rate p₀, the chart is tuned to detect a
rise to p₁ = OR·p₀ / (1 − p₀ + OR·p₀) (the rate whose odds are OR times the odds of p₀). Each
audit adds its log-likelihood ratio of p₁ against p₀,

    w(1) = log(p₁ / p₀),   w(0) = log((1 − p₁) / (1 − p₀)),

and the statistic restarts from 0 whenever it would go below it (Page 1954):
S₀ = 0, Sₜ = max(0, Sₜ₋₁ + w(xₜ)). It signals when Sₜ exceeds a threshold h. Among all charts with
the same false-alarm rate, it detects a shift of exactly that size soonest (Moustakides 1986); see
Reynolds & Stoumbos (1999), "A CUSUM chart for monitoring a proportion when inspecting continuously",
J. Quality Technology 31(1), for the Bernoulli case.

`null_maxima` simulates the largest value the chart reaches over n audits of a process that stays at
p₀; `threshold` is its (1 − α) quantile, so that such a process exceeds it with probability ≤ α.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import binom

SIMULATION_CELLS = 4_000_000
"""Simulated audits held in memory at a time (paths × audits per block)."""


def shifted_rate(p0: float, odds_ratio: float) -> float:
    """The error rate whose odds are `odds_ratio` times the odds of `p0`."""
    _check_rate(p0)
    if odds_ratio <= 1:
        raise ValueError(f"the shift to detect is a rise: odds ratio must be > 1, got {odds_ratio}")
    return odds_ratio * p0 / (1 - p0 + odds_ratio * p0)


def llr_weights(p0: float, odds_ratio: float) -> tuple[float, float]:
    """(w for an error, w for a correct audit): the log-likelihood ratios of p₁ against p₀."""
    p1 = shifted_rate(p0, odds_ratio)
    return math.log(p1 / p0), math.log((1 - p1) / (1 - p0))


def bernoulli_cusum(errors, p0: float, odds_ratio: float) -> np.ndarray:
    """Sₜ after each audit of `errors` (booleans, in order), starting from S₀ = 0.

    Computed without a loop: with Cₜ the running sum of the weights (C₀ = 0), the recursion
    max(0, Sₜ₋₁ + wₜ) has the solution Sₜ = Cₜ − min(C₀, …, Cₜ) (Lindley)."""
    x = np.asarray(errors, dtype=bool)
    w1, w0 = llr_weights(p0, odds_ratio)
    c = np.cumsum(np.where(x, w1, w0))
    return c - np.minimum(np.minimum.accumulate(c), 0.0) if len(c) else c.astype(float)


def null_maxima(n: int, p0: float, odds_ratio: float, simulations: int,
                rng: np.random.Generator, true_rates: np.ndarray | None = None) -> np.ndarray:
    """max(S₁, …, Sₙ) of `simulations` independent runs of n audits at the in-control rate p₀.

    Simulated error by error rather than audit by audit (about 1/p₀ times less work): the chart
    only rises at an error, so its maximum is reached just after one. With Gᵢ the correct audits
    before the i-th error (geometric), the value just after it is Aᵢ = w(1) + max(0, Aᵢ₋₁ − Gᵢ·|w(0)|),
    a Lindley recursion in Uᵢ = Aᵢ − w(1) with steps w(1) − Gᵢ·|w(0)| from U₁ = 0; only the errors
    among the first n audits count. Enough errors are drawn to cover n audits but with probability
    < 1e-12 (8 standard deviations above n·p₀).

    `true_rates` (one per simulated run): the rate the run's audits really have, while the chart
    keeps its weights for p₀ — the chart of a baseline *estimated* as p₀ watching a process whose
    rate is unknown (drawn from the baseline's posterior by the caller). None: every run at p₀."""
    if n < 1:
        return np.zeros(simulations)
    _check_rate(p0)
    w1, w0 = llr_weights(p0, odds_ratio)
    rates = np.full(simulations, p0) if true_rates is None else np.clip(np.asarray(true_rates, float), 1e-12, 1.0)
    top = float(rates.max())
    k = int(min(n, math.ceil(n * top + 8 * math.sqrt(n * top * (1 - top)) + 10)))
    out = np.empty(simulations)
    block = max(1, SIMULATION_CELLS // k)
    for start in range(0, simulations, block):
        rows = min(block, simulations - start)
        gaps = rng.geometric(rates[start:start + rows, None], size=(rows, k)) - 1  # correct audits before each error
        inside = np.cumsum(gaps + 1, axis=1) <= n  # the error falls within the n audits
        steps = w1 + gaps * w0  # w0 < 0
        steps[:, 0] = 0.0
        c = np.cumsum(steps, axis=1)
        u = c - np.minimum.accumulate(c, axis=1)
        peak = np.where(inside, u, -np.inf).max(axis=1) + w1
        out[start:start + rows] = np.where(inside[:, 0], peak, 0.0)
    return out


SIMULATION_CONFIDENCE = 0.90
"""Confidence that a threshold's false-alarm probability is ≤ α despite the simulation's own error."""


def threshold(n: int, p0: float, odds_ratio: float, alpha: float, simulations: int,
              rng: np.random.Generator, true_rates: np.ndarray | None = None) -> float:
    """h such that a chart over n in-control audits exceeds it with probability ≤ alpha, with
    `SIMULATION_CONFIDENCE` despite the simulation's error: of m simulated maxima, h leaves above it
    j runs, j the 10 % quantile of Binomial(m, alpha) — the count a threshold whose exceedance
    probability were alpha would leave above it at least 90 % of the time (at α = 0.001 and 10,000
    runs, j = 6 instead of the 10 of the plain quantile). `true_rates`: see `null_maxima`."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    maxima = np.sort(null_maxima(n, p0, odds_ratio, simulations, rng, true_rates))[::-1]
    above = int(binom.ppf(1 - SIMULATION_CONFIDENCE, simulations, alpha))
    return float(maxima[min(above, simulations - 1)])


def sidak_level(family_alpha: float, segments: int) -> float:
    """The per-segment false-alarm probability that keeps the chance of any false alarm among
    `segments` charts ≤ family_alpha: 1 − (1 − family_alpha)^(1/segments).

    Exact for independent charts; conservative for charts that are non-decreasing functions of the
    same independent audits (a site's chart and its site × queue charts): such statistics are
    associated (Esary, Proschan & Walkup 1967), so P(no chart signals) ≥ Π P(chart s does not)."""
    if segments < 1:
        return family_alpha
    return 1 - (1 - family_alpha) ** (1 / segments)


def first_exceedance(path: np.ndarray, h: float) -> int | None:
    """Index of the first Sₜ above h, or None."""
    above = np.flatnonzero(path > h)
    return int(above[0]) if len(above) else None


def _check_rate(p0: float) -> None:
    if not 0 < p0 < 1:
        raise ValueError(f"the in-control error rate must be in (0, 1), got {p0}")
