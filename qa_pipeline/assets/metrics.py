"""Quality metrics: `qa_reporting.quality_metrics` and `qa_core.moderator_quality`."""

import dagster as dg

from qa_pipeline.assets.audits import audits_clean, month_audits
from qa_pipeline.assets.common import (
    QualityConfig,
    monthly_asset,
    run_attempt,
    table_metadata,
)
from qa_pipeline.domain import metrics
from qa_pipeline.resources.warehouse import Warehouse


@monthly_asset(
    group="metrics",
    kinds={"sql", "ibis", "pandas", "statsmodels"},
    deps=[audits_clean],
    description=(
        "Accuracy (Wilson 95 % interval), weighted accuracy, critical, over- and under-enforcement "
        "rates, precision and recall for every dimension (overall, site, team_type, queue, policy, "
        "market, content_type, tenure_band, site×queue) and segment of the month. The counts are "
        "one GROUP BY per dimension in the warehouse; the intervals and rates are computed on them."
    ),
)
def quality_metrics(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
    attempt = run_attempt(context, warehouse)
    month = attempt.month
    frame = metrics.quality_metrics(warehouse.execute(metrics.segment_counts(month_audits(attempt, month))), month)
    attempt.write("qa_reporting.quality_metrics", frame)
    overall = frame[frame.dimension == "overall"].iloc[0] if len(frame) else None
    return dg.MaterializeResult(metadata=table_metadata(
        "qa_reporting.quality_metrics", frame,
        ["dimension", "segment", "audits", "errors", "accuracy", "accuracy_ci_low", "accuracy_ci_high"],
        accuracy=None if overall is None else float(overall.accuracy),
        weighted_accuracy=None if overall is None else float(overall.weighted_accuracy),
        critical_error_rate=None if overall is None else float(overall.critical_error_rate),
        audits=None if overall is None else int(overall.audits),
    ))


@monthly_asset(
    group="metrics",
    kinds={"sql", "ibis", "pandas", "statsmodels"},
    deps=[audits_clean],
    description=(
        "Accuracy per moderator and month with its Wilson interval (counts per moderator from the "
        "warehouse); `below_target` when the whole interval is under the target and the moderator "
        "has enough audits. Restricted."
    ),
)
def moderator_quality(context: dg.AssetExecutionContext, warehouse: Warehouse,
                      quality_config: QualityConfig) -> dg.MaterializeResult:
    attempt = run_attempt(context, warehouse)
    month = attempt.month
    t = quality_config.thresholds()
    frame = metrics.moderator_quality(warehouse.execute(metrics.moderator_counts(month_audits(attempt, month))),
                                      month, t.target_accuracy, t.min_moderator_audits)
    attempt.write("qa_core.moderator_quality", frame)
    return dg.MaterializeResult(metadata=table_metadata(
        "qa_core.moderator_quality", frame,
        ["moderator_id", "site", "audits", "errors", "accuracy", "below_target"],
        moderators=len(frame), below_target=int(frame["below_target"].sum()),
    ))
