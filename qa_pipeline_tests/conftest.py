"""Shared fixtures: a generated sample, isolated pipeline resources, crafted raw rows."""

from __future__ import annotations

import csv
import math
import os
import shutil
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from qa_pipeline.assets.common import QualityConfig
from qa_pipeline.resources.quality_gates import QualityGates
from qa_pipeline.resources.raw_store import RawStore
from qa_pipeline.resources.report_store import ReportStore
from qa_pipeline.resources.warehouse import Warehouse, dispose_engines
from qa_pipeline.sample_data import SampleSpec, generate
from qa_pipeline_tests.spark_cluster import spark_cluster  # noqa: F401  (one definition: a session-wide cluster per process)

SAMPLE_MONTHS = ["2026-01", "2026-02", "2026-03", "2026-04", "2026-05", "2026-06"]

VALID_AUDIT = {
    "audit_id": "A-1",
    "audited_at": "2026-03-10T12:00:00Z",
    "decision_at": "2026-03-09T08:30:00Z",
    "content_id": "C-1",
    "content_type": "video",
    "queue": "hate_speech",
    "site": "Dublin",
    "team_type": "in_house",
    "market": "GB",
    "moderator_id": "MOD-1",
    "auditor_id": "AUD-1",
    "action_moderator": "remove",
    "action_auditor": "remove",
    "policy_moderator": "HS.1",
    "policy_auditor": "HS.1",
    "error_severity": "none",
    "root_cause": "",
    "auditor_comment": "Correct call.",
    "handle_time_s": "42.5",
    "sampling_weight": "2.0",
}


def wilson_closed_form(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson (1927) score interval, written out: the independent reference for stats/."""
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def enrich_frame(audits: pd.DataFrame, roster: pd.DataFrame, month, disputes: pd.DataFrame | None = None):
    """`domain.enrich.enrich_audits` run by DuckDB on in-memory frames, rows in file order."""
    import ibis

    from qa_pipeline.domain.enrich import enrich_audits

    if disputes is None or disputes.empty:
        disputes = pd.DataFrame({"dispute_id": pd.Series(dtype="str"), "audit_id": pd.Series(dtype="str"),
                                 "resolved_at": pd.Series(dtype="datetime64[us, UTC]"),
                                 "outcome": pd.Series(dtype="str")})
    expr = enrich_audits(ibis.memtable(audits), ibis.memtable(roster), ibis.memtable(disputes), month)
    out = expr.to_pyarrow().to_pandas(date_as_object=False)
    key = ["source_file", "source_row"] if "source_row" in out.columns else ["audit_id"]
    return out.sort_values(key, ignore_index=True)


def python_peak(fn) -> int:
    """Peak bytes Python allocated while `fn()` ran (tracemalloc; Arrow buffers are not seen)."""
    import tracemalloc

    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def audit(**changes) -> dict:
    row = dict(VALID_AUDIT)
    row.update({k: ("" if v is None else v) for k, v in changes.items()})
    return row


def write_csv(path: Path, rows: list[dict], columns: list[str] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = columns or list(rows[0].keys())
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.fixture(scope="session")
def sample_raw(tmp_path_factory) -> Path:
    """Six generated months with the planted effects (read-only: tests that change raw files copy
    it first). Spike 2026-04, HS.2 change 2026-02-10, drift from 2026-03, EXP-01 2026-02..05,
    auditor error (AUD-19) 2026-01; re-audits of 5 % of every month."""
    out = tmp_path_factory.mktemp("sample") / "raw"
    generate(SampleSpec(months=SAMPLE_MONTHS, audits_per_month=3000, seed=11), out)
    return out


@pytest.fixture
def raw_copy(sample_raw, tmp_path) -> Path:
    dest = tmp_path / "raw"
    shutil.copytree(sample_raw, dest)
    return dest


class Pipeline:
    """Resources on temp paths and an ephemeral instance; `run(month)` materializes a month."""

    def __init__(self, tmp_path: Path, raw_dir: Path, warehouse_url: str | None = None):
        self.tmp = tmp_path
        self.raw_dir = raw_dir
        self.url = warehouse_url or f"duckdb:///{tmp_path}/wh.duckdb"
        self.instance = dg.DagsterInstance.ephemeral()
        self.overrides: dict = {}

    @property
    def warehouse(self) -> Warehouse:
        return Warehouse(url=self.url)

    def resources(self) -> dict:
        return {
            "warehouse": self.warehouse,
            "raw_store": RawStore(raw_dir=str(self.raw_dir)),
            "quality_config": QualityConfig(overrides=self.overrides),
            "report_store": ReportStore(reports_dir=str(self.tmp / "reports")),
            "quality_gates": QualityGates(project_dir=str(self.tmp / "gx"), docs_dir=str(self.tmp / "reports" / "data_docs")),
        }

    def run(self, month: str, assets=None, raise_on_error: bool = False):
        from qa_pipeline.definitions import all_assets, gx_checks

        return dg.materialize(
            assets or [*all_assets, *gx_checks],
            partition_key=f"{month}-01",
            resources=self.resources(),
            instance=self.instance,
            raise_on_error=raise_on_error,
        )

    def table(self, name: str):
        return self.warehouse.read_table(name)

    def attempt(self, month: str, result):
        """The staging area of the run behind `result` (a `materialize` result) for `month`."""
        from qa_pipeline.domain.months import month_start
        from qa_pipeline.resources.staging import Attempt

        return Attempt(self.warehouse, month_start(month), result.run_id)

    def staged(self, name: str, result, month: str | None = None):
        """The rows that run staged for `name` (kept readable when the run did not publish)."""
        month = month or result.dagster_run.tags["dagster/partition"]
        attempt = self.attempt(month, result)
        return self.warehouse.execute(attempt.staged(name))


@pytest.fixture
def pipeline(tmp_path, sample_raw) -> Pipeline:
    yield Pipeline(tmp_path, sample_raw)
    dispose_engines()


def _postgres_admin_url() -> str:
    url = os.environ.get("QA_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("QA_TEST_POSTGRES_URL is not set under CI: PostgreSQL tests must run, not skip")
        pytest.skip("no PostgreSQL (run through `make test`, which starts one)")
    return url


@pytest.fixture
def postgres_url() -> str:
    """A fresh PostgreSQL database for this test, dropped afterwards. Fails under CI when missing."""
    import uuid

    import sqlalchemy as sa

    admin = sa.make_url(_postgres_admin_url())
    name = f"qa_t_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    yield admin.set(database=name).render_as_string(hide_password=False)
    dispose_engines()
    with engine.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    engine.dispose()


@pytest.fixture(params=["duckdb", "postgres"])
def warehouse_url(request, tmp_path) -> str:
    """Each backend in turn: a DuckDB file, then a fresh PostgreSQL database."""
    if request.param == "duckdb":
        yield f"duckdb:///{tmp_path}/wh.duckdb"
        dispose_engines()
    else:
        yield request.getfixturevalue("postgres_url")
