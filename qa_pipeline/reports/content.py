"""What the monthly report says, assembled from published tables only.

Every statement in the report comes from a row of a `qa_reporting` table (or `qa_core` aggregates
that carry no personal text: the Monthly Quality Report is for the quality team and may name a
moderator, auditor or rater, from `qa_core`; the MBR reads `qa_reporting` only and names no
individual), and every text value is redacted again here and neutralised for
spreadsheets (a report table pasted into Excel runs no formula), so that nothing personal or
executable reaches a report even if a table upstream changes. Escaping for HTML or Markdown is the
renderer's (`reports.render`), once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from qa_pipeline.domain.recommendations import PRIORITY_RANK
from qa_pipeline.domain.redaction import neutralise_formula, redact_text
from qa_pipeline.reports import charts


@dataclass(frozen=True)
class ReportInputs:
    month: pd.Timestamp
    target: float
    history: pd.DataFrame  # quality_metrics, the last 13 months (this month last)
    trends: pd.DataFrame
    pareto: pd.DataFrame
    drivers: pd.DataFrame
    themes: pd.DataFrame
    calibration: pd.DataFrame
    rater_scores: pd.DataFrame
    disputes: pd.DataFrame  # dispute_metrics, the last 13 months
    policy_impact: pd.DataFrame
    experiments: pd.DataFrame
    recommendations: pd.DataFrame
    ingest_log: pd.DataFrame
    quarantine_by_rule: pd.DataFrame
    consistency: pd.DataFrame
    data_docs_path: str
    person_recommendations: pd.DataFrame | None = None  # qa_core: findings about one person
    corrections: pd.DataFrame | None = None  # qa_reporting.corrections the report lists (assets/corrections.py)
    early_warnings: pd.DataFrame | None = None  # qa_reporting.early_warnings of the month
    accuracy_corrected: pd.DataFrame | None = None  # qa_reporting.accuracy_corrected of the month


def _clean(value):
    if isinstance(value, str):
        return neutralise_formula(redact_text(value))
    if isinstance(value, float | np.floating) and np.isnan(value):
        return None
    return value


def records(frame: pd.DataFrame, columns: list[str] | None = None) -> list[dict]:
    frame = frame if columns is None else frame.loc[:, columns]
    return [{k: _clean(v) for k, v in row.items()} for row in frame.to_dict("records")]


def _at(frame: pd.DataFrame, month) -> pd.DataFrame:
    return frame[pd.to_datetime(frame["month"]) == pd.Timestamp(month)]


def _overall(metrics: pd.DataFrame, month) -> dict | None:
    row = _at(metrics, month)
    row = row[row["dimension"] == "overall"]
    return row.iloc[0].to_dict() if len(row) else None


def quarantine_by_rule(quarantine: pd.DataFrame) -> pd.DataFrame:
    """Quarantined rows per input and first-broken rule, most frequent first."""
    if quarantine.empty:
        return pd.DataFrame(columns=["input", "rule", "rows"])
    return (quarantine.groupby(["input", "rule"]).size().reset_index(name="rows")
            .sort_values("rows", ascending=False))


def headline(inputs: ReportInputs) -> dict:
    m = inputs.month
    cur = _overall(inputs.history, m)
    prev = _overall(inputs.history, m - pd.DateOffset(months=1))
    last_year = _overall(inputs.history, m - pd.DateOffset(years=1))
    disputes = _at(inputs.disputes, m)
    overall_disputes = disputes[disputes["dimension"] == "overall"]
    restated = int(overall_disputes["restated_audits"].iloc[0]) if len(overall_disputes) else 0
    return {
        "month": m.strftime("%B %Y"),
        "month_key": m.strftime("%Y-%m"),
        "audits": int(cur["audits"]),
        "errors": int(cur["errors"]),
        "accuracy": cur["accuracy"],
        "ci_low": cur["accuracy_ci_low"],
        "ci_high": cur["accuracy_ci_high"],
        "weighted_accuracy": cur["weighted_accuracy"],
        "target": inputs.target,
        "on_target": bool(cur["accuracy"] >= inputs.target),
        "mom": None if prev is None else cur["accuracy"] - prev["accuracy"],
        "yoy": None if last_year is None else cur["accuracy"] - last_year["accuracy"],
        "critical_errors": int(cur["critical_errors"]),
        "critical_error_rate": cur["critical_error_rate"],
        "prev_critical_errors": None if prev is None else int(prev["critical_errors"]),
        "over_rate": cur["over_enforcement_rate"],
        "under_rate": cur["under_enforcement_rate"],
        "alerts": int(inputs.trends["alert"].sum()),
        "improved": int(inputs.trends["improved"].sum()),
        "restated_audits": restated,
        "dispute_rate": overall_disputes["dispute_rate"].iloc[0] if len(overall_disputes) else None,
        "overturn_rate": overall_disputes["overturn_rate"].iloc[0] if len(overall_disputes) else None,
    }


def alerts(inputs: ReportInputs) -> list[dict]:
    t = inputs.trends
    flagged = t[t["alert"] | t["improved"]].copy()
    cur = _at(inputs.history, inputs.month).set_index(["dimension", "segment"])
    lows, highs = [], []
    for r in flagged.itertuples():
        key = (r.dimension, r.segment)
        lows.append(1 - cur.loc[key, "accuracy_ci_high"] if key in cur.index else None)
        highs.append(1 - cur.loc[key, "accuracy_ci_low"] if key in cur.index else None)
    flagged["error_ci_low"], flagged["error_ci_high"] = lows, highs
    flagged["kind"] = np.where(flagged["alert"], "alert", "improved")
    flagged = flagged.sort_values(["kind", "q_value"])
    return records(flagged, ["kind", "dimension", "segment", "prev_audits", "audits", "prev_error_rate", "error_rate",
                             "error_ci_low", "error_ci_high", "delta", "q_value", "out_of_control"])


def top_drivers(inputs: ReportInputs, n: int = 5) -> dict:
    d = inputs.drivers
    if d.empty:
        return {"overall_change": None, "rows": []}
    change = float(d["overall_change"].iloc[0])
    pair = d[d["dimension"] == "site×queue"].copy()
    pair["abs"] = pair["contribution"].abs()
    pair = pair.sort_values("abs", ascending=False).head(n)
    by_dim = d.assign(abs=d["contribution"].abs()).sort_values("abs", ascending=False).groupby("dimension").head(1)
    return {"overall_change": change,
            "rows": records(pair, ["segment", "rate_prev", "rate", "share_prev", "share", "rate_effect", "mix_effect",
                                   "contribution", "contribution_share"]),
            "largest_by_dimension": records(by_dim, ["dimension", "segment", "contribution", "rate_effect", "mix_effect"])}


def calibration(inputs: ReportInputs) -> dict:
    c = inputs.calibration
    paradox = c[(c["fleiss_kappa"] < 0.4) & (c["gwet_ac1"] >= 0.8)]
    below = inputs.rater_scores[inputs.rater_scores["below_threshold"].astype(bool)] if len(inputs.rater_scores) else inputs.rater_scores
    own = c[~c["session_id"].str.startswith("HC-")]
    hatecheck = c[c["session_id"].str.startswith("HC-")]
    summary = None
    if len(hatecheck):
        a = hatecheck[hatecheck["label"] == "action"]
        summary = {"sessions": int(a["session_id"].nunique()), "pa": a["percent_agreement"].median(),
                   "kappa": a["fleiss_kappa"].median(), "ac1": a["gwet_ac1"].median(), "gold": a["gold_accuracy"].median()}
    return {
        "sessions": records(own, ["session_id", "queue", "label", "raters", "cases", "percent_agreement", "fleiss_kappa",
                                  "krippendorff_alpha", "gwet_ac1", "gold_accuracy", "note"]),
        "hatecheck": summary,
        "paradox_sessions": int(paradox["session_id"].nunique()),
        "raters_below": sorted({_clean(r) for r in below["rater_id"]}) if len(below) else [],
    }


def drifting_auditors(inputs: ReportInputs) -> list[dict]:
    c = inputs.consistency
    return records(c[c["drift"].astype(bool)].sort_values("z_score", ascending=False),
                   ["auditor_id", "audits", "flag_rate", "expected_rate", "z_score", "disputed", "overturned"])


def restated_months(inputs: ReportInputs) -> list[dict]:
    d = inputs.disputes
    d = d[(d["dimension"] == "overall") & (d["restated_audits"] > 0)].sort_values("month")
    return [{"month": pd.Timestamp(r.month).strftime("%Y-%m"), "audits": int(r.restated_audits)} for r in d.itertuples()]


def quality_team_recommendations(inputs: ReportInputs) -> pd.DataFrame:
    """What the Monthly Quality Report lists by owner: the findings about segments, policies and
    processes (`qa_reporting.recommendations`) and those about one person (`qa_core`, with their
    `person_role`), highest priority and impact first, as the rule set orders them."""
    recs = inputs.recommendations.assign(person_role=None)
    people = inputs.person_recommendations
    if people is None or people.empty:
        return recs  # already in the rule set's order
    people = people.rename(columns={"person_id": "subject"})
    recs = pd.concat([recs, people[list(recs.columns)]], ignore_index=True) if len(recs) else people
    recs = recs.assign(_rank=recs["priority"].map(PRIORITY_RANK))
    recs = recs.sort_values(["_rank", "impact", "owner", "subject"], ascending=[True, False, True, True])
    return recs.drop(columns="_rank").reset_index(drop=True)


def early_warning(inputs: ReportInputs) -> dict:
    """The segments whose early-warning chart signalled in the month, earliest signal first, and
    how many charts were monitored."""
    w = inputs.early_warnings
    if w is None or w.empty:
        return {"monitored": 0, "rows": []}
    hit = w[w["signalled"].fillna(False).astype(bool)].rename(
        columns={"audits_to_date": "audits", "errors_to_date": "errors"})
    hit["first_signal"] = pd.to_datetime(hit["first_signal_date"]).dt.strftime("%Y-%m-%d")
    hit["error_rate"] = hit["errors"] / hit["audits"].where(hit["audits"] > 0)
    hit = hit.sort_values(["first_signal", "dimension", "segment"])
    return {"monitored": int(w["threshold"].notna().sum()),
            "rows": records(hit, ["first_signal", "dimension", "segment", "baseline_error_rate", "error_rate",
                                  "audits", "errors", "cusum_max", "threshold"])}


def accuracy_corrected(inputs: ReportInputs) -> dict:
    """Accuracy corrected for the audit process's own errors (expert re-audits), overall and per
    site, with the audit process's sensitivity and specificity, or why there is no correction."""
    a = inputs.accuracy_corrected
    if a is None or a.empty:
        return {"available": False, "rows": []}
    a = a.assign(observed_accuracy=1.0 - a["observed_error_rate"],
                 reaudit_accuracy=1.0 - a["reaudit_error_rate"],
                 reaudit_accuracy_ci_low=1.0 - a["reaudit_ci_high"],
                 reaudit_accuracy_ci_high=1.0 - a["reaudit_ci_low"])
    overall = a[a["dimension"] == "overall"]
    head = overall.iloc[0] if len(overall) else a.iloc[0]
    note = head["note"] if isinstance(head["note"], str) and head["note"] else None
    shown = a[a["dimension"].isin(["overall", "site"])]
    return {
        "available": True, "note": note, "reaudits": int(head["reaudits"]),
        "reaudit_months": int(head["reaudit_months"]), "sensitivity": _clean(head["sensitivity"]),
        "specificity": _clean(head["specificity"]),
        "rows": records(shown, ["dimension", "segment", "audits", "observed_accuracy", "corrected_accuracy",
                                "corrected_accuracy_ci_low", "corrected_accuracy_ci_high", "segment_reaudits",
                                "reaudit_accuracy", "reaudit_accuracy_ci_low", "reaudit_accuracy_ci_high"]),
    }


