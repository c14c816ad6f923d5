"""The month's two publications: every table a run staged becomes visible in one transaction.

1. `month_publication`: the month's own figures (the gate's outputs, the clean audits and every
   table computed from the month's audits alone).
2. `cross_month_publication`: the figures that read other months too (trends and p-charts, change
   drivers, the sampling plan, policy-change impact, experiment readouts, recommendations). They are
   computed after the month's own figures are published, from published tables only, so their
   cross-month reads are declared dependencies (partition mappings onto `month_publication`): the
   asset graph shows them, backfills order the months by them, and a restated month refreshes the
   later months that read it (`qa_pipeline/refresh.py`).
"""

import dagster as dg
import pandas as pd

from qa_pipeline.assets import corrections
from qa_pipeline.assets.common import (
    DATA_ENGINEERING,
    QualityConfig,
    monthly_asset,
    run_attempt,
)
from qa_pipeline.domain.corrections import tolerance
from qa_pipeline.resources.warehouse import Warehouse

MONTH_ASSETS = [
    "validated_audits", "roster", "disputes", "audits_clean", "quality_metrics", "moderator_quality",
    "dispute_metrics", "rca_pareto", "auditor_consistency", "comment_themes", "calibration_agreement",
    "calibration_rater_scores", "person_recommendations", "reaudits",
]
CROSS_MONTH_ASSETS = [
    "error_trends", "rca_drivers", "sampling_plan", "policy_change_impact", "experiment_readout", "recommendations",
    "early_warning", "accuracy_corrected",
]

MONTH_TABLES = [
    "qa_core.audits_quarantine", "qa_core.ingest_log", "qa_core.disputes", "qa_core.audits_clean",
    "qa_core.moderator_quality", "qa_core.auditor_consistency", "qa_core.calibration_rater_scores",
    "qa_core.auditor_dispute_metrics", "qa_core.person_recommendations",
    "qa_reporting.quality_metrics", "qa_reporting.dispute_metrics", "qa_reporting.rca_pareto",
    "qa_reporting.comment_themes", "qa_reporting.calibration_agreement", "qa_core.reaudits",
]
"""Every table the month's own assets stage: a month publication missing one of them is refused."""

CROSS_MONTH_TABLES = {
    "error_trends": "qa_reporting.error_trends",
    "rca_drivers": "qa_reporting.rca_drivers",
    "sampling_plan": "qa_reporting.sampling_plan",
    "policy_change_impact": "qa_reporting.policy_change_impact",
    "experiment_readout": "qa_reporting.experiment_readout",
    "recommendations": "qa_reporting.recommendations",
    "early_warning": "qa_reporting.early_warnings",
    "accuracy_corrected": "qa_reporting.accuracy_corrected",
}
"""The table each cross-month asset stages: the publication requires those of the assets the run
selected (a refresh of a later month runs only the assets that read the restated month)."""


def _summary(context: dg.AssetExecutionContext, published: dict[str, int], kept: dict[str, str]) -> dict:
    rows = [(t, n, "") for t, n in sorted(published.items())]
    rows += [(t, None, f"kept the newer version of run {run[:8]}") for t, run in sorted(kept.items())]
    summary = pd.DataFrame(rows, columns=["table", "rows", "note"])
    return {
        "tables": dg.MetadataValue.int(len(published)),
        "rows": dg.MetadataValue.int(sum(published.values())),
        "published": dg.MetadataValue.md(summary.to_markdown(index=False)),
        "run_id": dg.MetadataValue.text(context.run_id),
    }


def _publish(context: dg.AssetExecutionContext, warehouse: Warehouse, required: list[str], what: str,
             record=None) -> dict:
    attempt = run_attempt(context, warehouse)
    kept: dict[str, str] = {}
    published = attempt.publish(required=required, kept=kept, record=record)
    context.log.info(f"{attempt.month:%Y-%m}: published {what}: {len(published)} tables, "
                     f"{sum(published.values()):,} rows, in one transaction")
    for table, run in kept.items():
        context.log.info(f"{table}: a newer version (run {run[:8]}, computed from a later snapshot) stays published")
    return _summary(context, published, kept)


@monthly_asset(
    group="publish", owner=DATA_ENGINEERING, kinds={"sql"}, deps=MONTH_ASSETS,
    description=(
        "Write–audit–publish of the month's own figures: every table this run staged for the month "
        "(in `qa_staging`) replaces its published rows in one transaction — the month's partitions, "
        "the disputes, the quarantine and ingest log. It runs only when every upstream asset succeeded "
        "and every blocking check on the staged rows passed (the checks record their outcome beside the "
        "staged rows and the publication refuses any that failed, also when this step is re-executed "
        "alone); otherwise the previous version stays published and the staged rows stay readable in "
        "`qa_staging` until a later attempt publishes. Publications are serialised; recorded in "
        "`qa_core.publications`. In the same transaction the corrections log: the headline figures "
        "published (`qa_reporting.publication_history`), what they were computed from "
        "(`qa_core.publication_fingerprints`) and each figure that changed since the month's previous "
        "publication, with its cause (`qa_reporting.corrections`)."
    ),
    check_specs=[dg.AssetCheckSpec(
        corrections.HISTORY_CHECK, asset="month_publication",
        description=("The publication history holds exactly the headline figures the publication made visible, "
                     "and the month's corrections are exactly those its history and fingerprints imply."))],
)
def month_publication(context: dg.AssetExecutionContext, warehouse: Warehouse,
                      quality_config: QualityConfig) -> dg.MaterializeResult:
    attempt = run_attempt(context, warehouse)
    recorded = corrections.Recorded()
    try:
        fingerprint = corrections.fingerprint(attempt, quality_config.thresholds())
    except LookupError:  # nothing staged to fingerprint: the publication refuses, naming what is missing
        fingerprint = None
    record = None if fingerprint is None else corrections.recorder(attempt.month, attempt.run_id, fingerprint,
                                                                    tolerance(), recorded)
    meta = _publish(context, warehouse, MONTH_TABLES, "the month's own figures", record=record)
    if len(recorded.corrections):
        context.log.info(f"{attempt.month:%Y-%m}: {len(recorded.corrections)} published figure(s) corrected "
                         f"({', '.join(sorted(set(recorded.corrections['cause'])))})")
    check = recorded.check or corrections.history_check(warehouse.read, attempt.month, recorded.published_at)
    return dg.MaterializeResult(metadata={**meta, **corrections.metadata(recorded)}, check_results=[check])


def selected_cross_month_tables(context: dg.AssetExecutionContext) -> list[str]:
    """The tables of the cross-month assets this run materializes (all of them in a full run)."""
    names = {key.to_user_string() for key in context.job_def.asset_layer.selected_asset_keys}
    return [table for asset, table in CROSS_MONTH_TABLES.items() if asset in names]


@monthly_asset(
    group="publish", owner=DATA_ENGINEERING, kinds={"sql"}, deps=CROSS_MONTH_ASSETS,
    description=(
        "Write–audit–publish of the figures that read other months (error trends and p-charts, change "
        "drivers, the sampling plan, policy-change impact, experiment readouts, recommendations), in "
        "one transaction, after the month's own figures are published and once their blocking checks "
        "passed. A whole-table output computed from an older snapshot than the published one is not "
        "published (concurrent runs never bring back an older version)."
    ),
)
def cross_month_publication(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata=_publish(context, warehouse, selected_cross_month_tables(context),
                                                  "the figures that read other months"))
