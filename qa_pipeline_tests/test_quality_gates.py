"""Expectation suites as blocking asset checks: a broken expectation stops the downstream asset.
The small tables are checked by GX on pandas; `qa_core.audits_clean` by SQL counts in the warehouse,
with GX's semantics and failure records."""

from __future__ import annotations

import dataclasses
import tempfile
from datetime import date

import ibis
import numpy as np
import pandas as pd
import pytest

from qa_pipeline.assets.quality_gates import CHECKED, suite_in_engine
from qa_pipeline.resources.quality_gates import QualityGates, validate_in_engine
from qa_pipeline.resources.staging import Attempt
from qa_pipeline.resources.warehouse import Warehouse
from qa_pipeline.schemas import expectations as gx_suites
from qa_pipeline_tests.conftest import audit, write_csv

AUDITS_CLEAN = "qa_core.audits_clean"
MONTH = date(2026, 2, 1)


def _checks(result) -> dict:
    return {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()}


def _month_rows(pipeline, table_name: str, month: str) -> pd.DataFrame:
    frame = pipeline.table(table_name)
    frame = frame[frame.month.astype(str).str[:7] == month]
    return frame.sort_values(list(frame.columns), ignore_index=True)


def test_every_published_table_has_a_passing_suite(pipeline):
    result = pipeline.run("2026-02")
    assert result.success
    checks = _checks(result)
    gx = {k: v for k, v in checks.items() if k[1].startswith("gx_")}
    assert {asset for asset, _ in gx} == set(CHECKED)  # every published table's suite ran
    assert all(e.passed for e in gx.values()), [k for k, e in gx.items() if not e.passed]
    assert (pipeline.tmp / "reports" / "data_docs" / "index.html").exists()
    engine = gx[("audits_clean", "gx_audits_clean")].metadata
    assert engine["rows_validated"].value == len(pipeline.table(AUDITS_CLEAN)) > 0
    assert engine["validated_in"].value.startswith("warehouse (duckdb)")


def test_a_broken_expectation_fails_its_check_and_blocks_downstream(raw_copy, pipeline, monkeypatch):
    pipeline.raw_dir = raw_copy
    assert pipeline.run("2026-02").success
    published = _month_rows(pipeline, "qa_reporting.quality_metrics", "2026-02")
    # a valid late file: the next attempt stages other figures for the month
    write_csv(raw_copy / "audits" / "2026-02" / "zz_late.csv", [
        audit(audit_id=f"LATE-{i}", audited_at="2026-02-10T00:00:00Z", decision_at="2026-02-09T00:00:00Z",
              site="BPO-Z", action_auditor="approve", policy_auditor="NONE", error_severity="major",
              root_cause="policy_knowledge") for i in range(50)])
    broken = dataclasses.replace(gx_suites.SUITES["qa_reporting.quality_metrics"],
                                 rates=["accuracy", "audits"])  # audits are counts, never within [0, 1]
    monkeypatch.setitem(gx_suites.SUITES, "qa_reporting.quality_metrics", broken)
    result = pipeline.run("2026-02")
    assert not result.success
    check = _checks(result)[("quality_metrics", "gx_quality_metrics")]
    assert not check.passed
    assert "column=audits" in check.metadata["failed_expectations"].value
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "quality_metrics" in materialized
    assert "error_trends" not in materialized  # downstream of the failed blocking check
    # the failed attempt staged other figures; the previously published partition is unchanged
    staged = pipeline.staged("qa_reporting.quality_metrics", result)
    overall = staged[staged.dimension == "overall"].iloc[0]
    assert int(overall.audits) == int(published[published.dimension == "overall"].iloc[0].audits) + 50
    pd.testing.assert_frame_equal(_month_rows(pipeline, "qa_reporting.quality_metrics", "2026-02"), published)


def test_a_volume_warning_does_not_block(pipeline, monkeypatch):
    assert pipeline.run("2026-01").success
    original = gx_suites.expectations

    def tight_volume(suite, trailing_rows):
        return original(suite, [r * 10 for r in trailing_rows])  # history says 10× the rows

    monkeypatch.setattr(gx_suites, "expectations", tight_volume)
    result = pipeline.run("2026-02")
    assert result.success
    check = _checks(result)[("audits_clean", "gx_audits_clean")]
    assert not check.passed and check.severity.value == "WARN"
    assert "expect_table_row_count_to_be_between" in check.metadata["failed_expectations"].value


