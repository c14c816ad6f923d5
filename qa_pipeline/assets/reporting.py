"""The last mile: recommendations, the Monthly Quality Report, the MBR page and the report site."""

import hashlib
from datetime import UTC, datetime

import dagster as dg
import pandas as pd

from qa_pipeline.assets.analysis import (
    auditor_consistency,
    comment_themes,
    error_trends,
    rca_pareto,
)
from qa_pipeline.assets.calibration import AGREEMENT, RATER_SCORES
from qa_pipeline.assets.common import (
    QualityConfig,
    monthly_asset,
    partition_month,
    reads_all_months,
    reads_months,
    run_attempt,
    table_metadata,
)
from qa_pipeline.assets.corrections import report_corrections
from qa_pipeline.assets.disputes import dispute_metrics
from qa_pipeline.assets.impact import policy_change_impact
from qa_pipeline.assets.metrics import moderator_quality, quality_metrics
from qa_pipeline.assets.publication import cross_month_publication, month_publication
from qa_pipeline.assets.quality_gates import data_docs
from qa_pipeline.domain import recommendations as rules
from qa_pipeline.domain.months import month_key, months_back, previous_month
from qa_pipeline.domain.policy_impact import changes_in_quarter
from qa_pipeline.reports import content
from qa_pipeline.reports.render import render
from qa_pipeline.resources.report_store import ReportStore
from qa_pipeline.resources.warehouse import Warehouse
from qa_pipeline.settings import resolve_path

REPORT_HISTORY_MONTHS = 12
"""The report's history (accuracy, disputes, calibration) covers the month and the 12 before it."""


@monthly_asset(
    group="reporting", kinds={"pandas"},
    deps=[reads_months(quality_metrics, 1), reads_months("month_publication", 1), error_trends, rca_pareto,
          comment_themes, AGREEMENT.key, policy_change_impact],
    description=("Findings about segments, policies and processes turned into actions for Training, Product, "
                 "Workforce Management, Enforcement Operations, Policy and Quality by the rule set in "
                 "`domain/recommendations.py` (owner, trigger, threshold, templates, priority floor); each row "
                 "carries its evidence and a priority by impact (excess errors against target). Reads "
                 "`qa_reporting` tables only and names no person: findings about one person are "
                 "`person_recommendations` (`qa_core`)."),
)
def recommendations(context: dg.AssetExecutionContext, warehouse: Warehouse,
                    quality_config: QualityConfig) -> dg.MaterializeResult:
    attempt = run_attempt(context, warehouse)
    month = attempt.month
    t = quality_config.thresholds()
    read = attempt.frame
    tables = rules.MonthTables(
        month=pd.Timestamp(month),
        quality_metrics=read("qa_reporting.quality_metrics", [month]),
        prev_quality_metrics=read("qa_reporting.quality_metrics", [previous_month(month)]),
        error_trends=read("qa_reporting.error_trends", [month]),
        rca_pareto=read("qa_reporting.rca_pareto", [month]),
        calibration_agreement=read("qa_reporting.calibration_agreement", [month]),
        policy_change_impact=changes_in_quarter(read("qa_reporting.policy_change_impact"), month),
        comment_themes=read("qa_reporting.comment_themes", [month]),
    )
    frame = rules.recommendations(tables, rules.RuleThresholds(target_accuracy=t.target_accuracy,
                                                                 min_gold_accuracy=t.min_gold_accuracy))
    attempt.write("qa_reporting.recommendations", frame)
    return dg.MaterializeResult(metadata=table_metadata(
        "qa_reporting.recommendations", frame, ["owner", "priority", "finding"],
        p1=int(frame["priority"].eq("P1").sum()), owners=int(frame["owner"].nunique()),
    ))


