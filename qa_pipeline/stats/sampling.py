"""Sample size for a proportion with a target margin, with the finite-population correction."""

from __future__ import annotations

import math

from scipy.stats import norm


def sample_size(p: float, margin: float, confidence: float = 0.95, population: float | None = None) -> int:
    """Audits needed for a ±margin interval on a proportion near p.

    n0 = z² p (1 − p) / E²; with a known population N, n = n0 / (1 + (n0 − 1) / N)
    (Cochran, *Sampling Techniques*, 3rd ed., eq. 4.2 and 4.3). Rounded up.
    """
    if not 0 < margin < 1:
        raise ValueError(f"margin must be in (0, 1), got {margin}")
    if not 0 <= p <= 1:
        raise ValueError(f"p must be in [0, 1], got {p}")
    z = norm.ppf(1 - (1 - confidence) / 2)
    n0 = z * z * p * (1 - p) / (margin * margin)
    if population is not None and population > 0:
        n0 = n0 / (1 + (n0 - 1) / population) if n0 > 1 else n0
    return int(math.ceil(n0 - 1e-9))
