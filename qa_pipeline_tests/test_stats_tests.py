"""Tests, intervals, FDR, power and sample size against published values and closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from qa_pipeline.stats.experiments import minimum_detectable_effect, srm_p_value, welch
from qa_pipeline.stats.proportions import (
    benjamini_hochberg,
    newcombe_difference,
    two_proportion_ztest,
)
from qa_pipeline.stats.sampling import sample_size


def test_newcombe_1998_difference_interval():
    # Newcombe (1998b), Table II, example (a): 56/70 − 48/80
    low, high = newcombe_difference(56, 70, 48, 80)
    assert low == pytest.approx(0.0524, abs=5e-5)
    assert high == pytest.approx(0.3339, abs=5e-5)


def test_pooled_z_test_matches_the_closed_form():
    x1, n1, x0, n0 = 56, 70, 48, 80
    p = (x1 + x0) / (n1 + n0)
    z = (x1 / n1 - x0 / n0) / math.sqrt(p * (1 - p) * (1 / n1 + 1 / n0))
    got_z, got_p = two_proportion_ztest(x1, n1, x0, n0)
    assert got_z == pytest.approx(z, abs=1e-12)
    assert got_p == pytest.approx(2 * stats.norm.sf(abs(z)), abs=1e-12)
    assert two_proportion_ztest(0, 50, 0, 60) == (0.0, 1.0)
    assert all(math.isnan(v) for v in two_proportion_ztest(3, 0, 1, 10))


def test_benjamini_hochberg_1995_example():
    # Benjamini & Hochberg (1995), section 4: 15 p-values, q = 0.05 rejects the four smallest
    p = [0.0001, 0.0004, 0.0019, 0.0095, 0.0201, 0.0278, 0.0298, 0.0344, 0.0459, 0.3240,
         0.4262, 0.5719, 0.6528, 0.7590, 1.000]
    q = benjamini_hochberg(p)
    assert list(np.flatnonzero(q < 0.05)) == [0, 1, 2, 3]
    # q_i = min over j ≥ i of p_j · m / j, written out
    m = len(p)
    expected = [min(p[j] * m / (j + 1) for j in range(i, m)) for i in range(m)]
    np.testing.assert_allclose(q, np.minimum(expected, 1.0), atol=1e-12)


def test_benjamini_hochberg_ignores_untested_segments():
    q = benjamini_hochberg([0.01, float("nan"), 0.02])
    assert math.isnan(q[1])
    np.testing.assert_allclose(q[[0, 2]], [0.02, 0.02])


def test_welch_on_rs_sleep_data():
    # R: t.test(extra ~ group, data = sleep): t = -1.8608, df = 17.776, p = 0.07939,
    # 95 % CI of mean(group1) − mean(group2): -3.3654832 0.2054832
    g1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
    g2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]
    res = welch(control=g2, treatment=g1)
    assert res.diff == pytest.approx(-1.58, abs=1e-12)
    assert res.p_value == pytest.approx(0.07939, abs=5e-6)
    assert res.ci_low == pytest.approx(-3.3654832, abs=5e-7)
    assert res.ci_high == pytest.approx(0.2054832, abs=5e-7)


def test_srm_matches_the_chi_square_formula():
    nc, nt, share = 520, 480, 0.5
    e = (nc + nt) / 2
    chi2 = (nc - e) ** 2 / e + (nt - e) ** 2 / e
    assert srm_p_value(nc, nt, share) == pytest.approx(stats.chi2.sf(chi2, 1), abs=1e-12)
    assert srm_p_value(320, 680, 0.5) < 1e-20


def test_mde_has_80_percent_power_by_the_noncentral_t():
    n, sd = 100, 2.0
    mde = minimum_detectable_effect(n, n, sd)
    assert mde / sd == pytest.approx(0.3981, abs=5e-4)  # Cohen's tables: d ≈ 0.40 at n = 100 per group
    df = 2 * n - 2
    nc = (mde / sd) * math.sqrt(n / 2)
    crit = stats.t.ppf(0.975, df)
    power = stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc)
    assert power == pytest.approx(0.80, abs=1e-4)  # the solver stops at its own tolerance


def test_sample_size_classic_values():
    assert sample_size(0.5, 0.05) == 385            # Cochran: z²·0.25 / 0.05²
    assert sample_size(0.5, 0.05, population=1000) == 278
    assert sample_size(0.05, 0.02) == 457
    assert sample_size(0.0, 0.02) == 0
    with pytest.raises(ValueError):
        sample_size(0.1, 0)
