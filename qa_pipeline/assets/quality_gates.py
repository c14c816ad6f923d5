"""Great Expectations on every published table, as blocking Dagster asset checks."""

import dagster as dg
import pandas as pd
import sqlalchemy as sa

from qa_pipeline.assets.common import DATA_ENGINEERING, monthly, run_attempt
from qa_pipeline.domain.months import (
    months_back,
    next_month,
    previous_month,
)
from qa_pipeline.resources.quality_gates import QualityGates
from qa_pipeline.resources.warehouse import Warehouse
from qa_pipeline.schemas import expectations as gx_suites
from qa_pipeline.schemas import warehouse as wh

# asset → (table, which month's rows the partition owns)
CHECKED = {
    "audits_clean": ("qa_core.audits_clean", "same"),
    "quality_metrics": ("qa_reporting.quality_metrics", "same"),
    "error_trends": ("qa_reporting.error_trends", "same"),
    "rca_pareto": ("qa_reporting.rca_pareto", "same"),
    "rca_drivers": ("qa_reporting.rca_drivers", "same"),
    "auditor_consistency": ("qa_core.auditor_consistency", "same"),
    "comment_themes": ("qa_reporting.comment_themes", "same"),
    "calibration_agreement": ("qa_reporting.calibration_agreement", "same"),
    "dispute_metrics": ("qa_reporting.dispute_metrics", "same"),
    "policy_change_impact": ("qa_reporting.policy_change_impact", "whole"),
    "experiment_readout": ("qa_reporting.experiment_readout", "whole"),
    "sampling_plan": ("qa_reporting.sampling_plan", "next"),
}


def _trailing_rows(warehouse: Warehouse, table_name: str, month) -> list[int]:
    table = wh.table(table_name)
    if not warehouse.has_table(table_name):
        return []
    months = months_back(previous_month(month), 2)
    counts = warehouse.read(sa.select(table.c.month, sa.func.count().label("n"))
                            .where(table.c.month.in_(months)).group_by(table.c.month))
    return [int(n) for n in counts["n"]]


def _failures_md(failures: list[dict]) -> str:
    if not failures:
        return "all expectations met"
    rows = pd.DataFrame([{**f, "kwargs": ", ".join(f"{k}={v}" for k, v in f["kwargs"].items())} for f in failures])
    return rows[["severity", "expectation", "kwargs", "unexpected_count", "observed_value"]].to_markdown(index=False)


def gx_check(asset_name: str, table_name: str, scope: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=asset_name, name=f"gx_{table_name.split('.')[1]}", blocking=True,
        description=(f"Great Expectations suite of `{table_name}` (keys, ranges, ordered pairs, sums that "
                     "must add up: ERROR; row count against the trailing three months: WARN). Failing "
                     "expectations are in the metadata; the Data Docs site is in QA_REPORTS_DIR/data_docs."),
    )
    def _check(context: dg.AssetCheckExecutionContext, warehouse: Warehouse,
               quality_gates: QualityGates) -> dg.AssetCheckResult:
        # the run's partition (partitioned asset checks are still a preview feature in Dagster 1.13);
        # the suite reads the rows this run staged, before anything is published
        attempt = run_attempt(context, warehouse)
        month = attempt.month
        suite = gx_suites.SUITES[table_name]
        frame = warehouse.execute(attempt.staged(table_name))
        if scope == "whole":
            trailing = []
        else:
            owned = next_month(month) if scope == "next" else month
            trailing = _trailing_rows(warehouse, table_name, owned)
        outcome = quality_gates.validate(table_name.split(".")[1], gx_suites.prepare(suite, frame),
                                         gx_suites.expectations(suite, trailing), f"{month:%Y-%m}")
        worst = outcome.max_failed_severity
        return dg.AssetCheckResult(
            passed=outcome.passed and worst is None,
            severity=dg.AssetCheckSeverity.WARN if worst == "warning" else dg.AssetCheckSeverity.ERROR,
            description=(f"{outcome.evaluated - len(outcome.failures)}/{outcome.evaluated} expectations met"
                         + (f"; worst failure: {worst}" if worst else "")),
            metadata={
                "failed_expectations": dg.MetadataValue.md(_failures_md(outcome.failures)),
                "expectations": dg.MetadataValue.int(outcome.evaluated),
                "rows_validated": dg.MetadataValue.int(len(frame)),
                "staged_as": dg.MetadataValue.text(", ".join(attempt.staged_tables_of(table_name))),
                "data_docs": dg.MetadataValue.path(outcome.docs_index or ""),
            },
        )

    return _check


gx_checks = [gx_check(asset, table, scope) for asset, (table, scope) in CHECKED.items()]


@dg.asset(
    partitions_def=monthly, group_name="quality", owners=[DATA_ENGINEERING], kinds={"great_expectations"},
    deps=list(CHECKED),
    description=("The Great Expectations Data Docs site (QA_REPORTS_DIR/data_docs/index.html), rebuilt "
                 "once the month's published tables have passed their suites."),
)
def data_docs(context: dg.AssetExecutionContext, quality_gates: QualityGates) -> dg.MaterializeResult:
    index = quality_gates.build_docs()
    return dg.MaterializeResult(metadata={"index": dg.MetadataValue.path(str(index)),
                                          "suites": dg.MetadataValue.int(len(CHECKED))})