def test_a_broken_audits_clean_fails_its_check_in_the_pipeline(pipeline, monkeypatch):
    """An enrichment that writes an unknown error type: the engine's check fails as ERROR and
    nothing that reads audits_clean runs."""
    from qa_pipeline.assets import audits as audits_asset

    enrich = audits_asset.enrich_audits

    def mistyped(*args):
        rows = enrich(*args)
        return rows.mutate(error_type=ibis.ifelse(rows.is_error, "mistake", rows.error_type))

    monkeypatch.setattr(audits_asset, "enrich_audits", mistyped)
    result = pipeline.run("2026-01")
    assert not result.success
    check = _checks(result)[("audits_clean", "gx_audits_clean")]
    assert not check.passed and check.severity.value == "ERROR"
    failed = check.metadata["failed_expectations"].value
    assert "column=error_type" in failed and "expect_column_values_to_be_in_set" in failed
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "audits_clean" in materialized
    assert "quality_metrics" not in materialized and "month_publication" not in materialized
    assert not pipeline.warehouse.has_table(AUDITS_CLEAN) or pipeline.table(AUDITS_CLEAN).empty


# -- the SQL counts on a staged audits_clean ----------------------------------------------------
def _audits_clean(month: date, ids: list[str]) -> pd.DataFrame:
    """Valid audits_clean rows: every third one an over-enforcement error."""
    n = len(ids)
    error = np.arange(n) % 3 == 0
    ts = pd.Timestamp(month, tz="UTC") + pd.Timedelta(days=3)
    return pd.DataFrame({
        "month": pd.Timestamp(month), "audit_id": ids, "audited_at": ts, "decision_at": ts - pd.Timedelta(hours=5),
        "content_id": [f"C-{i}" for i in ids], "content_type": "video", "queue": "hate_speech", "site": "Dublin",
        "team_type": "in_house", "market": "GB", "moderator_id": "MOD-1", "auditor_id": "AUD-1",
        "action_moderator": "remove", "action_auditor": np.where(error, "approve", "remove"),
        "policy_moderator": "HS.1", "policy_auditor": np.where(error, "NONE", "HS.1"),
        "error_severity": np.where(error, "major", "none"), "root_cause": np.where(error, "policy_knowledge", None),
        "auditor_comment": "ok", "handle_time_s": 30.0, "sampling_weight": 2.0,
        "source_file": "audits/x.csv", "source_row": np.arange(1, n + 1), "is_error": error,
        "error_type": np.where(error, "over_enforcement", "correct"), "is_critical": False, "policy": "HS.1",
        "tenure_days": 400, "tenure_band": "366+", "dispute_outcome": None, "dispute_resolved_at": pd.NaT,
        "is_error_final": error,
    })


def _broken(month: date) -> pd.DataFrame:
    frame = _audits_clean(month, [f"A-{i}" for i in range(30)])
    frame.loc[1, "audit_id"] = "A-0"  # A-0 twice: both rows are unexpected
    frame.loc[2, "error_type"] = "typo"  # not a type (and it is not an error: so not typed either)
    frame.loc[4, "tenure_band"] = "ancient"
    frame.loc[5, "handle_time_s"] = -1.0
    frame.loc[7, "handle_time_s"] = np.nan  # missing is not negative
    frame.loc[8, "moderator_id"] = None
    frame.loc[10, "is_error_final"] = True  # not an error, yet a final error
    frame.loc[12, "error_type"] = "correct"  # an error without a type
    return frame


BROKEN_COUNTS = {
    ("expect_column_values_to_be_unique", "audit_id"): 2,
    ("expect_column_values_to_not_be_null", "moderator_id"): 1,
    ("expect_column_values_to_be_between", "handle_time_s"): 1,
    ("expect_column_values_to_be_in_set", "error_type"): 1,
    ("expect_column_values_to_be_in_set", "tenure_band"): 1,
    ("expect_column_values_to_be_in_set", "final_implies_error"): 1,
    ("expect_column_values_to_be_in_set", "error_iff_typed"): 2,
}


def _counts(outcome) -> dict:
    return {(f["expectation"], f["kwargs"].get("column")): f["unexpected_count"] for f in outcome.failures}


def test_a_staged_broken_audits_clean_fails_with_the_unexpected_counts(warehouse_url):
    attempt = Attempt(Warehouse(url=warehouse_url), MONTH, "broken-run-1")
    attempt.write(AUDITS_CLEAN, _broken(MONTH))
    outcome, rows = suite_in_engine(attempt, AUDITS_CLEAN, "same")
    assert rows == 30
    assert not outcome.passed and outcome.max_failed_severity == "critical"
    assert _counts(outcome) == BROKEN_COUNTS
    assert outcome.evaluated == len(gx_suites.expectations(gx_suites.SUITES[AUDITS_CLEAN], []))
    in_set = next(f for f in outcome.failures if f["kwargs"].get("column") == "error_type")
    assert in_set["kwargs"]["value_set"] == gx_suites.SUITES[AUDITS_CLEAN].in_sets["error_type"]
    assert in_set["severity"] == "critical" and in_set["observed_value"] is None


