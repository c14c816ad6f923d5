"""Write–audit–publish: a month's tables are staged, checked on the staged rows, and published
together in one transaction, or not at all."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap

import pandas as pd
import pytest
import sqlalchemy as sa

from qa_pipeline.schemas import expectations as gx_suites
from qa_pipeline.schemas import warehouse as wh
from qa_pipeline_tests.conftest import audit, write_csv

MONTH = "2026-02"
# what a month's run publishes, and what reads it downstream
MONTH_TABLES = ["qa_core.audits_clean", "qa_core.moderator_quality", "qa_reporting.quality_metrics",
                "qa_reporting.error_trends", "qa_reporting.rca_pareto", "qa_reporting.rca_drivers",
                "qa_core.auditor_consistency", "qa_reporting.dispute_metrics", "qa_reporting.recommendations",
                "qa_core.audits_quarantine", "qa_core.ingest_log", "qa_reporting.sampling_plan",
                "qa_reporting.policy_change_impact", "qa_reporting.experiment_readout"]


def _extra_audits(raw_dir, n=120, name="zz_late_valid.csv"):
    """A valid late file for the month that changes its figures (every audit an error at BPO-Z)."""
    rows = [audit(audit_id=f"{name[:-4]}-{i}", audited_at="2026-02-10T00:00:00Z", decision_at="2026-02-09T00:00:00Z",
                  site="BPO-Z", action_auditor="approve", policy_auditor="NONE", error_severity="major",
                  root_cause="policy_knowledge") for i in range(n)]
    write_csv(raw_dir / "audits" / MONTH / name, rows)


def _snapshot(pipeline) -> dict[str, pd.DataFrame]:
    out = {}
    for name in MONTH_TABLES:
        frame = pipeline.table(name)
        out[name] = frame.sort_values(list(frame.columns), ignore_index=True)
    return out


def _assert_same(pipeline, before: dict[str, pd.DataFrame]) -> None:
    for name, frame in _snapshot(pipeline).items():
        pd.testing.assert_frame_equal(frame, before[name], obj=name)


def _overall(pipeline) -> pd.Series:
    qm = pipeline.table("qa_reporting.quality_metrics")
    qm = qm[(qm.dimension == "overall") & (qm.month.astype(str).str[:7] == MONTH)]
    return qm.iloc[0]


def test_a_failed_blocking_check_publishes_nothing_and_keeps_the_staged_rows(raw_copy, pipeline, monkeypatch):
    pipeline.raw_dir = raw_copy
    assert pipeline.run("2026-01").success
    assert pipeline.run(MONTH).success
    before = _snapshot(pipeline)
    audits_before = int(_overall(pipeline).audits)

    _extra_audits(raw_copy)
    broken = dataclasses.replace(gx_suites.SUITES["qa_reporting.quality_metrics"],
                                 rates=["accuracy", "audits"])  # audits are counts, never within [0, 1]
    monkeypatch.setitem(gx_suites.SUITES, "qa_reporting.quality_metrics", broken)
    result = pipeline.run(MONTH)
    assert not result.success
    checks = {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()}
    assert not checks[("quality_metrics", "gx_quality_metrics")].passed
    staged_as = checks[("quality_metrics", "gx_quality_metrics")].metadata["staged_as"].value
    assert staged_as.startswith("qa_staging.quality_metrics__202602__")
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "month_publication" not in materialized and "monthly_report" not in materialized
    assert "error_trends" not in materialized  # downstream of the failed blocking check

    # the previous version of every table of the month, and of everything downstream, is published
    _assert_same(pipeline, before)
    # the failed attempt's rows are inspectable: they hold the late file
    staged = pipeline.staged("qa_reporting.quality_metrics", result)
    staged_overall = staged[staged.dimension == "overall"].iloc[0]
    assert int(staged_overall.audits) == audits_before + 120
    assert "BPO-Z" in set(staged[staged.dimension == "site"].segment)

    # the publication step re-executed alone over the failed attempt is refused: the failed check is
    # recorded beside the staged rows
    from qa_pipeline.assets.publication import MONTH_TABLES

    with pytest.raises(ValueError, match="blocking checks failed on the staged rows of qa_reporting.quality_metrics"):
        pipeline.attempt(MONTH, result).publish(required=MONTH_TABLES)
    _assert_same(pipeline, before)

    # the next attempt never reads the failed one: the late file is withdrawn and another, of 50
    # audits, arrives; once it publishes, the failed attempt's staging is gone
    monkeypatch.undo()
    (raw_copy / "audits" / MONTH / "zz_late_valid.csv").unlink()
    _extra_audits(raw_copy, n=50, name="zz_later_valid.csv")
    again = pipeline.run(MONTH)
    assert again.success
    assert int(_overall(pipeline).audits) == audits_before + 50
    with pipeline.warehouse.engine.connect() as conn:
        left = conn.execute(sa.select(wh.staged_tables.c.staged_as)).scalars().all()
        tables = sa.inspect(conn).get_table_names(schema=wh.STAGING)
    assert left == [] and tables == ["staged_tables"]


def test_a_month_is_published_in_one_recorded_transaction_per_phase(pipeline):
    """The month's own figures in one transaction, then the figures that read other months in a
    second one; each recorded, each reporting the rows that became visible."""
    import re

    from qa_pipeline.assets.publication import CROSS_MONTH_TABLES, MONTH_TABLES

    result = pipeline.run(MONTH)
    assert result.success
    pubs = pipeline.table("qa_core.publications").sort_values("published_at", ignore_index=True)
    assert len(pubs) == 2 and set(pubs.run_id) == {result.run_id}
    events = {e.asset_key.to_user_string(): e.materialization.metadata
              for e in result.get_asset_materialization_events()}
    for i, (asset, expected) in enumerate([("month_publication", set(MONTH_TABLES)),
                                           ("cross_month_publication", set(CROSS_MONTH_TABLES.values()))]):
        published = events[asset]
        assert published["tables"].value == int(pubs.tables.iloc[i])
        assert published["rows"].value == int(pubs.rows.iloc[i])
        # the rows reported per table are the rows that became visible, counted in the published tables
        reported = dict(re.findall(r"\|\s*(qa_\w+\.\w+)\s*\|\s*(\d+)\s*\|", published["published"].value))
        if asset == "month_publication":
            assert set(reported) == expected
        else:  # + the quarantine and ingest log of the snapshot inputs it gates (policy changes, experiments)
            assert expected <= set(reported) <= expected | {"qa_core.audits_quarantine", "qa_core.ingest_log"}
    reported = dict(re.findall(r"\|\s*(qa_\w+\.\w+)\s*\|\s*(\d+)\s*\|", events["month_publication"]["published"].value))
    for name in ["qa_core.audits_clean", "qa_reporting.quality_metrics", "qa_core.moderator_quality", "qa_core.disputes"]:
        assert int(reported[name]) == len(pipeline.table(name)) > 0, name
    # the report was built from what was published: its headline is the published overall row
    runs = pipeline.table("qa_reporting.report_runs")
    overall = _overall(pipeline)
    assert int(runs.audits.iloc[0]) == int(overall.audits)
    assert float(runs.accuracy.iloc[0]) == pytest.approx(float(overall.accuracy), abs=1e-12)


def test_a_failed_step_of_the_months_own_figures_publishes_nothing(raw_copy, pipeline, monkeypatch):
    """A step that raises (here: the Pareto of root causes) stops the whole month."""
    pipeline.raw_dir = raw_copy
    assert pipeline.run(MONTH).success
    before = _snapshot(pipeline)
    _extra_audits(raw_copy)
    from qa_pipeline.domain import rca

    def boom(*_args, **_kwargs):
        raise RuntimeError("pareto crashed")

    monkeypatch.setattr(rca, "rca_pareto", boom)
    result = pipeline.run(MONTH)
    assert not result.success
    _assert_same(pipeline, before)


def test_a_failed_cross_month_step_keeps_the_previous_cross_month_figures(raw_copy, pipeline, monkeypatch):
    """The month's own figures are published first; a crash in a step that reads other months (here:
    the recommendations rule set) leaves every cross-month table at its previous version."""
    from qa_pipeline.assets.publication import CROSS_MONTH_TABLES
    from qa_pipeline.assets.publication import MONTH_TABLES as OWN

    pipeline.raw_dir = raw_copy
    assert pipeline.run(MONTH).success
    before = _snapshot(pipeline)
    _extra_audits(raw_copy)
    from qa_pipeline.domain import recommendations as rules

    def boom(*_args, **_kwargs):
        raise RuntimeError("rule set crashed")

    monkeypatch.setattr(rules, "recommendations", boom)
    result = pipeline.run(MONTH)
    assert not result.success
    after = _snapshot(pipeline)
    for name in set(MONTH_TABLES) & set(CROSS_MONTH_TABLES.values()):
        pd.testing.assert_frame_equal(after[name], before[name], obj=name)
    assert int(_overall(pipeline).audits) == len(pipeline.table("qa_core.audits_clean"))  # the new version
    changed = [n for n in set(MONTH_TABLES) & set(OWN) if not after[n].equals(before[n])]
    assert "qa_core.audits_clean" in changed and "qa_reporting.quality_metrics" in changed


KILL_HOOK = """
import os, signal
import sqlalchemy as sa
from qa_pipeline.resources import staging

