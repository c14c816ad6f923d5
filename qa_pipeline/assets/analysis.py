"""The analyst's core: error trends, root causes, auditor consistency and comment themes."""

import dagster as dg

from qa_pipeline.assets.audits import audits_clean, month_audits
from qa_pipeline.assets.common import (
    QualityConfig,
    monthly_asset,
    reads_months,
    run_attempt,
    table_metadata,
)
from qa_pipeline.assets.metrics import quality_metrics
from qa_pipeline.domain import consistency, rca, themes, trends
from qa_pipeline.domain.months import months_back, previous_month
from qa_pipeline.resources.warehouse import Warehouse
from qa_pipeline.settings import Thresholds

P_CHART_MONTHS = Thresholds.from_env().p_chart_months


@monthly_asset(
    group="trends", kinds={"pandas", "statsmodels"},
    deps=[reads_months(quality_metrics, P_CHART_MONTHS), reads_months("month_publication", P_CHART_MONTHS)],
    description=(
        f"Reads the published quality_metrics of the month and the {P_CHART_MONTHS} before it (declared). "
        "Month-over-month change of every segment's error rate: pooled two-proportion z-test, "
        "Benjamini–Hochberg q-values across all segments of the month, `alert` / `improved` by the "
        "contract's rule (q < 0.05, Δ ≥ 1 pp, ≥ 100 audits in both months; smaller segments say why "
        "they were not judged), and a p-chart against the previous six months."
    ),
)
def error_trends(context: dg.AssetExecutionContext, warehouse: Warehouse,
                 quality_config: QualityConfig) -> dg.MaterializeResult:
    attempt = run_attempt(context, warehouse)
    month = attempt.month
    t = quality_config.thresholds()
    history = attempt.frame("qa_reporting.quality_metrics", months=months_back(month, t.p_chart_months))
    frame = trends.error_trends(history, month, t)
    attempt.write("qa_reporting.error_trends", frame)
    alerts = frame[frame["alert"]]
    return dg.MaterializeResult(metadata={
        **table_metadata("qa_reporting.error_trends", frame,
                         ["dimension", "segment", "error_rate", "prev_error_rate", "q_value", "alert"],
                         alerts=int(frame["alert"].sum()), improved=int(frame["improved"].sum()),
                         out_of_control=int(frame["out_of_control"].sum())),
        "alerting_segments": dg.MetadataValue.md(
            alerts[["dimension", "segment", "prev_error_rate", "error_rate", "q_value"]].to_markdown(index=False)
            if len(alerts) else "no alert"),
    })


@monthly_asset(
    group="analysis", kinds={"sql", "ibis", "pandas"}, deps=[audits_clean],
    description=("Root causes of the month's errors, overall and per queue: counts, shares, cumulative "
                 "share and the vital few that make up the first 80 %."),
)
def rca_pareto(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
    attempt = run_attempt(context, warehouse)
    month = attempt.month
    frame = rca.rca_pareto(warehouse.execute(rca.root_cause_counts(month_audits(attempt, month))), month)
    attempt.write("qa_reporting.rca_pareto", frame)
    overall = frame[frame.scope == "overall"]
    return dg.MaterializeResult(metadata=table_metadata(
        "qa_reporting.rca_pareto", frame, ["scope", "root_cause", "errors", "share", "vital_few"],
        vital_few_overall=int(overall["vital_few"].sum()),
    ))


@monthly_asset(
    group="trends", kinds={"sql", "ibis", "pandas"},
    deps=[reads_months(audits_clean, 1), reads_months("month_publication", 1)],
    description=("Reads the published audits of the month and the one before (declared). "
                 "Exact mix/rate decomposition of the overall error-rate change against the previous "
                 "month for site, queue, policy, team_type, tenure_band, content_type and site×queue: "
                 "per dimension the contributions add up to the overall change."),
)
def rca_drivers(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
    attempt = run_attempt(context, warehouse)
    month = attempt.month
    counts_prev = warehouse.execute(rca.driver_counts(month_audits(attempt, previous_month(month))))
    counts = warehouse.execute(rca.driver_counts(month_audits(attempt, month)))
    frame = rca.rca_drivers(counts_prev, counts, month)
    attempt.write("qa_reporting.rca_drivers", frame)
    change = float(frame["overall_change"].iloc[0]) if len(frame) else None
    return dg.MaterializeResult(metadata=table_metadata(
        "qa_reporting.rca_drivers", frame,
        ["dimension", "segment", "rate_effect", "mix_effect", "contribution"], overall_change=change,
    ))


@monthly_asset(
    group="analysis", kinds={"sql", "ibis", "pandas"}, deps=[audits_clean],
    description=("Each auditor's error-flag rate against the rate expected from the other auditors on "
                 "the same queues, z-score and drift flag (|z| > 3 with ≥ 100 audits), with the "
                 "auditor's disputes and overturns. Restricted (person-level)."),
)
def auditor_consistency(context: dg.AssetExecutionContext, warehouse: Warehouse,
                        quality_config: QualityConfig) -> dg.MaterializeResult:
    attempt = run_attempt(context, warehouse)
    month = attempt.month
    t = quality_config.thresholds()
    counts = warehouse.execute(consistency.auditor_queue_counts(month_audits(attempt, month)))
    frame = consistency.auditor_consistency(counts, month, t.min_n, t.drift_z)
    attempt.write("qa_core.auditor_consistency", frame)
    return dg.MaterializeResult(metadata=table_metadata(
        "qa_core.auditor_consistency", frame, ["auditor_id", "audits", "flag_rate", "expected_rate", "z_score", "drift"],
        drifting_auditors=int(frame["drift"].sum()),
    ))


THEME_BATCH_ROWS = 200_000


@monthly_asset(
    group="analysis", kinds={"pandas", "scikit-learn"}, deps=[audits_clean],
    description=("Words and short phrases that distinguish the comments of errors in each scope "
                 "(overall, per queue, per root cause) from the rest, from PII-redacted comments "
                 "(log-odds with an informative Dirichlet prior). A term is published in a scope only "
                 "when at least k distinct auditors wrote it about at least k distinct moderators "
                 "(k = QA_THEME_MIN_PEOPLE, 3), so a person's name never becomes a theme. The month's "
                 "comments are streamed from the engine and counted a batch at a time."),
)
def comment_themes(context: dg.AssetExecutionContext, warehouse: Warehouse,
                   quality_config: QualityConfig) -> dg.MaterializeResult:
    attempt = run_attempt(context, warehouse)
    month = attempt.month
    k = quality_config.thresholds().theme_min_people
    audits = month_audits(attempt, month)
    comments = audits.filter(audits.auditor_comment.notnull()).select(*themes.INPUT_COLUMNS)
    frame = themes.comment_themes_from_chunks(warehouse.batches(comments, THEME_BATCH_ROWS), month, min_people=k)
    attempt.write("qa_reporting.comment_themes", frame)
    return dg.MaterializeResult(metadata=table_metadata(
        "qa_reporting.comment_themes", frame, ["scope", "term", "errors_with_term", "z_score"],
        scopes=int(frame["scope"].nunique()) if len(frame) else 0, min_people=k,
    ))
