"""Calibration: real HateCheck labels through the normal raw path, and generated sessions."""

from __future__ import annotations

import csv
import itertools
from datetime import date

import pytest

from qa_pipeline.domain.calibration import calibration_agreement, rater_scores
from qa_pipeline.domain.validation import (
    CALIBRATION_GOLD,
    CALIBRATION_RATINGS,
    run_gate,
)
from qa_pipeline.refdata import HATECHECK, hatecheck_sessions
from qa_pipeline.resources.raw_store import RawStore

JUNE = date(2026, 6, 1)


@pytest.fixture(scope="module")
def hatecheck_raw(tmp_path_factory):
    raw = tmp_path_factory.mktemp("hc") / "raw"
    folder = raw / "calibration" / "2026-06"
    folder.mkdir(parents=True)
    ratings, gold = hatecheck_sessions(JUNE)
    ratings.to_csv(folder / "ratings_hatecheck.csv", index=False)
    gold.to_csv(folder / "gold_hatecheck.csv", index=False)
    store = RawStore(raw_dir=str(raw))
    r = run_gate(store.read_month("calibration", JUNE, "ratings"), CALIBRATION_RATINGS, JUNE)
    g = run_gate(store.read_month("calibration", JUNE, "gold"), CALIBRATION_GOLD, JUNE)
    return r, g


def _hatecheck_by_test():
    with open(HATECHECK, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    tests = {}
    for row in rows:
        labels = [row[f"label_{k}"] for k in range(1, 11) if row[f"label_{k}"]]
        tests.setdefault(row["functionality"], []).append((labels, row["label_gold"]))
    return tests


def test_hatecheck_loads_as_one_session_per_functional_test(hatecheck_raw):
    ratings, gold = hatecheck_raw
    assert ratings.quarantine.empty and gold.quarantine.empty
    assert ratings.clean.session_id.nunique() == 29
    assert len(gold.clean) == 3901
    assert len(ratings.clean) == 3901 * 5  # exactly five annotators per case


def test_hatecheck_agreement_matches_a_direct_count_from_the_source_file(hatecheck_raw):
    ratings, gold = hatecheck_raw
    table = calibration_agreement(ratings.clean, gold.clean, JUNE)
    action = table[table.label == "action"].set_index("session_id")
    for test, cases in _hatecheck_by_test().items():
        pairs = agree = right = total = 0
        for labels, gold_label in cases:
            for a, b in itertools.permutations(labels, 2):
                pairs += 1
                agree += a == b
            right += sum(v == gold_label for v in labels)
            total += len(labels)
        row = action.loc[f"HC-{test}"]
        # every case has 5 raters, so the mean per-case agreement is the pooled pair share
        assert row.percent_agreement == pytest.approx(agree / pairs, abs=1e-12), test
        assert row.gold_accuracy == pytest.approx(right / total, abs=1e-12), test
        assert row.raters == len({k for k in range(10)}) or row.raters <= 10


def test_hatecheck_shows_the_kappa_paradox_that_ac1_resolves(hatecheck_raw):
    ratings, gold = hatecheck_raw
    table = calibration_agreement(ratings.clean, gold.clean, JUNE)
    action = table[table.label == "action"]
    # high raw agreement on skewed sessions: kappa collapses, AC1 does not
    assert action.percent_agreement.median() > 0.95
    assert action.fleiss_kappa.median() < 0.2
    assert action.gwet_ac1.median() > 0.9


def test_weak_rater_is_flagged_on_generated_sessions(sample_raw):
    march = date(2026, 3, 1)
    store = RawStore(raw_dir=str(sample_raw))
    r = run_gate(store.read_month("calibration", march, "ratings"), CALIBRATION_RATINGS, march).clean
    g = run_gate(store.read_month("calibration", march, "gold"), CALIBRATION_GOLD, march).clean
    scores = rater_scores(r, g, march, min_gold_accuracy=0.8)
    by_rater = scores.groupby("rater_id").accuracy_vs_gold.mean()
    assert by_rater.idxmin() == "AUD-08"  # the generator's weak rater
    assert scores[scores.rater_id == "AUD-08"].below_threshold.all()
    agreement = calibration_agreement(r, g, march).set_index(["session_id", "label"])
    # misinformation sessions are planted as the hardest to agree on
    kappas = agreement.xs("action", level="label").fleiss_kappa
    assert kappas.idxmin().endswith("misinformation")