_publish = staging.Attempt.publish
_execute = sa.engine.Connection.execute

def killing_publish(self, *args, **kwargs):
    seen = {"deletes": 0}
    def execute(conn, statement, *args, **kwargs):
        if isinstance(statement, sa.sql.dml.Delete) and os.environ.get("QA_TEST_KILL_AT") == "publish_midway":
            seen["deletes"] += 1
            if seen["deletes"] == 3:  # three tables' old rows are already deleted, nothing committed
                os.kill(os.getpid(), signal.SIGKILL)
        return _execute(conn, statement, *args, **kwargs)
    if os.environ.get("QA_TEST_KILL_AT") == "before_publish":
        os.kill(os.getpid(), signal.SIGKILL)
    sa.engine.Connection.execute = execute
    try:
        return _publish(self, *args, **kwargs)
    finally:
        sa.engine.Connection.execute = _execute

staging.Attempt.publish = killing_publish
"""


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["before_publish", "publish_midway"])
def test_a_run_killed_before_or_while_publishing_leaves_the_previous_version(tmp_path, raw_copy, moment):
    """A real `qa-pipeline run` process, SIGKILLed after staging every table (or inside the
    publishing transaction), leaves the previously published month whole; a re-run publishes."""
    from qa_pipeline.resources.warehouse import Warehouse, dispose_engines
    from qa_pipeline_tests.conftest import Pipeline

    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(textwrap.dedent(KILL_HOOK))
    env = {**os.environ, "QA_RAW_DIR": str(raw_copy), "QA_WAREHOUSE_URL": f"duckdb:///{tmp_path}/wh.duckdb",
           "QA_REPORTS_DIR": str(tmp_path / "reports"), "DAGSTER_HOME": str(tmp_path / "dagster_home")}

    def run(kill: str | None):
        extra = {"PYTHONPATH": f"{hook}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
                 "QA_TEST_KILL_AT": kill} if kill else {}
        return subprocess.run([sys.executable, "-m", "qa_pipeline.cli", "run", "--month", MONTH, "--quiet"],
                              env={**env, **extra}, capture_output=True, text=True, timeout=600)

    first = run(None)
    assert first.returncode == 0, first.stdout + first.stderr
    pipeline = Pipeline(tmp_path, raw_copy, warehouse_url=env["QA_WAREHOUSE_URL"])
    before = _snapshot(pipeline)
    dispose_engines()

    _extra_audits(raw_copy)
    killed = run(moment)
    assert killed.returncode == -9, killed.stdout + killed.stderr
    _assert_same(pipeline, before)
    warehouse = Warehouse(url=env["QA_WAREHOUSE_URL"])
    assert len(warehouse.read_table("qa_core.publications")) == 2  # the first run's two publications
    dispose_engines()

    rerun = run(None)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    # the killed run is not left STARTED in the instance: the next CLI start marks it failed
    assert "was left STARTED by a process that died" in rerun.stdout, rerun.stdout
    import dagster as dg

    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        statuses = [r.status for r in instance.get_runs()]
    assert dg.DagsterRunStatus.STARTED not in statuses
    assert statuses.count(dg.DagsterRunStatus.FAILURE) == 1 and statuses.count(dg.DagsterRunStatus.SUCCESS) == 2
    assert int(_overall(pipeline).audits) == int(before["qa_reporting.quality_metrics"].pipe(
        lambda q: q[(q.dimension == "overall")].audits.iloc[0])) + 120
    dispose_engines()
