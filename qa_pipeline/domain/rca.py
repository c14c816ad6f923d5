"""Root-cause analysis: Pareto of causes, and the mix/rate decomposition of the error-rate change."""

from __future__ import annotations

import numpy as np
import pandas as pd

from qa_pipeline.domain.metrics import dimension_name, segment_values

VITAL_FEW_SHARE = 0.80
MIN_CHANGE_FOR_SHARE = 0.001
DRIVER_DIMENSIONS: list[tuple[str, ...]] = [
    ("site",), ("queue",), ("policy",), ("team_type",), ("tenure_band",), ("content_type",), ("site", "queue"),
]


def rca_pareto(audits: pd.DataFrame, month) -> pd.DataFrame:
    """`qa_reporting.rca_pareto`: errors by root cause, overall and per queue, largest first.

    The vital few are the causes needed to reach 80 % of errors: every cause whose preceding
    cumulative share is still below 0.8 (so the cause that crosses 80 % is included).
    """
    errors = audits[audits["is_error_final"].astype(bool)]
    errors = errors.assign(root_cause=errors["root_cause"].fillna("unknown"))
    scopes = [("overall", errors)] + [(f"queue:{q}", g) for q, g in errors.groupby("queue", sort=True)]
    parts = []
    for scope, frame in scopes:
        counts = frame["root_cause"].value_counts()
        counts = counts.sort_values(ascending=False, kind="stable")
        # ties broken by name, so the order is reproducible
        counts = counts.rename_axis("root_cause").reset_index(name="errors").sort_values(
            ["errors", "root_cause"], ascending=[False, True], ignore_index=True)
        total = counts["errors"].sum()
        counts["share"] = counts["errors"] / total
        counts["cumulative_share"] = counts["share"].cumsum()
        before = counts["cumulative_share"] - counts["share"]
        counts["vital_few"] = before < VITAL_FEW_SHARE - 1e-12
        counts["rank"] = np.arange(1, len(counts) + 1)
        counts.insert(0, "scope", scope)
        parts.append(counts)
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["scope", "root_cause", "errors", "share", "cumulative_share", "vital_few", "rank"])
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


def rca_drivers(audits_prev: pd.DataFrame, audits: pd.DataFrame, month) -> pd.DataFrame:
    """`qa_reporting.rca_drivers`: the decomposition for each driver dimension."""
    parts = []
    for columns in DRIVER_DIMENSIONS:
        def counts(frame):
            seg = segment_values(frame, columns)
            g = frame.assign(_seg=seg.to_numpy(), _err=frame["is_error_final"].astype("int64")).groupby("_seg")
            return pd.DataFrame({"segment": g.size().index, "audits": g.size().to_numpy(),
                                 "errors": g["_err"].sum().to_numpy()})
        if audits_prev.empty or audits.empty:
            continue
        d = decompose(counts(audits_prev), counts(audits))
        d.insert(0, "dimension", dimension_name(columns))
        parts.append(d)
    if not parts:
        return pd.DataFrame(columns=["month", "dimension", "segment", *DRIVER_VALUE_COLUMNS])
    out = pd.concat(parts, ignore_index=True)
    out.insert(0, "month", pd.Timestamp(month))
    return out


DRIVER_VALUE_COLUMNS = ["share_prev", "share", "rate_prev", "rate", "rate_effect", "mix_effect", "contribution",
                        "overall_change", "contribution_share"]