COUNT_METRICS = ("audits", "errors", "critical_errors")
CORRECTIONS_SHOWN = 40


def corrections(inputs: ReportInputs) -> dict:
    """The figures of earlier months corrected since the previous report (overall figures first):
    at most `CORRECTIONS_SHOWN` rows, with the total and the months."""
    log = inputs.corrections
    if log is None or log.empty:
        return {"count": 0, "months": [], "rows": [], "more": 0}
    from qa_pipeline.reports.render import pct

    def text(metric: str, value) -> str:
        if value is None or pd.isna(value):
            return "–"
        return f"{int(value):,}" if metric in COUNT_METRICS else pct(float(value), 2)

    shown = log.head(CORRECTIONS_SHOWN).assign(
        month=lambda x: pd.to_datetime(x["month"]).dt.strftime("%Y-%m"),
        published=lambda x: pd.to_datetime(x["published_at"], utc=True).dt.strftime("%Y-%m-%d %H:%M UTC"))
    shown["previous_text"] = [text(m, v) for m, v in zip(shown["metric"], shown["previous_value"], strict=True)]
    shown["new_text"] = [text(m, v) for m, v in zip(shown["metric"], shown["new_value"], strict=True)]
    months = sorted(pd.to_datetime(log["month"]).dt.strftime("%Y-%m").unique())
    return {"count": int(len(log)), "months": months, "more": int(len(log) - len(shown)),
            "rows": records(shown, ["month", "dimension", "segment", "metric", "previous_text", "new_text",
                                    "cause", "cause_detail", "published"])}


