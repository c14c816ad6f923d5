"""PostgreSQL in production: same figures as DuckDB, access control, the instance on PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from qa_pipeline.resources.warehouse import dispose_engines
from qa_pipeline.schemas import expectations as gx_suites
from qa_pipeline.schemas import warehouse as wh
from qa_pipeline_tests.conftest import Pipeline

pytestmark = pytest.mark.postgres

EXTRA_KEYS = {
    "qa_core.audits_quarantine": ["month", "input", "source_file", "row_number"],
    "qa_core.ingest_log": ["month", "input", "source_file"],
    "qa_core.disputes": ["dispute_id"],
    "qa_core.moderator_quality": ["month", "moderator_id"],
    "qa_core.calibration_rater_scores": ["session_id", "rater_id"],
    "qa_reporting.recommendations": ["month", "owner", "rule", "subject"],
    "qa_core.auditor_dispute_metrics": ["month", "auditor_id"],
    "qa_core.person_recommendations": ["month", "rule", "person_id"],
    "qa_reporting.report_runs": ["month"],
    "qa_core.publications": ["month", "tables", "rows"],
    "qa_core.table_versions": ["table_name", "scope_input"],
    "qa_reporting.publication_history": ["month", "dimension", "segment", "metric"],  # one publication a month here
    "qa_core.publication_fingerprints": ["month"],
    "qa_reporting.corrections": ["month", "dimension", "segment", "metric"],
    "qa_core.reaudits": ["month", "reaudit_id"],
}
# where the two runs differ by design: the report's folder, its time stamp and so its hash
RUN_SPECIFIC = {("qa_reporting.report_runs", c) for c in ("report_path", "generated_at", "sha256")} | {
    ("qa_core.publications", c) for c in ("run_id", "published_at")} | {
    ("qa_core.table_versions", c) for c in ("run_id", "snapshot_at", "staged_at", "published_at")} | {
    (t, c) for t in ("qa_reporting.publication_history", "qa_core.publication_fingerprints", "qa_reporting.corrections")
    for c in ("run_id", "published_at", "previous_run_id", "previous_published_at")}
NEVER_EMPTY_EXCEPT = {"qa_reporting.corrections"}  # no month is published twice here: nothing corrected


def _key(table_name: str) -> list[str]:
    return EXTRA_KEYS.get(table_name) or gx_suites.SUITES[table_name].key


def test_published_tables_are_identical_on_duckdb_and_postgres(tmp_path, sample_raw, postgres_url):
    duck = Pipeline(tmp_path / "duck", sample_raw)
    pg = Pipeline(tmp_path / "pg", sample_raw, warehouse_url=postgres_url)
    for month in ("2026-01", "2026-02"):
        assert duck.run(month).success
        assert pg.run(month).success
    compared = 0
    for name, table in wh.metadata.tables.items():
        if not duck.warehouse.has_table(name):
            continue
        a = duck.table(name).sort_values(_key(name), ignore_index=True)
        b = pg.table(name).sort_values(_key(name), ignore_index=True)
        assert len(a) == len(b) > 0 or (name in NEVER_EMPTY_EXCEPT and len(a) == len(b)), name
        for col in table.columns:
            if (name, col.name) in RUN_SPECIFIC:
                continue
            x, y = a[col.name], b[col.name]
            if isinstance(col.type, sa.Double):
                np.testing.assert_allclose(x.to_numpy(float), y.to_numpy(float), rtol=0, atol=1e-9,
                                           equal_nan=True, err_msg=f"{name}.{col.name}")
            elif isinstance(col.type, sa.Date | sa.DateTime):
                assert (pd.to_datetime(x, utc=True).fillna(pd.Timestamp(0, tz="UTC"))
                        == pd.to_datetime(y, utc=True).fillna(pd.Timestamp(0, tz="UTC"))).all(), f"{name}.{col.name}"
            else:
                assert x.astype(object).where(x.notna(), None).tolist() == \
                    y.astype(object).where(y.notna(), None).tolist(), f"{name}.{col.name}"
        compared += 1
    assert compared == len(wh.metadata.tables)  # every published table
    dispose_engines()


def _run_cli(env, *args):
    return subprocess.run([sys.executable, "-m", "qa_pipeline.cli", *args], env=env, capture_output=True,
                          text=True, timeout=900)


def test_grants_let_analysts_read_reporting_but_not_core(tmp_path, sample_raw, postgres_url):
    pg = Pipeline(tmp_path, sample_raw, warehouse_url=postgres_url)
    assert pg.run("2026-01").success
    env = {**os.environ, "QA_WAREHOUSE_URL": postgres_url,
           "QA_ANALYST_LOGIN": "alice_analyst", "QA_ANALYST_PASSWORD": "s3cret-'quote\"",
           "QA_ENGINEER_LOGIN": "erin_engineer", "QA_ENGINEER_PASSWORD": "an0ther"}
    for _ in range(2):  # idempotent
        done = _run_cli(env, "grants")
        assert done.returncode == 0, done.stdout + done.stderr
    url = sa.make_url(postgres_url)
    analyst = sa.create_engine(url.set(username="alice_analyst", password="s3cret-'quote\""))
    with analyst.connect() as conn:
        assert conn.exec_driver_sql("select count(*) from qa_reporting.quality_metrics").scalar() > 0
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
            conn.exec_driver_sql("select count(*) from qa_core.audits_clean")
    with analyst.connect() as conn, pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
        conn.exec_driver_sql("delete from qa_reporting.quality_metrics")
    analyst.dispose()
    # a table created after the grants is readable too (default privileges)
    assert pg.run("2026-02").success
    engineer = sa.create_engine(url.set(username="erin_engineer", password="an0ther"))
    with engineer.connect() as conn:
        assert conn.exec_driver_sql("select count(*) from qa_core.audits_clean").scalar() > 0
    engineer.dispose()
    analyst = sa.create_engine(url.set(username="alice_analyst", password="s3cret-'quote\""))
    with analyst.connect() as conn:
        assert conn.exec_driver_sql("select count(*) from qa_reporting.error_trends").scalar() > 0
    analyst.dispose()
    dispose_engines()


def test_a_month_runs_with_the_dagster_instance_on_postgres_and_the_multiprocess_executor(
        tmp_path, sample_raw, postgres_url):
    url = sa.make_url(postgres_url)
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{url.database}_dagster"')
    admin.dispose()
    home = tmp_path / "dagster_home"
    home.mkdir()
    template = (os.path.dirname(__file__) + "/../dagster.postgres.yaml")
    (home / "dagster.yaml").write_text(open(template).read())
    env = {**os.environ, "DAGSTER_HOME": str(home), "QA_RAW_DIR": str(sample_raw),
           "QA_WAREHOUSE_URL": postgres_url, "QA_REPORTS_DIR": str(tmp_path / "reports"),
           "QA_EXECUTOR": "multiprocess",
           "DAGSTER_PG_HOST": url.host, "DAGSTER_PG_PORT": str(url.port), "DAGSTER_PG_USER": url.username,
           "DAGSTER_PG_PASSWORD": url.password, "DAGSTER_PG_DB": f"{url.database}_dagster"}
    run = _run_cli(env, "run", "--month", "2026-01")
    assert run.returncode == 0, run.stdout + run.stderr
    dagster_db = sa.create_engine(url.set(database=f"{url.database}_dagster"))
    with dagster_db.connect() as conn:
        runs = conn.exec_driver_sql("select status from runs").fetchall()
        assert [r[0] for r in runs] == ["SUCCESS"]
        materialized = conn.exec_driver_sql(
            "select count(distinct asset_key) from event_logs where dagster_event_type = 'ASSET_MATERIALIZATION'"
        ).scalar()
        assert materialized >= 18
        processes = conn.exec_driver_sql(
            "select count(*) from event_logs where dagster_event_type = 'STEP_WORKER_STARTED'").scalar()
        assert processes >= 10  # each step in its own process
    dagster_db.dispose()
    warehouse = sa.create_engine(postgres_url)
    with warehouse.connect() as conn:
        assert conn.exec_driver_sql("select count(*) from qa_reporting.quality_metrics").scalar() > 0
    warehouse.dispose()
