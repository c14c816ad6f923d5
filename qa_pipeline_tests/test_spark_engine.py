"""Apache Spark as a warehouse engine: one ibis expression, the same figures on Spark and DuckDB.

Runs on a real standalone cluster (one master, two workers) started by the `spark_cluster` fixture
(qa_pipeline_tests/spark_cluster.py). Skips without Java locally, fails without it under CI.

Two ibis-on-Spark quirks shape these tests (ibis 12, pyspark 4.0):
- ibis maps Spark's TIMESTAMP (an instant, shown in the session time zone) to a *naive*
  `timestamp`, so `execute`/`to_pyarrow` return naive UTC wall-clock values where DuckDB returns
  `timestamp('UTC')`. Cast instants to `timestamp('UTC')` at the end of the expression (a no-op
  `CAST(... AS TIMESTAMP)` in Spark SQL) and ibis hands them back tz-aware; or skip pandas
  altogether with `session.sql(con.compile(expr)).toArrow()` (pyspark ≥ 4.0), which keeps UTC.
- ibis' `to_pyarrow` on Spark goes through pandas (`toPandas` then `pa.Table.from_pandas`); it
  works with pandas 3.1 for these types, but `toArrow()` is the direct path.
"""

from __future__ import annotations

import time

import ibis
import ibis.expr.datatypes as dt
import numpy as np
import pyarrow as pa
import pytest

# The cluster is per xdist worker (session scope): under `-n 2` with the default `--dist load` the
# two tests may land on both workers and start two clusters. `--dist loadfile` keeps them on one;
# `--dist loadgroup` should too, through this xdist_group mark, but pytest-xdist 3.8.0's grouping
# (it rewrites `item._nodeid`) has no effect with pytest 9.2, whose nodeid comes from `item._id`.
pytestmark = [pytest.mark.spark, pytest.mark.xdist_group("spark")]

DIMENSIONS = ["site", "queue", "market", "audit_date"]
UTC_TS = dt.Timestamp(timezone="UTC")


def _audits(n: int = 100_000, seed: int = 5) -> pa.Table:
    """n audits: strings (a few null markets), a boolean with nulls, a double with nulls, and an
    instant in UTC, many of them in the hour either side of midnight (where a time-zone slip would
    move the date)."""
    rng = np.random.default_rng(seed)
    start = np.datetime64("2026-03-01T00:00:00", "us")
    day = rng.integers(0, 31, n).astype("timedelta64[D]")
    near_midnight = rng.random(n) < 0.4
    offset_us = np.where(near_midnight,
                         rng.integers(-3600 * 10**6, 3600 * 10**6, n) + 86_400 * 10**6,
                         rng.integers(0, 86_400 * 10**6, n))
    audited = start + day.astype("timedelta64[us]") + offset_us.astype("timedelta64[us]")
    market = rng.choice(np.array(["GB", "US", "DE", "PH", "BR"], dtype=object), n)
    market[rng.random(n) < 0.01] = None
    is_error = pa.array(rng.random(n) < 0.06, mask=rng.random(n) < 0.005)
    handle = pa.array(np.round(rng.lognormal(4, 0.5, n), 1), mask=rng.random(n) < 0.02)
    return pa.table({
        "audit_id": [f"A-{i:07d}" for i in range(n)],
        "site": rng.choice(["Dublin", "Austin", "BPO-A Manila", "BPO-B Kuala Lumpur", "BPO-C Bogota"], n),
        "queue": rng.choice(["hate_speech", "harassment", "spam_scams", "self_harm"], n),
        "market": pa.array(market, pa.string()),
        "is_error": is_error,
        "handle_time_s": handle,
        "audited_at": pa.array(audited, pa.timestamp("us", tz="UTC")),
    })


