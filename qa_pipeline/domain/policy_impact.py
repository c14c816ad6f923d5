"""Did a policy change move the error rate? Before/after windows, and against unaffected queues.

The engine counts audits and errors per (policy_moderator, policy_auditor, queue, decision day);
each change's windows are cut from that small frame in pandas, so no policy code or queue name
from `policy_changes.csv` is ever written into SQL. Windows open at midnight UTC (effective dates
are dates), which makes the day buckets exact.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import date

import ibis.expr.types as ir
import numpy as np
import pandas as pd
from scipy.stats import norm

from qa_pipeline.domain.months import month_start, months_between
from qa_pipeline.stats.proportions import (
    newcombe_difference,
    safe_rate,
    two_proportion_ztest,
)


def to_frame(expr: ir.Table) -> pd.DataFrame:
    """Run an expression on the backend its tables belong to (DuckDB for `ibis.memtable`)."""
    return expr.to_pyarrow().to_pandas(date_as_object=False)


def decision_day_counts(audits: ir.Table, first_day: date, end_day: date) -> ir.Table:
    """Audits and errors per (policy_moderator, policy_auditor, queue, decision day), decision
    days in [first_day, end_day) by UTC (the warehouse's sessions run in UTC)."""
    a = audits.mutate(day=audits.decision_at.date())
    a = a.filter(a.day >= first_day, a.day < end_day)
    return a.group_by("policy_moderator", "policy_auditor", "queue", "day").aggregate(
        audits=a.count(), errors=a.count(where=a.is_error_final))


def _effective(value) -> pd.Timestamp:
    """The change's effective date as midnight UTC (a date always is; a time of day, which only a
    Parquet timestamp column could carry, opens the windows at the start of its day)."""
    eff = pd.Timestamp(value)
    return (eff.tz_localize("UTC") if eff.tzinfo is None else eff.tz_convert("UTC")).normalize()


def _counts(days: pd.DataFrame, mask: pd.Series) -> tuple[int, int]:
    return int(days.loc[mask, "audits"].sum()), int(days.loc[mask, "errors"].sum())


def policy_change_impact(audits: ir.Table, changes: pd.DataFrame, published_months: set,
                         window_days: int = 28, alpha: float = 0.05,
                         execute: Callable[[ir.Table], pd.DataFrame] = to_frame) -> pd.DataFrame:
    """`qa_reporting.policy_change_impact`, one row per change.

    `audits` needs decision_at, queue, policy_moderator, policy_auditor, is_error_final; `execute`
    runs the one aggregate query (the warehouse's, in the pipeline). A change is `pending` until
    every month its windows touch is published.
    """
    if changes.empty:
        return pd.DataFrame(columns=POLICY_IMPACT_COLUMNS)
    window = pd.Timedelta(days=window_days)
    effective = [_effective(v) for v in changes["effective_date"]]
    days = execute(decision_day_counts(audits, (min(effective) - window).date(), (max(effective) + window).date()))
    day = pd.to_datetime(days["day"]).dt.tz_localize("UTC")
    rows = []
    for ch, eff in zip(changes.itertuples(index=False), effective, strict=True):
        start, end = eff - window, eff + window
        needed = months_between(start.date(), (end - pd.Timedelta(microseconds=1)).date())
        status = "complete" if all(m in published_months for m in needed) else "pending"
        in_before = (day >= start) & (day < eff)
        in_after = (day >= eff) & (day < end)
        involved = (days["policy_moderator"] == ch.policy) | (days["policy_auditor"] == ch.policy)
        n0, e0 = _counts(days, in_before & involved)
        n1, e1 = _counts(days, in_after & involved)
        r0, r1 = safe_rate(e0, n0).item(), safe_rate(e1, n1).item()
        low, high = newcombe_difference(e1, n1, e0, n0)
        _, p = two_proportion_ztest(e1, n1, e0, n0)
        queues = [] if ch.queues == "*" else str(ch.queues).split(";")
        note = ""
        if queues:
            control = ~days["queue"].isin(queues) & ~involved
            cn0, ce0 = _counts(days, in_before & control)
            cn1, ce1 = _counts(days, in_after & control)
            did, did_low, did_high = difference_in_differences(e0, n0, e1, n1, ce0, cn0, ce1, cn1, alpha)
        else:
            cn0 = cn1 = 0
            ce0 = ce1 = 0
            did = did_low = did_high = np.nan
            note = "all queues affected: no unaffected queues to compare against"
        if n0 == 0 and n1 == 0:
            note = "; ".join(filter(None, [note, "no audit involves this policy in either window"]))
        if status == "pending":
            note = "; ".join(filter(None, [note, "windows not fully published yet"]))
        delta = r1 - r0 if n0 and n1 else np.nan
        flagged = bool(status == "complete" and n0 and n1 and delta > 0 and p < alpha and low > 0)
        rows.append({
            "change_id": ch.change_id, "policy": ch.policy, "effective_date": eff,
            "change_type": ch.change_type, "queues": ch.queues, "status": status,
            "n_before": n0, "n_after": n1, "errors_before": e0, "errors_after": e1,
            "error_rate_before": r0, "error_rate_after": r1, "delta": delta,
            "ci_low": low, "ci_high": high, "p_value": p,
            "control_n_before": cn0, "control_n_after": cn1,
            "control_rate_before": safe_rate(ce0, cn0).item(), "control_rate_after": safe_rate(ce1, cn1).item(),
            "did": did, "did_ci_low": did_low, "did_ci_high": did_high,
            "flagged": flagged, "note": note,
        })
    return pd.DataFrame(rows, columns=POLICY_IMPACT_COLUMNS)


POLICY_IMPACT_COLUMNS = [
    "change_id", "policy", "effective_date", "change_type", "queues", "status", "n_before", "n_after",
    "errors_before", "errors_after", "error_rate_before", "error_rate_after", "delta", "ci_low",
    "ci_high", "p_value", "control_n_before", "control_n_after", "control_rate_before",
    "control_rate_after", "did", "did_ci_low", "did_ci_high", "flagged", "note",
]


def difference_in_differences(e0, n0, e1, n1, ce0, cn0, ce1, cn1, alpha=0.05) -> tuple[float, float, float]:
    """(r1 − r0) − (c1 − c0) with a normal interval from the four binomial variances.

    This is the interaction coefficient of the saturated linear probability model
    error ~ affected * after, and its variance is that model's HC0 (White) variance.
    """
    if min(n0, n1, cn0, cn1) == 0:
        return np.nan, np.nan, np.nan
    rates = [(e1, n1), (e0, n0), (ce1, cn1), (ce0, cn0)]
    p = [e / n for e, n in rates]
    did = (p[0] - p[1]) - (p[2] - p[3])
    se = math.sqrt(sum(pi * (1 - pi) / n for pi, (_, n) in zip(p, rates, strict=True)))
    z = norm.ppf(1 - alpha / 2)
    return did, did - z * se, did + z * se


def changes_in_quarter(impact: pd.DataFrame, month) -> pd.DataFrame:
    """Changes effective in the quarter that ends with `month`: a change is usually judged a
    month or two after it takes effect, once its windows are published."""
    if impact.empty:
        return impact
    eff = pd.to_datetime(impact["effective_date"])
    start = pd.Timestamp(month_start(month)) - pd.DateOffset(months=2)
    end = pd.Timestamp(month_start(month)) + pd.DateOffset(months=1)
    return impact[(eff >= start) & (eff < end)]
