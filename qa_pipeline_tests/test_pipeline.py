"""The monthly pipeline through Dagster's `materialize` on an ephemeral instance and real files."""

from __future__ import annotations

import csv
import json
import re
import shutil
from collections import defaultdict

import pandas as pd
import pytest

from qa_pipeline.schemas import warehouse as wh
from qa_pipeline_tests.conftest import audit, wilson_closed_form, write_csv

MONTH = "2026-02"
TABLES = ["qa_core.audits_clean", "qa_core.audits_quarantine", "qa_core.ingest_log",
          "qa_core.moderator_quality", "qa_reporting.quality_metrics", "qa_core.disputes",
          "qa_reporting.dispute_metrics", "qa_reporting.calibration_agreement",
          "qa_core.calibration_rater_scores", "qa_reporting.policy_change_impact",
          "qa_reporting.experiment_readout", "qa_reporting.sampling_plan"]


def _independent_counts(raw_dir, month):
    """Audits and errors per site, straight from the raw CSVs with the csv module.

    Rows corrupted on purpose are known from the generator's manifest; of repeated ids the first
    in file-name order counts; an audit whose latest dispute was overturned is not an error. No
    code of the pipeline is used.
    """
    manifest = json.loads((raw_dir / ".sample.json").read_text())
    planted = manifest["bad_rows"][month]
    corrupted = {p["audit_id"] for p in planted if p["defect"] != "duplicate_audit_id"}
    latest = {}  # audit_id -> (resolved_at, outcome) of its latest dispute, any folder
    for path in sorted((raw_dir / "disputes").glob("*/*.csv")):
        with path.open(newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                if row["audit_id"] not in latest or row["resolved_at"] > latest[row["audit_id"]][0]:
                    latest[row["audit_id"]] = (row["resolved_at"], row["outcome"])
    seen, counts = set(), defaultdict(lambda: [0, 0])
    for path in sorted((raw_dir / "audits" / month).glob("*.csv")):
        with path.open(newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                if row["audit_id"] in corrupted or row["audit_id"] in seen:
                    continue
                seen.add(row["audit_id"])
                error = (row["action_moderator"] != row["action_auditor"]
                         or row["policy_moderator"] != row["policy_auditor"])
                if latest.get(row["audit_id"], ("", ""))[1] == "overturned":
                    error = False  # the dispute found the auditor wrong
                for key in ("all", row["site"]):
                    counts[key][0] += 1
                    counts[key][1] += error
    return counts


def test_quality_metrics_equal_an_independent_recomputation_from_the_raw_csv(pipeline, sample_raw):
    result = pipeline.run(MONTH)
    assert result.success
    qm = pipeline.table("qa_reporting.quality_metrics")
    expected = _independent_counts(sample_raw, MONTH)
    rows = qm[qm.dimension.isin(["overall", "site"])].set_index("segment")
    assert set(rows.index) == set(expected)
    for segment, (n, errors) in expected.items():
        got = rows.loc[segment]
        assert (got.audits, got.errors) == (n, errors), segment
        assert got.accuracy == pytest.approx(1 - errors / n, abs=1e-12)
        low, high = wilson_closed_form(n - errors, n)
        assert got.accuracy_ci_low == pytest.approx(low, abs=1e-12)
        assert got.accuracy_ci_high == pytest.approx(high, abs=1e-12)


def test_every_dimension_adds_up_to_the_overall_counts(pipeline):
    assert pipeline.run(MONTH).success
    qm = pipeline.table("qa_reporting.quality_metrics")
    overall = qm[qm.dimension == "overall"].iloc[0]
    dims = set(qm.dimension)
    assert {"site", "team_type", "queue", "policy", "market", "content_type", "tenure_band", "site×queue"} <= dims
    for dim, group in qm.groupby("dimension"):
        assert group.audits.sum() == overall.audits, dim
        assert group.errors.sum() == overall.errors, dim
        assert group.critical_errors.sum() == overall.critical_errors, dim
    pair = qm[qm.dimension == "site×queue"]
    assert pair.segment.str.count(r"\|").eq(1).all()


def test_rerunning_a_month_leaves_every_row_count_unchanged(pipeline):
    assert pipeline.run(MONTH).success
    before = {t: len(pipeline.table(t)) for t in TABLES}
    assert all(before.values())
    assert pipeline.run(MONTH).success
    assert {t: len(pipeline.table(t)) for t in TABLES} == before


def test_months_are_partitions_of_the_same_tables(pipeline):
    assert pipeline.run("2026-01").success
    assert pipeline.run("2026-02").success
    clean = pipeline.table("qa_core.audits_clean")
    assert sorted(clean.month.astype(str).str[:7].unique()) == ["2026-01", "2026-02"]
    assert clean.audit_id.is_unique


def test_a_failed_gate_leaves_the_last_good_partition_in_place(tmp_path, raw_copy, pipeline):
    pipeline.raw_dir = raw_copy
    assert pipeline.run(MONTH).success
    clean_before = pipeline.table("qa_core.audits_clean").sort_values("audit_id").reset_index(drop=True)
    metrics_before = pipeline.table("qa_reporting.quality_metrics")
    quarantine_before = pipeline.table("qa_core.audits_quarantine")
    # a late file full of broken rows arrives for the month
    write_csv(raw_copy / "audits" / MONTH / "zz_late_vendor_export.csv",
              [audit(audit_id=f"LATE-{i}", audited_at="2026-02-10T00:00:00Z", decision_at="2026-02-09T00:00:00Z",
                     queue="Hate Speech") for i in range(200)])
    result = pipeline.run(MONTH)
    assert not result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["quarantined_share_within_limit"] is False
    assert checks["every_row_accounted_for"] is True
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "audits_clean" not in materialized and "quality_metrics" not in materialized
    clean_after = pipeline.table("qa_core.audits_clean").sort_values("audit_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(clean_after, clean_before)
    pd.testing.assert_frame_equal(pipeline.table("qa_reporting.quality_metrics"), metrics_before)
    # nothing of the failed attempt is published, not even its quarantine ...
    pd.testing.assert_frame_equal(pipeline.table("qa_core.audits_quarantine"), quarantine_before)
    # ... which stays readable in staging and shows why, row by row
    q = pipeline.staged("qa_core.audits_quarantine", result)
    late = q[q.source_file.str.endswith("zz_late_vendor_export.csv")]
    assert len(late) == 200 and set(late.rule) == {"queue:pattern"}


def test_materializations_carry_row_counts_schema_and_figures(pipeline):
    result = pipeline.run(MONTH)
    meta = {e.asset_key.to_user_string(): e.materialization.metadata
            for e in result.get_asset_materialization_events()}
    qm = meta["quality_metrics"]
    assert qm["dagster/row_count"].value == len(pipeline.table("qa_reporting.quality_metrics"))
    assert [c.name for c in qm["dagster/column_schema"].schema.columns] == [
        c.name for c in wh.quality_metrics.columns]
    assert 0.8 < qm["accuracy"].value < 1.0
    assert "| dimension" in qm["preview"].value
    assert meta["validated_audits"]["rows_quarantined"].value > 0
    assert meta["audits_clean"]["dagster/row_count"].value == meta["validated_audits"]["rows_clean"].value


def test_previews_never_show_personal_data(pipeline):
    result = pipeline.run(MONTH)
    text = " ".join(str(v.value) for e in result.get_asset_materialization_events()
                    for v in e.materialization.metadata.values())
    assert not re.search(r"[\w.]+@example\.com", text)
    assert not re.search(r"\+1 415 555 \d{4}", text)
    assert not re.search(r"@victim_\d+", text)


def test_a_month_with_no_audit_file_fails_naming_the_folder(tmp_path, raw_copy, pipeline):
    shutil.rmtree(raw_copy / "audits" / MONTH)
    (raw_copy / "audits" / MONTH).mkdir()
    pipeline.raw_dir = raw_copy
    result = pipeline.run(MONTH)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert f"no audits file for {MONTH}" in failure.event_specific_data.error.cause.message
