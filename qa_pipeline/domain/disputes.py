"""Disputes: the final word on an audit, dispute and overturn rates, restatements."""

from __future__ import annotations

import ibis
import ibis.expr.types as ir
import pandas as pd

from qa_pipeline.domain.months import next_month
from qa_pipeline.domain.segments import in_dimension_order, per_segment
from qa_pipeline.stats.proportions import safe_rate

DISPUTE_DIMENSIONS: list[tuple[str, ...]] = [(), ("site",), ("queue",), ("auditor_id",)]


def restated_audits(audits: ir.Table, month) -> ir.BooleanColumn:
    """Audits of the month cleared by a dispute resolved after the month ended: the month's first
    publication counted them as errors, so its figures are restated."""
    after = ibis.literal(pd.Timestamp(next_month(month), tz="UTC"), type="timestamp('UTC')")
    overturned = (audits.dispute_outcome == "overturned").fill_null(False)
    return overturned & (audits.dispute_resolved_at >= after).fill_null(False)


def dispute_counts(audits: ir.Table, month) -> ir.Table:
    """SQL of `dispute_metrics`: one row per dimension (overall, site, queue, auditor) × segment
    with the audits, disputed (any dispute), resolved, overturned and restated audits."""
    def counts(t: ir.Table) -> dict[str, ir.Scalar]:
        disputed = t.dispute_outcome.notnull()
        return {
            "audits": t.count(),
            "disputed": t.count(where=disputed),
            "resolved": t.count(where=disputed & t.dispute_resolved_at.notnull()),
            "overturned": t.count(where=(t.dispute_outcome == "overturned").fill_null(False)),
            "restated_audits": t.count(where=restated_audits(t, month)),
        }
    return per_segment(audits, DISPUTE_DIMENSIONS, counts)


def dispute_metrics(counts: pd.DataFrame, month) -> pd.DataFrame:
    """`qa_reporting.dispute_metrics` from `dispute_counts`: per dimension (overall, site, queue,
    auditor, in that order) and segment (by code point)."""
    out = in_dimension_order(counts, DISPUTE_DIMENSIONS)
    out = out[["dimension", "segment", "audits", "disputed", "resolved", "overturned", "restated_audits"]]
    out["dispute_rate"] = safe_rate(out["disputed"], out["audits"])
    out["overturn_rate"] = safe_rate(out["overturned"], out["resolved"])
    out.insert(0, "month", pd.Timestamp(month))
    return out
