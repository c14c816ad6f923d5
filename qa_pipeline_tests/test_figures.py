"""Figures of domain/ checked against computations written independently here: the raw files
read with the csv module, formulas written out, scipy on hand-listed values."""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from datetime import date

import ibis
import pandas as pd
import pytest
from scipy import stats

from qa_pipeline.domain.calibration import rater_scores
from qa_pipeline.domain.experiments import experiment_readout
from qa_pipeline.domain.metrics import moderator_counts, moderator_quality
from qa_pipeline.domain.themes import comment_themes
from qa_pipeline.refdata import HATECHECK, hatecheck_sessions
from qa_pipeline_tests.conftest import wilson_closed_form

MONTH = "2026-02"


def _raw_audits(raw_dir, month):
    """The month's valid audits from the raw CSVs, with the latest dispute of each (csv module)."""
    manifest = json.loads((raw_dir / ".sample.json").read_text())
    corrupted = {p["audit_id"] for p in manifest["bad_rows"][month] if p["defect"] != "duplicate_audit_id"}
    latest = {}
    for path in sorted((raw_dir / "disputes").glob("*/*.csv")):
        with path.open(newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                if row["audit_id"] not in latest or row["resolved_at"] > latest[row["audit_id"]]["resolved_at"]:
                    latest[row["audit_id"]] = row
    seen, rows = set(), []
    for path in sorted((raw_dir / "audits" / month).glob("*.csv")):
        with path.open(newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                if row["audit_id"] in corrupted or row["audit_id"] in seen:
                    continue
                seen.add(row["audit_id"])
                row["dispute"] = latest.get(row["audit_id"])
                rows.append(row)
    return rows


def test_enforcement_rates_and_weighted_accuracy_match_the_raw_csv(pipeline, sample_raw):
    assert pipeline.run(MONTH).success
    qm = pipeline.table("qa_reporting.quality_metrics").set_index(["dimension", "segment"])
    sums = defaultdict(float)
    for r in _raw_audits(sample_raw, MONTH):
        overturned = r["dispute"] is not None and r["dispute"]["outcome"] == "overturned"
        error = (r["action_moderator"] != r["action_auditor"] or r["policy_moderator"] != r["policy_auditor"]) \
            and not overturned
        mod_enf = r["action_moderator"] != "approve"
        truth_enf = mod_enf if overturned else r["action_auditor"] != "approve"
        w = float(r["sampling_weight"] or 1.0)
        sums["n"] += 1
        sums["w"] += w
        sums["we"] += w * error
        sums["critical"] += error and r["error_severity"] == "critical"
        sums["over"] += error and r["action_auditor"] == "approve" and mod_enf
        sums["under"] += error and r["action_moderator"] == "approve" and r["action_auditor"] != "approve"
        sums["mod_enf"] += mod_enf
        sums["truth_enf"] += truth_enf
        sums["both"] += mod_enf and truth_enf
    got = qm.loc[("overall", "all")]
    assert got.weighted_accuracy == pytest.approx(1 - sums["we"] / sums["w"], abs=1e-12)
    assert got.critical_error_rate == pytest.approx(sums["critical"] / sums["n"], abs=1e-12)
    assert got.over_enforcement_rate == pytest.approx(sums["over"] / sums["n"], abs=1e-12)
    assert got.under_enforcement_rate == pytest.approx(sums["under"] / sums["n"], abs=1e-12)
    assert got.precision == pytest.approx(sums["both"] / sums["mod_enf"], abs=1e-12)
    assert got.recall == pytest.approx(sums["both"] / sums["truth_enf"], abs=1e-12)


def test_dispute_metrics_match_the_raw_dispute_files(pipeline, sample_raw):
    assert pipeline.run(MONTH).success
    row = pipeline.table("qa_reporting.dispute_metrics").query("dimension == 'overall'").iloc[0]
    audits = _raw_audits(sample_raw, MONTH)
    disputed = [a for a in audits if a["dispute"] is not None]
    overturned = [a for a in disputed if a["dispute"]["outcome"] == "overturned"]
    restated = [a for a in overturned if a["dispute"]["resolved_at"] >= "2026-03-01"]
    assert (row.audits, row.disputed, row.overturned, row.restated_audits) == (
        len(audits), len(disputed), len(overturned), len(restated))
    assert row.dispute_rate == pytest.approx(len(disputed) / len(audits), abs=1e-12)
    assert row.overturn_rate == pytest.approx(len(overturned) / len(disputed), abs=1e-12)


def test_each_hatecheck_annotator_accuracy_against_gold_matches_the_source_file():
    ratings, gold = hatecheck_sessions(date(2026, 6, 1))
    scores = rater_scores(ratings, gold, date(2026, 6, 1), 0.8).set_index(["session_id", "rater_id"])
    right, total = defaultdict(int), defaultdict(int)
    with open(HATECHECK, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            for k in range(1, 11):
                label = row[f"label_{k}"]
                if label:
                    key = (f"HC-{row['functionality']}", f"hatecheck_annotator_{k}")
                    total[key] += 1
                    right[key] += label == row["label_gold"]
    assert len(scores) == len(total)
    for key, n in total.items():
        assert scores.loc[key, "cases_rated"] == n
        assert scores.loc[key, "accuracy_vs_gold"] == pytest.approx(right[key] / n, abs=1e-12)


def test_comment_theme_z_scores_follow_monroe_et_al():
    comments = ["scrubber"] * 12 + ["widget"] * 3 + ["scrubber"] + ["widget"] * 6 + ["lovely"] * 10
    errors = [True] * 15 + [False] * 17
    audits = pd.DataFrame({"auditor_comment": comments, "is_error_final": errors, "queue": "q1",
                           "root_cause": [None] * 32,  # every comment by another auditor about another moderator
                           "auditor_id": [f"AUD-{i}" for i in range(32)], "moderator_id": [f"MOD-{i}" for i in range(32)]})
    themes = comment_themes(audits, date(2026, 1, 1))
    overall = themes[themes.scope == "overall"].set_index("term")
    # Monroe, Colaresi & Quinn (2008), eq. 16-22, with α_w = 0.01 × the term's count
    totals = {"scrubber": 13, "widget": 9, "lovely": 10}
    a0, n_i, n_j = 0.01 * sum(totals.values()), 15, 17
    a = 0.01 * totals["scrubber"]
    delta = math.log((12 + a) / (n_i + a0 - 12 - a)) - math.log((1 + a) / (n_j + a0 - 1 - a))
    z = delta / math.sqrt(1 / (12 + a) + 1 / (1 + a))
    assert list(overall.index) == ["scrubber"]  # widget is not distinctive (z < 0), lovely never in errors
    assert overall.loc["scrubber", "z_score"] == pytest.approx(z, abs=1e-12)
    assert overall.loc["scrubber", "share"] == pytest.approx(12 / 15, abs=1e-12)


def _audits(rows: list[tuple[str, int, int]], day: str = "2026-03-05") -> pd.DataFrame:
    """(moderator, audits, errors) → audit rows."""
    out = []
    for mod, n, e in rows:
        for i in range(n):
            out.append({"moderator_id": mod, "is_error_final": i < e, "is_error": i < e, "is_critical": False,
                        "dispute_outcome": None, "action_moderator": "remove", "action_auditor": "approve" if i < e else "remove",
                        "error_type": "over_enforcement" if i < e else "correct", "sampling_weight": 1.0,
                        "handle_time_s": 30.0, "site": "S", "team_type": "bpo", "tenure_band": "366+",
                        "decision_at": pd.Timestamp(day, tz="UTC")})
    return pd.DataFrame(out)


def test_moderators_below_target_need_the_whole_interval_below_and_enough_audits():
    audits = ibis.memtable(_audits([("M1", 25, 5), ("M2", 5, 2), ("M3", 40, 1)]))
    mq = moderator_quality(moderator_counts(audits).to_pyarrow().to_pandas(), date(2026, 3, 1), 0.95, 20)
    mq = mq.set_index("moderator_id")
    low, high = wilson_closed_form(20, 25)
    assert mq.loc["M1", "accuracy"] == pytest.approx(0.8, abs=1e-12)
    assert (mq.loc["M1", "accuracy_ci_low"], mq.loc["M1", "accuracy_ci_high"]) == pytest.approx((low, high), abs=1e-12)
    assert high < 0.95 and mq.loc["M1", "below_target"]
    assert not mq.loc["M2", "below_target"]  # 60 % accuracy, but only 5 audits
    assert not mq.loc["M3", "below_target"]  # 97.5 %


def test_experiment_units_are_moderators_and_welch_is_run_on_their_accuracy():
    control = [("C1", 10, 2), ("C2", 20, 3), ("C3", 8, 2)]
    treatment = [("T1", 10, 1), ("T2", 16, 1), ("T3", 12, 0)]
    audits = _audits(control + treatment)
    outside = _audits([("T1", 50, 50)], day="2026-05-20")  # after the window: not counted
    experiments = pd.DataFrame({"experiment_id": ["E"], "name": ["n"], "start_date": [pd.Timestamp("2026-03-01")],
                                "end_date": [pd.Timestamp("2026-03-31")], "primary_metric": ["accuracy"],
                                "treatment_share": [0.5]})
    arms = pd.DataFrame({"experiment_id": "E", "moderator_id": [m for m, _, _ in control + treatment],
                         "arm": ["control"] * 3 + ["treatment"] * 3})
    row = experiment_readout(ibis.memtable(pd.concat([audits, outside])), experiments, arms, {date(2026, 3, 1)}).iloc[0]
    c = [1 - e / n for _, n, e in control]
    t = [1 - e / n for _, n, e in treatment]
    expected = stats.ttest_ind(t, c, equal_var=False)
    assert (row.n_control, row.n_treatment) == (3, 3)
    assert row["diff"] == pytest.approx(sum(t) / 3 - sum(c) / 3, abs=1e-12)
    assert row.p_value == pytest.approx(expected.pvalue, abs=1e-12)
    assert row.relative_lift == pytest.approx(row["diff"] / (sum(c) / 3), abs=1e-12)
    assert row.status == "complete"
