"""Findings into actions, each with an owner, its evidence and a priority by impact.

The rule set is data: `RULES` lists, per rule, the owner, the trigger (a function over the month's
published tables that returns the findings), the threshold it uses, the message templates and a
priority floor. Impact is measured in excess errors against target (or, for graders, excess
flags against peers), so that "P1" means "this is where most avoidable errors are".

A rule is about a segment, a policy or a process (`qa_reporting.recommendations`, which analysts
and the MBR read) or about one person — a moderator, an auditor, a rater (`Rule.person`; published
in `qa_core.person_recommendations`, restricted, shown in the Monthly Quality Report only), so that
`qa_reporting` holds no person identifier (contract §5).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from qa_pipeline.domain.redaction import redact_text

OWNERS = ["Training", "Product", "Workforce Management", "Enforcement Operations", "Policy", "Quality"]
CRITICAL_POLICY_FAMILIES = ("MS.", "VE.", "SH.")
COLUMNS = ["month", "owner", "priority", "impact", "rule", "subject", "finding", "evidence", "action"]
PERSON_COLUMNS = ["month", "owner", "priority", "impact", "rule", "person_role", "person_id", "finding", "evidence",
                  "action"]
PERSON_ROLES = ("moderator", "auditor", "rater")


@dataclass(frozen=True)
class MonthTables:
    """The published tables the month's findings about segments, policies and processes read
    (this month unless said otherwise): `qa_reporting` tables only."""

    month: pd.Timestamp
    quality_metrics: pd.DataFrame
    prev_quality_metrics: pd.DataFrame
    error_trends: pd.DataFrame
    rca_pareto: pd.DataFrame
    calibration_agreement: pd.DataFrame
    policy_change_impact: pd.DataFrame
    comment_themes: pd.DataFrame


@dataclass(frozen=True)
class PersonTables:
    """The month's person-level tables (`qa_core`) the findings about one person read."""

    month: pd.Timestamp
    moderator_quality: pd.DataFrame
    auditor_consistency: pd.DataFrame
    calibration_rater_scores: pd.DataFrame
    auditor_dispute_metrics: pd.DataFrame


@dataclass(frozen=True)
class Rule:
    rule: str
    owner: str
    trigger: Callable[[MonthTables, object], list[dict]]
    threshold: str
    finding: str
    evidence: str
    action: str
    floor: str = "P3"  # the lowest priority this rule may get
    person: str | None = None  # the role of the person a finding is about; None: a segment, policy, process


def _pct(x: float) -> str:
    return "n/a" if x is None or pd.isna(x) else f"{x:.1%}"


def _excess(errors: float, audits: float, target: float) -> float:
    return max(float(errors) - (1 - target) * float(audits), 0.0)


def _month_of(frame: pd.DataFrame, month: pd.Timestamp) -> pd.DataFrame:
    if frame.empty or "month" not in frame:
        return frame
    return frame[pd.to_datetime(frame["month"]) == month]


# --- triggers -------------------------------------------------------------------------------------

def moderators_below_target(t: PersonTables, th) -> list[dict]:
    m = t.moderator_quality[t.moderator_quality["below_target"].astype(bool)]
    return [dict(subject=r.moderator_id, moderator_id=r.moderator_id, site=r.site, audits=int(r.audits),
                 errors=int(r.errors), accuracy=_pct(r.accuracy), lo=_pct(r.accuracy_ci_low),
                 hi=_pct(r.accuracy_ci_high), target=_pct(th.target_accuracy),
                 impact=_excess(r.errors, r.audits, th.target_accuracy)) for r in m.itertuples()]


def segment_alerts(t: MonthTables, th) -> list[dict]:
    a = t.error_trends[t.error_trends["alert"].astype(bool) & (t.error_trends["dimension"] == "site×queue")]
    out = []
    for r in a.itertuples():
        site, queue = r.segment.split("|", 1)
        out.append(dict(subject=r.segment, site=site, queue=queue, prev=_pct(r.prev_error_rate),
                        rate=_pct(r.error_rate), q=f"{r.q_value:.3g}", audits=int(r.audits),
                        prev_audits=int(r.prev_audits),
                        impact=max(float(r.errors) - float(r.prev_error_rate) * float(r.audits), 0.0)))
    return out