def build(inputs: ReportInputs) -> tuple[dict, dict[str, bytes]]:
    """The report context and its charts (PNG bytes by file name)."""
    month_rows = _at(inputs.history, inputs.month)
    pngs = {
        "trend_team_type.png": charts.trend_chart(inputs.history, "team_type", inputs.target, "Accuracy by team type, 12 months"),
        "trend_site.png": charts.trend_chart(inputs.history, "site", inputs.target, "Accuracy by site, 12 months"),
        "heatmap_site_queue.png": charts.heatmap(month_rows, inputs.target),
    }
    if len(inputs.pareto):
        pngs["pareto_root_causes.png"] = charts.pareto_chart(inputs.pareto)
    recs = quality_team_recommendations(inputs)
    owners = {owner: records(g, ["priority", "impact", "finding", "evidence", "action", "person_role"])
              for owner, g in recs.groupby("owner", sort=False)} if len(recs) else {}
    themes = inputs.themes
    context = {
        "headline": headline(inputs),
        "alerts": alerts(inputs),
        "early_warning": early_warning(inputs),
        "accuracy_corrected": accuracy_corrected(inputs),
        "drivers": top_drivers(inputs),
        "pareto": records(inputs.pareto[inputs.pareto["scope"] == "overall"],
                          ["root_cause", "errors", "share", "cumulative_share", "vital_few"]),
        "themes": records(themes[themes["scope"].isin(["overall", "root_cause:tooling", "root_cause:policy_knowledge"])]
                          .sort_values(["scope", "rank"]), ["scope", "term", "errors_with_term", "share"]),
        "calibration": calibration(inputs),
        "drift": drifting_auditors(inputs),
        "policy_changes": records(inputs.policy_impact.sort_values("effective_date"),
                                  ["change_id", "policy", "effective_date", "status", "n_before", "n_after",
                                   "error_rate_before", "error_rate_after", "delta", "ci_low", "ci_high", "p_value",
                                   "did", "flagged", "note"]),
        "experiments": records(inputs.experiments, ["experiment_id", "name", "status", "metric", "n_control",
                                                    "n_treatment", "diff", "ci_low", "ci_high", "p_value",
                                                    "srm_p_value", "decision", "reason"]),
        "disputes": records(_at(inputs.disputes, inputs.month).query("dimension in ['overall', 'site']"),
                            ["dimension", "segment", "audits", "disputed", "overturned", "dispute_rate", "overturn_rate",
                             "restated_audits"]),
        "restated_months": restated_months(inputs),
        "corrections": corrections(inputs),
        "recommendations": owners,
        "recommendation_count": int(len(recs)),
        "ingest": records(_with_status(inputs.ingest_log),
                          ["input", "source_file", "rows_read", "rows_clean", "rows_quarantined", "status_note"]),
        "quarantine_by_rule": records(inputs.quarantine_by_rule),
        "data_docs": inputs.data_docs_path,
        "charts": {name: charts.data_uri(png) for name, png in pngs.items()},
    }
    return context, pngs