def segments(t):
    """A union of GROUP BYs, one per dimension plus the total: written once, run on any backend."""
    t = t.mutate(audit_date=t.audited_at.date())
    parts = []
    for d in [*DIMENSIONS, None]:
        key = t[d].cast("string") if d else ibis.literal("all")
        parts.append(
            t.group_by(segment=key)
            .agg(
                audits=t.count(),
                errors=t.is_error.cast("int64").sum(),
                handle_s=t.handle_time_s.sum(),
                first_at=t.audited_at.min().cast(UTC_TS),
                last_at=t.audited_at.max().cast(UTC_TS),
                first_date=t.audit_date.min(),
            )
            .mutate(dimension=ibis.literal(d or "all"))
        )
    out = ibis.union(*parts)
    return out.select("dimension", "segment", "audits", "errors", "handle_s", "first_at", "last_at", "first_date")


def _sorted_rows(table: pa.Table) -> list[dict]:
    return sorted(table.to_pylist(), key=lambda r: (r["dimension"], r["segment"] is None, r["segment"] or ""))


def _assert_same(spark_rows: list[dict], duck_rows: list[dict]) -> None:
    assert len(spark_rows) == len(duck_rows)
    for s, d in zip(spark_rows, duck_rows, strict=True):
        where = (d["dimension"], d["segment"])
        for col in ("dimension", "segment", "audits", "errors", "first_at", "last_at", "first_date"):
            assert s[col] == d[col], (where, col, s[col], d[col])
        assert s["handle_s"] == pytest.approx(d["handle_s"], rel=1e-9, abs=1e-9), where


