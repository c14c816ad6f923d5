"""Partition rewrites are transactional on both backends; SQL values are bound, never spliced."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest
import sqlalchemy as sa

from qa_pipeline.resources.warehouse import Warehouse
from qa_pipeline.schemas import warehouse as wh

MARCH, APRIL = date(2026, 3, 1), date(2026, 4, 1)


def _log(month: date, files: list[str], read: int = 10) -> pd.DataFrame:
    return pd.DataFrame({
        "month": pd.Timestamp(month), "input": "audits", "source_file": files,
        "file_sha256": "x" * 64, "rows_read": read, "rows_clean": read - 1, "rows_quarantined": 1,
        "status": "read", "reason": None,
    })


def test_replacing_a_partition_touches_only_that_month(warehouse_url):
    w = Warehouse(url=warehouse_url)
    w.replace_partition("qa_core.ingest_log", _log(MARCH, ["a.csv", "b.csv"]), MARCH)
    w.replace_partition("qa_core.ingest_log", _log(APRIL, ["c.csv"]), APRIL)
    w.replace_partition("qa_core.ingest_log", _log(MARCH, ["d.csv"]), MARCH)
    got = w.read_table("qa_core.ingest_log").sort_values("source_file")
    assert got.source_file.tolist() == ["c.csv", "d.csv"]
    assert pd.to_datetime(got.month).dt.date.tolist() == [APRIL, MARCH]


def test_a_failed_write_leaves_the_previous_partition_in_place(warehouse_url):
    w = Warehouse(url=warehouse_url)
    w.replace_partition("qa_core.ingest_log", _log(MARCH, ["good.csv"]), MARCH)
    bad = _log(MARCH, ["new1.csv", "new2.csv"])
    bad.loc[1, "month"] = pd.NaT  # month is NOT NULL: the load fails inside the transaction, after the DELETE
    with pytest.raises(Exception):  # noqa: B017 - the driver's own error type differs per backend
        w.replace_partition("qa_core.ingest_log", bad, MARCH)
    assert w.read_table("qa_core.ingest_log").source_file.tolist() == ["good.csv"]


def test_a_value_of_the_wrong_type_is_refused_before_anything_is_deleted(warehouse_url):
    w = Warehouse(url=warehouse_url)
    w.replace_partition("qa_core.ingest_log", _log(MARCH, ["good.csv"]), MARCH)
    bad = _log(MARCH, ["x"]).astype({"rows_read": object})
    bad.loc[0, "rows_read"] = "not a number"
    with pytest.raises(Exception):  # noqa: B017 - pyarrow's conversion error
        w.replace_partition("qa_core.ingest_log", bad, MARCH)
    assert w.read_table("qa_core.ingest_log").source_file.tolist() == ["good.csv"]


def test_a_frame_missing_a_column_is_refused_before_anything_is_deleted(warehouse_url):
    w = Warehouse(url=warehouse_url)
    w.replace_partition("qa_core.ingest_log", _log(MARCH, ["good.csv"]), MARCH)
    with pytest.raises(KeyError, match="lacks column"):
        w.replace_partition("qa_core.ingest_log", _log(MARCH, ["x"]).drop(columns="file_sha256"), MARCH)
    assert len(w.read_table("qa_core.ingest_log")) == 1


def test_hostile_text_is_stored_verbatim(warehouse_url):
    w = Warehouse(url=warehouse_url)
    nasty = ["x'); DROP TABLE qa_core.ingest_log; --", 'tab\there "quote" \\ back\nslash', "ünïcødé ✓", ""]
    w.replace_partition("qa_core.ingest_log", _log(MARCH, nasty), MARCH)
    got = w.read_table("qa_core.ingest_log")
    assert sorted(got.source_file.tolist()) == sorted(nasty)
    # and bound parameters select it back
    t = wh.ingest_log
    one = w.read(sa.select(t.c.rows_read).where(t.c.source_file == nasty[0]))
    assert one.rows_read.tolist() == [10]


def test_nulls_round_trip(warehouse_url):
    w = Warehouse(url=warehouse_url)
    frame = pd.DataFrame({
        "month": [pd.Timestamp(MARCH)] * 2, "moderator_id": ["M1", "M2"], "site": ["Dublin", None],
        "team_type": ["bpo", "bpo"], "tenure_band": ["366+", "unknown"], "audits": [10, 0],
        "errors": [1, 0], "critical_errors": [0, 0], "accuracy": [0.9, float("nan")],
        "accuracy_ci_low": [0.6, float("nan")], "accuracy_ci_high": [0.98, float("nan")],
        "below_target": [False, False],
    })
    w.replace_partition("qa_core.moderator_quality", frame, MARCH)
    got = w.read_table("qa_core.moderator_quality").sort_values("moderator_id").reset_index(drop=True)
    assert got.site.isna().tolist() == [False, True]
    assert got.accuracy.isna().tolist() == [False, True]
    assert got.accuracy[0] == pytest.approx(0.9, abs=0)


def _clean_rows(month: date, ids: list[str]) -> pd.DataFrame:
    n = len(ids)
    frame = pd.DataFrame({c.name: [None] * n for c in wh.audits_clean.columns})
    frame["month"] = pd.Timestamp(month)
    frame["audit_id"] = ids
    frame["is_error"] = False
    frame["tenure_days"] = pd.array([1] * n, dtype="Int64")
    return frame


def test_audits_clean_partitions_are_published_whole(warehouse_url):
    """A month is staged beside the table and published (swapped in on PostgreSQL, rewritten in one
    transaction on DuckDB). Either way: other months untouched, a failed attempt changes nothing."""
    from qa_pipeline.resources.staging import Attempt

    w = Warehouse(url=warehouse_url)

    def publish(month, frame, run):
        attempt = Attempt(w, month, run)
        attempt.write("qa_core.audits_clean", frame)
        return attempt.publish()

    publish(MARCH, _clean_rows(MARCH, ["m1", "m2"]), "run-1")
    publish(APRIL, _clean_rows(APRIL, ["a1"]), "run-2")
    assert publish(MARCH, _clean_rows(MARCH, ["m3"]), "run-3") == {"qa_core.audits_clean": 1}
    got = w.read_table("qa_core.audits_clean").sort_values("audit_id")
    assert got.audit_id.tolist() == ["a1", "m3"]
    bad = _clean_rows(MARCH, ["x1", "x2"])
    bad.loc[1, "month"] = pd.NaT
    with pytest.raises(Exception):  # noqa: B017 - NOT NULL, per backend
        publish(MARCH, bad, "run-4")
    # a staged row of another month is refused at publication, not published beside the month
    with pytest.raises(Exception, match="outside its scope|partition|constraint"):
        publish(MARCH, pd.concat([_clean_rows(MARCH, ["x3"]), _clean_rows(APRIL, ["x4"])]), "run-5")
    assert sorted(w.read_table("qa_core.audits_clean").audit_id) == ["a1", "m3"]
    assert w.read_table("qa_core.audits_clean", months=[APRIL]).audit_id.tolist() == ["a1"]
