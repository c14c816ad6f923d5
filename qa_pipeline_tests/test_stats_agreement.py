"""Agreement statistics against published values and a brute-force pairwise reference."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from qa_pipeline.stats.agreement import (
    agreement,
    count_matrix,
    fleiss_kappa,
    gwet_ac1,
    krippendorff_alpha,
    percent_agreement,
)

# Fleiss (1971) as reproduced in most references: 10 subjects, 14 raters, 5 categories.
FLEISS_1971 = np.array([
    [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
])

# Krippendorff (2011), "Computing Krippendorff's alpha-reliability", 4 coders × 12 units, missing data.
K2011 = {
    "A": [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    "B": [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    "C": [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    "D": [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
}


def _long(wide: dict) -> pd.DataFrame:
    rows = [(f"u{i + 1:02d}", rater, v) for rater, values in wide.items()
            for i, v in enumerate(values) if v is not None]
    return pd.DataFrame(rows, columns=["case_id", "rater_id", "value"])


def test_fleiss_1971_worked_example():
    assert fleiss_kappa(FLEISS_1971) == pytest.approx(0.210, abs=5e-4)
    assert percent_agreement(FLEISS_1971) == pytest.approx(0.378, abs=5e-4)


def test_krippendorff_2011_example_with_missing_data():
    ratings = _long(K2011)
    counts, _ = count_matrix(ratings)
    assert krippendorff_alpha(ratings) == pytest.approx(0.743, abs=5e-4)
    # the same data in Gwet's irrCAC: fleiss.kappa.raw, gwet.ac1.raw, pa
    assert fleiss_kappa(counts) == pytest.approx(0.76117, abs=5e-6)
    assert gwet_ac1(counts) == pytest.approx(0.77544, abs=5e-6)
    assert percent_agreement(counts) == pytest.approx(0.81818, abs=5e-6)


def _reference(ratings: pd.DataFrame) -> tuple[float, float, float]:
    """Pairwise definitions, loops only: percent agreement, Fleiss (Gwet form), AC1."""
    by_case = ratings.groupby("case_id")["value"].apply(list).to_dict()
    cats = sorted(ratings["value"].unique())
    agree = []
    for values in by_case.values():
        if len(values) < 2:
            continue
        pairs = list(itertools.permutations(range(len(values)), 2))
        agree.append(sum(values[a] == values[b] for a, b in pairs) / len(pairs))
    pa = sum(agree) / len(agree)
    pi = {c: sum(vals.count(c) / len(vals) for vals in by_case.values()) / len(by_case) for c in cats}
    pe_f = sum(p * p for p in pi.values())
    pe_g = sum(p * (1 - p) for p in pi.values()) / (len(cats) - 1)
    return pa, (pa - pe_f) / (1 - pe_f), (pa - pe_g) / (1 - pe_g)


@pytest.mark.parametrize("missing", [0.0, 0.3])
@pytest.mark.parametrize("seed", range(5))
def test_own_implementations_match_a_pairwise_reference(seed, missing):
    rng = np.random.default_rng(seed)
    cases, raters = 25, 6
    truth = rng.integers(0, 4, cases)
    rows = []
    for c in range(cases):
        for r in range(raters):
            if rng.random() < missing:
                continue
            v = truth[c] if rng.random() < 0.7 else rng.integers(0, 4)
            rows.append((f"c{c}", f"r{r}", int(v)))
    ratings = pd.DataFrame(rows, columns=["case_id", "rater_id", "value"])
    counts, _ = count_matrix(ratings)
    pa, kappa, ac1 = _reference(ratings)
    assert percent_agreement(counts) == pytest.approx(pa, abs=1e-12)
    assert fleiss_kappa(counts) == pytest.approx(kappa, abs=1e-12)
    assert gwet_ac1(counts) == pytest.approx(ac1, abs=1e-12)


def test_on_complete_data_the_generalised_form_is_fleiss_1971():
    from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss

    rng = np.random.default_rng(9)
    counts = rng.multinomial(7, [0.5, 0.3, 0.2], size=30)
    assert fleiss_kappa(counts) == pytest.approx(sm_fleiss(counts, method="fleiss"), abs=1e-12)


def test_degenerate_sessions_are_defined_and_say_why():
    one_rater = pd.DataFrame({"case_id": ["a", "b"], "rater_id": ["r1", "r1"], "value": ["x", "y"]})
    res = agreement(one_rater)
    assert np.isnan(res.fleiss_kappa) and "fewer than two raters" in res.note
    all_same = pd.DataFrame({"case_id": ["a", "a", "b", "b"], "rater_id": ["r1", "r2"] * 2, "value": ["x"] * 4})
    res = agreement(all_same)
    assert res.percent_agreement == 1.0
    assert np.isnan(res.gwet_ac1) and "single category" in res.note
    full = agreement(_long(K2011))
    assert full.note == "" and full.raters == 4 and full.cases == 12
