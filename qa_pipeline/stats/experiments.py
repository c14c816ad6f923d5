"""Experiment statistics: Welch's test, sample-ratio mismatch, minimum detectable effect (scipy,
statsmodels)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats
from statsmodels.stats.power import TTestIndPower


@dataclass(frozen=True)
class Welch:
    mean_control: float
    mean_treatment: float
    diff: float
    ci_low: float
    ci_high: float
    p_value: float


def welch(control, treatment, alpha: float = 0.05) -> Welch:
    """Difference of means (treatment − control), Welch's t-test and its 1−alpha interval."""
    c = np.asarray(control, dtype=float)
    t = np.asarray(treatment, dtype=float)
    if len(c) < 2 or len(t) < 2:
        nan = float("nan")
        return Welch(float(c.mean()) if len(c) else nan, float(t.mean()) if len(t) else nan, nan, nan, nan, nan)
    res = stats.ttest_ind(t, c, equal_var=False)
    ci = res.confidence_interval(confidence_level=1 - alpha)
    return Welch(float(c.mean()), float(t.mean()), float(t.mean() - c.mean()),
                 float(ci.low), float(ci.high), float(res.pvalue))


def srm_p_value(n_control: int, n_treatment: int, treatment_share: float) -> float:
    """Chi-square goodness of fit of the assigned counts against the planned split."""
    total = n_control + n_treatment
    if total == 0 or not 0 < treatment_share < 1:
        return float("nan")
    expected = [total * (1 - treatment_share), total * treatment_share]
    return float(stats.chisquare([n_control, n_treatment], f_exp=expected).pvalue)


def minimum_detectable_effect(n_control: int, n_treatment: int, sd: float,
                              alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest difference of means detectable with this power (two-sided t-test), in the
    metric's units: the standardised effect from statsmodels times the pooled SD."""
    if n_control < 2 or n_treatment < 2 or not np.isfinite(sd):
        return float("nan")
    d = TTestIndPower().solve_power(effect_size=None, nobs1=n_control, alpha=alpha, power=power,
                                    ratio=n_treatment / n_control, alternative="two-sided")
    return float(d * sd)
