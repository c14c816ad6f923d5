"""Early warning inside the month: a Bernoulli CUSUM per site × queue, site and queue.

What the analyst gets, per segment and month (`qa_reporting.early_warnings`): the segment's
baseline error rate, the audits and errors so far, the CUSUM's maximum and threshold, and the day
its chart first crossed the threshold (`first_signal_date`), if it did.

- **Audits**: the month's audits (folder month = month of audited_at), in `decision_at` order
  (ties by audit_id); an error is `is_error_final` as known when the chart is computed.
- **Baseline** p₀: the segment's pooled error rate over the `early_warning_months` months before
  the month (published `quality_metrics`), as the Jeffreys estimate (errors + ½) / (audits + 1),
  never 0 or 1. A segment with no audits in those months borrows its parent's baseline (site ×
  queue → the queue's, site or queue → overall), noted in `baseline_source`; with no history at
  all nothing is monitored (a note says so).
- **Chart**: `stats.cusum.bernoulli_cusum`, tuned to a rise of the odds of an error by
  `early_warning_odds_ratio` (default 2).
- **Threshold**: one per segment, chosen by simulation so that a month without change makes *any*
  of the month's charts signal with probability ≤ `early_warning_family_alpha` (default 5 %):
  each segment's threshold is the (1 − α′) quantile of the maximum of its chart over a simulated
  in-control month of `expected_audits` audits, with α′ = 1 − (1 − 0.05)^(1/K) over the K
  monitored segments (`stats.cusum.sidak_level`, valid for the nested charts). Each simulated month
  runs at a rate drawn from the baseline's posterior (the baseline is an estimate: `segment_threshold`),
  and the quantile is taken with 90 % confidence against the simulation's own error
  (`stats.cusum.threshold`). `expected_audits` is the segment's largest monthly volume in the
  baseline months, or the month so far once it is larger; a borrowed baseline uses the audits so
  far. So the daily runs and the final run use the same threshold unless the month outgrows its
  baseline months, a segment without history appears mid-month (K changes), or the previous month
  is published after a daily run (the baseline changes): the row written last says which
  threshold its signal is judged by.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import lru_cache

import numpy as np
import pandas as pd

from qa_pipeline.domain.months import months_back
from qa_pipeline.domain.segments import ALL, OVERALL, PAIR_VALUE, dimension_name
from qa_pipeline.stats.cusum import (
    bernoulli_cusum,
    first_exceedance,
    sidak_level,
    threshold,
)

DIMENSIONS: list[tuple[str, ...]] = [("site", "queue"), ("site",), ("queue",)]
PARENT = {"site×queue": "queue", "site": OVERALL, "queue": OVERALL}
COLUMNS = ["month", "dimension", "segment", "baseline_error_rate", "baseline_audits", "baseline_source",
           "expected_audits", "audits_to_date", "errors_to_date", "cusum", "cusum_max", "threshold", "first_signal_date",
           "signalled", "as_of", "final", "note"]


@dataclass(frozen=True)
class WarningRule:
    """The chart's settings (`Thresholds.early_warning_*`)."""

    baseline_months: int = 3
    odds_ratio: float = 2.0
    family_alpha: float = 0.05
    simulations: int = 10_000
    seed: int = 20261204

    @classmethod
    def from_thresholds(cls, t) -> WarningRule:
        return cls(baseline_months=int(t.early_warning_months), odds_ratio=float(t.early_warning_odds_ratio), family_alpha=float(t.early_warning_family_alpha),
                   simulations=int(t.early_warning_simulations))


def errors_as_known(audits: pd.DataFrame, overturned) -> pd.Series:
    """`is_error_final` of clean audit rows not yet enriched (the month-to-date warning reads the raw
    files): the moderator's action or policy differs from the auditor's (as `domain.enrich`), unless
    a dispute resolved so far overturned the audit."""
    is_error = ((audits["action_moderator"] != audits["action_auditor"])
                | (audits["policy_moderator"] != audits["policy_auditor"]))
    return is_error & ~audits["audit_id"].isin(overturned)


def jeffreys_rate(errors, audits):
    return (np.asarray(errors, dtype=float) + 0.5) / (np.asarray(audits, dtype=float) + 1.0)


def baselines(history: pd.DataFrame, month: date, months: int) -> pd.DataFrame:
    """Per dimension × segment of the monitored dimensions (and overall): audits and errors pooled
    over the `months` months before `month` in `history`, the Jeffreys rate, and the largest
    monthly volume."""
    names = [dimension_name(d) for d in DIMENSIONS] + [OVERALL]
    window = set(months_back(month, months)[1:])
    h = history[pd.to_datetime(history["month"]).dt.date.isin(window) & history["dimension"].isin(names)]
    if h.empty:
        return pd.DataFrame(columns=["dimension", "segment", "audits", "errors", "rate", "expected_audits"])
    out = h.groupby(["dimension", "segment"], as_index=False).agg(
        audits=("audits", "sum"), errors=("errors", "sum"), expected_audits=("audits", "max"))
    out = out[out["audits"] > 0]
    return out.assign(rate=jeffreys_rate(out["errors"], out["audits"]))


