"""What every asset shares: the monthly partitions, owners, metadata for the Dagster UI."""

from __future__ import annotations

import warnings
from dataclasses import replace
from datetime import date

import dagster as dg
import pandas as pd
import sqlalchemy as sa

from qa_pipeline.domain.months import month_start
from qa_pipeline.domain.redaction import redact_series
from qa_pipeline.resources.staging import Attempt
from qa_pipeline.schemas import warehouse as wh
from qa_pipeline.settings import PARTITIONS_START, Settings, Thresholds

monthly = dg.MonthlyPartitionsDefinition(start_date=PARTITIONS_START)

QUALITY_TEAM = "team:quality-analytics"
DATA_ENGINEERING = "team:data-engineering"
WAREHOUSE_POOL = "warehouse"
FREE_TEXT = {"auditor_comment", "reason", "raw_record", "summary", "hypothesis"}


def monthly_asset(group: str, description: str, kinds: set[str] | None = None, owner: str = QUALITY_TEAM,
                  **kwargs):
    """`@dg.asset` with what every monthly asset of this project shares: the monthly partitions,
    a group, an owner, kinds (the warehouse's added), the `warehouse` pool and a description."""
    return dg.asset(partitions_def=monthly, group_name=group, owners=[owner],
                    kinds={*(kinds or {"pandas"}), warehouse_kind()}, pool=WAREHOUSE_POOL,
                    description=description, **kwargs)


def reads_months(asset, months: int) -> dg.AssetDep:
    """A declared cross-month read: the asset's partitions of this month and the `months` before it.

    `qa_pipeline/refresh.py` derives from these which later months a restated month refreshes."""
    with warnings.catch_warnings():  # the parameter is marked beta; the first months have no earlier ones
        warnings.simplefilter("ignore", dg.BetaWarning)
        mapping = dg.TimeWindowPartitionMapping(start_offset=-months, end_offset=0,
                                                allow_nonexistent_upstream_partitions=True)
    return dg.AssetDep(asset, partition_mapping=mapping)


def reads_all_months(asset) -> dg.AssetDep:
    """A declared read of every month (a whole-table output recomputed from all published months)."""
    return dg.AssetDep(asset, partition_mapping=dg.AllPartitionMapping())


def warehouse_kind() -> str:
    return "postgres" if Settings.from_env().warehouse_url.startswith("postgresql") else "duckdb"


class QualityConfig(dg.ConfigurableResource):
    """Thresholds of the published figures: `settings.Thresholds`, from the environment, with
    optional overrides (tests, or a launchpad run that tries another target)."""

    overrides: dict[str, float] = {}

    def thresholds(self) -> Thresholds:
        base = Thresholds.from_env()
        typed = {k: type(getattr(base, k))(v) for k, v in self.overrides.items()}
        return replace(base, **typed)


def partition_month(context: dg.AssetExecutionContext) -> date:
    return month_start(context.partition_key)


def run_attempt(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext, warehouse) -> Attempt:
    """This run's attempt at its month. A re-execution of a run continues its root run's attempt
    (the steps it does not re-run staged their tables there); the runs of one asset backfill for one
    month share an attempt (Dagster may split a month's assets over several runs when their
    cross-month dependencies wait for other months); another run never reads it."""
    run = context.run
    return Attempt(warehouse, month_start(run.tags["dagster/partition"]), run.root_run_id or run.run_id,
                   shared_by=run.tags.get("dagster/backfill"))


def empty_frame(table_name: str) -> pd.DataFrame:
    """A frame with the table's columns and no rows (an absent optional input stages this)."""
    return pd.DataFrame({c.name: pd.Series(dtype="object") for c in wh.table(table_name).columns})


def _column_type(column: sa.Column) -> str:
    return str(column.type.compile(dialect=sa.dialects.postgresql.dialect())).lower()


def column_schema(table_name: str) -> dg.TableSchema:
    table = wh.table(table_name)
    return dg.TableSchema(columns=[
        dg.TableColumn(name=c.name, type=_column_type(c), description=c.comment or "")
        for c in table.columns
    ])


def preview(frame: pd.DataFrame, rows: int = 5, columns: list[str] | None = None) -> dg.MetadataValue:
    """A small Markdown preview; free text is redacted before it reaches the UI."""
    head = frame.head(rows) if columns is None else frame.loc[:, columns].head(rows)
    head = head.copy()
    for col in head.columns:
        if col in FREE_TEXT:
            head[col] = redact_series(head[col]).str.slice(0, 60)
    return dg.MetadataValue.md(head.to_markdown(index=False, floatfmt=".4f"))


def table_metadata(table_name: str, frame: pd.DataFrame, preview_columns: list[str] | None = None,
                   **figures) -> dict:
    """Row count, column schema, preview and headline figures (numbers, so the UI plots them)."""
    meta = {
        "dagster/row_count": dg.MetadataValue.int(len(frame)),
        "dagster/column_schema": column_schema(table_name),
        "dagster/table_name": table_name,
        "preview": preview(frame, columns=preview_columns),
    }
    for name, value in figures.items():
        if value is None or (isinstance(value, float) and pd.isna(value)):
            continue
        meta[name] = dg.MetadataValue.int(int(value)) if isinstance(value, int) else dg.MetadataValue.float(float(value))
    return meta
