"""Which published months must be recomputed because a dispute overturned one of their audits."""

from __future__ import annotations

from datetime import date

import pandas as pd

from qa_pipeline.domain.months import month_start


def months_to_restate(new_disputes: pd.DataFrame, audit_months: pd.DataFrame, current: date) -> list[date]:
    """Months before `current` holding audits that `new_disputes` overturned.

    new_disputes: validated disputes resolved in `current` (audit_id, outcome);
    audit_months: audit_id → month of the published audits they name.
    """
    overturned = new_disputes.loc[new_disputes["outcome"] == "overturned", "audit_id"]
    hit = audit_months[audit_months["audit_id"].isin(overturned)]
    months = {month_start(pd.Timestamp(m).date()) for m in hit["month"]}
    return sorted(m for m in months if m < current)
