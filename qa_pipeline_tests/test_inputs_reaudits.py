"""The expert re-audits input (`reaudits/YYYY-MM/*.csv`): every rule of its gate, named, with file
and row; the gate's blocking checks and the corrected accuracy through a real Dagster run."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from qa_pipeline.domain import accuracy_corrected as logic
from qa_pipeline.domain.validation import RawFile, run_gate
from qa_pipeline.resources.warehouse import dispose_engines
from qa_pipeline.sample_data import SampleSpec, generate
from qa_pipeline_tests.conftest import Pipeline, write_csv

MONTH = pd.Timestamp("2026-03-01").date()
AUDITS = pd.DataFrame({
    "audit_id": ["A-1", "A-2", "A-3"],
    "moderator_id": ["MOD-1", "MOD-2", "MOD-3"],
    "auditor_id": ["AUD-1", "AUD-1", "AUD-2"],
    "audited_at": pd.to_datetime(["2026-03-05T10:00:00Z", "2026-03-06T10:00:00Z", "2026-03-07T10:00:00Z"], utc=True),
    "action_moderator": ["remove", "approve", "restrict"],
    "policy_moderator": ["HS.1", "NONE", "HR.2"],
})
VALID = {"reaudit_id": "R-1", "audit_id": "A-1", "reaudited_at": "2026-03-10T09:00:00Z", "reviewer_id": "QE-01",
         "action_reviewer": "remove", "policy_reviewer": "HS.1"}


def reaudit(**changes) -> dict:
    return {**VALID, **changes}


def gate(rows: list[dict], policies: frozenset | None = None, published: list[str] | None = None):
    frame = pd.DataFrame(rows, dtype="str").fillna("")
    frame = frame.mask(frame.eq(""))
    spec = logic.reaudit_spec(AUDITS, "qa_core.audits_clean of 2026-03", policies)
    f = RawFile(path="reaudits/2026-03/reaudits.csv", frame=frame, sha256="x")
    return run_gate([f], spec, MONTH, published_ids=pd.Series(published, dtype="str") if published else None)


@pytest.mark.parametrize(("row", "rule"), [
    (reaudit(audit_id="A-404"), "audit_id:unknown_audit"),
    (reaudit(reviewer_id="MOD-1"), "reviewer_not_moderator"),
    (reaudit(reviewer_id="AUD-1"), "reviewer_not_auditor"),
    (reaudit(reaudited_at="2026-03-04T23:59:59Z"), "reaudited_after_audit"),
    (reaudit(reaudited_at="yesterday"), "reaudited_at:iso8601"),
    (reaudit(reviewer_id=""), "reviewer_id:required"),
    (reaudit(audit_id=""), "audit_id:required"),
    (reaudit(reaudit_id=""), "reaudit_id:required"),
    (reaudit(action_reviewer="delete"), "action_reviewer:allowed_values"),
    (reaudit(action_reviewer="approve", policy_reviewer="HS.1"), "approve_iff_policy_none_reviewer"),
    (reaudit(policy_reviewer=""), "policy_reviewer:required"),
])
def test_each_rule_quarantines_the_row_with_file_row_and_reason(row, rule):
    result = gate([reaudit(reaudit_id="R-0", audit_id="A-2", action_reviewer="approve", policy_reviewer="NONE"),
                   row])
    assert len(result.clean) == 1 and result.clean.reaudit_id.tolist() == ["R-0"]
    q = result.quarantine.iloc[0]
    assert q.rule == rule, q.reason
    assert q.source_file == "reaudits/2026-03/reaudits.csv" and q.row_number == 2 and q.input == "reaudits"
    assert q.reason and json.loads(q.raw_record)["reaudit_id"] == (row["reaudit_id"] or None)
    assert result.rows_read == result.rows_clean + result.rows_quarantined


def test_duplicates_keep_the_first_read():
    result = gate([reaudit(), reaudit(audit_id="A-2", action_reviewer="approve", policy_reviewer="NONE"),
                   reaudit(reaudit_id="R-2"), reaudit(reaudit_id="R-3", audit_id="A-3", action_reviewer="restrict",
                                                      policy_reviewer="HR.2")])
    assert result.clean.reaudit_id.tolist() == ["R-1", "R-3"]
    rules = result.quarantine.set_index("row_number").rule
    assert rules[2] == "reaudit_id:duplicate"  # the same re-audit id again
    assert rules[3] == "audit_id:duplicate"  # a second re-audit of A-1: one expert answer per decision
    assert "repeats an earlier row (the first read is kept)" in result.quarantine.reason.iloc[1]


def test_an_id_published_for_another_month_and_an_unknown_policy_are_quarantined():
    result = gate([reaudit(), reaudit(reaudit_id="R-2", audit_id="A-3", action_reviewer="remove",
                                      policy_reviewer="XX.9")], policies=frozenset({"HS.1", "HR.2"}),
                  published=["R-1"])
    assert result.clean.empty
    assert result.quarantine.rule.tolist() == ["reaudit_id:published_earlier", "policy_reviewer:unknown_policy"]


def test_a_row_breaking_several_rules_lists_them_all():
    result = gate([reaudit(reviewer_id="AUD-1", reaudited_at="2026-03-01T00:00:00Z", action_reviewer="delete")])
    q = result.quarantine.iloc[0]
    assert q.rules == "action_reviewer:allowed_values; reviewer_not_auditor; reaudited_after_audit"


def test_true_error_mirrors_the_contracts_error_with_the_expert_in_the_auditors_place():
    result = gate([reaudit(),  # the expert agrees with the moderator
                   reaudit(reaudit_id="R-2", audit_id="A-2", action_reviewer="remove", policy_reviewer="HS.2"),
                   reaudit(reaudit_id="R-3", audit_id="A-3", action_reviewer="restrict", policy_reviewer="HR.1")])
    clean = logic.clean_reaudits(result.clean, AUDITS, MONTH)
    assert clean.set_index("reaudit_id").true_error.to_dict() == {"R-1": False, "R-2": True, "R-3": True}
    assert (clean.month == pd.Timestamp(MONTH)).all()


# -- through Dagster ----------------------------------------------------------------------------

PLANTED = "2026-01"  # the planted auditor's month: the first generated month


def _assets():
    from qa_pipeline.assets import accuracy, audits, disputes, ingest
    from qa_pipeline.assets.quality_gates import gx_checks

    suite = [c for c in gx_checks if "gx_accuracy_corrected" in {k.name for k in c.check_keys}]
    return [ingest.roster, ingest.validated_audits, disputes.disputes, audits.audits_clean, accuracy.reaudits,
            accuracy.accuracy_corrected, *suite]


def _suite(result):
    return next(e for e in result.get_asset_check_evaluations() if e.check_name == "gx_accuracy_corrected")


@pytest.fixture(scope="module")
def small_raw(tmp_path_factory):
    """Four generated months of 1000 audits (50 re-audits each), the planted auditor in the first."""
    out = tmp_path_factory.mktemp("reaudits") / "raw"
    generate(SampleSpec(months=["2026-01", "2026-02", "2026-03", "2026-04"], audits_per_month=1000, seed=5,
                        with_hatecheck=False), out)
    return out


@pytest.fixture
def run(small_raw, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(small_raw, raw)
    pipeline = Pipeline(tmp_path, raw)
    pipeline.overrides = {"min_reaudits": 40}
    yield pipeline
    dispose_engines()


def _reaudit_checks(result) -> dict:
    return {e.check_name: e for e in result.get_asset_check_evaluations() if e.asset_key.to_user_string() == "reaudits"}


def test_the_planted_month_through_dagster(run):
    manifest = json.loads((run.raw_dir / ".sample.json").read_text())
    assert manifest["planted"]["auditor_error"]["month"] == PLANTED
    result = run.run(PLANTED, assets=_assets())
    assert result.success
    checks = _reaudit_checks(result)
    assert checks["quarantined_share_within_limit"].passed and checks["every_row_accounted_for"].passed
    staged = run.staged("qa_reporting.accuracy_corrected", result)
    assert set(staged.dimension) == {"overall", "site", "team_type", "queue"}
    overall = staged[staged.dimension == "overall"].iloc[0]
    reaudits = run.staged("qa_core.reaudits", result)
    assert overall.reaudits == len(reaudits) == manifest["reaudits"][PLANTED] == 50
    assert overall.specificity < 0.95  # the planted auditor's false flags, seen by the experts
    assert overall.corrected_error_rate < overall.observed_error_rate
    assert overall.ci_low <= overall.corrected_error_rate <= overall.ci_high
    # the plain estimate: the month's re-audits alone, all of them in the overall row
    assert overall.segment_reaudits == 50
    assert overall.reaudit_error_rate == pytest.approx(reaudits.true_error.astype(bool).mean())
    assert _suite(result).passed  # the table's expectation suite (sums per dimension, ranges, notes)


def test_a_bad_reaudits_file_stops_the_month_on_its_blocking_check(run):
    rows = [dict(VALID, reaudit_id=f"R-BAD-{i}", audit_id=f"NOPE-{i}") for i in range(20)]
    write_csv(run.raw_dir / "reaudits" / "2026-02" / "zz_vendor.csv", rows)
    failed = run.run("2026-02", assets=_assets())
    checks = _reaudit_checks(failed)
    share = checks["quarantined_share_within_limit"]
    assert not share.passed and share.severity.name == "ERROR"
    assert "reaudits/2026-02/zz_vendor.csv: 20 of 20 (audit_id:unknown_audit 20)" in share.description
    assert checks["every_row_accounted_for"].passed
    attempt = run.attempt("2026-02", failed)
    assert "quarantined_share_within_limit" in _failed_checks(run, attempt, "qa_core.reaudits")


def _failed_checks(run, attempt, table: str) -> str:
    import sqlalchemy as sa

    from qa_pipeline.schemas import warehouse as wh

    reg = wh.staged_tables
    with run.warehouse.engine.connect() as conn:
        rows = conn.execute(sa.select(reg.c.failed_checks).where(
            reg.c.run_key == attempt.key, reg.c.table_name == table)).scalars().all()
    return ",".join(r or "" for r in rows)


def test_without_a_reaudits_folder_there_is_no_row_and_the_month_goes_on(run):
    shutil.rmtree(run.raw_dir / "reaudits")
    result = run.run("2026-02", assets=_assets())
    assert result.success
    assert run.staged("qa_core.reaudits", result).empty
    assert run.staged("qa_reporting.accuracy_corrected", result).empty
    meta = [m for m in result.get_asset_materialization_events() if m.asset_key.to_user_string() == "accuracy_corrected"]
    assert meta[0].materialization.metadata["note"].value == "no re-audit: no corrected accuracy"
    assert _suite(result).passed
