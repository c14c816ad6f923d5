"""How many audits each site × queue stratum needs next month for a ±margin accuracy interval.

The engine counts audits and errors and sums sampling weights per stratum and month; the plan is
computed in pandas on that small frame. The weights are summed exactly (as integers in units of
their binary order, see `stratum_months`): the decision volume is rounded to whole decisions, so a
sum off by one rounding error in the last bit could move a volume that lies on a half across the
rounding, and an exact sum gives the same volume whatever the engine and its order of summation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
import numpy as np
import pandas as pd

from qa_pipeline.domain.policy_impact import to_frame
from qa_pipeline.stats.sampling import sample_size

MIN_PLANNING_RATE = 0.01
"""A stratum with no recent error is planned as if its rate were 1 %, not 0 (which needs 0 audits)."""

MANTISSA_BITS = 53


def stratum_months(recent: ir.Table) -> ir.Table:
    """Audits, errors and the sampling weights (a missing weight counts 1) per site, queue and
    month, the weights split by binary order: a weight w of order e (2^e ≤ w < 2^(e+1)) times
    2^shift, shift = 53 − e, is a whole number below 2^55 (also when the engine's logarithm is a bit
    off at a power of two), so `weight_units` = Σ w·2^shift is exact in DECIMAL(38, 0)."""
    w = recent.sampling_weight.fill_null(ibis.literal(1.0))
    order = (w.ln() / math.log(2)).floor().cast("int64")
    shift = MANTISSA_BITS - order
    units = (w * ibis.literal(2.0).cast("float64").pow(shift)).cast("int64").cast(dt.Decimal(38, 0))
    t = recent.mutate(shift=shift, units=units)
    return t.group_by("site", "queue", "month", "shift").aggregate(
        audits=t.count(), errors=t.count(where=t.is_error_final), weight_units=t.units.sum())


def _exact_sum(parts: pd.Series) -> float:
    """Σ units·2^−shift over a stratum's rows of `stratum_months`, rounded once to a float."""
    return float(sum(parts, Fraction(0)))


def sampling_plan(recent: ir.Table, plan_month, margin: float, confidence: float = 0.95,
                  execute: Callable[[ir.Table], pd.DataFrame] = to_frame) -> pd.DataFrame:
    """`qa_reporting.sampling_plan` for `plan_month` from the recent months' audits.

    recent: site, queue, month, is_error_final, sampling_weight. The decision volume of a stratum
    is estimated as Σ sampling_weight per month (weights are inverse inclusion probabilities) and
    used for the finite-population correction. `execute` runs the one aggregate query.
    """
    strata = execute(stratum_months(recent))
    months = max(strata["month"].nunique(), 1) if len(strata) else 1
    strata["weight"] = [Fraction(int(u)) * Fraction(2) ** -int(s)
                        for u, s in zip(strata["weight_units"], strata["shift"], strict=True)]
    g = strata.groupby(["site", "queue"], sort=True)
    out = g.agg(recent_audits=("audits", "sum"), recent_errors=("errors", "sum"),
                weight=("weight", _exact_sum)).reset_index()
    out["recent_error_rate"] = out["recent_errors"] / out["recent_audits"]
    out["estimated_decisions"] = np.round(out["weight"].astype("float64") / months, 0)
    planning_p = out["recent_error_rate"].clip(lower=MIN_PLANNING_RATE)
    out["recommended_audits"] = [
        sample_size(p, margin, confidence, population=n) for p, n in zip(planning_p, out["estimated_decisions"], strict=True)
    ]
    out["recommended_audits"] = out["recommended_audits"].astype("int64")
    out.insert(0, "month", pd.Timestamp(plan_month))
    return out[["month", "site", "queue", "recent_audits", "recent_errors", "recent_error_rate",
                "estimated_decisions", "recommended_audits"]]
