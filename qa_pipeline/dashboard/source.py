"""Where the dashboard reads `qa_reporting`: the published snapshot, or PostgreSQL as an analyst.

- Default: the Parquet snapshot the pipeline publishes after each month (`snapshot.py`). The app
  never opens the DuckDB warehouse, so it can hold no lock that fails a run.
- `QA_DASHBOARD_URL=postgresql+psycopg://<analyst login>:…@host/db`: read the published tables
  directly, through a `qa_analyst` login (`qa-pipeline grants`), which can read `qa_reporting`
  and nothing else. A DuckDB URL is refused: DuckDB lets one process write, and the pipeline is it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from qa_pipeline.dashboard.snapshot import (
    current_snapshot,
    dashboard_dir,
    reporting_tables,
)
from qa_pipeline.schemas import warehouse as wh


class NoDataYet(RuntimeError):
    """Nothing published for the dashboard yet."""


@dataclass(frozen=True)
class SnapshotSource:
    root: Path

    def version(self) -> str:
        snap = current_snapshot(self.root)
        if snap is None:
            raise NoDataYet(f"no dashboard snapshot in {self.root}: run a month first (`make demo` or "
                            "`qa-pipeline run --month YYYY-MM`), the pipeline publishes one after each month")
        return snap.name

    def describe(self) -> str:
        return f"snapshot {self.version()} in {self.root}"

    def load(self, attempts: int = 5) -> dict[str, pd.DataFrame]:
        """Every table from one snapshot. A snapshot pruned while it was being read (the pipeline
        published `KEEP` newer ones meanwhile) is read again from the current one."""
        for attempt in range(attempts):
            try:
                snap = current_snapshot(self.root)
                if snap is None:
                    self.version()
                # the tables this code knows, and any newer one the pipeline published since it started
                names = sorted({*reporting_tables(), *snap.tables})
                return {name: snap.read(name) for name in names}
            except FileNotFoundError:
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")


@dataclass(frozen=True)
class AnalystWarehouse:
    url: str

    def _warehouse(self):
        from qa_pipeline.resources.warehouse import Warehouse

        return Warehouse(url=self.url)

    def version(self) -> str:
        """The latest report the analyst can see (`report_runs`), so a new month reloads."""
        import sqlalchemy as sa

        warehouse = self._warehouse()
        if not warehouse.has_table("qa_reporting.report_runs"):
            return "no report yet"
        runs = wh.table("qa_reporting.report_runs")
        return str(warehouse.scalar(sa.select(sa.func.max(runs.c.generated_at))))

    def check_analyst(self) -> None:
        """Refuse a login that can read `qa_core`: the dashboard reads as an analyst, nothing more."""
        import sqlalchemy as sa

        warehouse = self._warehouse()
        can_read_core = warehouse.scalar(sa.select(sa.func.has_schema_privilege(
            sa.func.current_user(), sa.literal(wh.CORE), sa.literal("USAGE"))))
        if can_read_core:
            raise ValueError(f"QA_DASHBOARD_URL logs in as {warehouse.engine.url.username!r}, which can read "
                             f"{wh.CORE}: give the dashboard a qa_analyst login (`qa-pipeline grants`, "
                             "QA_ANALYST_LOGIN / QA_ANALYST_PASSWORD)")

    def describe(self) -> str:
        return self._warehouse().describe()

    def load(self) -> dict[str, pd.DataFrame]:
        self.check_analyst()
        warehouse = self._warehouse()
        return {name: warehouse.read_table(name) for name in reporting_tables()}


def open_source() -> SnapshotSource | AnalystWarehouse:
    url = os.environ.get("QA_DASHBOARD_URL", "").strip()
    if not url:
        return SnapshotSource(dashboard_dir())
    if not url.startswith("postgresql"):
        raise ValueError(
            f"QA_DASHBOARD_URL={url.split('://')[0]}://…: only a PostgreSQL URL (an analyst login) is read "
            "directly; leave it unset to read the snapshot the pipeline publishes (QA_DASHBOARD_DIR)")
    return AnalystWarehouse(url)
