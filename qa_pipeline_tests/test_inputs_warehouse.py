"""`qa_core.ingest_log` of a warehouse created before `status` and `reason`: the columns are added,
its rows are files that were read (`read`); and the unknown-audit lookup runs in the engine."""

from __future__ import annotations

from datetime import date

import pandas as pd
import sqlalchemy as sa

from qa_pipeline.assets.disputes import known_audits
from qa_pipeline.assets.ingest import ensure_ingest_log_columns
from qa_pipeline.resources.raw_store import RawStore
from qa_pipeline.resources.staging import Attempt
from qa_pipeline.resources.warehouse import Warehouse
from qa_pipeline_tests.conftest import audit, enrich_frame, write_csv


def test_an_old_ingest_log_gets_status_and_reason(warehouse_url):
    warehouse = Warehouse(url=warehouse_url)
    with warehouse.engine.begin() as conn:
        conn.exec_driver_sql("CREATE SCHEMA IF NOT EXISTS qa_core")
        conn.exec_driver_sql("CREATE TABLE qa_core.ingest_log (month DATE, input TEXT, source_file TEXT, "
                             "file_sha256 TEXT, rows_read BIGINT, rows_clean BIGINT, rows_quarantined BIGINT)")
        conn.exec_driver_sql("INSERT INTO qa_core.ingest_log VALUES ('2026-01-01', 'audits', 'audits/2026-01/a.csv', "
                             "'x', 3, 2, 1)")
    ensure_ingest_log_columns(warehouse)
    ensure_ingest_log_columns(warehouse)  # idempotent
    with warehouse.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT source_file, status, reason FROM qa_core.ingest_log")).fetchall()
    assert [tuple(r) for r in rows] == [("audits/2026-01/a.csv", "read", None)]


def test_the_known_audits_are_the_published_and_the_staged_ones(warehouse_url, tmp_path):
    from qa_pipeline.domain.validation import AUDITS, RawFile, run_gate

    warehouse = Warehouse(url=warehouse_url)
    roster = pd.DataFrame({"moderator_id": ["MOD-1"], "hire_date": pd.to_datetime(["2025-01-01"], utc=True)})
    jan = run_gate([RawFile("audits/2026-01/x.csv", pd.DataFrame([audit(
        audit_id="JAN-1", audited_at="2026-01-10T00:00:00Z", decision_at="2026-01-09T00:00:00Z")]), "0")],
        AUDITS, date(2026, 1, 1)).clean
    published = Attempt(warehouse, date(2026, 1, 1), "january")
    published.write("qa_core.audits_clean", enrich_frame(jan, roster, date(2026, 1, 1)))
    published.publish()
    feb = run_gate([RawFile("audits/2026-02/x.csv", pd.DataFrame([audit(
        audit_id="FEB-1", audited_at="2026-02-10T00:00:00Z", decision_at="2026-02-09T00:00:00Z")]), "0")],
        AUDITS, date(2026, 2, 1)).clean
    attempt = Attempt(warehouse, date(2026, 2, 1), "february")
    attempt.write("qa_staging.validated_audits", feb.assign(month=pd.Timestamp("2026-02-01")), scope="internal")
    raw = tmp_path / "raw"
    for month in ("2026-01", "2026-02", "2026-03"):  # March has raw audits, and is not loaded
        write_csv(raw / "audits" / month / "a.csv", [audit()])
    ref = known_audits(attempt, RawStore(raw_dir=str(raw)), pd.Series(["JAN-1", "FEB-1", "NOPE", " JAN-1 ", None]))
    assert ref.known == frozenset({"JAN-1", "FEB-1"})
    assert ref.before == pd.Timestamp("2026-03-01", tz="UTC") and ref.when == "disputed_at"
    # nothing loaded at all: no dispute's audit can be known
    empty = Warehouse(url=f"duckdb:///{tmp_path}/empty.duckdb")
    assert known_audits(Attempt(empty, date(2026, 2, 1), "x"), RawStore(raw_dir=str(raw)), pd.Series(["A"])) is None
