"""`qa_reporting.early_warnings`: the month's early-warning charts, final, in the monthly run.

The daily month-to-date runs (`assets/month_to_date.py`) write the same rows for the month in
progress; the monthly run replaces them with the month's final rows (`final` = true), computed
from the published audits, after the month's own figures are published."""

from datetime import timedelta

import dagster as dg
import pandas as pd

from qa_pipeline.assets.audits import audits_clean, month_audits
from qa_pipeline.assets.common import (
    QualityConfig,
    monthly_asset,
    reads_months,
    run_attempt,
    table_metadata,
)
from qa_pipeline.assets.metrics import quality_metrics
from qa_pipeline.domain.early_warning import WarningRule, early_warnings
from qa_pipeline.domain.months import months_back, next_month
from qa_pipeline.resources.warehouse import Warehouse
from qa_pipeline.settings import Thresholds

BASELINE_MONTHS = Thresholds.from_env().early_warning_months
WARNING_COLUMNS = ["audit_id", "site", "queue", "decision_at", "is_error_final"]


def signalled_metadata(frame: pd.DataFrame) -> dict:
    hit = frame[frame["signalled"].astype(bool)]
    return {
        "signalled_segments": dg.MetadataValue.md(
            hit[["dimension", "segment", "baseline_error_rate", "audits_to_date", "errors_to_date", "cusum_max", "threshold",
                 "first_signal_date"]].to_markdown(index=False, floatfmt=".4f") if len(hit) else "no signal"),
    }


@monthly_asset(
    group="trends", kinds={"pandas", "numpy"},
    deps=[audits_clean, reads_months(quality_metrics, BASELINE_MONTHS),
          reads_months("month_publication", BASELINE_MONTHS)],
    description=(
        f"Reads the month's published audits and the published quality_metrics of the {BASELINE_MONTHS} "
        "months before it (declared). A Bernoulli CUSUM per site × queue, site and queue over the month's "
        "audits in decision_at order against the segment's baseline error rate, tuned to a rise of the "
        "odds of an error ×QA_EARLY_WARNING_ODDS_RATIO (2); each threshold simulated so that a month "
        "without change signals anywhere with probability ≤ QA_EARLY_WARNING_FAMILY_ALPHA (5 %). The "
        "month's final rows of `qa_reporting.early_warnings` (the daily runs wrote month-to-date ones)."
    ),
)
def early_warning(context: dg.AssetExecutionContext, warehouse: Warehouse,
                  quality_config: QualityConfig) -> dg.MaterializeResult:
    attempt = run_attempt(context, warehouse)
    month = attempt.month
    t = quality_config.thresholds()
    history = attempt.frame("qa_reporting.quality_metrics", months=months_back(month, t.early_warning_months)[1:])
    audits = warehouse.execute(month_audits(attempt, month).select(*WARNING_COLUMNS))
    audits = audits.rename(columns={"is_error_final": "is_error"})
    frame = early_warnings(audits, history, month, WarningRule.from_thresholds(t),
                           as_of=next_month(month) - timedelta(days=1), final=True)
    attempt.write("qa_reporting.early_warnings", frame)
    return dg.MaterializeResult(metadata={
        **table_metadata("qa_reporting.early_warnings", frame,
                         ["dimension", "segment", "baseline_error_rate", "audits_to_date", "errors_to_date", "cusum_max",
                          "threshold", "first_signal_date"],
                         signalled=int(frame["signalled"].sum()),
                         monitored=int(frame["threshold"].notna().sum())),
        **signalled_metadata(frame),
    })