def harmful_policy_changes(t: MonthTables, th) -> list[dict]:
    f = t.policy_change_impact[t.policy_change_impact["flagged"].astype(bool)]
    return [dict(subject=r.change_id, change_id=r.change_id, policy=r.policy,
                 effective=pd.Timestamp(r.effective_date).date().isoformat(), before=_pct(r.error_rate_before),
                 after=_pct(r.error_rate_after), delta=f"{r.delta:+.1%}", lo=f"{r.ci_low:+.1%}",
                 hi=f"{r.ci_high:+.1%}", n0=int(r.n_before), n1=int(r.n_after), p=f"{r.p_value:.3g}",
                 did="n/a" if pd.isna(r.did) else f"{r.did:+.1%}",
                 impact=float(r.errors_after) - float(r.error_rate_before) * float(r.n_after)) for r in f.itertuples()]


def tooling_causes(t: MonthTables, th) -> list[dict]:
    scoped = t.rca_pareto["scope"].eq("overall") | t.rca_pareto["scope"].str.startswith("queue:")
    p = t.rca_pareto[scoped & (t.rca_pareto["root_cause"] == "tooling") & (t.rca_pareto["errors"] >= 5)]
    # overall at the threshold; a queue only when tooling weighs twice as much there
    needed = np.where(p["scope"] == "overall", th.tooling_share, 2 * th.tooling_share)
    p = p[p["share"] >= needed]
    themes = t.comment_themes[t.comment_themes["scope"] == "root_cause:tooling"]
    terms = ", ".join(f"“{redact_text(x)}”" for x in themes.sort_values("rank")["term"].head(4)) or "none"
    site_rows = t.quality_metrics[t.quality_metrics["dimension"] == "site"]
    out = []
    for r in p.itertuples():
        out.append(dict(subject=r.scope, scope=r.scope.replace("queue:", "queue "), errors=int(r.errors),
                        share=_pct(r.share), terms=terms, sites=len(site_rows), impact=float(r.errors)))
    return out


def quality_drops_with_handle_time_drops(t: MonthTables, th) -> list[dict]:
    alerts = t.error_trends[t.error_trends["alert"].astype(bool) & t.error_trends["dimension"].isin(["site", "site×queue"])]
    cur = t.quality_metrics.set_index(["dimension", "segment"])
    prev = t.prev_quality_metrics.set_index(["dimension", "segment"]) if len(t.prev_quality_metrics) else None
    out = []
    for r in alerts.itertuples():
        key = (r.dimension, r.segment)
        if prev is None or key not in prev.index or key not in cur.index:
            continue
        h0, h1 = prev.loc[key, "mean_handle_time_s"], cur.loc[key, "mean_handle_time_s"]
        n0, n1 = prev.loc[key, "audits"], cur.loc[key, "audits"]
        ht_change = h1 / h0 - 1 if h0 else np.nan
        volume_change = n1 / n0 - 1 if n0 else np.nan
        if (ht_change <= -th.handle_time_drop) or (volume_change >= th.volume_spike):
            out.append(dict(subject=r.segment, segment=r.segment.replace("|", " × "), prev=_pct(r.prev_error_rate),
                            rate=_pct(r.error_rate), q=f"{r.q_value:.3g}", h0=f"{h0:.0f}", h1=f"{h1:.0f}",
                            ht=f"{ht_change:+.0%}", ht_drop=f"{-ht_change:.0%}", vol=f"{volume_change:+.0%}",
                            impact=max(float(r.errors) - float(r.prev_error_rate) * float(r.audits), 0.0)))
    return out


