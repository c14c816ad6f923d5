"""Month-over-month error-rate changes per segment, with FDR control, and p-charts."""

from __future__ import annotations

import numpy as np
import pandas as pd

from qa_pipeline.stats.proportions import (
    benjamini_hochberg,
    safe_rate,
    two_proportion_ztest,
)

KEY = ["dimension", "segment"]


def error_trends(metrics: pd.DataFrame, month, thresholds) -> pd.DataFrame:
    """`qa_reporting.error_trends` for `month` from `quality_metrics` rows of this and earlier months.

    A segment is judged when both months have ≥ min_n audits; `alert` = the error rate rose with
    BH q < alert_q and Δ ≥ min_alert_delta; `improved` is the mirror image. Segments not judged say
    why in `reason`. The p-chart centre is the pooled error rate of the previous `p_chart_months`
    months (at least `p_chart_min_months` with audits), limits p̄ ± 3√(p̄(1−p̄)/n) clipped to [0, 1].
    """
    t = thresholds
    m = pd.Timestamp(month)
    months = pd.to_datetime(metrics["month"])
    cur = metrics[months == m].set_index(KEY)
    prev_month = m - pd.DateOffset(months=1)
    prev = metrics[months == prev_month].set_index(KEY)
    out = pd.DataFrame(index=cur.index)
    out["audits"] = cur["audits"].astype("int64")
    out["errors"] = cur["errors"].astype("int64")
    out["prev_audits"] = prev["audits"].reindex(cur.index).fillna(0).astype("int64")
    out["prev_errors"] = prev["errors"].reindex(cur.index).fillna(0).astype("int64")
    out["error_rate"] = safe_rate(out["errors"], out["audits"])
    out["prev_error_rate"] = safe_rate(out["prev_errors"], out["prev_audits"])
    out["delta"] = out["error_rate"] - out["prev_error_rate"]
    judged = (out["audits"] >= t.min_n) & (out["prev_audits"] >= t.min_n)
    tests = [two_proportion_ztest(e1, n1, e0, n0) if ok else (np.nan, np.nan)
             for e1, n1, e0, n0, ok in zip(out["errors"], out["audits"], out["prev_errors"],
                                           out["prev_audits"], judged, strict=True)]
    out["z"] = [z for z, _ in tests]
    out["p_value"] = [p for _, p in tests]
    out["q_value"] = benjamini_hochberg(out["p_value"].to_numpy())
    significant = judged & (out["q_value"] < t.alert_q)
    out["alert"] = significant & (out["delta"] >= t.min_alert_delta)
    out["improved"] = significant & (-out["delta"] >= t.min_alert_delta)
    out["judged"] = judged
    out["reason"] = np.select(
        [out["prev_audits"] == 0, ~judged],
        ["no audits in the previous month",
         "too few audits to judge (" + out["prev_audits"].astype(str) + " → " + out["audits"].astype(str)
         + f"; need {t.min_n} in both months)"],
        default="",
    )
    _p_chart(out, metrics, months, m, t)
    out = out.reset_index()
    out.insert(0, "month", m)
    return out[TREND_COLUMNS]


TREND_COLUMNS = [
    "month", "dimension", "segment", "audits", "errors", "prev_audits", "prev_errors", "error_rate",
    "prev_error_rate", "delta", "z", "p_value", "q_value", "alert", "improved", "judged", "reason",
    "history_months", "p_chart_center", "p_chart_lcl", "p_chart_ucl", "out_of_control",
]


def _p_chart(out: pd.DataFrame, metrics: pd.DataFrame, months: pd.Series, m: pd.Timestamp, t) -> None:
    start = m - pd.DateOffset(months=t.p_chart_months)
    hist = metrics[(months >= start) & (months < m)]
    pooled = hist.groupby(KEY).agg(h_errors=("errors", "sum"), h_audits=("audits", "sum"),
                                   history_months=("month", "nunique"))
    pooled = pooled.reindex(out.index)
    out["history_months"] = pooled["history_months"].fillna(0).astype("int64")
    enough = out["history_months"] >= t.p_chart_min_months
    center = pd.Series(safe_rate(pooled["h_errors"], pooled["h_audits"]), index=out.index).where(enough)
    n = out["audits"].where(out["audits"] > 0)
    half = 3 * np.sqrt(center * (1 - center) / n)
    out["p_chart_center"] = center
    out["p_chart_lcl"] = (center - half).clip(lower=0.0)
    out["p_chart_ucl"] = (center + half).clip(upper=1.0)
    rate = out["error_rate"]
    out["out_of_control"] = enough & ((rate > out["p_chart_ucl"]) | (rate < out["p_chart_lcl"])).fillna(False)
