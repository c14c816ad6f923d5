"""Wilson intervals against Newcombe (1998), Table I, and an independent closed form."""

import numpy as np
import pytest

from qa_pipeline.stats.proportions import safe_rate, wilson_interval
from qa_pipeline_tests.conftest import wilson_closed_form


@pytest.mark.parametrize(("x", "n", "low", "high"), [
    (81, 263, 0.2553, 0.3662),   # Newcombe 1998, example (a)
    (15, 148, 0.0624, 0.1605),   # example (b)
    (0, 20, 0.0, 0.1611),        # example (c)
    (1, 29, 0.0061, 0.1718),     # example (d)
])
def test_wilson_matches_newcombe_1998(x, n, low, high):
    lo, hi = wilson_interval([x], [n])
    assert lo[0] == pytest.approx(low, abs=5e-5)
    assert hi[0] == pytest.approx(high, abs=5e-5)


def test_wilson_agrees_with_the_closed_form_on_random_inputs():
    rng = np.random.default_rng(3)
    n = rng.integers(1, 5000, 200)
    x = rng.integers(0, n + 1)
    lo, hi = wilson_interval(x, n)
    expected = np.array([wilson_closed_form(a, b) for a, b in zip(x, n, strict=True)])
    np.testing.assert_allclose(lo, expected[:, 0], atol=1e-12)
    np.testing.assert_allclose(hi, expected[:, 1], atol=1e-12)


def test_no_audits_gives_no_interval_and_no_rate():
    lo, hi = wilson_interval([0], [0])
    assert np.isnan(lo[0]) and np.isnan(hi[0])
    assert np.isnan(safe_rate([0], [0])[0])


def test_wilson_bounds_are_exact_at_the_edges():
    lo, hi = wilson_interval([0, 7], [7, 7])
    assert lo[0] == 0.0 and hi[1] == 1.0
    assert hi[0] < 1.0 and lo[1] > 0.0