@monthly_asset(
    group="reporting", kinds={"pandas"},
    deps=[moderator_quality, auditor_consistency, RATER_SCORES.key, dispute_metrics],
    description=("Findings about one person, each with its owner, evidence, action and priority by impact, by "
                 "the person rules of `domain/recommendations.py`: a moderator below target (Training), a "
                 "drifting or often overturned auditor (Quality), a rater below gold (Training). Restricted "
                 "(`qa_core.person_recommendations`): the Monthly Quality Report shows them to the quality "
                 "team; the MBR and `qa_reporting` name no individual. Reads the month's own figures only."),
)
def person_recommendations(context: dg.AssetExecutionContext, warehouse: Warehouse,
                           quality_config: QualityConfig) -> dg.MaterializeResult:
    attempt = run_attempt(context, warehouse)
    month = attempt.month
    t = quality_config.thresholds()
    read = attempt.frame
    tables = rules.PersonTables(
        month=pd.Timestamp(month),
        moderator_quality=read("qa_core.moderator_quality", [month]),
        auditor_consistency=read("qa_core.auditor_consistency", [month]),
        calibration_rater_scores=read("qa_core.calibration_rater_scores", [month]),
        auditor_dispute_metrics=read("qa_core.auditor_dispute_metrics", [month]),
    )
    frame = rules.person_recommendations(tables, rules.RuleThresholds(target_accuracy=t.target_accuracy,
                                                                        min_gold_accuracy=t.min_gold_accuracy))
    attempt.write("qa_core.person_recommendations", frame)
    by_role = frame["person_role"].value_counts()
    return dg.MaterializeResult(metadata=table_metadata(
        "qa_core.person_recommendations", frame, ["owner", "priority", "rule", "person_role", "impact"],
        **{f"{role}s": int(by_role.get(role, 0)) for role in rules.PERSON_ROLES},
    ))


def _report_inputs(warehouse: Warehouse, month, target: float, docs_path: str) -> content.ReportInputs:
    read = warehouse.read_table
    history_months = months_back(month, REPORT_HISTORY_MONTHS)
    return content.ReportInputs(
        month=pd.Timestamp(month), target=target,
        history=read("qa_reporting.quality_metrics", history_months),
        trends=read("qa_reporting.error_trends", [month]),
        pareto=read("qa_reporting.rca_pareto", [month]),
        drivers=read("qa_reporting.rca_drivers", [month]),
        themes=read("qa_reporting.comment_themes", [month]),
        calibration=read("qa_reporting.calibration_agreement", [month]),
        rater_scores=read("qa_core.calibration_rater_scores", [month]),
        disputes=read("qa_reporting.dispute_metrics", history_months),
        policy_impact=changes_in_quarter(read("qa_reporting.policy_change_impact"), month),
        experiments=read("qa_reporting.experiment_readout"),
        recommendations=read("qa_reporting.recommendations", [month]),
        person_recommendations=read("qa_core.person_recommendations", [month]),
        ingest_log=read("qa_core.ingest_log", [month]),
        quarantine_by_rule=content.quarantine_by_rule(read("qa_core.audits_quarantine", [month])),
        consistency=read("qa_core.auditor_consistency", [month]),
        data_docs_path=docs_path,
        corrections=report_corrections(warehouse, month),
        early_warnings=read("qa_reporting.early_warnings", [month]),
        accuracy_corrected=read("qa_reporting.accuracy_corrected", [month]),
    )