def mbr_kpis(history: pd.DataFrame, disputes: pd.DataFrame, calibration: pd.DataFrame, month, target: float) -> list[dict]:
    """The scorecard: value, target, status, delta on the previous month, 12-month sparkline."""
    from qa_pipeline.reports.render import num, pct, pp

    overall = history[history["dimension"] == "overall"].sort_values("month").tail(12)
    d = disputes[disputes["dimension"] == "overall"].sort_values("month").tail(12)
    cal = (calibration[calibration["label"] == "action"].assign(month=lambda x: pd.to_datetime(x["month"]))
           .groupby("month")["gwet_ac1"].median().sort_index().tail(12)) if len(calibration) else pd.Series(dtype=float)
    specs = [
        ("Accuracy", overall["accuracy"], target, True, pct),
        ("Weighted accuracy", overall["weighted_accuracy"], target, True, pct),
        ("Critical error rate", overall["critical_error_rate"], 0.005, False, lambda v: pct(v, 2)),
        ("Under-enforcement rate", overall["under_enforcement_rate"], 0.02, False, lambda v: pct(v, 2)),
        ("Over-enforcement rate", overall["over_enforcement_rate"], 0.03, False, lambda v: pct(v, 2)),
        ("Audits", overall["audits"].astype(float), None, True, lambda v: num(int(v)) if pd.notna(v) else "–"),
        ("Dispute overturn rate", d["overturn_rate"], 0.30, False, pct),
        ("Calibration agreement (median AC1, action)", cal, 0.80, True, lambda v: num(v)),
    ]
    out = []
    for name, series, tgt, good_up, fmt in specs:
        values = list(pd.to_numeric(series, errors="coerce"))
        value = values[-1] if values else None
        prev = values[-2] if len(values) > 1 else None
        if value is None or pd.isna(value) or tgt is None:
            status = "—"
        else:
            status = "on target" if (value >= tgt if good_up else value <= tgt) else "off target"
        delta = None if value is None or prev is None or pd.isna(prev) else value - prev
        if name == "Audits":
            delta_text = "–" if delta is None else f"{delta:+,.0f}"
        elif "AC1" in name:
            delta_text = "–" if delta is None else f"{delta:+.2f}"
        else:
            delta_text = pp(delta, 2)
        out.append({"name": name, "value_text": fmt(value), "target_text": "–" if tgt is None else
                    (f"≥ {fmt(tgt)}" if good_up else f"≤ {fmt(tgt)}"), "status": status,
                    "delta_text": delta_text, "sparkline": charts.sparkline(values, good_up=good_up)})
    return out


def _with_status(log: pd.DataFrame) -> pd.DataFrame:
    """The ingest log with a note for every file or folder not read (ignored, rejected) and why."""
    log = log.copy()
    status = log["status"] if "status" in log else pd.Series("read", index=log.index)
    reason = log["reason"] if "reason" in log else pd.Series("", index=log.index)
    log["status_note"] = [("" if st in (None, "read") or pd.isna(st) else f"{st}: {rs if isinstance(rs, str) else ''}")
                          for st, rs in zip(status, reason, strict=True)]
    return log
