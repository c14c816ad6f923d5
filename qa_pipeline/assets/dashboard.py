"""The dashboard's snapshot: after each month's report, every `qa_reporting` table exported to
Parquet and swapped in atomically (`qa_pipeline/dashboard/snapshot.py`)."""

import dagster as dg
import sqlalchemy as sa

from qa_pipeline.assets.common import monthly_asset
from qa_pipeline.assets.reporting import report_site
from qa_pipeline.dashboard.snapshot import (
    current_snapshot,
    dashboard_dir,
    reporting_tables,
    write_snapshot,
)
from qa_pipeline.resources.report_store import ReportStore
from qa_pipeline.resources.warehouse import Warehouse
from qa_pipeline.schemas import warehouse as wh

CHECK = dg.AssetCheckSpec(
    "snapshot_matches_warehouse", asset="dashboard_snapshot",
    description=("The current snapshot holds every published `qa_reporting` table and nothing else, each "
                 "with as many rows in its Parquet file (read back) as the warehouse table has."),
)


@monthly_asset(
    group="reporting", kinds={"parquet", "streamlit"},
    deps=[report_site], check_specs=[CHECK],
    description=("The Training & Quality dashboard's data: every published `qa_reporting` table (never "
                 "`qa_core`) exported to Parquet in a new snapshot folder under `QA_DASHBOARD_DIR` "
                 "(default `QA_REPORTS_DIR/dashboard`) and made current by an atomic swap of "
                 "`current.json`, after the month's report. The dashboard (`make dashboard`) reads these "
                 "files, so it never opens the DuckDB warehouse and never holds a lock a run could meet."),
)
def dashboard_snapshot(context: dg.AssetExecutionContext, warehouse: Warehouse,
                       report_store: ReportStore) -> dg.MaterializeResult:
    root = dashboard_dir(report_store.reports_dir)
    names = [name for name in reporting_tables() if warehouse.has_table(name)]
    snap = write_snapshot({name: warehouse.read_table(name) for name in names}, root, run_id=context.run.run_id)
    rows = snap.tables
    listing = "\n".join(f"| `{name}` | {n:,} |" for name, n in rows.items())
    problems = snapshot_problems(warehouse, root)
    return dg.MaterializeResult(
        metadata={
            "snapshot": dg.MetadataValue.path(str(snap.path)),
            "tables": dg.MetadataValue.int(len(rows)),
            "dagster/row_count": dg.MetadataValue.int(sum(rows.values())),
            "rows_by_table": dg.MetadataValue.md("| table | rows |\n| --- | ---: |\n" + listing),
            "open": dg.MetadataValue.md("`make dashboard` (or `qa-pipeline dashboard --port 8501`)"),
        },
        check_results=[dg.AssetCheckResult(
            check_name=CHECK.name, passed=not problems,
            metadata={"snapshot": dg.MetadataValue.text(snap.name),
                      "problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in problems) or "none")},
        )],
    )


def snapshot_problems(warehouse: Warehouse, root) -> list[str]:
    """What differs between the current snapshot's files and the published tables."""
    snap = current_snapshot(root)
    if snap is None:
        return [f"no current snapshot in {root}"]
    published = [name for name in reporting_tables() if warehouse.has_table(name)]
    problems = []
    extra = sorted(set(snap.tables) - set(published))
    if extra:
        problems.append(f"tables that are not published qa_reporting tables: {extra}")
    for name in published:
        if name not in snap.tables:
            problems.append(f"{name}: missing from the snapshot")
            continue
        in_warehouse = int(warehouse.scalar(sa.select(sa.func.count()).select_from(wh.table(name))))
        in_file = len(snap.read(name))
        if in_file != in_warehouse:
            problems.append(f"{name}: {in_file} rows in the snapshot, {in_warehouse} in the warehouse")
    return problems
