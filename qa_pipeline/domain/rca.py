"""Root-cause analysis: Pareto of causes, and the mix/rate decomposition of the error-rate change."""

from __future__ import annotations

import ibis.expr.types as ir
import numpy as np
import pandas as pd

from qa_pipeline.domain.segments import dimension_name, per_segment

VITAL_FEW_SHARE = 0.80
UNKNOWN_CAUSE = "unknown"
SITE_QUEUE_SCOPE = "site×queue"
MIN_CHANGE_FOR_SHARE = 0.001
DRIVER_DIMENSIONS: list[tuple[str, ...]] = [
    ("site",), ("queue",), ("policy",), ("team_type",), ("tenure_band",), ("content_type",), ("site", "queue"),
]


def root_cause_counts(audits: ir.Table) -> ir.Table:
    """SQL of `rca_pareto`: errors (`is_error_final`) per site × queue × root cause; a missing root
    cause counts as `unknown`."""
    e = audits.filter(audits.is_error_final)
    e = e.mutate(root_cause=e.root_cause.fill_null(UNKNOWN_CAUSE))
    return e.group_by(["site", "queue", "root_cause"]).aggregate(errors=e.count())


def rca_pareto(counts: pd.DataFrame, month) -> pd.DataFrame:
    """`qa_reporting.rca_pareto` from `root_cause_counts`: errors by root cause, overall, per queue
    (`queue:<queue>`, queues by code point) and per site × queue (`site×queue:<site>|<queue>`, the
    segment naming of `quality_metrics`: the last step of a drill-down from a site to its queues),
    largest first, ties by cause name.

    The vital few are the causes needed to reach 80 % of errors: every cause whose preceding
    cumulative share is still below 0.8 (so the cause that crosses 80 % is included).
    """
    counts = counts.assign(root_cause=counts["root_cause"].astype("str"), queue=counts["queue"].astype("str"),
                           site=counts["site"].astype("str"))
    scopes = [("overall", counts.groupby("root_cause")["errors"].sum())] + [
        (f"queue:{q}", g.groupby("root_cause")["errors"].sum()) for q, g in counts.groupby("queue", sort=True)] + [
        (f"{SITE_QUEUE_SCOPE}:{s}|{q}", g.groupby("root_cause")["errors"].sum())
        for (s, q), g in counts.groupby(["site", "queue"], sort=True)]
    parts = []
    for scope, by_cause in scopes:
        # ties broken by name, so the order is reproducible
        ranked = by_cause.rename_axis("root_cause").reset_index(name="errors").sort_values(
            ["errors", "root_cause"], ascending=[False, True], ignore_index=True)
        ranked["errors"] = ranked["errors"].astype("int64")
        total = ranked["errors"].sum()
        ranked["share"] = ranked["errors"] / total
        ranked["cumulative_share"] = ranked["share"].cumsum()
        before = ranked["cumulative_share"] - ranked["share"]
        ranked["vital_few"] = before < VITAL_FEW_SHARE - 1e-12
        ranked["rank"] = np.arange(1, len(ranked) + 1)
        ranked.insert(0, "scope", scope)
        parts.append(ranked)
    out = pd.concat(parts, ignore_index=True)
    out.insert(0, "month", pd.Timestamp(month))
    return out


def decompose(prev: pd.DataFrame, cur: pd.DataFrame) -> pd.DataFrame:
    """Exact shift-share decomposition of an overall rate change over segments.

    prev/cur: segment, audits, errors. With s the segment's share of audits and r its error rate,
    rate_effect = s̄·(r₁ − r₀), mix_effect = r̄·(s₁ − s₀) (bars: the two months' means), and
    rate_effect + mix_effect = s₁r₁ − s₀r₀, so the contributions add up to R₁ − R₀ exactly. A
    segment absent in one month has share 0 there and takes the other month's rate (its
    rate effect is 0; all of its contribution is mix).
    """
    both = prev.set_index("segment")[["audits", "errors"]].join(
        cur.set_index("segment")[["audits", "errors"]], how="outer", lsuffix="_prev", rsuffix="").fillna(0)
    n0, n1 = both["audits_prev"].sum(), both["audits"].sum()
    s0 = both["audits_prev"] / n0 if n0 else both["audits_prev"] * 0.0
    s1 = both["audits"] / n1 if n1 else both["audits"] * 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
        r0 = both["errors_prev"] / both["audits_prev"]
        r1 = both["errors"] / both["audits"]
    r0 = r0.where(both["audits_prev"] > 0, r1)
    r1 = r1.where(both["audits"] > 0, r0)
    out = pd.DataFrame({
        "share_prev": s0, "share": s1, "rate_prev": r0, "rate": r1,
        "rate_effect": (s0 + s1) / 2 * (r1 - r0),
        "mix_effect": (r0 + r1) / 2 * (s1 - s0),
    })
    out["contribution"] = out["rate_effect"] + out["mix_effect"]
    overall_prev = both["errors_prev"].sum() / n0 if n0 else np.nan
    overall = both["errors"].sum() / n1 if n1 else np.nan
    out["overall_change"] = overall - overall_prev
    # a share of a near-zero change is noise that reads like a finding: left empty below 0.1 pp
    change = out["overall_change"].iloc[0]
    out["contribution_share"] = out["contribution"] / change if abs(change) >= MIN_CHANGE_FOR_SHARE else np.nan
    return out.reset_index(names="segment")


def driver_counts(audits: ir.Table) -> ir.Table:
    """SQL of `rca_drivers` for one month: audits and errors (`is_error_final`) per driver
    dimension × segment."""
    return per_segment(audits, DRIVER_DIMENSIONS,
                       lambda t: {"audits": t.count(), "errors": t.count(where=t.is_error_final)})


def rca_drivers(counts_prev: pd.DataFrame, counts: pd.DataFrame, month) -> pd.DataFrame:
    """`qa_reporting.rca_drivers` from the `driver_counts` of the previous month and of the month:
    the decomposition for each driver dimension (none when either month has no audits)."""
    parts = []
    if not (counts_prev.empty or counts.empty):
        for columns in DRIVER_DIMENSIONS:
            name = dimension_name(columns)
            d = decompose(_segments(counts_prev, name), _segments(counts, name))
            d.insert(0, "dimension", name)
            parts.append(d)
    if not parts:
        return pd.DataFrame(columns=["month", "dimension", "segment", *DRIVER_VALUE_COLUMNS])
    out = pd.concat(parts, ignore_index=True)
    out.insert(0, "month", pd.Timestamp(month))
    return out


def _segments(counts: pd.DataFrame, dimension: str) -> pd.DataFrame:
    """segment, audits, errors of one dimension, by segment."""
    d = counts[counts["dimension"] == dimension]
    d = d.assign(segment=d["segment"].astype("str")).sort_values("segment", ignore_index=True)
    return d[["segment", "audits", "errors"]]


DRIVER_VALUE_COLUMNS = ["share_prev", "share", "rate_prev", "rate", "rate_effect", "mix_effect", "contribution",
                        "overall_change", "contribution_share"]
