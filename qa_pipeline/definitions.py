"""The one Definitions object: assets, checks, jobs, schedules and resources."""

from __future__ import annotations

import os

import dagster as dg

from qa_pipeline.assets import audits, ingest, metrics
from qa_pipeline.assets.common import QualityConfig, monthly
from qa_pipeline.progress import qa_progress
from qa_pipeline.resources.handoff import ParquetHandoff
from qa_pipeline.resources.raw_store import RawStore
from qa_pipeline.resources.warehouse import Warehouse
from qa_pipeline.settings import Settings

MONTHLY_JOB = "monthly_quality"

all_assets = dg.load_assets_from_modules([ingest, audits, metrics])

monthly_quality_job = dg.define_asset_job(
    MONTHLY_JOB,
    selection=dg.AssetSelection.all(),
    partitions_def=monthly,
    description="Every monthly asset for one month: gate, clean audits, metrics and reports.",
)

monthly_schedule = dg.build_schedule_from_partitioned_job(
    monthly_quality_job,
    name="monthly_quality_schedule",
    day_of_month=2,
    hour_of_day=6,
    minute_of_hour=0,
    description="On the 2nd at 06:00 UTC: the month just ended.",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)


def executor() -> dg.ExecutorDefinition:
    """In-process by default (DuckDB has one writing process); `QA_EXECUTOR=multiprocess` for
    PostgreSQL deployments, where each step runs in its own process."""
    if os.environ.get("QA_EXECUTOR", "in_process") == "multiprocess":
        return dg.multiprocess_executor
    return dg.in_process_executor


def resources(settings: Settings | None = None) -> dict:
    settings = settings or Settings.from_env()
    return {
        "warehouse": Warehouse(url=settings.warehouse_url),
        "raw_store": RawStore(raw_dir=str(settings.raw_dir)),
        "handoff": ParquetHandoff(base_dir=str(settings.dagster_home / "storage" / "handoff")),
        "quality_config": QualityConfig(),
    }


defs = dg.Definitions(
    assets=all_assets,
    jobs=[monthly_quality_job],
    schedules=[monthly_schedule],
    resources=resources(),
    executor=executor(),
    loggers={"console": dg.colored_console_logger, "qa_progress": qa_progress},
)


def monthly_job() -> dg.JobDefinition:
    """The monthly job, resolved; `dg.reconstructable(monthly_job)` lets `execute_job` rebuild it
    in step processes (multiprocess executor)."""
    return defs.resolve_job_def(MONTHLY_JOB)
