"""How many audits each site × queue stratum needs next month for a ±margin accuracy interval."""

from __future__ import annotations

import numpy as np
import pandas as pd

from qa_pipeline.stats.sampling import sample_size

MIN_PLANNING_RATE = 0.01
"""A stratum with no recent error is planned as if its rate were 1 %, not 0 (which needs 0 audits)."""


def sampling_plan(recent: pd.DataFrame, plan_month, margin: float, confidence: float = 0.95) -> pd.DataFrame:
    """`qa_reporting.sampling_plan` for `plan_month` from the recent months' audits.

    recent: site, queue, month, is_error_final, sampling_weight. The decision volume of a stratum
    is estimated as Σ sampling_weight per month (weights are inverse inclusion probabilities) and
    used for the finite-population correction.
    """
    months = max(recent["month"].nunique(), 1) if len(recent) else 1
    g = recent.assign(w=recent["sampling_weight"].fillna(1.0)).groupby(["site", "queue"], sort=True)
    out = g.agg(recent_audits=("is_error_final", "size"), recent_errors=("is_error_final", "sum"),
                weight=("w", "sum")).reset_index()
    out["recent_error_rate"] = out["recent_errors"] / out["recent_audits"]
    out["estimated_decisions"] = np.round(out["weight"] / months, 0)
    planning_p = out["recent_error_rate"].clip(lower=MIN_PLANNING_RATE)
    out["recommended_audits"] = [
        sample_size(p, margin, confidence, population=n) for p, n in zip(planning_p, out["estimated_decisions"], strict=True)
    ]
    out["recommended_audits"] = out["recommended_audits"].astype("int64")
    out.insert(0, "month", pd.Timestamp(plan_month))
    return out[["month", "site", "queue", "recent_audits", "recent_errors", "recent_error_rate",
                "estimated_decisions", "recommended_audits"]]