def test_a_staged_valid_audits_clean_passes(warehouse_url):
    attempt = Attempt(Warehouse(url=warehouse_url), MONTH, "clean-run-1")
    attempt.write(AUDITS_CLEAN, _audits_clean(MONTH, [f"A-{i}" for i in range(30)]))
    outcome, rows = suite_in_engine(attempt, AUDITS_CLEAN, "same")
    assert rows == 30 and outcome.passed and outcome.failures == [] and outcome.max_failed_severity is None


def test_the_volume_against_the_trailing_months_only_warns(warehouse_url):
    w = Warehouse(url=warehouse_url)
    for i, month in enumerate([date(2025, 11, 1), date(2025, 12, 1), date(2026, 1, 1)]):
        published = Attempt(w, month, f"history-{i}")
        published.write(AUDITS_CLEAN, _audits_clean(month, [f"H{i}-{j}" for j in range(40)]))
        published.publish()
    attempt = Attempt(w, MONTH, "thin-run-1")
    attempt.write(AUDITS_CLEAN, _audits_clean(MONTH, [f"A-{i}" for i in range(12)]))
    outcome, rows = suite_in_engine(attempt, AUDITS_CLEAN, "same")
    assert outcome.passed and outcome.max_failed_severity == "warning"
    (failure,) = outcome.failures
    assert failure == {"expectation": "expect_table_row_count_to_be_between", "severity": "warning",
                       "kwargs": {"min_value": 20, "max_value": 61}, "unexpected_count": None, "observed_value": 12}
    # the published months alone are counted, not the staged one
    again = Attempt(w, MONTH, "full-run-1")
    again.write(AUDITS_CLEAN, _audits_clean(MONTH, [f"B-{i}" for i in range(40)]))
    assert suite_in_engine(again, AUDITS_CLEAN, "same")[0].failures == []


# the kinds of expectation the other suites use (every Suite field has a SQL count)
OTHER_KINDS = [
    gx_suites.Expectation("expect_compound_columns_to_be_unique", {"column_list": ["site", "queue"]}),
    gx_suites.Expectation("expect_column_values_to_be_between",
                          {"column": "handle_time_s", "min_value": 0.0, "max_value": 1.0}),
    gx_suites.Expectation("expect_column_pair_values_a_to_be_greater_than_b",
                          {"column_A": "tenure_days", "column_B": "source_row", "or_equal": True,
                           "ignore_row_if": "either_value_is_missing"}),
    gx_suites.Expectation("expect_column_values_to_not_match_regex", {"column": "audit_id", "regex": r"-2\d$"}),
    gx_suites.Expectation("expect_column_pair_values_a_to_be_greater_than_b",
                          {"column_A": "handle_time_s", "column_B": "sampling_weight", "or_equal": True,
                           "ignore_row_if": "either_value_is_missing"}),
]


def test_the_sql_counts_equal_great_expectations_on_the_same_rows():
    """The two paths of one suite: the same failures, counts and arguments (GX on the frame with
    the derived columns, the SQL counts on the same rows in DuckDB)."""
    suite = gx_suites.SUITES[AUDITS_CLEAN]
    table = gx_suites.prepare_in_engine(suite, ibis.memtable(_broken(MONTH)))
    expectations = gx_suites.expectations(suite, [100, 120, 110]) + OTHER_KINDS
    sql, rows = validate_in_engine(table, expectations, lambda e: e.to_pyarrow().to_pandas())
    with tempfile.TemporaryDirectory() as tmp:
        gates = QualityGates(project_dir=f"{tmp}/gx", docs_dir=f"{tmp}/docs")
        gx = gates.validate("audits_clean_parity", table.to_pyarrow().to_pandas(), expectations, "2026-02")
    assert rows == 30
    assert (sql.passed, sql.max_failed_severity, sql.evaluated) == (gx.passed, gx.max_failed_severity, gx.evaluated)
    def ordered(failures):  # GX reports its results in its own order
        return sorted(failures, key=lambda f: (f["expectation"], repr(f["kwargs"])))

    assert ordered(sql.failures) == ordered(gx.failures)
    assert ("expect_table_row_count_to_be_between", None) in _counts(gx)  # 30 rows against ~110


@pytest.mark.parametrize("expectation, unexpected", list(zip(OTHER_KINDS, [30, 29, 0, 10, 1], strict=True)))
def test_every_kind_of_expectation_has_a_sql_count(expectation, unexpected):
    table = ibis.memtable(_broken(MONTH))
    outcome, _ = validate_in_engine(table, [expectation], lambda e: e.to_pyarrow().to_pandas())
    assert [f["unexpected_count"] for f in outcome.failures] == ([unexpected] if unexpected else [])


def test_only_audits_clean_is_checked_in_the_engine():
    """The small tables keep GX on pandas (and their Data Docs)."""
    assert [name for name, suite in gx_suites.SUITES.items() if suite.in_engine] == [AUDITS_CLEAN]
