"""Experiment readouts: moderator-level units, Welch's test, SRM, MDE and a decision with a reason.

The engine sums each moderator's audits, errors, critical errors and handle times per decision
day over the span of all experiments; each experiment's units are cut from that small frame in
pandas (windows are whole decision days, so the day buckets are exact).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import ibis.expr.types as ir
import numpy as np
import pandas as pd

from qa_pipeline.domain.months import months_between
from qa_pipeline.domain.policy_impact import to_frame
from qa_pipeline.stats.experiments import minimum_detectable_effect, srm_p_value, welch

HIGHER_IS_BETTER = {"accuracy": True, "critical_error_rate": False, "handle_time_s": False}
UNITS = {"accuracy": "pp", "critical_error_rate": "pp", "handle_time_s": "s"}

READOUT_COLUMNS = [
    "experiment_id", "name", "status", "metric", "start_date", "end_date", "assigned_control",
    "assigned_treatment", "n_control", "n_treatment", "mean_control", "mean_treatment", "diff",
    "ci_low", "ci_high", "p_value", "relative_lift", "srm_p_value", "mde", "decision", "reason",
]


def _naive_day(value) -> pd.Timestamp:
    """A date or UTC time stamp as a naive timestamp (windows are compared by decision day)."""
    ts = pd.Timestamp(value)
    return ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo else ts


def moderator_days(audits: ir.Table, first_day: date, last_day: date) -> ir.Table:
    """Per moderator and UTC decision day in [first_day, last_day]: audits, errors, critical
    errors, and the sum and count of the known handle times."""
    a = audits.mutate(day=audits.decision_at.date())
    a = a.filter(a.day >= first_day, a.day <= last_day)
    return a.group_by("moderator_id", "day").aggregate(
        audits=a.count(), errors=a.count(where=a.is_error_final),
        critical_errors=a.count(where=a.is_error_final & a.is_critical),
        handle_time_sum=a.handle_time_s.sum(), handle_time_n=a.handle_time_s.count())


def unit_metrics(days: pd.DataFrame, start, end) -> pd.DataFrame:
    """Per moderator over [start, end] by decision day, from `moderator_days`: accuracy, critical
    error rate, and mean handle time over the audits that have one (NaN when none has)."""
    day = pd.to_datetime(days["day"])
    g = days[(day >= pd.Timestamp(start)) & (day <= pd.Timestamp(end))].groupby("moderator_id")
    sums = g[["audits", "errors", "critical_errors", "handle_time_sum", "handle_time_n"]].sum()
    out = pd.DataFrame({
        "audits": sums["audits"],
        "accuracy": 1 - sums["errors"] / sums["audits"],
        "critical_error_rate": sums["critical_errors"] / sums["audits"],
        "handle_time_s": (sums["handle_time_sum"] / sums["handle_time_n"]).where(sums["handle_time_n"] > 0),
    })
    return out.reset_index()


def _fmt(value: float, metric: str) -> str:
    if metric == "handle_time_s":
        return f"{value:+.1f} s"
    return f"{value * 100:+.2f} pp"


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _decide(metric, res, srm_p, status, alpha, srm_alpha, share, assigned_t, assigned_total, mde):
    if np.isfinite(srm_p) and srm_p < srm_alpha:
        actual = assigned_t / assigned_total if assigned_total else float("nan")
        return "invalid_srm", (f"Assignment is {actual:.0%} treatment against a planned {share:.0%} "
                               f"(SRM {_p(srm_p)}): the split is broken, so the result cannot be trusted; "
                               f"fix the assignment and rerun.")
    if not np.isfinite(res.p_value):
        return "inconclusive", "Too few moderators with audits in one arm to compare."
    span = f"{_fmt(res.diff, metric)} (95 % CI {_fmt(res.ci_low, metric)} to {_fmt(res.ci_high, metric)}; {_p(res.p_value)})"
    pending = " Provisional: the window is not fully published yet." if status == "pending" else ""
    if res.p_value < alpha:
        better = (res.diff > 0) == HIGHER_IS_BETTER[metric]
        if better:
            return "ship", f"Treatment improved {metric} by {span}: ship.{pending}"
        return "do_not_ship", f"Treatment worsened {metric} by {span}: do not ship.{pending}"
    return "inconclusive", (f"No significant change in {metric}: {span}; the test could detect "
                            f"{_fmt(mde, metric).lstrip('+')} at 80 % power.{pending}")


def experiment_readout(audits: ir.Table, experiments: pd.DataFrame, assignments: pd.DataFrame,
                       published_months: set, alpha: float = 0.05, srm_alpha: float = 0.001,
                       execute: Callable[[ir.Table], pd.DataFrame] = to_frame) -> pd.DataFrame:
    """`qa_reporting.experiment_readout`, one row per experiment.

    `audits` needs decision_at, moderator_id, is_error_final, is_critical, handle_time_s;
    `execute` runs the one aggregate query.
    """
    if experiments.empty:
        return pd.DataFrame(columns=READOUT_COLUMNS)
    starts = [_naive_day(v) for v in experiments["start_date"]]
    ends = [_naive_day(v) for v in experiments["end_date"]]
    days = execute(moderator_days(audits, min(starts).date(), max(ends).date()))
    rows = []
    for ex, start, end in zip(experiments.itertuples(index=False), starts, ends, strict=True):
        months = months_between(start.date(), end.date())
        status = "complete" if all(m in published_months for m in months) else "pending"
        arms = assignments[assignments["experiment_id"] == ex.experiment_id]
        assigned = arms["arm"].value_counts()
        a_c, a_t = int(assigned.get("control", 0)), int(assigned.get("treatment", 0))
        units = unit_metrics(days, start, end).merge(arms[["moderator_id", "arm"]], on="moderator_id")
        metric = ex.primary_metric
        values = units.dropna(subset=[metric])
        c = values.loc[values["arm"] == "control", metric].to_numpy()
        t = values.loc[values["arm"] == "treatment", metric].to_numpy()
        res = welch(c, t, alpha=alpha)
        pooled_sd = float(np.sqrt(((len(c) - 1) * c.var(ddof=1) + (len(t) - 1) * t.var(ddof=1)) / (len(c) + len(t) - 2))) \
            if len(c) > 1 and len(t) > 1 else float("nan")
        mde = minimum_detectable_effect(len(c), len(t), pooled_sd, alpha=alpha)
        srm_p = srm_p_value(a_c, a_t, float(ex.treatment_share))
        decision, reason = _decide(metric, res, srm_p, status, alpha, srm_alpha, float(ex.treatment_share),
                                   a_t, a_c + a_t, mde)
        lift = res.diff / res.mean_control if res.mean_control not in (0, 0.0) and np.isfinite(res.mean_control) else np.nan
        rows.append({
            "experiment_id": ex.experiment_id, "name": ex.name, "status": status, "metric": metric,
            "start_date": start, "end_date": end, "assigned_control": a_c, "assigned_treatment": a_t,
            "n_control": len(c), "n_treatment": len(t), "mean_control": res.mean_control,
            "mean_treatment": res.mean_treatment, "diff": res.diff, "ci_low": res.ci_low,
            "ci_high": res.ci_high, "p_value": res.p_value, "relative_lift": lift, "srm_p_value": srm_p,
            "mde": mde, "decision": decision, "reason": reason,
        })
    return pd.DataFrame(rows, columns=READOUT_COLUMNS)