def _wait_for(predicate, timeout: float = 15.0):
    """The driver's REST API is fed by an asynchronous listener bus: give it a moment."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return value


def test_ibis_group_bys_on_the_cluster_match_duckdb(spark_cluster, record_property):  # noqa: F811
    t0 = time.perf_counter()
    session = spark_cluster.session
    assert session.sparkContext.master == spark_cluster.master_url
    assert session.conf.get("spark.sql.session.timeZone") == "UTC"

    executors = spark_cluster.executors()
    assert len(executors) == 2, executors
    assert len({e["hostPort"] for e in executors}) == 2
    status = spark_cluster.status()
    assert status["aliveworkers"] == 2
    # each worker runs one executor (1 core) of this application
    assert [w["coresused"] for w in status["workers"] if w["state"] == "ALIVE"] == [1, 1], status["workers"]
    assert [a["name"] for a in status["activeapps"]] == [session.sparkContext.appName]

    audits = _audits()
    duck = ibis.duckdb.connect()
    # (not duck.create_table: ibis 12's DROP VIEW after loading Arrow breaks with sqlglot 30)
    expected = _sorted_rows(duck.to_pyarrow(segments(ibis.memtable(audits))))
    assert expected[0]["first_at"].tzinfo is not None

    # four partitions cached on the executors: the union scans its input five times
    df = session.createDataFrame(audits).repartition(4).cache()
    assert df.count() == audits.num_rows
    assert df.schema["audited_at"].dataType.typeName() == "timestamp"  # an instant (not TIMESTAMP_NTZ)
    df.createOrReplaceTempView("audits")
    con = ibis.pyspark.connect(session)
    expr = segments(con.table("audits"))

    before = spark_cluster.completed_tasks()
    got = con.to_pyarrow(expr)  # ibis' own path: Spark → pandas → Arrow
    assert got.schema.field("first_at").type == pa.timestamp("us", tz="UTC")
    _assert_same(_sorted_rows(got), expected)

    # the direct path, without pandas: Spark SQL compiled by ibis, collected as Arrow
    direct = session.sql(con.compile(expr)).toArrow()
    assert direct.schema.field("first_at").type.tz == "UTC"
    _assert_same(_sorted_rows(direct.cast(got.schema)), expected)

    # both workers' executors ran tasks of these jobs
    def tasks_since_before() -> dict[str, int]:
        return {k: v - before.get(k, 0) for k, v in spark_cluster.completed_tasks().items()}

    _wait_for(lambda: len(r := tasks_since_before()) == 2 and all(v > 0 for v in r.values()))
    ran = tasks_since_before()
    assert len(ran) == 2 and all(v > 0 for v in ran.values()), ran

    df.unpersist()
    seconds = time.perf_counter() - t0
    record_property("spark_cluster_start_s", round(spark_cluster.startup_seconds, 2))
    record_property("spark_session_start_s", round(spark_cluster.session_seconds, 2))
    record_property("spark_test_s", round(seconds, 2))
    print(f"spark: cluster up in {spark_cluster.startup_seconds:.1f} s, session and executors in "
          f"{spark_cluster.session_seconds:.1f} s, test body {seconds:.1f} s, tasks per executor {ran}")


WAREHOUSE_DDL = """
CREATE TABLE audits_clean AS
SELECT
  DATE '2026-03-01' AS month,
  'A202603-' || lpad(i::VARCHAR, 7, '0') AS audit_id,
  TIMESTAMPTZ '2026-03-01 00:00:00+00' + to_microseconds((hash(i) % 2678400000000)::BIGINT) AS audited_at,
  TIMESTAMPTZ '2026-02-26 00:00:00+00' + to_microseconds((hash(i * 7) % 2678400000000)::BIGINT) AS decision_at,
  'C' || (hash(i * 3) % 1000000000)::VARCHAR AS content_id,
  ['video', 'live', 'comment', 'photo', 'account'][1 + (hash(i * 5) % 5)::INT] AS content_type,
  ['hate_speech', 'harassment', 'spam_scams'][1 + (hash(i * 11) % 3)::INT] AS queue,
  ['Dublin', 'Austin', 'BPO-A Manila', 'BPO-B Kuala Lumpur', 'BPO-C Bogota'][1 + (hash(i * 13) % 5)::INT] AS site,
  CASE WHEN hash(i * 13) % 5 < 2 THEN 'in_house' ELSE 'bpo' END AS team_type,
  ['GB', 'US', 'DE', 'PH'][1 + (hash(i * 17) % 4)::INT] AS market,
  'MOD-' || (hash(i * 19) % 2000)::VARCHAR AS moderator_id,
  'AUD-' || lpad((hash(i * 23) % 18)::VARCHAR, 2, '0') AS auditor_id,
  'remove' AS action_moderator, 'remove' AS action_auditor,
  'HS.1' AS policy_moderator, 'HS.1' AS policy_auditor,
  CASE WHEN hash(i * 29) % 20 = 0 THEN 'minor' ELSE 'none' END AS error_severity,
  CASE WHEN hash(i * 29) % 20 = 0 THEN 'tooling' END AS root_cause,
  'Correct call.' AS auditor_comment,
  CASE WHEN hash(i * 31) % 50 = 0 THEN NULL ELSE (hash(i * 31) % 100000) / 100.0 END::DOUBLE AS handle_time_s,
  ((hash(i * 37) % 1000) / 10.0)::DOUBLE AS sampling_weight,
  'audits/2026-03/audits_2026-03_vendors.csv' AS source_file,
  (i + 1)::BIGINT AS source_row,
  hash(i * 29) % 20 = 0 AS is_error,
  CASE WHEN hash(i * 29) % 20 = 0 THEN 'wrong_policy' END AS error_type,
  CASE WHEN hash(i * 41) % 100 = 0 THEN NULL ELSE hash(i * 41) % 97 = 0 END AS is_critical,
  'HS.1' AS policy,
  CASE WHEN hash(i * 19) % 100 = 0 THEN NULL ELSE (hash(i * 19) % 1500)::BIGINT END AS tenure_days,
  '366+' AS tenure_band,
  CASE WHEN hash(i * 43) % 30 = 0 THEN 'upheld' END AS dispute_outcome,
  CASE WHEN hash(i * 43) % 30 = 0 THEN TIMESTAMPTZ '2026-03-20 23:30:00+00' END AS dispute_resolved_at,
  hash(i * 29) % 20 = 0 AND hash(i * 43) % 30 <> 0 AS is_error_final,
  (hash(i * 47) % 3 = 0) AS is_sampled,
  (hash(i * 53) % 100)::BIGINT AS queue_rank,
  ((hash(i * 59) % 1000) / 1000.0)::DOUBLE AS model_score,
  TIMESTAMPTZ '2026-04-01 06:00:00+00' AS loaded_at,
  TIMESTAMP '2026-03-01 00:00:00' + to_microseconds((hash(i) % 2678400000000)::BIGINT) AS local_wall_clock
