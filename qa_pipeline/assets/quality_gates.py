"""Expectation suites on every published table, as blocking Dagster asset checks: Great
Expectations on the staged rows of the small tables, SQL counts inside the warehouse for
`qa_core.audits_clean` (millions of rows a month are never read back into pandas)."""

import dagster as dg
import pandas as pd
import sqlalchemy as sa

from qa_pipeline.assets.common import DATA_ENGINEERING, monthly, run_attempt
from qa_pipeline.domain.months import (
    months_back,
    next_month,
    previous_month,
)
from qa_pipeline.resources.quality_gates import (
    GateOutcome,
    QualityGates,
    validate_in_engine,
)
from qa_pipeline.resources.staging import Attempt
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
    "early_warning": ("qa_reporting.early_warnings", "same"),
    "accuracy_corrected": ("qa_reporting.accuracy_corrected", "same"),
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


def _trailing(attempt: Attempt, table_name: str, scope: str) -> list[int]:
    """Row counts of the three published partitions before the one the run owns (none for a
    whole-table scope)."""
    if scope == "whole":
        return []
    owned = next_month(attempt.month) if scope == "next" else attempt.month
    return _trailing_rows(attempt.warehouse, table_name, owned)


def suite_in_engine(attempt: Attempt, table_name: str, scope: str) -> tuple[GateOutcome, int]:
    """The table's suite over the rows the run staged, as SQL counts inside the warehouse: the
    outcome and the rows validated."""
    suite = gx_suites.SUITES[table_name]
    table = gx_suites.prepare_in_engine(suite, attempt.staged(table_name))
    return validate_in_engine(table, gx_suites.expectations(suite, _trailing(attempt, table_name, scope)),
                              attempt.warehouse.execute)


def suite_with_gx(attempt: Attempt, table_name: str, scope: str, quality_gates: QualityGates) -> tuple[GateOutcome, int]:
    """The table's suite over the rows the run staged, by GX on pandas (its results feed the Data
    Docs): the outcome and the rows validated."""
    suite = gx_suites.SUITES[table_name]
    frame = attempt.warehouse.execute(attempt.staged(table_name))
    outcome = quality_gates.validate(table_name.split(".")[1], gx_suites.prepare(suite, frame),
                                     gx_suites.expectations(suite, _trailing(attempt, table_name, scope)),
                                     f"{attempt.month:%Y-%m}")
    return outcome, len(frame)


def gx_check(asset_name: str, table_name: str, scope: str) -> dg.AssetChecksDefinition:
    in_engine = gx_suites.SUITES[table_name].in_engine
    where = ("run as SQL counts inside the warehouse over the staged rows" if in_engine
             else "run by Great Expectations; the Data Docs site is in QA_REPORTS_DIR/data_docs")

    @dg.asset_check(
        asset=asset_name, name=f"gx_{table_name.split('.')[1]}", blocking=True,
        description=(f"Expectation suite of `{table_name}` (keys, ranges, ordered pairs, sums that "
                     "must add up: ERROR; row count against the trailing three months: WARN), "
                     f"{where}. Failing expectations are in the metadata."),
    )
    def _check(context: dg.AssetCheckExecutionContext, warehouse: Warehouse,
               quality_gates: QualityGates) -> dg.AssetCheckResult:
        # the run's partition (partitioned asset checks are still a preview feature in Dagster 1.13);
        # the suite reads the rows this run staged, before anything is published
        attempt = run_attempt(context, warehouse)
        if gx_suites.SUITES[table_name].in_engine:
            outcome, rows = suite_in_engine(attempt, table_name, scope)
        else:
            outcome, rows = suite_with_gx(attempt, table_name, scope, quality_gates)
        worst = outcome.max_failed_severity
        attempt.record_check(table_name, f"gx_{table_name.split('.')[1]}", passed=worst != "critical")
        metadata = {
            "failed_expectations": dg.MetadataValue.md(_failures_md(outcome.failures)),
            "expectations": dg.MetadataValue.int(outcome.evaluated),
            "rows_validated": dg.MetadataValue.int(rows),
            "staged_as": dg.MetadataValue.text(", ".join(attempt.staged_tables_of(table_name))),
        }
        if outcome.docs_index is not None:
            metadata["data_docs"] = dg.MetadataValue.path(outcome.docs_index)
        else:
            metadata["validated_in"] = dg.MetadataValue.text(f"warehouse ({warehouse.dialect}), SQL counts")
        return dg.AssetCheckResult(
            passed=outcome.passed and worst is None,
            severity=dg.AssetCheckSeverity.WARN if worst == "warning" else dg.AssetCheckSeverity.ERROR,
            description=(f"{outcome.evaluated - len(outcome.failures)}/{outcome.evaluated} expectations met"
                         + (f"; worst failure: {worst}" if worst else "")),
            metadata=metadata,
        )

    return _check


gx_checks = [gx_check(asset, table, scope) for asset, (table, scope) in CHECKED.items()]


@dg.asset(
    partitions_def=monthly, group_name="quality", owners=[DATA_ENGINEERING], kinds={"great_expectations"},
    deps=list(CHECKED),
    description=("The Great Expectations Data Docs site (QA_REPORTS_DIR/data_docs/index.html), rebuilt "
                 "once the month's published tables have passed their suites (the suites run by GX: "
                 "`qa_core.audits_clean` is checked by SQL counts in the warehouse)."),
)
def data_docs(context: dg.AssetExecutionContext, quality_gates: QualityGates) -> dg.MaterializeResult:
    index = quality_gates.build_docs()
    with_gx = [t for t, _ in CHECKED.values() if not gx_suites.SUITES[t].in_engine]
    return dg.MaterializeResult(metadata={"index": dg.MetadataValue.path(str(index)),
                                          "suites": dg.MetadataValue.int(len(with_gx))})
