"""Months that stay consistent: declared cross-month reads, restatement refreshes, keys across months.

Issue 10, items 1–3: the asset graph declares every read of another month; re-running or restating
month M refreshes the later published months that read it (from `qa-pipeline run`, and from the
sensor that follows any run); a failed month refreshes nothing; an `audit_id` is published in at
most one month whatever order the months run in.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from qa_pipeline.refresh import month_readers, refreshes
from qa_pipeline_tests.conftest import audit, write_csv


def _graph():
    from qa_pipeline.definitions import defs

    return defs.resolve_asset_graph()


def test_the_graph_declares_every_read_of_another_month():
    readers = {(r.asset, r.parent, r.months) for r in month_readers(_graph())}
    # what the code reads (assets/analysis.py, impact.py, reporting.py), written out by hand
    assert {
        ("error_trends", "quality_metrics", 6),   # p-chart: the six months before
        ("rca_drivers", "audits_clean", 1),       # change decomposition against the month before
        ("sampling_plan", "audits_clean", 2),     # error rate over the last three months
        ("recommendations", "quality_metrics", 1),
    } <= readers
    # each reads the *published* months: the dependency goes through the month's publication
    for asset, months in [("error_trends", 6), ("rca_drivers", 1), ("sampling_plan", 2), ("recommendations", 1),
                          ("monthly_report", 12)]:
        assert (asset, "month_publication", months) in readers
    # whole-table outputs read every month
    graph = _graph()
    for asset in ["policy_change_impact", "experiment_readout"]:
        mappings = graph.get(dg.AssetKey(asset)).partition_mappings
        assert isinstance(mappings[dg.AssetKey("month_publication")], dg.AllPartitionMapping)
    # and nothing of the month's own figures reads another month
    own = {"validated_audits", "roster", "disputes", "audits_clean", "quality_metrics", "moderator_quality",
           "dispute_metrics", "rca_pareto", "auditor_consistency", "comment_themes", "calibration_agreement",
           "calibration_rater_scores"}
    assert not {r.asset for r in month_readers(graph)} & own


def test_which_later_months_a_restated_month_refreshes():
    published = {date(2026, m, 1) for m in range(1, 13)}
    todo = {r.month: r for r in refreshes(_graph(), [date(2026, 2, 1)], published)}
    # the report reads twelve months back: every later published month up to 2026-12
    assert sorted(todo) == [date(2026, m, 1) for m in range(3, 13)]
    assert {"rca_drivers", "sampling_plan", "error_trends", "recommendations"} <= todo[date(2026, 3, 1)].assets
    assert "rca_drivers" not in todo[date(2026, 4, 1)].assets and "sampling_plan" in todo[date(2026, 4, 1)].assets
    assert "error_trends" in todo[date(2026, 8, 1)].assets and "error_trends" not in todo[date(2026, 9, 1)].assets
    # the report, the report site and the dashboard's snapshot (downstream of the site)
    assert todo[date(2026, 9, 1)].assets == {"monthly_report", "report_site", "dashboard_snapshot"}
    for r in todo.values():  # never the month's own figures
        assert not r.assets & {"audits_clean", "quality_metrics", "month_publication", "validated_audits"}
        assert r.assets & {"cross_month_publication"} or r.assets == {"monthly_report", "report_site",
                                                                      "dashboard_snapshot"}
    # months run in the same command in month order, and unpublished months, are not refreshed
    assert refreshes(_graph(), [date(2026, 2, 1)], published, skip={date(2026, 3, 1)})[0].month == date(2026, 4, 1)
    assert refreshes(_graph(), [date(2026, 2, 1)], {date(2026, 2, 1)}) == []


# -- end to end through the CLI ------------------------------------------------------------------

def _cli(env, *args, check=True):
    out = subprocess.run([sys.executable, "-m", "qa_pipeline.cli", *args], env=env, capture_output=True,
                         text=True, timeout=900)
    if check:
        assert out.returncode == 0, out.stdout + out.stderr
    return out


@pytest.fixture
def three_months(tmp_path):
    env = {**os.environ, "QA_RAW_DIR": str(tmp_path / "raw"), "QA_WAREHOUSE_URL": f"duckdb:///{tmp_path}/wh.duckdb",
           "QA_REPORTS_DIR": str(tmp_path / "reports"), "DAGSTER_HOME": str(tmp_path / "dagster_home")}
    _cli(env, "generate", "--months", "2026-01..2026-03", "--audits-per-month", "600", "--seed", "5")
    _cli(env, "run", "--month", "2026-01..2026-03", "--quiet")
    return env


def _read(env, table: str) -> pd.DataFrame:
    from qa_pipeline.resources.warehouse import Warehouse, dispose_engines

    try:
        return Warehouse(url=env["QA_WAREHOUSE_URL"]).read_table(table)
    finally:
        dispose_engines()


def _overall(frame: pd.DataFrame, month: str) -> pd.Series:
    rows = frame[(frame.dimension == "overall") & (frame.month.astype(str).str[:7] == month)]
    assert len(rows) == 1
    return rows.iloc[0]


@pytest.mark.slow
def test_restating_a_month_refreshes_the_later_month_that_reads_it(three_months, tmp_path):
    env = three_months
    before = _overall(_read(env, "qa_reporting.error_trends"), "2026-03")
    feb_before = _overall(_read(env, "qa_reporting.quality_metrics"), "2026-02")
    assert before.prev_error_rate == pytest.approx(1 - feb_before.accuracy, abs=1e-12)
    # late disputes, resolved in March, overturn 30 of February's errors
    audits = _read(env, "qa_core.audits_clean")
    feb_errors = audits[(audits.month.astype(str).str[:7] == "2026-02") & audits.is_error_final
                        & audits.dispute_outcome.isna()].audit_id.sort_values().head(30)
    assert len(feb_errors) == 30
    write_csv(tmp_path / "raw" / "disputes" / "2026-03" / "late_overturns.csv", [
        {"dispute_id": f"LATE-{i}", "audit_id": a, "disputed_at": "2026-03-01T09:00:00Z",
         "resolved_at": "2026-03-04T09:00:00Z", "reason": "late appeal", "outcome": "overturned"}
        for i, a in enumerate(feb_errors)])

    out = _cli(env, "run", "--month", "2026-02", "--quiet")
    assert "refreshing 1 later published month(s)" in out.stdout, out.stdout
    assert "  2026-03 (reads 2026-02: " in out.stdout, out.stdout
    assert "error_trends reads quality_metrics of the 6 months before" in out.stdout, out.stdout
    assert "early_warning reads quality_metrics of the 3 months before" in out.stdout, out.stdout
    assert "2026-03 (refresh): ok" in out.stdout

    feb = _overall(_read(env, "qa_reporting.quality_metrics"), "2026-02")
    assert int(feb.errors) == int(feb_before.errors) - 30
    after = _overall(_read(env, "qa_reporting.error_trends"), "2026-03")
    assert after.prev_error_rate == pytest.approx(1 - feb.accuracy, abs=1e-12)
    assert after.prev_error_rate < before.prev_error_rate
    assert after.error_rate == pytest.approx(before.error_rate, abs=1e-12)  # March's own figures unchanged
    drivers = _read(env, "qa_reporting.rca_drivers")
    march = drivers[(drivers.month.astype(str).str[:7] == "2026-03") & (drivers.dimension == "site")]
    assert march.overall_change.iloc[0] == pytest.approx(after.error_rate - after.prev_error_rate, abs=1e-12)

    # a failed re-run of February refreshes nothing: March keeps reading its last published version
    rows = [audit(audit_id=f"BROKEN-{i}", audited_at="2026-02-10T00:00:00Z", content_type="hologram")
            for i in range(200)]
    write_csv(tmp_path / "raw" / "audits" / "2026-02" / "zz_broken.csv", rows)
    failed = _cli(env, "run", "--month", "2026-02", "--quiet", check=False)
    assert failed.returncode == 1
    assert "not refreshed: 2026-03 read 2026-02, whose run failed" in failed.stdout, failed.stdout
    again = _overall(_read(env, "qa_reporting.error_trends"), "2026-03")
    assert again.prev_error_rate == pytest.approx(after.prev_error_rate, abs=1e-15)


@pytest.mark.slow
def test_a_second_run_on_duckdb_says_in_one_line_who_holds_the_warehouse(tmp_path):
    from qa_pipeline.hygiene import warehouse_hold
    from qa_pipeline.settings import Settings

    env = {**os.environ, "QA_RAW_DIR": str(tmp_path / "raw"), "QA_WAREHOUSE_URL": f"duckdb:///{tmp_path}/wh.duckdb",
           "QA_REPORTS_DIR": str(tmp_path / "reports"), "DAGSTER_HOME": str(tmp_path / "dagster_home")}
    settings = Settings(raw_dir=tmp_path / "raw", warehouse_url=env["QA_WAREHOUSE_URL"],
                        reports_dir=tmp_path / "reports", dagster_home=tmp_path / "dagster_home")
    with warehouse_hold(settings, "qa-pipeline run --month 2026-01"):
        out = _cli(env, "run", "--month", "2026-01", "--quiet", check=False)
    assert out.returncode == 3
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith(f"error: another run holds the warehouse {tmp_path}/wh.duckdb: "
                               f"`qa-pipeline run --month 2026-01` (pid {os.getpid()}, since ")
    assert "Background on this error" not in out.stderr


# -- the sensor that follows every run -------------------------------------------------------------

def _sensor_requests(pipeline, result):
    from qa_pipeline.definitions import defs, month_refresh_sensor

    records = pipeline.instance.all_logs(result.run_id, of_type=dg.DagsterEventType.RUN_SUCCESS)
    event = records[0].dagster_event
    context = dg.build_run_status_sensor_context(
        sensor_name="month_refresh_sensor", dagster_event=event, dagster_instance=pipeline.instance,
        dagster_run=result.dagster_run, resources={"warehouse": pipeline.warehouse},
        repository_def=defs.get_repository_def())
    return month_refresh_sensor(context)


@pytest.mark.slow
def test_the_refresh_sensor_requests_the_later_months_a_run_restated(pipeline):
    for month in ["2026-01", "2026-02", "2026-03", "2026-04"]:
        assert pipeline.run(month).success
    rerun = pipeline.run("2026-02")
    requests = _sensor_requests(pipeline, rerun)
    # March and April run after February's first run, but before its re-run: both read it
    assert [r.partition_key for r in requests] == ["2026-03-01", "2026-04-01"]
    march = {k.to_user_string() for k in requests[0].asset_selection}
    assert {"error_trends", "rca_drivers", "sampling_plan", "recommendations", "cross_month_publication",
            "monthly_report"} <= march
    assert not march & {"audits_clean", "quality_metrics", "month_publication"}
    assert requests[0].tags["qa/refresh_of"] == "2026-02"
    assert requests[0].run_key == f"refresh:2026-03-01:after:{rerun.run_id}"
    # a run of April created after February's re-run already reads it: only March is requested
    assert pipeline.run("2026-04").success
    assert [r.partition_key for r in _sensor_requests(pipeline, rerun)] == ["2026-03-01"]
    # a refresh run (no month_publication in its selection) restates nothing
    from qa_pipeline.definitions import all_assets, gx_checks

    selection = [a for a in all_assets if {k.to_user_string() for k in a.keys} & {
        "error_trends", "recommendations", "rca_drivers", "sampling_plan", "cross_month_publication"}]
    refresh = dg.materialize([*all_assets, *gx_checks], selection=selection, partition_key="2026-03-01",
                             resources=pipeline.resources(), instance=pipeline.instance)
    assert refresh.success
    assert _sensor_requests(pipeline, refresh) == []


# -- keys across months ------------------------------------------------------------------------------

def _shared_id_files(raw_dir):
    """One audit id in both January's and February's deliveries."""
    write_csv(raw_dir / "audits" / "2026-01" / "zz_shared.csv",
              [audit(audit_id="SHARED-1", audited_at="2026-01-20T00:00:00Z", decision_at="2026-01-19T00:00:00Z")])
    write_csv(raw_dir / "audits" / "2026-02" / "zz_shared.csv",
              [audit(audit_id="SHARED-1", audited_at="2026-02-20T00:00:00Z", decision_at="2026-02-19T00:00:00Z")])


def test_an_audit_id_is_published_once_whatever_order_the_months_run_in(raw_copy, pipeline):
    pipeline.raw_dir = raw_copy
    _shared_id_files(raw_copy)
    assert pipeline.run("2026-02").success
    assert pipeline.run("2026-01").success  # the earlier month runs second
    clean = pipeline.table("qa_core.audits_clean")
    held = clean[clean.audit_id == "SHARED-1"]
    assert len(held) == 1 and str(held.month.iloc[0])[:7] == "2026-02"
    q = pipeline.table("qa_core.audits_quarantine")
    row = q[(q.source_file == "audits/2026-01/zz_shared.csv")]
    assert len(row) == 1
    assert row.rule.iloc[0] == "audit_id:published_later"
    assert "already published for 2026-02" in row.reason.iloc[0]
    # re-running the month that holds it keeps it (its own published rows are not "another month")
    assert pipeline.run("2026-02").success
    q = pipeline.table("qa_core.audits_quarantine")
    assert q[q.source_file == "audits/2026-02/zz_shared.csv"].empty
    assert q[q.source_file == "audits/2026-01/zz_shared.csv"].rule.tolist() == ["audit_id:published_later"]
    assert len(pipeline.table("qa_core.audits_clean").query("audit_id == 'SHARED-1'")) == 1


def test_two_months_staged_at_once_cannot_both_publish_a_shared_id(raw_copy, pipeline):
    """Two runs whose gates ran before either published (concurrent runs): the second publication
    finds the id published meanwhile, and is refused whole."""
    from qa_pipeline.assets.publication import MONTH_ASSETS, MONTH_TABLES
    from qa_pipeline.definitions import all_assets, gx_checks

    pipeline.raw_dir = raw_copy
    _shared_id_files(raw_copy)
    selection = [a for a in [*all_assets] if {k.to_user_string() for k in a.keys} & set(MONTH_ASSETS)]
    staged_jan = dg.materialize([*all_assets, *gx_checks], selection=selection, partition_key="2026-01-01",
                                resources=pipeline.resources(), instance=pipeline.instance)
    assert staged_jan.success
    assert pipeline.run("2026-02").success  # publishes SHARED-1 for February
    with pytest.raises(ValueError, match=r"audit_id 'SHARED-1' of 2026-01 was published for 2026-02 by a run"):
        pipeline.attempt("2026-01", staged_jan).publish(required=MONTH_TABLES)
    clean = pipeline.table("qa_core.audits_clean")
    assert len(clean[clean.audit_id == "SHARED-1"]) == 1
    assert not (clean.month.astype(str).str[:7] == "2026-01").any()  # January stays unpublished


def test_published_tables_carry_their_keys(warehouse_url):
    """The engine refuses a duplicate key (DuckDB and PostgreSQL)."""
    from qa_pipeline.resources.warehouse import Warehouse
    from qa_pipeline.schemas import warehouse as wh

    w = Warehouse(url=warehouse_url)
    w.ensure_table(wh.quality_metrics)
    row = {"month": date(2026, 1, 1), "dimension": "overall", "segment": "all", "audits": 1}
    with w.engine.begin() as conn:
        conn.execute(sa.insert(wh.quality_metrics).values(**row))
    with pytest.raises(sa.exc.IntegrityError), w.engine.begin() as conn:
        conn.execute(sa.insert(wh.quality_metrics).values(**row))
