"""Accuracy corrected for auditor error: the expert re-audits through their gate, then the month's
error rates corrected for the audit process's sensitivity and specificity (`domain.accuracy_corrected`)."""

import dagster as dg
import ibis
import pandas as pd

from qa_pipeline.assets.audits import audits_clean, month_audits
from qa_pipeline.assets.common import (
    DATA_ENGINEERING,
    QualityConfig,
    empty_frame,
    monthly_asset,
    reads_months,
    run_attempt,
    table_metadata,
)
from qa_pipeline.assets.ingest import (
    gate_check_specs,
    gate_checks,
    limit_for,
    policy_codes,
    stage_gate,
)
from qa_pipeline.domain import accuracy_corrected as logic
from qa_pipeline.domain.months import month_key, months_back
from qa_pipeline.domain.segments import per_segment
from qa_pipeline.domain.validation import REAUDITS, ingest_rows, run_gate
from qa_pipeline.resources.raw_store import RawStore
from qa_pipeline.resources.staging import Attempt
from qa_pipeline.resources.warehouse import Warehouse
from qa_pipeline.schemas import warehouse as wh
from qa_pipeline.settings import Thresholds

REAUDIT_TRAILING_MONTHS = Thresholds.from_env().reaudit_trailing_months


def _column_values(files, column: str) -> pd.Series:
    """A column's values over the files read (trimmed, distinct, none empty): the ids to look up."""
    ids = pd.concat([f.frame[column].astype("str") for f in files if column in f.frame.columns]
                    or [pd.Series(dtype="str")], ignore_index=True).str.strip()
    return ids[ids.ne("") & ids.notna()].drop_duplicates()


def _month_audits_named(attempt: Attempt, ids: pd.Series) -> pd.DataFrame:
    """The audits of the run's month that the re-audits name (what the gate compares them with)."""
    if ids.empty:
        return pd.DataFrame({c: pd.Series(dtype="str") for c in logic.AUDIT_LOOKUP_COLUMNS})
    audits = month_audits(attempt, attempt.month).select(*logic.AUDIT_LOOKUP_COLUMNS)
    wanted = ibis.memtable(pd.DataFrame({"_candidate": ids.to_numpy(dtype=object)}))
    return attempt.warehouse.execute(audits.semi_join(wanted, audits.audit_id == wanted._candidate))


def _published_elsewhere(attempt: Attempt, ids: pd.Series) -> pd.Series | None:
    """Re-audit ids the warehouse already holds for another month (`reaudit_id:published_earlier`)."""
    warehouse = attempt.warehouse
    if ids.empty or not warehouse.has_table(wh.reaudits.fullname):
        return None
    t = warehouse.ibis.table(wh.reaudits.name, database=wh.reaudits.schema)
    wanted = ibis.memtable(pd.DataFrame({"_candidate": ids.to_numpy(dtype=object)}))
    t = t.filter(t.month != attempt.month)
    return warehouse.execute(t.semi_join(wanted, t.reaudit_id == wanted._candidate).select("reaudit_id"))["reaudit_id"]


@monthly_asset(
    group="ingest",
    owner=DATA_ENGINEERING,
    kinds={"pandas", "pandera"},
    deps=[audits_clean],
    description=(
        "The optional expert re-audits of the month's audits (`reaudits/YYYY-MM/*.csv`, folder month = "
        "month of the original audit) through their gate: a re-audit of an audit that is not one of the "
        "month's is `audit_id:unknown_audit`; a second re-audit of an audit `audit_id:duplicate`; a reviewer "
        "who is the audit's moderator or auditor `reviewer_not_moderator` / `reviewer_not_auditor`; a "
        "re-audit before the audit `reaudited_after_audit`. Each clean re-audit is marked `true_error` when "
        "the expert's answer differs from the moderator's. No folder: no re-audit, no corrected accuracy. "
        "Blocking checks on the quarantined share and on every row being accounted for. Rewrites the "
        "month's `qa_core.reaudits`."
    ),
    check_specs=gate_check_specs("reaudits", REAUDITS.name),
)
def reaudits(context: dg.AssetExecutionContext, raw_store: RawStore, warehouse: Warehouse,
             quality_config: QualityConfig):
    attempt = run_attempt(context, warehouse)
    month = attempt.month
    files = raw_store.read_month("reaudits", month, required=False)
    ids = _column_values(files, "audit_id")
    audits = _month_audits_named(attempt, ids)
    spec = logic.reaudit_spec(audits, f"qa_core.audits_clean of {month_key(month)} (the month's audits)",
                              policy_codes(raw_store, attempt))
    published = _published_elsewhere(attempt, _column_values(files, "reaudit_id"))
    gate = run_gate(files, spec, month, published_ids=published) if files else None
    stage_gate(attempt, gate, REAUDITS.name)
    frame = logic.clean_reaudits(gate.clean, audits, month) if gate is not None else empty_frame("qa_core.reaudits")
    attempt.write("qa_core.reaudits", frame)
    if gate is None:
        context.log.info(f"{month_key(month)}: no file in reaudits/{month_key(month)}/: no re-audit, "
                         "so no corrected accuracy for the month")
    yield dg.MaterializeResult(metadata=table_metadata(
        "qa_core.reaudits", frame, ["reaudit_id", "audit_id", "reaudited_at", "true_error"],
        reaudits=len(frame), true_errors=int(frame["true_error"].astype(bool).sum()) if len(frame) else 0,
        quarantined=len(gate.quarantine) if gate is not None else 0,
    ))
    yield from gate_checks(input_name=REAUDITS.name, asset_key="reaudits", attempt=attempt,
                           staged_table="qa_core.reaudits", limit=limit_for(quality_config, REAUDITS.name),
                           files=gate.files if gate is not None else ingest_rows([]),
                           quarantine=gate.quarantine if gate is not None else None,
                           scope=f"reaudits/{month_key(month)}")