def critical_under_enforcement(t: MonthTables, th) -> list[dict]:
    q = t.quality_metrics[(t.quality_metrics["dimension"] == "policy")
                          & t.quality_metrics["segment"].str.startswith(CRITICAL_POLICY_FAMILIES)]
    q = q[(q["under_enforcement_errors"] >= 3) & (q["under_enforcement_rate"] >= th.under_enforcement_rate)]
    return [dict(subject=r.segment, policy=r.segment, under=int(r.under_enforcement_errors),
                 rate=_pct(r.under_enforcement_rate), critical=int(r.critical_errors), audits=int(r.audits),
                 impact=float(r.under_enforcement_errors) + 2.0 * float(r.critical_errors)) for r in q.itertuples()]


def ambiguous_guidelines(t: MonthTables, th) -> list[dict]:
    p = t.rca_pareto[(t.rca_pareto["root_cause"] == "guideline_ambiguity") & t.rca_pareto["scope"].str.startswith("queue:")
                     & (t.rca_pareto["share"] >= th.ambiguity_share) & (t.rca_pareto["errors"] >= 5)]
    return [dict(subject=r.scope, queue=r.scope.removeprefix("queue:"), errors=int(r.errors), share=_pct(r.share),
                 impact=float(r.errors)) for r in p.itertuples()]


def low_calibration(t: MonthTables, th) -> list[dict]:
    c = t.calibration_agreement
    # both chance-corrected views low: a skewed session (high AC1, low kappa) is not flagged
    low = c[(c["fleiss_kappa"] < th.min_kappa) & (c["gwet_ac1"] < th.min_ac1)]
    return [dict(subject=f"{r.session_id}/{r.label}", session=r.session_id, label=r.label, queue=r.queue,
                 kappa=f"{r.fleiss_kappa:.2f}", ac1=f"{r.gwet_ac1:.2f}", alpha=f"{r.krippendorff_alpha:.2f}",
                 raters=int(r.raters), cases=int(r.cases), gold=_pct(r.gold_accuracy),
                 impact=float(r.cases) * (1 - float(r.percent_agreement))) for r in low.itertuples()]


def raters_below_gold(t: PersonTables, th) -> list[dict]:
    s = t.calibration_rater_scores
    if s.empty:
        return []
    per = s.groupby("rater_id").agg(cases=("cases_rated", "sum"), acc=("accuracy_vs_gold", "mean"),
                                    sessions=("session_id", "nunique")).reset_index()
    per = per[per["acc"] < th.min_gold_accuracy]
    return [dict(subject=r.rater_id, rater=r.rater_id, acc=_pct(r.acc), sessions=int(r.sessions),
                 cases=int(r.cases), threshold=_pct(th.min_gold_accuracy),
                 impact=float(r.cases) * (th.min_gold_accuracy - float(r.acc))) for r in per.itertuples()]


def drifting_auditors(t: PersonTables, th) -> list[dict]:
    d = t.auditor_consistency[t.auditor_consistency["drift"].astype(bool)]
    return [dict(subject=r.auditor_id, auditor=r.auditor_id, flag=_pct(r.flag_rate), expected=_pct(r.expected_rate),
                 z=f"{r.z_score:+.1f}", audits=int(r.audits), overturned=int(r.overturned), disputed=int(r.disputed),
                 direction="more" if r.z_score > 0 else "fewer",
                 impact=abs(float(r.flag_rate) - float(r.expected_rate)) * float(r.audits)) for r in d.itertuples()]


def high_overturn_auditors(t: PersonTables, th) -> list[dict]:
    d = t.auditor_dispute_metrics
    d = d[(d["resolved"] >= th.min_resolved) & (d["overturn_rate"] >= th.overturn_rate)]
    return [dict(subject=r.auditor_id, auditor=r.auditor_id, overturned=int(r.overturned), resolved=int(r.resolved),
                 rate=_pct(r.overturn_rate), impact=float(r.overturned)) for r in d.itertuples()]


