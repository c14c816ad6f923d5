"""A rate measured through an imperfect classifier, corrected for its misclassification.

Here the classifier is the audit process: its verdict (error or not) on a decision is compared with
an expert's blind re-review of a random sample of the audited decisions, taken as the truth. From
that sample come the audit process's sensitivity (P(flagged | truly an error)) and specificity
(P(passed | truly correct)); the error rate observed over all audits is then corrected.

- `rogan_gladen`: the corrected rate (Rogan & Gladen 1978, Am J Epidemiol 107:71–76):
  (observed + specificity − 1) / (sensitivity + specificity − 1).
- `lang_reiczigel_interval`: its confidence interval when sensitivity and specificity are themselves
  estimated from samples (Lang & Reiczigel 2014, Prev Vet Med 113:13–22): the Rogan–Gladen variance
  with the uncertainty of both estimates, made usable at small samples by the Agresti–Coull idea
  (z²/2 positives and z²/2 negatives added to the observed sample, one positive and one negative to
  each validation sample, and a shift of the centre, their eq. 16–17). Equation 4 of the paper has a
  misprint, (1 + P)²; the variance is (1 − P)² · Sp(1 − Sp)/n_Sp (as in its derivation and in the
  reference implementation, R package asht, `prevSeSp`).

Everything is vectorised over segments (numpy arrays in, arrays out); an undefined value is NaN.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm


def _z(confidence: float) -> float:
    return float(norm.ppf(1.0 - (1.0 - confidence) / 2.0))


def rogan_gladen(observed, sensitivity, specificity) -> np.ndarray:
    """The rate corrected for the classifier's sensitivity and specificity, unclipped (it falls
    outside [0, 1] when the observed rate is below the false-positive rate 1 − specificity or above
    the sensitivity); NaN where sensitivity + specificity ≤ 1 (the classifier is no better than
    chance: the rate cannot be recovered)."""
    observed = np.asarray(observed, dtype=float)
    se = np.asarray(sensitivity, dtype=float)
    sp = np.asarray(specificity, dtype=float)
    youden = se + sp - 1.0
    out = np.full(np.broadcast(observed, se, sp).shape, np.nan)
    np.divide(observed + sp - 1.0, youden, out=out, where=youden > 0)
    return out


def lang_reiczigel_interval(positives, n, true_positives, n_truly_positive, true_negatives, n_truly_negative,
                            confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Confidence interval of the corrected rate, clipped to [0, 1].

    `positives` of `n` classified positive (the observed errors among the audits); sensitivity
    estimated as `true_positives / n_truly_positive` (flagged among the re-audited decisions that
    are truly errors), specificity as `true_negatives / n_truly_negative` (passed among those truly
    correct). NaN where a sample is empty or the adjusted sensitivity + specificity ≤ 1.
    """
    z = _z(confidence)
    x = np.asarray(positives, dtype=float)
    n = np.asarray(n, dtype=float)
    tp = np.asarray(true_positives, dtype=float)
    n_se = np.asarray(n_truly_positive, dtype=float)
    tn = np.asarray(true_negatives, dtype=float)
    n_sp = np.asarray(n_truly_negative, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        n_se_adj, n_sp_adj = n_se + 2.0, n_sp + 2.0
        se_adj = (tp + 1.0) / n_se_adj
        sp_adj = (tn + 1.0) / n_sp_adj
        n_adj = n + z * z
        ap_adj = (x + z * z / 2.0) / n_adj
        youden = se_adj + sp_adj - 1.0
        p_adj = (ap_adj + sp_adj - 1.0) / youden
        shift = 2.0 * z * z * (p_adj * se_adj * (1.0 - se_adj) / n_se_adj
                               - (1.0 - p_adj) * sp_adj * (1.0 - sp_adj) / n_sp_adj)
        variance = (ap_adj * (1.0 - ap_adj) / n_adj
                    + p_adj ** 2 * se_adj * (1.0 - se_adj) / n_se_adj
                    + (1.0 - p_adj) ** 2 * sp_adj * (1.0 - sp_adj) / n_sp_adj) / youden ** 2
        half = z * np.sqrt(variance)
        low = np.clip(p_adj + shift - half, 0.0, 1.0)
        high = np.clip(p_adj + shift + half, 0.0, 1.0)
    undefined = (n <= 0) | (n_se <= 0) | (n_sp <= 0) | ~(youden > 0)
    return np.where(undefined, np.nan, low), np.where(undefined, np.nan, high)


def homogeneity_p_value(segment, outcome, resamples: int = 99_999, seed: int = 20261204) -> float:
    """p-value of the test that `outcome` (booleans: e.g. flagged among truly correct decisions) has
    the same rate in every `segment`: Pearson's χ² statistic of the segment × outcome table, its null
    distribution that of permuting the outcomes over the decisions — exact in the small and sparse
    tables of a month's re-audits, where χ²'s asymptotics fail. A permutation keeps the segments'
    sizes and the number of positive outcomes, so the positives per segment it gives are one draw of
    the multivariate hypergeometric distribution (numpy's `multivariate_hypergeometric`): drawn
    directly, a resampled table costs its segments, not its decisions (permuting 50,000 re-audits
    1,999 times took gigabytes), so enough tables are drawn that the p-value's own Monte Carlo error
    (±0.0007 near 0.05) cannot flip a decision at the usual levels. p = (1 + #{χ²* ≥ χ²}) /
    (1 + resamples), as a randomised permutation test (scipy's `permutation_test` gives the same
    distribution, checked in the tests). 1.0 when there is nothing to compare (one segment, or one
    outcome only)."""
    codes, segments = np.unique(np.asarray(segment, dtype=str), return_inverse=True)
    y = np.asarray(outcome, dtype=bool)
    if len(codes) < 2 or y.all() or not y.any():
        return 1.0
    sizes = np.bincount(segments, minlength=len(codes))
    positives = np.bincount(segments, weights=y, minlength=len(codes))
    n, f = sizes.sum(), positives.sum()
    e1, e0 = sizes * f / n, sizes * (n - f) / n

    def chi2(f_k: np.ndarray) -> np.ndarray:  # Pearson's statistic of tables with these margins
        return ((f_k - e1) ** 2 / e1 + (sizes - f_k - e0) ** 2 / e0).sum(axis=-1)

    draws = np.random.default_rng(seed).multivariate_hypergeometric(sizes, int(f), size=resamples)
    exceed = chi2(draws.astype(float)) >= chi2(positives) * (1 - 1e-12)  # ties count, as in scipy
    return float((1 + exceed.sum()) / (1 + resamples))
