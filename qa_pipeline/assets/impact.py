"""Policy-change impact and experiment readouts, recomputed at every monthly run from all
published audits, and next month's sampling plan: the engine aggregates the audits, pandas and
scipy compute the statistics on the small result."""

import dagster as dg
import ibis
import pandas as pd

from qa_pipeline.assets.audits import audits_clean
from qa_pipeline.assets.common import (
    QualityConfig,
    monthly_asset,
    reads_all_months,
    reads_months,
    run_attempt,
    table_metadata,
)
from qa_pipeline.assets.ingest import (
    gate_check_specs,
    gate_experiments,
    gate_snapshot,
    snapshot_checks,
)
from qa_pipeline.domain.experiments import experiment_readout as readout
from qa_pipeline.domain.months import month_start, months_back, next_month
from qa_pipeline.domain.policy_impact import policy_change_impact as impact
from qa_pipeline.domain.sampling_plan import sampling_plan as plan
from qa_pipeline.domain.validation import ASSIGNMENTS, EXPERIMENTS, POLICY_CHANGES
from qa_pipeline.resources.raw_store import RawStore
from qa_pipeline.resources.staging import Attempt
from qa_pipeline.resources.warehouse import Warehouse


def audits_from(attempt: Attempt, months=None, since=None) -> ibis.Table:
    """The audits this run sees (its staged month and the published ones), as an ibis table: the
    given months, or every month from `since` on. Nothing is read here; the domain functions
    aggregate it inside the engine."""
    t = attempt.table("qa_core.audits_clean")
    if months is not None:
        t = t.filter(t.month.isin(list(months)))
    if since is not None:
        t = t.filter(t.month >= since)
    return t


def audits_since(attempt: Attempt, window_starts: pd.Series) -> ibis.Table:
    """Audits that can fall in windows opening at `window_starts` (by decision time). An audit's
    month is never before its decision's, so months before the earliest window are not scanned."""
    if window_starts.empty:
        return audits_from(attempt)  # no window: the domain functions query nothing
    return audits_from(attempt, since=month_start(pd.Timestamp(window_starts.min()).date()))


def known_months(attempt: Attempt) -> set:
    """Months with audits: published, or staged by this run."""
    t = attempt.table("qa_core.audits_clean")
    months = attempt.warehouse.execute(t.select("month").distinct())
    return {month_start(pd.Timestamp(m).date()) for m in months["month"]}


@monthly_asset(
    group="impact",
    kinds={"pandas", "statsmodels"},
    deps=[reads_all_months(audits_clean), reads_all_months("month_publication")],
    check_specs=gate_check_specs("policy_change_impact", POLICY_CHANGES.name),
    description=(
        "Each policy change of `policy_changes.csv`: error rates of the audits involving the policy "
        "28 days before vs after (by decision_at), the difference with its Newcombe interval and "
        "z-test p-value, a difference-in-differences against unaffected queues, and `flagged` when "
        "errors rose significantly. `pending` until its windows are published. Whole table."
    ),
)
def policy_change_impact(context: dg.AssetExecutionContext, raw_store: RawStore, warehouse: Warehouse,
                         quality_config: QualityConfig) -> dg.MaterializeResult:
    attempt = run_attempt(context, warehouse)
    snapshot = attempt.watermark()  # read before the published audits: what this version is computed from
    t = quality_config.thresholds()
    gate = gate_snapshot(raw_store, attempt, POLICY_CHANGES, "policy_changes/policy_changes.csv")
    changes = gate.clean if gate is not None else pd.DataFrame(columns=POLICY_CHANGES.columns)
    window_starts = pd.to_datetime(changes["effective_date"]) - pd.Timedelta(days=t.policy_window_days)
    frame = impact(audits_since(attempt, window_starts), changes, known_months(attempt),
                   window_days=t.policy_window_days, alpha=t.alert_q, execute=warehouse.execute)
    attempt.write("qa_reporting.policy_change_impact", frame, scope="whole", snapshot_at=snapshot)
    return dg.MaterializeResult(metadata=table_metadata(
        "qa_reporting.policy_change_impact", frame,
        ["change_id", "policy", "status", "error_rate_before", "error_rate_after", "p_value", "flagged"],
        changes=len(frame), flagged=int(frame["flagged"].sum()),
    ), check_results=snapshot_checks(gate, POLICY_CHANGES.name, "policy_change_impact", attempt,
                                     "qa_reporting.policy_change_impact", quality_config))