@dataclass(frozen=True)
class RuleThresholds:
    """Rule thresholds beyond the pipeline-wide `Thresholds` (documented in the README)."""

    target_accuracy: float
    min_gold_accuracy: float
    tooling_share: float = 0.10
    ambiguity_share: float = 0.20
    handle_time_drop: float = 0.10
    volume_spike: float = 0.30
    under_enforcement_rate: float = 0.02
    min_kappa: float = 0.40
    min_ac1: float = 0.60
    overturn_rate: float = 0.50
    min_resolved: int = 5


RULES: list[Rule] = [
    Rule("segment_error_spike", "Training", segment_alerts, "error_trends.alert (q < 0.05, Δ ≥ 1 pp, n ≥ 100)",
         "Error rate at {site} on {queue} rose from {prev} to {rate}",
         "site×queue error rate {prev} → {rate}, BH q = {q}, audits {prev_audits} → {audits}",
         "Run targeted coaching for {site} moderators on {queue}, starting with the newest hires", "P2"),
    Rule("quality_drop_with_handle_time_drop", "Workforce Management", quality_drops_with_handle_time_drops,
         "alert with handle time −10 % or volume +30 %",
         "{segment}: errors rose ({prev} → {rate}) while handle time fell {ht_drop}",
         "error rate {prev} → {rate} (q = {q}); mean handle time {h0} s → {h1} s ({ht}); audit volume {vol}",
         "Review staffing, schedules and productivity targets for {segment}: speed is costing quality", "P2"),
    Rule("policy_refresher", "Training", harmful_policy_changes, "policy_change_impact.flagged",
         "The {policy} change {change_id} (effective {effective}) raised errors from {before} to {after}",
         "Δ {delta} (95 % CI {lo} to {hi}; p = {p}); n = {n0} before / {n1} after; DiD vs unaffected queues {did}",
         "Run a refresher on the new {policy} definition for every queue that applies it", "P1"),
    Rule("policy_change_review", "Policy", harmful_policy_changes, "policy_change_impact.flagged",
         "Moderators are misapplying the updated {policy} ({change_id})",
         "error rate {before} → {after} (Δ {delta}, 95 % CI {lo} to {hi}); n = {n0}/{n1}",
         "Clarify the {policy} change with examples of what moved in and out of scope", "P2"),
    Rule("moderator_below_target", "Training", moderators_below_target,
         "moderator accuracy upper 95 % bound < target, ≥ min_moderator_audits audits",
         "{moderator_id} ({site}) is below target: accuracy {accuracy}",
         "{errors} errors in {audits} audits; 95 % CI {lo}–{hi} against a {target} target",
         "1:1 coaching for {moderator_id} on the month's error cases", "P3", person="moderator"),
    Rule("tooling_defects", "Product", tooling_causes, "tooling share of errors ≥ 10 % (≥ 5 errors)",
         "Tooling causes {share} of errors in {scope}",
         "{errors} errors with root cause tooling; themes in auditor comments: {terms}",
         "Triage the review-tool defects named in the comments with the tooling team", "P2"),
    Rule("critical_under_enforcement", "Enforcement Operations", critical_under_enforcement,
         "under-enforcement rate ≥ 2 % on MS/VE/SH policies (≥ 3 errors)",
         "Harmful content under {policy} is being approved: {under} under-enforcement errors",
         "under-enforcement rate {rate} of {audits} audits; {critical} critical errors",
         "Add a second review for approvals in {policy} queues and re-check the month's approvals", "P1"),
    Rule("guideline_ambiguity", "Policy", ambiguous_guidelines, "guideline ambiguity ≥ 20 % of a queue's errors",
         "Guideline ambiguity drives {share} of errors on {queue}",
         "{errors} errors with root cause guideline_ambiguity",
         "Clarify the {queue} guideline with worked edge cases", "P3"),
    Rule("low_calibration", "Policy", low_calibration, "Fleiss' kappa < 0.40 and AC1 < 0.60",
         "Auditors disagree on {label} in {session}",
         "kappa {kappa}, AC1 {ac1}, alpha {alpha}; {raters} raters × {cases} cases; {gold} of ratings match gold",
         "Hold a calibration review of the {queue} guideline and re-run the session", "P3"),
    Rule("rater_below_gold", "Training", raters_below_gold, "rater accuracy vs gold < min_gold_accuracy",
         "{rater} disagrees with gold in calibration: {acc}",
         "{acc} of ratings match gold over {sessions} session(s) and {cases} cases (threshold {threshold})",
         "Pair {rater} with a senior auditor before they audit again", "P3", person="rater"),
    Rule("auditor_drift", "Quality", drifting_auditors, "|z| > 3 with ≥ 100 audits",
         "{auditor} flags {direction} errors than peers: {flag} vs {expected} expected",
         "z = {z} on {audits} audits; {overturned} of {disputed} disputed audits overturned",
         "Re-calibrate {auditor} and double-review a sample of their audits", "P2", person="auditor"),
    Rule("high_overturn_rate", "Quality", high_overturn_auditors, "overturn rate ≥ 50 % with ≥ 5 resolved disputes",
         "{auditor}'s audits are often overturned on dispute: {rate}",
         "{overturned} of {resolved} resolved disputes overturned",
         "Review {auditor}'s overturned audits in the next calibration session", "P2", person="auditor"),
]
SEGMENT_RULES = [r for r in RULES if r.person is None]
"""Findings about segments, policies and processes: `qa_reporting.recommendations`."""
PERSON_RULES = [r for r in RULES if r.person is not None]
"""Findings about one person: `qa_core.person_recommendations`."""

