"""The one Definitions object: assets, checks, jobs, schedules and resources."""

from __future__ import annotations

import os

import dagster as dg

from qa_pipeline.assets import (
    accuracy,
    analysis,
    audits,
    calibration,
    dashboard,
    disputes,
    early_warning,
    impact,
    ingest,
    metrics,
    month_to_date,
    publication,
    reporting,
)
from qa_pipeline.assets import quality_gates as gates
from qa_pipeline.assets.common import QualityConfig, monthly
from qa_pipeline.assets.deep_dive import deep_dive_job
from qa_pipeline.assets.quality_gates import gx_checks
from qa_pipeline.domain.months import partition_key, previous_month
from qa_pipeline.operations import alerts, freshness, raw_deliveries
from qa_pipeline.operations.raw_deliveries import restatement_months
from qa_pipeline.progress import qa_progress
from qa_pipeline.refresh import refresh_requests
from qa_pipeline.resources.quality_gates import QualityGates
from qa_pipeline.resources.raw_store import RawStore
from qa_pipeline.resources.report_store import ReportStore
from qa_pipeline.resources.warehouse import Warehouse
from qa_pipeline.settings import Settings

MONTHLY_JOB = "monthly_quality"

all_assets = dg.load_assets_from_modules([ingest, audits, metrics, calibration, disputes, impact, analysis, gates, publication, reporting,
                                           early_warning, dashboard, accuracy])

publication_deadline = freshness.publication_deadline_checks()
"""The month just ended published by the 3rd at 12:00 UTC (`operations.freshness`): evaluated by its
own sensor, not by the monthly job (a month's run would tell the overdue state of another month)."""

monthly_quality_job = dg.define_asset_job(
    MONTHLY_JOB,
    selection=(dg.AssetSelection.all() - dg.AssetSelection.assets(*month_to_date.assets)  # those are daily
               - dg.AssetSelection.checks(*publication_deadline)),
    partitions_def=monthly,
    description="Every monthly asset for one month: gate, clean audits, metrics and reports.",
    # run monitoring (dagster.yaml) fails a run still going after this long: its process has died
    tags={"dagster/max_runtime": os.environ.get("QA_MAX_RUN_SECONDS", "7200")},
)

@dg.schedule(
    name="monthly_quality_schedule",
    job=monthly_quality_job,
    cron_schedule="0 6 2 * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description=(
        "On the 2nd at 06:00 UTC: the month just ended, and every earlier month whose audits were "
        "overturned by disputes resolved in that month (restatements)."
    ),
)
def monthly_quality_schedule(context: dg.ScheduleEvaluationContext, raw_store: RawStore, warehouse: Warehouse):
    tick = context.scheduled_execution_time
    month = previous_month(tick.date().replace(day=1))
    requests = [dg.RunRequest(run_key=f"{month:%Y-%m}@{tick:%Y-%m-%d}", partition_key=partition_key(month))]
    for restated in restatement_months(raw_store, warehouse, month):
        requests.append(dg.RunRequest(
            run_key=f"{restated:%Y-%m}@{tick:%Y-%m-%d}:restatement", partition_key=partition_key(restated),
            tags={"qa/restatement": "true", "qa/restated_by_disputes_of": f"{month:%Y-%m}"},
        ))
    return requests


@dg.run_status_sensor(
    name="month_refresh_sensor",
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[monthly_quality_job],
    request_job=monthly_quality_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "When a month's figures are published (a run, a restatement requested by the schedule, a "
        "backfill), requests a refresh of every later published month that reads it — the assets "
        "whose partition mappings reach back to it, and what is downstream of them — unless a run of "
        "that month started after it. A failed run requests nothing: no month is computed from a "
        "neighbour that failed its gate."
    ),
)
def month_refresh_sensor(context: dg.RunStatusSensorContext, warehouse: Warehouse):
    return refresh_requests(context.dagster_run, context.instance, warehouse, context.repository_def.asset_graph)


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
        "quality_config": QualityConfig(),
        "report_store": ReportStore(reports_dir=str(settings.reports_dir)),
        "quality_gates": QualityGates(project_dir=str(settings.dagster_home / "gx"),
                                      docs_dir=str(settings.reports_dir / "data_docs")),
    }


defs = dg.Definitions(
    assets=[*all_assets, *month_to_date.assets],
    asset_checks=[*gx_checks, *publication_deadline],
    jobs=[monthly_quality_job, deep_dive_job, month_to_date.early_warning_daily_job],
    schedules=[monthly_quality_schedule, month_to_date.early_warning_daily_schedule],
    sensors=[month_refresh_sensor, raw_deliveries.build_raw_delivery_sensor(monthly_quality_job),
             freshness.publication_deadline_sensor(publication_deadline), alerts.run_failure_alerts,
             alerts.check_failure_alerts],
    resources=resources(),
    executor=executor(),
    loggers={"console": dg.colored_console_logger, "qa_progress": qa_progress},
)


def monthly_job() -> dg.JobDefinition:
    """The monthly job, resolved; `dg.reconstructable(monthly_job)` lets `execute_job` rebuild it
    in step processes (multiprocess executor)."""
    return defs.resolve_job_def(MONTHLY_JOB)