@lru_cache(maxsize=4096)
def segment_threshold(expected: int, baseline_errors: int, baseline_audits: int, odds_ratio: float,
                      alpha: float, simulations: int, seed: int) -> float:
    """The threshold of a chart over `expected` audits whose baseline p₀ = (errors + ½)/(audits + 1)
    was *estimated* from `baseline_errors` of `baseline_audits`: each simulated month runs at a rate
    drawn from the baseline's Jeffreys posterior Beta(errors + ½, audits − errors + ½) (whose mean is
    p₀) while the chart keeps its weights for p₀. So the false-alarm probability holds over the
    baseline's own sampling error, not only for a p₀ known exactly (a chart tuned to an estimate
    below the true rate alarms more often: with three months of a few dozen audits per cell,
    a fixed-p₀ threshold gave about 10 % of no-change months a false signal instead of 5 %). The
    same arguments give the same threshold in every run (the simulation is seeded by them)."""
    rng = np.random.default_rng([seed, expected, baseline_errors, baseline_audits])
    p0 = float(jeffreys_rate(baseline_errors, baseline_audits))
    rates = rng.beta(baseline_errors + 0.5, baseline_audits - baseline_errors + 0.5, size=simulations)
    return threshold(expected, p0, odds_ratio, alpha, simulations, rng, true_rates=rates)


def _segment_frame(audits: pd.DataFrame) -> pd.DataFrame:
    """One row per audit and monitored dimension: dimension, segment, decision_at, is_error."""
    a = audits.sort_values(["decision_at", "audit_id"], kind="stable")
    parts = []
    for columns in DIMENSIONS:
        label = a[columns[0]].astype(str)
        for c in columns[1:]:
            label = label + PAIR_VALUE + a[c].astype(str)
        parts.append(pd.DataFrame({"dimension": dimension_name(columns), "segment": label.to_numpy(),
                                   "decision_at": a["decision_at"].to_numpy(),
                                   "is_error": a["is_error"].to_numpy(dtype=bool)}))
    return pd.concat(parts, ignore_index=True)


def _parent_segment(dimension: str, segment: str) -> tuple[str, str]:
    if dimension == "site×queue":
        return "queue", segment.split(PAIR_VALUE, 1)[1]
    return OVERALL, ALL


def early_warnings(audits: pd.DataFrame, history: pd.DataFrame, month: date, rule: WarningRule,
                   as_of: date, final: bool) -> pd.DataFrame:
    """The month's warning rows (`COLUMNS`) from its audits so far (audit_id, site, queue,
    decision_at, is_error) and the published quality_metrics of the months before it."""
    base = baselines(history, month, rule.baseline_months)
    known = {(r.dimension, r.segment): r for r in base.itertuples(index=False)}
    rows = _segment_frame(audits) if len(audits) else pd.DataFrame(
        columns=["dimension", "segment", "decision_at", "is_error"])
    groups = {k: g for k, g in rows.groupby(["dimension", "segment"], sort=False)} if len(rows) else {}
    segments = sorted({k for k in known if k[0] != OVERALL} | set(groups),
                      key=lambda k: ([dimension_name(d) for d in DIMENSIONS].index(k[0]), k[1]))
    plan = []
    for dim, seg in segments:
        g = groups.get((dim, seg))
        n_now = 0 if g is None else len(g)
        b = known.get((dim, seg))
        source = "segment"
        if b is None:
            parent = _parent_segment(dim, seg)
            b = known.get(parent) or known.get((OVERALL, ALL))
            source = f"{parent[0] if parent in known else OVERALL} (no history of its own)"
        if b is None:
            plan.append((dim, seg, g, None, 0, None, None, "no audits in the baseline months: not monitored", 0))
            continue
        # the horizon the false-alarm probability holds for: the segment's largest baseline month, or
        # the month so far when it has outgrown it (a longer chart needs a higher threshold)
        expected = max(int(b.expected_audits), n_now) if source == "segment" else max(n_now, 1)
        plan.append((dim, seg, g, float(b.rate), int(b.audits), source, expected, "", int(b.errors)))
    monitored = sum(1 for p in plan if p[3] is not None)
    alpha = sidak_level(rule.family_alpha, monitored)
    out = []
    for dim, seg, g, p0, base_n, source, expected, note, base_e in plan:
        n = 0 if g is None else len(g)
        e = 0 if g is None else int(g["is_error"].sum())
        row = dict(month=month, dimension=dim, segment=seg, baseline_error_rate=p0, baseline_audits=base_n,
                   baseline_source=source, expected_audits=expected, audits_to_date=n, errors_to_date=e, cusum=None,
                   cusum_max=None, threshold=None, first_signal_date=None, signalled=False, as_of=as_of,
                   final=final, note=note or None)
        if p0 is not None:
            h = segment_threshold(expected, base_e, base_n, rule.odds_ratio, alpha, rule.simulations, rule.seed)
            path = bernoulli_cusum(g["is_error"].to_numpy() if g is not None else [], p0, rule.odds_ratio)
            first = first_exceedance(path, h)
            row.update(cusum=float(path[-1]) if n else 0.0, cusum_max=float(path.max()) if n else 0.0,
                       threshold=h, signalled=first is not None,
                       first_signal_date=(pd.Timestamp(g["decision_at"].iloc[first]).date()
                                          if first is not None else None))
        out.append(row)
    return pd.DataFrame(out, columns=COLUMNS)