PRIORITY_RANK = {"P1": 1, "P2": 2, "P3": 3}


def priority(impact: float, floor: str) -> str:
    by_impact = "P1" if impact >= 20 else "P2" if impact >= 5 else "P3"
    return min(by_impact, floor, key=PRIORITY_RANK.get)


def _findings(tables, thresholds: RuleThresholds, rules: list[Rule]) -> pd.DataFrame:
    """One row per (owner, rule, subject), highest impact first."""
    rows = []
    for rule in rules:
        for f in rule.trigger(tables, thresholds):
            impact = round(float(f["impact"]), 2)
            rows.append({
                "month": tables.month, "owner": rule.owner, "priority": priority(impact, rule.floor),
                "impact": impact, "rule": rule.rule, "person_role": rule.person, "subject": str(f["subject"]),
                "finding": redact_text(rule.finding.format(**f)),
                "evidence": redact_text(rule.evidence.format(**f)),
                "action": redact_text(rule.action.format(**f)),
            })
    out = pd.DataFrame(rows, columns=[*COLUMNS, "person_role"])
    out = out.drop_duplicates(["owner", "rule", "subject"])
    out["_rank"] = out["priority"].map(PRIORITY_RANK)
    out = out.sort_values(["_rank", "impact", "owner", "subject"], ascending=[True, False, True, True])
    return out.drop(columns="_rank").reset_index(drop=True)


def recommendations(tables: MonthTables, thresholds: RuleThresholds,
                    rules: list[Rule] = SEGMENT_RULES) -> pd.DataFrame:
    """`qa_reporting.recommendations`: the findings about segments, policies and processes, one row
    per (owner, rule, subject), highest impact first."""
    if any(r.person for r in rules):
        raise ValueError(f"rules about a person go to qa_core.person_recommendations, not qa_reporting: "
                         f"{[r.rule for r in rules if r.person]}")
    return _findings(tables, thresholds, rules)[COLUMNS]


def person_recommendations(tables: PersonTables, thresholds: RuleThresholds,
                           rules: list[Rule] = PERSON_RULES) -> pd.DataFrame:
    """`qa_core.person_recommendations`: the findings about one moderator, auditor or rater, one
    row per (rule, person), highest impact first."""
    if not all(r.person for r in rules):
        raise ValueError(f"person_recommendations takes rules about a person only: "
                         f"{[r.rule for r in rules if not r.person]}")
    out = _findings(tables, thresholds, rules).rename(columns={"subject": "person_id"})
    return out[PERSON_COLUMNS]
