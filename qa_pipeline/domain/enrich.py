"""Audits as analysts read them: error flags and types, policy at stake, tenure, disputes.

The enrichment is one ibis expression over the validated rows, the roster and the disputes: the
engine (DuckDB, PostgreSQL, Spark) runs it as INSERT … SELECT, so no month of audits passes
through Python.
"""

from __future__ import annotations

from datetime import date

import ibis
import ibis.expr.types as ir

TENURE_BANDS = ["0-30", "31-90", "91-180", "181-365", "366+"]
TENURE_UPPER = [30, 90, 180, 365]
UNKNOWN_TENURE = "unknown"
ERROR_TYPES = ["over_enforcement", "under_enforcement", "wrong_action", "wrong_policy", "correct"]


def error_type(action_moderator: ir.StringValue, action_auditor: ir.StringValue,
               policy_moderator: ir.StringValue, policy_auditor: ir.StringValue) -> ir.StringValue:
    """over_enforcement, under_enforcement, wrong_action, wrong_policy or correct (contract §4)."""
    mod_approve = action_moderator == "approve"
    aud_approve = action_auditor == "approve"
    return ibis.cases(
        (aud_approve & ~mod_approve, "over_enforcement"),
        (mod_approve & ~aud_approve, "under_enforcement"),
        (action_moderator != action_auditor, "wrong_action"),
        (policy_moderator != policy_auditor, "wrong_policy"),
        else_="correct",
    )


def tenure_band(days: ir.IntegerValue) -> ir.StringValue:
    """`0-30, 31-90, 91-180, 181-365, 366+` (upper bounds inclusive), `unknown` off the roster or
    before the hire date (NULL days)."""
    cases = [(days <= upper, band) for upper, band in zip(TENURE_UPPER, TENURE_BANDS, strict=False)]
    return ibis.ifelse(days.isnull(), UNKNOWN_TENURE, ibis.cases(*cases, else_=TENURE_BANDS[-1]))


def latest_outcomes(disputes: ir.Table) -> ir.Table:
    """One row per disputed audit: the outcome of its latest resolved dispute (ties: the higher
    dispute id)."""
    order = [ibis.desc("resolved_at"), ibis.desc("dispute_id")]
    ranked = disputes.mutate(_rank=ibis.row_number().over(group_by="audit_id", order_by=order))
    return ranked.filter(ranked._rank == 0).select(
        "audit_id", dispute_outcome=ranked.outcome, dispute_resolved_at=ranked.resolved_at)


def enrich_audits(validated: ir.Table, roster: ir.Table, disputes: ir.Table, month: date) -> ir.Table:
    """The rows of `qa_core.audits_clean` for `month` from validated audits.

    `roster` holds the clean roster (`moderator_id`, `hire_date`); `disputes` validated disputes
    (`dispute_id, audit_id, resolved_at, outcome`): the latest resolution of an audit counts, and an
    overturned one clears the error in `is_error_final`. Tenure is counted in whole days from the
    hire date to the decision's UTC day; a decision before the hire date (a roster that is wrong, or
    a moderator re-hired) has no tenure: NULL days, band `unknown`.
    """
    hires = roster.select(_mod=roster.moderator_id, _hire=roster.hire_date)
    outcomes = latest_outcomes(disputes).rename(_audit="audit_id")
    a = validated.left_join(hires, validated.moderator_id == hires._mod)
    a = a.left_join(outcomes, a.audit_id == outcomes._audit)
    is_error = (a.action_moderator != a.action_auditor) | (a.policy_moderator != a.policy_auditor)
    elapsed = a.decision_at.date().delta(a._hire.date(), unit="day")
    # a decision before the hire date has no tenure (NULL, band `unknown`), never a negative one
    days = ibis.ifelse(elapsed < 0, ibis.null("int64"), elapsed.cast("int64"))
    overturned = (a.dispute_outcome == "overturned").fill_null(False)
    return a.mutate(
        month=ibis.literal(month, type="date"),
        is_error=is_error,
        error_type=error_type(a.action_moderator, a.action_auditor, a.policy_moderator, a.policy_auditor),
        is_critical=a.error_severity == "critical",
        policy=ibis.ifelse(a.policy_auditor != "NONE", a.policy_auditor, a.policy_moderator),
        tenure_days=days.cast("int64"),
        tenure_band=tenure_band(days),
        is_error_final=is_error & ~overturned,
    ).drop("_mod", "_hire", "_audit")