@monthly_asset(
    group="impact",
    kinds={"pandas", "scipy"},
    deps=[reads_all_months(audits_clean), reads_all_months("month_publication")],
    check_specs=[*gate_check_specs("experiment_readout", EXPERIMENTS.name, prefixed=True),
                 *gate_check_specs("experiment_readout", ASSIGNMENTS.name, prefixed=True)],
    description=(
        "Each experiment of `experiments.csv` read out on moderator-level units: the primary metric "
        "per moderator over the window, Welch's t-test and 95 % interval, relative lift, sample-ratio "
        "mismatch against `treatment_share`, the MDE at 80 % power, and a decision (ship, "
        "do_not_ship, inconclusive, invalid_srm) with a one-sentence reason. Whole table."
    ),
)
def experiment_readout(context: dg.AssetExecutionContext, raw_store: RawStore, warehouse: Warehouse,
                       quality_config: QualityConfig) -> dg.MaterializeResult:
    attempt = run_attempt(context, warehouse)
    snapshot = attempt.watermark()  # read before the published audits: what this version is computed from
    t = quality_config.thresholds()
    exps, arms = gate_experiments(raw_store, attempt)  # assignments checked against the clean experiments
    experiments = exps.clean if exps is not None else pd.DataFrame(columns=EXPERIMENTS.columns)
    assignments = arms.clean if arms is not None else pd.DataFrame(columns=ASSIGNMENTS.columns)
    frame = readout(audits_since(attempt, pd.to_datetime(experiments["start_date"])), experiments, assignments,
                    known_months(attempt), alpha=t.alert_q, srm_alpha=t.srm_alpha, execute=warehouse.execute)
    attempt.write("qa_reporting.experiment_readout", frame, scope="whole", snapshot_at=snapshot)
    return dg.MaterializeResult(metadata=table_metadata(
        "qa_reporting.experiment_readout", frame,
        ["experiment_id", "status", "metric", "diff", "p_value", "decision"],
        experiments=len(frame), ship=int(frame["decision"].eq("ship").sum()),
    ), check_results=[
        *snapshot_checks(exps, EXPERIMENTS.name, "experiment_readout", attempt, "qa_reporting.experiment_readout",
                         quality_config, prefixed=True),
        *snapshot_checks(arms, ASSIGNMENTS.name, "experiment_readout", attempt, "qa_reporting.experiment_readout",
                         quality_config, prefixed=True)])


@monthly_asset(
    group="planning",
    kinds={"pandas", "scipy"},
    deps=[reads_months(audits_clean, 2), reads_months("month_publication", 2)],
    description=(
        "Audits needed next month per site × queue for a ±`margin` 95 % interval on accuracy, at the "
        "stratum's error rate over the last three published months, with the finite-population "
        "correction on the decision volume estimated from sampling weights. Written under the "
        "month after the partition."
    ),
)
def sampling_plan(context: dg.AssetExecutionContext, warehouse: Warehouse,
                  quality_config: QualityConfig) -> dg.MaterializeResult:
    attempt = run_attempt(context, warehouse)
    month = attempt.month
    recent_months = months_back(month, 2)
    frame = plan(audits_from(attempt, recent_months), next_month(month), quality_config.thresholds().margin,
                 execute=warehouse.execute)
    attempt.write("qa_reporting.sampling_plan", frame, scope="next_month")
    return dg.MaterializeResult(metadata=table_metadata(
        "qa_reporting.sampling_plan", frame,
        ["site", "queue", "recent_error_rate", "recommended_audits"],
        recommended_audits=int(frame["recommended_audits"].sum()) if len(frame) else 0,
    ))
