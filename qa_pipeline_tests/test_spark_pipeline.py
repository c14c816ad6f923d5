"""Past one machine: the pipeline's own pushed-down computations, run by Apache Spark on a
standalone cluster (one master, two workers), give the figures DuckDB published.

The month is first run through the pipeline on DuckDB. Its published inputs go to Spark as Parquet
(the way a team hands a warehouse table to Spark), and the *same* domain functions the assets call
— the enrichment of `audits_clean` and the aggregate expressions behind `quality_metrics`,
`moderator_quality`, `dispute_metrics`, `rca_pareto`, `rca_drivers` and `auditor_consistency` —
are compiled by ibis for Spark SQL and executed on the cluster; the statistics then run on the small
results exactly as in the assets. Every figure must equal DuckDB's to 1e-9.
"""

from __future__ import annotations

from datetime import date

import ibis
import numpy as np
import pandas as pd
import pytest

from qa_pipeline.domain import consistency, metrics, rca
from qa_pipeline.domain import disputes as dispute_logic
from qa_pipeline.domain.enrich import enrich_audits
from qa_pipeline.domain.validation import ROSTER, run_gate
from qa_pipeline.resources.raw_store import RawStore
from qa_pipeline.settings import Thresholds

pytestmark = [pytest.mark.spark, pytest.mark.slow]

MONTH, PREVIOUS = date(2026, 2, 1), date(2026, 1, 1)


def _assert_same_table(got: pd.DataFrame, want: pd.DataFrame, key: list[str], name: str) -> None:
    got = got.sort_values(key, ignore_index=True)
    want = want.sort_values(key, ignore_index=True)
    assert len(got) == len(want) > 0, name
    for col in want.columns:
        a, b = got[col], want[col]
        if pd.api.types.is_float_dtype(b):
            np.testing.assert_allclose(a.to_numpy(float), b.to_numpy(float), rtol=0, atol=1e-9, equal_nan=True,
                                       err_msg=f"{name}.{col}")
        elif pd.api.types.is_datetime64_any_dtype(b):
            assert (pd.to_datetime(a, utc=True).fillna(pd.Timestamp(0, tz="UTC"))
                    == pd.to_datetime(b, utc=True).fillna(pd.Timestamp(0, tz="UTC"))).all(), f"{name}.{col}"
        else:
            assert a.astype(object).where(a.notna(), None).tolist() == \
                b.astype(object).where(b.notna(), None).tolist(), f"{name}.{col}"


def test_spark_computes_the_month_duckdb_published(spark_cluster, pipeline, tmp_path):  # noqa: F811
    assert pipeline.run("2026-01").success
    assert pipeline.run("2026-02").success
    warehouse = pipeline.warehouse
    # the published inputs, handed to Spark as Parquet files written by DuckDB
    exports = {}
    for name, sql in {
        "audits": "SELECT * FROM qa_core.audits_clean",
        "disputes": "SELECT * FROM qa_core.disputes",
    }.items():
        path = tmp_path / f"{name}.parquet"
        with warehouse.engine.begin() as conn:
            conn.exec_driver_sql(f"COPY ({sql}) TO '{path}' (FORMAT parquet)")
        exports[name] = str(path)
    roster = run_gate(RawStore(raw_dir=str(pipeline.raw_dir)).read_single("roster/roster.csv"), ROSTER, MONTH).clean
    roster_path = tmp_path / "roster.parquet"
    roster.to_parquet(roster_path, index=False)

    spark = ibis.pyspark.connect(spark_cluster.session)
    session = spark_cluster.session
    tasks_before = spark_cluster.completed_tasks()

    def run(expr) -> pd.DataFrame:
        """Compile for Spark SQL, run on the cluster, collect through Arrow (keeps UTC instants)."""
        return session.sql(spark.compile(expr)).toArrow().to_pandas(date_as_object=False)

    audits = spark.read_parquet(exports["audits"], table_name="audits_clean")
    published_disputes = spark.read_parquet(exports["disputes"], table_name="disputes")
    spark_roster = spark.read_parquet(str(roster_path), table_name="roster")

    def month_audits(month):
        return audits.filter(audits.month == month)

    # 1. the enrichment, as INSERT … SELECT would run it, from the validated columns of the month
    derived = ["month", "is_error", "error_type", "is_critical", "policy", "tenure_days", "tenure_band",
               "dispute_outcome", "dispute_resolved_at", "is_error_final"]
    validated = month_audits(MONTH).drop(*derived)
    enriched = run(enrich_audits(validated, spark_roster, published_disputes, MONTH))
    want = warehouse.read_table("qa_core.audits_clean", months=[MONTH])
    _assert_same_table(enriched[list(want.columns)], want, ["audit_id"], "audits_clean")

    # 2. the month's aggregates, then the same statistics as the assets
    t = Thresholds()
    computed = {
        "qa_reporting.quality_metrics": (metrics.quality_metrics(run(metrics.segment_counts(month_audits(MONTH))), MONTH),
                                         ["dimension", "segment"]),
        "qa_core.moderator_quality": (metrics.moderator_quality(run(metrics.moderator_counts(month_audits(MONTH))), MONTH,
                                                                t.target_accuracy, t.min_moderator_audits),
                                      ["moderator_id"]),
        "qa_reporting.dispute_metrics": (dispute_logic.dispute_metrics(
            run(dispute_logic.dispute_counts(month_audits(MONTH), MONTH)), MONTH), ["dimension", "segment"]),
        "qa_core.auditor_dispute_metrics": (dispute_logic.auditor_dispute_metrics(
            run(dispute_logic.dispute_counts(month_audits(MONTH), MONTH)), MONTH), ["auditor_id"]),
        "qa_reporting.rca_pareto": (rca.rca_pareto(run(rca.root_cause_counts(month_audits(MONTH))), MONTH),
                                    ["scope", "root_cause"]),
        "qa_reporting.rca_drivers": (rca.rca_drivers(run(rca.driver_counts(month_audits(PREVIOUS))),
                                                     run(rca.driver_counts(month_audits(MONTH))), MONTH),
                                     ["dimension", "segment"]),
        "qa_core.auditor_consistency": (consistency.auditor_consistency(
            run(consistency.auditor_queue_counts(month_audits(MONTH))), MONTH, t.min_n, t.drift_z), ["auditor_id"]),
    }
    for name, (frame, key) in computed.items():
        want = warehouse.read_table(name, months=[MONTH])
        _assert_same_table(frame[list(want.columns)], want, key, name)
    # the cluster did the work: both workers' executors completed tasks of these queries (the
    # executor REST figures lag a little behind the jobs)
    import time

    deadline = time.monotonic() + 15
    while True:
        ran = {k: v - tasks_before.get(k, 0) for k, v in spark_cluster.completed_tasks().items()}
        if (len(ran) == 2 and all(v > 0 for v in ran.values())) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(ran) == 2 and all(v > 0 for v in ran.values()), ran
