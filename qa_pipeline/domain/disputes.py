"""Disputes: the final word on an audit, dispute and overturn rates, restatements.

The month's dispute figures come from one query (`dispute_counts`) and are published in two
places: per site and queue (and overall) in `qa_reporting.dispute_metrics`, which analysts read,
and per auditor in `qa_core.auditor_dispute_metrics`, which is restricted: `qa_reporting` holds no
person identifier (contract §5).
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir
import pandas as pd

from qa_pipeline.domain.months import next_month
from qa_pipeline.domain.segments import dimension_name, in_dimension_order, per_segment
from qa_pipeline.stats.proportions import safe_rate

AUDITOR = ("auditor_id",)
REPORTING_DIMENSIONS: list[tuple[str, ...]] = [(), ("site",), ("queue",)]
"""The dimensions of `qa_reporting.dispute_metrics`: none names a person."""
DISPUTE_DIMENSIONS: list[tuple[str, ...]] = [*REPORTING_DIMENSIONS, AUDITOR]
COUNTS = ["audits", "disputed", "resolved", "overturned", "restated_audits"]


def restated_audits(audits: ir.Table, month) -> ir.BooleanColumn:
    """Audits of the month cleared by a dispute resolved after the month ended: the month's first
    publication counted them as errors, so its figures are restated."""
    after = ibis.literal(pd.Timestamp(next_month(month), tz="UTC"), type="timestamp('UTC')")
    overturned = (audits.dispute_outcome == "overturned").fill_null(False)
    return overturned & (audits.dispute_resolved_at >= after).fill_null(False)


def dispute_counts(audits: ir.Table, month) -> ir.Table:
    """SQL of the month's dispute figures: one row per dimension (overall, site, queue, auditor) ×
    segment with the audits, disputed (any dispute), resolved, overturned and restated audits."""
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


def _rates(out: pd.DataFrame, month) -> pd.DataFrame:
    out["dispute_rate"] = safe_rate(out["disputed"], out["audits"])
    out["overturn_rate"] = safe_rate(out["overturned"], out["resolved"])
    out.insert(0, "month", pd.Timestamp(month))
    return out


def dispute_metrics(counts: pd.DataFrame, month) -> pd.DataFrame:
    """`qa_reporting.dispute_metrics` from `dispute_counts`: per dimension (overall, site, queue,
    in that order) and segment (by code point). The per-auditor rows are not among them (see
    `auditor_dispute_metrics`)."""
    counts = counts[counts["dimension"] != dimension_name(AUDITOR)]
    out = in_dimension_order(counts, REPORTING_DIMENSIONS)
    return _rates(out[["dimension", "segment", *COUNTS]], month)


def auditor_dispute_metrics(counts: pd.DataFrame, month) -> pd.DataFrame:
    """`qa_core.auditor_dispute_metrics` from `dispute_counts`: the same figures per auditor (by
    auditor id, code point order). Restricted: a high overturn rate is a grader-quality signal
    about a person."""
    rows = counts[counts["dimension"] == dimension_name(AUDITOR)]
    out = in_dimension_order(rows, [AUDITOR]).rename(columns={"segment": "auditor_id"})
    return _rates(out[["auditor_id", *COUNTS]], month)
