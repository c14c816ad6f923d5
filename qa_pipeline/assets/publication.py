"""The month's publication: every table the run staged becomes visible in one transaction."""

import dagster as dg
import pandas as pd

from qa_pipeline.assets.common import DATA_ENGINEERING, monthly_asset, run_attempt
from qa_pipeline.resources.warehouse import Warehouse

STAGED_ASSETS = [
    "validated_audits", "roster", "disputes", "audits_clean", "quality_metrics", "moderator_quality",
    "dispute_metrics", "error_trends", "rca_pareto", "rca_drivers", "auditor_consistency", "comment_themes",
    "calibration_agreement", "calibration_rater_scores", "policy_change_impact", "experiment_readout",
    "sampling_plan", "recommendations",
]


MONTH_TABLES = [
    "qa_core.audits_quarantine", "qa_core.ingest_log", "qa_core.disputes", "qa_core.audits_clean",
    "qa_core.moderator_quality", "qa_core.auditor_consistency", "qa_core.calibration_rater_scores",
    "qa_reporting.quality_metrics", "qa_reporting.dispute_metrics", "qa_reporting.error_trends",
    "qa_reporting.rca_pareto", "qa_reporting.rca_drivers", "qa_reporting.comment_themes",
    "qa_reporting.calibration_agreement", "qa_reporting.policy_change_impact", "qa_reporting.experiment_readout",
    "qa_reporting.sampling_plan", "qa_reporting.recommendations",
]
"""Every table a month's run stages: a publication missing one of them is refused."""


@monthly_asset(
    group="publish", owner=DATA_ENGINEERING, kinds={"sql"}, deps=STAGED_ASSETS,
    description=(
        "Write–audit–publish, last step: every table this run staged for the month (in `qa_staging`) "
        "replaces its published rows in one transaction — the month's partitions, the whole-table "
        "outputs, the quarantine and ingest log. It runs only when every upstream asset succeeded and "
        "every blocking check on the staged rows passed (the checks record their outcome beside the "
        "staged rows and the publication refuses any that failed, also when this step is re-executed "
        "alone); otherwise the previous version stays "
        "published and the staged rows stay readable in `qa_staging` until a later attempt publishes. "
        "Recorded in `qa_core.publications`."
    ),
)
def month_publication(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
    attempt = run_attempt(context, warehouse)
    published = attempt.publish(required=MONTH_TABLES)
    context.log.info(f"{attempt.month:%Y-%m}: published {len(published)} tables, "
                     f"{sum(published.values()):,} rows, in one transaction")
    summary = pd.DataFrame(sorted(published.items()), columns=["table", "rows"])
    return dg.MaterializeResult(metadata={
        "tables": dg.MetadataValue.int(len(published)),
        "rows": dg.MetadataValue.int(sum(published.values())),
        "published": dg.MetadataValue.md(summary.to_markdown(index=False)),
        "run_id": dg.MetadataValue.text(context.run_id),
    })
