"""Disputes: the final word on an audit, dispute and overturn rates, restatements."""

from __future__ import annotations

import pandas as pd

from qa_pipeline.domain.metrics import segment_values
from qa_pipeline.domain.months import next_month
from qa_pipeline.stats.proportions import safe_rate

DISPUTE_DIMENSIONS: list[tuple[str, ...]] = [(), ("site",), ("queue",), ("auditor_id",)]


def latest_outcomes(disputes: pd.DataFrame) -> pd.DataFrame:
    """One row per disputed audit: the outcome of its latest resolved dispute."""
    if disputes.empty:
        return pd.DataFrame({"audit_id": pd.Series(dtype="str"), "outcome": pd.Series(dtype="str"),
                             "resolved_at": pd.Series(dtype="datetime64[us, UTC]")})
    latest = disputes.sort_values(["resolved_at", "dispute_id"]).drop_duplicates("audit_id", keep="last")
    return latest[["audit_id", "outcome", "resolved_at"]].reset_index(drop=True)


def restated_audits(audits: pd.DataFrame, month) -> pd.Series:
    """Audits of the month cleared by a dispute resolved after the month ended: the month's first
    publication counted them as errors, so its figures are restated."""
    after = pd.Timestamp(next_month(month), tz="UTC")
    return audits["dispute_outcome"].eq("overturned").fillna(False) & (audits["dispute_resolved_at"] >= after).fillna(False)


def dispute_metrics(audits: pd.DataFrame, month) -> pd.DataFrame:
    """`qa_reporting.dispute_metrics`: per dimension (overall, site, queue, auditor) and segment."""
    disputed = audits["dispute_outcome"].notna()
    base = pd.DataFrame({
        "audits": 1,
        "disputed": disputed.astype("int64"),
        "resolved": (disputed & audits["dispute_resolved_at"].notna()).astype("int64"),
        "overturned": audits["dispute_outcome"].eq("overturned").fillna(False).astype("int64"),
        "restated": restated_audits(audits, month).astype("int64"),
    }, index=audits.index)
    parts = []
    for columns in DISPUTE_DIMENSIONS:
        seg = segment_values(audits, columns)
        sums = base.groupby(seg.to_numpy(), sort=True).sum()
        frame = sums.reset_index(names="segment")
        frame.insert(0, "dimension", "×".join(columns) if columns else "overall")
        parts.append(frame)
    out = pd.concat(parts, ignore_index=True)
    out["dispute_rate"] = safe_rate(out["disputed"], out["audits"])
    out["overturn_rate"] = safe_rate(out["overturned"], out["resolved"])
    out.insert(0, "month", pd.Timestamp(month))
    return out.rename(columns={"restated": "restated_audits"})
