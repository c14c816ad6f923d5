"""Inter-rater agreement on nominal labels with missing ratings.

Krippendorff's alpha comes from the `krippendorff` package. Percent agreement, Fleiss' kappa in
Gwet's generalisation to a varying number of raters per case, and Gwet's AC1 are written here
(irrCAC implements them but requires pandas < 3), following Gwet, *Handbook of Inter-Rater
Reliability* (4th ed., 2014), ch. 2 and 4:

    r_ik  raters who put case i in category k,   r_i = Σ_k r_ik
    p_a   = mean over cases with r_i ≥ 2 of Σ_k r_ik (r_ik − 1) / (r_i (r_i − 1))
    π_k   = mean over cases with r_i ≥ 1 of r_ik / r_i
    Fleiss: p_e = Σ_k π_k²                   κ = (p_a − p_e) / (1 − p_e)
    AC1:    p_e = Σ_k π_k (1 − π_k) / (q − 1)   AC1 = (p_a − p_e) / (1 − p_e)

On complete data the Fleiss formula is Fleiss (1971).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Agreement:
    raters: int
    cases: int
    percent_agreement: float
    fleiss_kappa: float
    krippendorff_alpha: float
    gwet_ac1: float
    note: str = ""


def count_matrix(ratings: pd.DataFrame, case: str = "case_id", rater: str = "rater_id",
                 value: str = "value") -> tuple[np.ndarray, list]:
    """Cases × categories counts from long ratings (one row per case and rater)."""
    table = pd.crosstab(ratings[case], ratings[value])
    return table.to_numpy(dtype=float), list(table.columns)


def percent_agreement(counts: np.ndarray) -> float:
    counts = np.asarray(counts, dtype=float)
    r = counts.sum(axis=1)
    pairs = r >= 2
    if not pairs.any():
        return float("nan")
    per_case = (counts[pairs] * (counts[pairs] - 1)).sum(axis=1) / (r[pairs] * (r[pairs] - 1))
    return float(per_case.mean())


def _category_shares(counts: np.ndarray) -> np.ndarray:
    r = counts.sum(axis=1)
    rated = r >= 1
    return (counts[rated] / r[rated, None]).mean(axis=0)


def fleiss_kappa(counts: np.ndarray) -> float:
    counts = np.asarray(counts, dtype=float)
    pa = percent_agreement(counts)
    pi = _category_shares(counts)
    pe = float((pi ** 2).sum())
    if np.isnan(pa) or np.isclose(pe, 1.0):
        return float("nan")
    return (pa - pe) / (1 - pe)


def gwet_ac1(counts: np.ndarray) -> float:
    counts = np.asarray(counts, dtype=float)
    q = counts.shape[1]
    pa = percent_agreement(counts)
    if np.isnan(pa) or q < 2:
        return float("nan")
    pi = _category_shares(counts)
    pe = float((pi * (1 - pi)).sum() / (q - 1))
    return (pa - pe) / (1 - pe)


def krippendorff_alpha(ratings: pd.DataFrame, case: str = "case_id", rater: str = "rater_id",
                       value: str = "value") -> float:
    """Nominal alpha with missing data (the `krippendorff` package)."""
    import krippendorff

    codes, _ = pd.factorize(ratings[value])
    wide = pd.DataFrame({"r": ratings[rater].to_numpy(), "c": ratings[case].to_numpy(), "v": codes})
    matrix = wide.pivot_table(index="r", columns="c", values="v", aggfunc="first").to_numpy(dtype=float)
    if len(np.unique(codes)) < 2:
        return float("nan")
    return float(krippendorff.alpha(reliability_data=matrix, level_of_measurement="nominal"))


def agreement(ratings: pd.DataFrame, case: str = "case_id", rater: str = "rater_id",
              value: str = "value") -> Agreement:
    """Every statistic for one session and label; undefined values are NaN with a `note` saying why."""
    ratings = ratings.dropna(subset=[value])
    counts, categories = count_matrix(ratings, case, rater, value)
    raters = int(ratings[rater].nunique())
    cases = int(ratings[case].nunique())
    pa = percent_agreement(counts) if len(counts) else float("nan")
    note = ""
    if raters < 2 or np.isnan(pa):
        note = "fewer than two raters on every case: agreement undefined"
        return Agreement(raters, cases, float("nan"), float("nan"), float("nan"), float("nan"), note)
    if len(categories) < 2:
        note = "a single category was used: chance-corrected agreement undefined"
        return Agreement(raters, cases, pa, float("nan"), float("nan"), float("nan"), note)
    return Agreement(raters, cases, pa, fleiss_kappa(counts),
                     krippendorff_alpha(ratings, case, rater, value), gwet_ac1(counts), note)