FROM range({n}) t(i)
"""


def test_duckdb_table_reaches_spark_through_parquet(spark_cluster, tmp_path):  # noqa: F811
    """The warehouse → Spark path: DuckDB COPY TO Parquet, spark.read.parquet. Every type of an
    audits_clean-like table (37 columns) survives; TIMESTAMPTZ stays an instant."""
    import duckdb

    session = spark_cluster.session
    db = duckdb.connect(str(tmp_path / "wh.duckdb"))
    db.execute(WAREHOUSE_DDL.format(n=60_000))
    path = tmp_path / "audits_clean.parquet"
    db.execute(f"COPY audits_clean TO '{path}' (FORMAT parquet, COMPRESSION zstd)")
    db.close()

    df = session.read.parquet(str(path))
    types = {f.name: f.dataType.simpleString() for f in df.schema.fields}
    assert len(types) == 37
    assert types["month"] == "date"
    for c in ("audited_at", "decision_at", "dispute_resolved_at", "loaded_at"):
        assert types[c] == "timestamp", (c, types[c])  # Parquet isAdjustedToUTC=true → instant
    assert types["local_wall_clock"] == "timestamp_ntz"  # DuckDB TIMESTAMP (naive) stays naive
    for c in ("is_error", "is_critical", "is_error_final", "is_sampled"):
        assert types[c] == "boolean"
    for c in ("source_row", "tenure_days", "queue_rank"):
        assert types[c] == "bigint"
    for c in ("handle_time_s", "sampling_weight", "model_score"):
        assert types[c] == "double"
    assert types["audit_id"] == types["root_cause"] == "string"

    spark = ibis.pyspark.connect(session)
    duck = ibis.duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True)

    def figures(t):
        t = t.mutate(audit_date=t.audited_at.date(), resolved_date=t.dispute_resolved_at.date())
        return (
            t.group_by("site", "queue", "audit_date")
            .agg(
                audits=t.count(),
                errors=t.is_error_final.cast("int64").sum(),
                critical=t.is_critical.cast("int64").sum(),
                tenure=t.tenure_days.sum(),
                handle_s=t.handle_time_s.sum(),
                first_at=t.audited_at.min().cast(UTC_TS),
                resolved_at=t.dispute_resolved_at.max().cast(UTC_TS),
                resolved_date=t.resolved_date.max(),
                wall_clock=t.local_wall_clock.min(),
            )
        )

    got = spark.to_pyarrow(figures(spark.read_parquet(str(path), table_name="audits_clean_pq")))
    want = duck.to_pyarrow(figures(duck.table("audits_clean")))
    key = [("site", "ascending"), ("queue", "ascending"), ("audit_date", "ascending")]
    got, want = got.sort_by(key).to_pylist(), want.sort_by(key).to_pylist()
    assert len(got) == len(want) == 5 * 3 * 31
    for g, w in zip(got, want, strict=True):
        assert g["handle_s"] == pytest.approx(w["handle_s"], rel=1e-9, abs=1e-9)
        g.pop("handle_s"), w.pop("handle_s")
        assert g == w
    assert any(r["resolved_date"] is not None and r["resolved_at"].hour == 23 for r in got)