@monthly_asset(
    group="reporting", kinds={"jinja", "matplotlib", "html"},
    deps=[cross_month_publication, reads_months(month_publication, REPORT_HISTORY_MONTHS), data_docs],
    description=("The Monthly Quality Report (`QA_REPORTS_DIR/YYYY-MM/quality_report.html` and `.md`, charts "
                 "in `charts/`) and the one-page MBR scorecard (`mbr.html`), rebuilt from exactly what the "
                 "month's publication made visible; "
                 "self-contained HTML with inline charts and no script. Records the run in "
                 "`qa_reporting.report_runs`."),
)
def monthly_report(context: dg.AssetExecutionContext, warehouse: Warehouse, report_store: ReportStore,
                   quality_config: QualityConfig) -> dg.MaterializeResult:
    month = partition_month(context)
    target = quality_config.thresholds().target_accuracy
    key = month_key(month)
    inputs = _report_inputs(warehouse, month, target, "../data_docs/index.html")
    ctx, pngs = content.build(inputs)
    generated = datetime.now(UTC)
    html = render("quality_report.html.j2", generated_at=f"{generated:%Y-%m-%d %H:%M} UTC", **ctx)
    path = report_store.write(f"{key}/quality_report.html", html)
    report_store.write(f"{key}/quality_report.md",
                       render("quality_report.md.j2", generated_at=f"{generated:%Y-%m-%d %H:%M} UTC", **ctx))
    for name, png in pngs.items():
        report_store.write(f"{key}/charts/{name}", png)
    h = ctx["headline"]
    kpis = content.mbr_kpis(inputs.history, inputs.disputes,
                            warehouse.read_table("qa_reporting.calibration_agreement", months_back(month, REPORT_HISTORY_MONTHS)),
                            month, target)
    recs = inputs.recommendations
    top = content.records(recs.head(6), ["owner", "priority", "action", "finding"]) if len(recs) else []
    report_store.write(f"{key}/mbr.html", render("mbr.html.j2", month=h["month"], kpis=kpis, top_actions=top,
                                                 restated=bool(h["restated_audits"]),
                                                 corrections=ctx["corrections"]["count"]))
    digest = hashlib.sha256(html.encode("utf-8")).hexdigest()
    run = pd.DataFrame([{
        "month": pd.Timestamp(month), "report_path": path, "generated_at": pd.Timestamp(generated),
        "sha256": digest, "status": "restated" if h["restated_audits"] else "published",
        "audits": h["audits"], "accuracy": h["accuracy"], "critical_error_rate": h["critical_error_rate"],
        "alerts": h["alerts"], "recommendations": ctx["recommendation_count"],
    }])
    warehouse.replace_partition("qa_reporting.report_runs", run, month)
    summary = (f"**{h['month']}**: accuracy {h['accuracy']:.2%} (target {target:.0%}), {h['alerts']} alert(s), "
               f"{h['critical_errors']} critical error(s), {ctx['recommendation_count']} recommendation(s)"
               + (f"; restated ({h['restated_audits']} audits)" if h["restated_audits"] else ""))
    return dg.MaterializeResult(metadata={
        "report": dg.MetadataValue.path(path),
        "mbr": dg.MetadataValue.path(str(resolve_path(report_store.reports_dir) / key / "mbr.html")),
        "summary": dg.MetadataValue.md(summary),
        "sha256": dg.MetadataValue.text(digest),
        "accuracy": dg.MetadataValue.float(float(h["accuracy"])),
        "alerts": dg.MetadataValue.int(int(h["alerts"])),
        "recommendations": dg.MetadataValue.int(int(ctx["recommendation_count"])),
    })


@monthly_asset(
    group="reporting", kinds={"jinja", "html"},
    deps=[reads_all_months(monthly_report)],
    description="The report site: `QA_REPORTS_DIR/index.html` lists every month with its headline figures and links.",
)
def report_site(context: dg.AssetExecutionContext, warehouse: Warehouse, report_store: ReportStore,
                quality_config: QualityConfig) -> dg.MaterializeResult:
    runs = warehouse.read_table("qa_reporting.report_runs").sort_values("month", ascending=False)
    target = quality_config.thresholds().target_accuracy
    months = [{"month": pd.Timestamp(r.month).strftime("%Y-%m"), "audits": int(r.audits), "accuracy": r.accuracy,
               "on_target": r.accuracy >= target, "critical_error_rate": r.critical_error_rate,
               "alerts": int(r.alerts), "recommendations": int(r.recommendations), "status": r.status}
              for r in runs.itertuples()]
    path = report_store.write("index.html", render("index.html.j2", months=months))
    return dg.MaterializeResult(metadata={"index": dg.MetadataValue.path(path),
                                          "months": dg.MetadataValue.int(len(months))})
