"""Disputes: an overturned audit stops counting, and a restated month is recomputed."""

from __future__ import annotations

from datetime import UTC, date, datetime

import dagster as dg
import pandas as pd

from qa_pipeline.definitions import defs
from qa_pipeline_tests.conftest import enrich_frame, write_csv


def test_the_latest_dispute_decides(tmp_path):
    audits = pd.DataFrame({
        "audit_id": ["a", "b", "c"], "moderator_id": "M", "decision_at": pd.Timestamp("2026-03-01", tz="UTC"),
        "action_moderator": ["remove", "remove", "approve"], "action_auditor": ["approve", "approve", "approve"],
        "policy_moderator": ["HS.1", "HS.1", "NONE"], "policy_auditor": ["NONE", "NONE", "NONE"],
        "error_severity": ["minor", "major", "none"],
    })
    disputes = pd.DataFrame({
        "dispute_id": ["d1", "d2", "d3"], "audit_id": ["a", "a", "b"],
        "resolved_at": pd.to_datetime(["2026-03-05", "2026-03-09", "2026-03-07"], utc=True),
        "outcome": ["upheld", "overturned", "upheld"],
    })
    roster = pd.DataFrame({"moderator_id": ["M"], "hire_date": pd.to_datetime(["2025-01-01"], utc=True)})
    out = enrich_frame(audits, roster, date(2026, 3, 1), disputes).set_index("audit_id")
    assert out.is_error.tolist() == [True, True, False]
    assert out.is_error_final.tolist() == [False, True, False]
    assert out.dispute_outcome.tolist()[:2] == ["overturned", "upheld"]


def _tick(month_after: str):
    return datetime.fromisoformat(f"{month_after}-02T06:00:00").replace(tzinfo=UTC)


def test_a_late_overturn_restates_the_month(raw_copy, pipeline):
    pipeline.raw_dir = raw_copy
    assert pipeline.run("2026-01").success
    clean = pipeline.table("qa_core.audits_clean")
    target = clean[clean.is_error_final & clean.dispute_outcome.isna()].iloc[0]
    before = pipeline.table("qa_reporting.quality_metrics")
    before_overall = before[before.dimension == "overall"].iloc[0]
    restated_before = pipeline.table("qa_reporting.dispute_metrics").query("dimension == 'overall'").restated_audits.iloc[0]

    # a dispute resolved in March overturns one of January's audits
    write_csv(raw_copy / "disputes" / "2026-03" / "zz_late.csv", [{
        "dispute_id": "D-LATE", "audit_id": target.audit_id, "disputed_at": "2026-02-20T10:00:00Z",
        "resolved_at": "2026-03-03T10:00:00Z", "reason": "context shows satire", "outcome": "overturned"}])

    schedule = defs.resolve_schedule_def("monthly_quality_schedule")
    resources = pipeline.resources()
    with dg.build_schedule_context(scheduled_execution_time=_tick("2026-04"), resources=resources,
                                   repository_def=defs.get_repository_def()) as context:
        requests = schedule.evaluate_tick(context).run_requests
    keys = {r.partition_key: r.tags for r in requests}
    assert "2026-03-01" in keys
    assert keys["2026-01-01"]["qa/restatement"] == "true"

    assert pipeline.run("2026-01").success
    after = pipeline.table("qa_reporting.quality_metrics")
    after_overall = after[after.dimension == "overall"].iloc[0]
    assert after_overall.audits == before_overall.audits
    assert after_overall.errors == before_overall.errors - 1
    assert after_overall.accuracy == before_overall.accuracy + 1 / before_overall.audits
    restated = pipeline.table("qa_reporting.dispute_metrics").query("dimension == 'overall'").restated_audits.iloc[0]
    assert restated == restated_before + 1
    row = pipeline.table("qa_core.audits_clean").set_index("audit_id").loc[target.audit_id]
    assert (row.dispute_outcome, bool(row.is_error), bool(row.is_error_final)) == ("overturned", True, False)


def test_overturn_rates_point_at_the_drifting_auditor(pipeline):
    for month in ("2026-03", "2026-04", "2026-05"):
        assert pipeline.run(month).success
    dm = pipeline.table("qa_core.auditor_dispute_metrics")  # per auditor: restricted, not in qa_reporting
    auditors = dm.groupby("auditor_id")[["overturned", "resolved"]].sum()
    assert auditors.overturned.idxmax() == "AUD-07"
    assert set(pipeline.table("qa_reporting.dispute_metrics").dimension) == {"overall", "site", "queue"}


def test_a_dispute_id_repeated_in_a_later_folder_is_quarantined(tmp_path):
    from qa_pipeline.assets.disputes import validated_disputes
    from qa_pipeline.resources.raw_store import RawStore

    row = {"dispute_id": "D-1", "audit_id": "A-1", "disputed_at": "2026-03-02T00:00:00Z",
           "resolved_at": "2026-03-05T00:00:00Z", "reason": "satire", "outcome": "overturned"}
    write_csv(tmp_path / "raw" / "disputes" / "2026-03" / "d.csv", [row])
    write_csv(tmp_path / "raw" / "disputes" / "2026-04" / "d.csv",
              [{**row, "resolved_at": "2026-04-02T00:00:00Z", "outcome": "upheld"},
               {**row, "dispute_id": "D-2", "resolved_at": "2026-04-03T00:00:00Z"}])
    from qa_pipeline.resources.staging import Attempt
    from qa_pipeline.resources.warehouse import Warehouse, dispose_engines

    warehouse = Warehouse(url=f"duckdb:///{tmp_path}/wh.duckdb")
    attempt = Attempt(warehouse, date(2026, 4, 1), "run-1")
    frame = validated_disputes(RawStore(raw_dir=str(tmp_path / "raw")), attempt).frame
    assert frame.dispute_id.tolist() == ["D-1", "D-2"]
    assert frame.set_index("dispute_id").loc["D-1", "outcome"] == "overturned"  # the first read is kept
    q = warehouse.execute(attempt.staged("qa_core.audits_quarantine"))
    assert q[["input", "source_file", "row_number", "rule"]].values.tolist() == [
        ["disputes", "disputes/2026-04/d.csv", 1, "dispute_id:published_earlier"]]
    dispose_engines()


def test_ratings_without_gold_are_counted_in_the_note():
    from qa_pipeline.domain.calibration import calibration_agreement

    ratings = pd.DataFrame({"session_id": "S", "queue": "q", "case_id": ["c1", "c1", "c2", "c2"],
                            "rater_id": ["r1", "r2"] * 2, "rater_role": "auditor",
                            "action": ["remove", "remove", "approve", "remove"], "policy": ["HS.1", "HS.1", "NONE", "HS.1"]})
    gold = pd.DataFrame({"session_id": ["S"], "case_id": ["c1"], "gold_action": ["remove"], "gold_policy": ["HS.1"]})
    table = calibration_agreement(ratings, gold, date(2026, 3, 1)).set_index("label")
    assert table.loc["action", "gold_accuracy"] == 1.0
    assert "2 rating(s) on cases without a gold answer" in table.loc["action", "note"]