def _has_note(row) -> bool:
    return isinstance(row["note"], str) and bool(row["note"])


def reaudited_decisions(attempt: Attempt, months) -> pd.DataFrame:
    """The re-audited decisions of `months`: the expert's truth beside the audit process's verdict
    (`flagged` = the audit's `is_error_final`) and the audit's segment columns."""
    r = attempt.table("qa_core.reaudits")
    a = attempt.table("qa_core.audits_clean")
    r = r.filter(r.month.isin(months))
    a = a.filter(a.month.isin(months))
    joined = r.join(a, (r.month == a.month) & (r.audit_id == a.audit_id))
    return attempt.warehouse.execute(joined.select(
        month=r.month, audit_id=r.audit_id, true_error=r.true_error, flagged=a.is_error_final,
        **{c: a[c] for c in logic.SEGMENT_COLUMNS}))


@monthly_asset(
    group="metrics",
    kinds={"sql", "ibis", "pandas", "scipy"},
    deps=[reads_months(reaudits, REAUDIT_TRAILING_MONTHS), reads_months(audits_clean, REAUDIT_TRAILING_MONTHS),
          reads_months("month_publication", REAUDIT_TRAILING_MONTHS)],
    description=(
        "Error rate and accuracy corrected for the audit process's own errors, overall and per site, "
        "team_type and queue. Sensitivity and specificity of the audit verdict (is_error_final) against "
        "the experts' re-audits of the month (and of the QA_REAUDIT_TRAILING_MONTHS before it: "
        f"{REAUDIT_TRAILING_MONTHS} here), once for the whole audit process; the Rogan–Gladen corrected "
        "rate clipped to [0, 1] with the Lang–Reiczigel 95 % interval (it carries the uncertainty of "
        "sensitivity and specificity); the plain estimate from each segment's own re-audits (Wilson). "
        "NULL with a note when the re-audits are fewer than QA_MIN_REAUDITS or sensitivity + "
        "specificity ≤ 1. Reads the published re-audits and audits (declared)."
    ),
)
def accuracy_corrected(context: dg.AssetExecutionContext, warehouse: Warehouse,
                       quality_config: QualityConfig) -> dg.MaterializeResult:
    attempt = run_attempt(context, warehouse)
    month = attempt.month
    t = quality_config.thresholds()
    window = months_back(month, t.reaudit_trailing_months)
    reaudited = reaudited_decisions(attempt, window)
    counts = warehouse.execute(per_segment(month_audits(attempt, month), logic.DIMENSIONS, lambda a: {
        "audits": a.count(), "errors": a.count(where=a.is_error_final)}))
    frame = logic.accuracy_corrected(counts, reaudited, month, t.min_reaudits, t.reaudit_trailing_months,
                                     t.reaudit_homogeneity_alpha)
    attempt.write("qa_reporting.accuracy_corrected", frame)
    overall = frame[frame["dimension"] == "overall"]
    head = overall.iloc[0] if len(overall) else None
    if head is None:
        context.log.info(f"{month_key(month)}: no re-audit in {len(window)} month(s): no corrected accuracy")
    elif _has_note(head):
        context.log.info(f"{month_key(month)}: {head['note']}")
    figures = {} if head is None else {
        "reaudits": int(head["reaudits"]), "observed_accuracy": 1.0 - float(head["observed_error_rate"]),
        "sensitivity": head["sensitivity"], "specificity": head["specificity"],
        "corrected_accuracy": head["corrected_accuracy"],
        "corrected_accuracy_ci_low": head["corrected_accuracy_ci_low"],
        "corrected_accuracy_ci_high": head["corrected_accuracy_ci_high"],
    }
    figures = {k: (float(v) if not isinstance(v, int) else v) for k, v in figures.items()}
    return dg.MaterializeResult(metadata={
        **table_metadata("qa_reporting.accuracy_corrected", frame,
                         ["dimension", "segment", "observed_error_rate", "corrected_error_rate", "ci_low", "ci_high"],
                         **figures),
        "note": dg.MetadataValue.text(
            "no re-audit: no corrected accuracy" if head is None
            else head["note"] if _has_note(head) else "corrected"),
    })
