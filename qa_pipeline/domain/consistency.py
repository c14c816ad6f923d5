"""Auditor consistency: does an auditor flag errors more (or less) often than peers would?"""

from __future__ import annotations

import ibis.expr.types as ir
import numpy as np
import pandas as pd

from qa_pipeline.stats.proportions import safe_rate

COLUMNS = ["month", "auditor_id", "audits", "flags", "flag_rate", "expected_rate", "z_score", "drift",
           "disputed", "overturned", "overturn_rate"]


def auditor_queue_counts(audits: ir.Table) -> ir.Table:
    """SQL of `auditor_consistency`: one row per auditor × queue with the audits, the flags (the
    auditor's own verdict, `is_error`), the disputed and the overturned audits."""
    t = audits.filter(audits.auditor_id.notnull())
    return t.group_by(["auditor_id", "queue"]).aggregate(
        audits=t.count(),
        flags=t.count(where=t.is_error),
        disputed=t.count(where=t.dispute_outcome.notnull()),
        overturned=t.count(where=(t.dispute_outcome == "overturned").fill_null(False)),
    )


def auditor_consistency(counts: pd.DataFrame, month, min_n: int, drift_z: float) -> pd.DataFrame:
    """`qa_core.auditor_consistency` for one month from `auditor_queue_counts`, by auditor id.

    The flag is the auditor's own verdict (`is_error`, before disputes). Expected flags for auditor
    a: Σ over queues q of n(a,q) · p(−a,q), where p(−a,q) is the flag rate of the *other* auditors
    on q this month; z = (flags − expected) / √(Σ n(a,q) p(−a,q)(1 − p(−a,q))). Drift when |z| >
    drift_z with at least min_n audits; auditors who drift are then left out of the peers of the
    others and everyone is scored again. Dispute counts show how often the auditor was overruled.
    """
    if counts.empty:  # no audits: no auditor
        return pd.DataFrame({c: pd.Series(dtype="object") for c in COLUMNS})
    counts = counts.assign(auditor_id=counts["auditor_id"].astype("str"), queue=counts["queue"].astype("str"))
    # the cells in (auditor, queue) order: the per-auditor sums of expected flags add up in that order
    cell = (counts.dropna(subset=["queue"])
            .rename(columns={"audits": "n", "flags": "f"})[["auditor_id", "queue", "n", "f"]]
            .sort_values(["auditor_id", "queue"], ignore_index=True))
    per = _expected(cell, exclude=set())
    # second pass: auditors who drifted in the first are left out of everyone else's peers, so
    # one over-strict grader does not make the graders beside them look lenient
    first = per.index[(per["audits"] >= min_n) & (per["z_score"].abs() > drift_z)]
    if len(first):
        per = _expected(cell, exclude=set(first))
    d = counts.groupby("auditor_id")[["disputed", "overturned"]].sum()
    per = per.join(d)
    per["drift"] = (per["audits"] >= min_n) & (per["z_score"].abs() > drift_z)
    per["overturn_rate"] = safe_rate(per["overturned"], per["disputed"])
    out = per.reset_index()
    out.insert(0, "month", pd.Timestamp(month))
    return out[COLUMNS]


def _expected(cell: pd.DataFrame, exclude: set) -> pd.DataFrame:
    """Per auditor: audits, flags, expected flags from peers on the same queues, z-score."""
    peers = cell[~cell["auditor_id"].isin(exclude)]
    queue = peers.groupby("queue")[["n", "f"]].sum().rename(columns={"n": "qn", "f": "qf"})
    cell = cell.join(queue, on="queue")
    cell[["qn", "qf"]] = cell[["qn", "qf"]].fillna(0)
    own = ~cell["auditor_id"].isin(exclude)  # an excluded auditor is not in the pool to begin with
    others_n = cell["qn"] - cell["n"].where(own, 0)
    others_f = cell["qf"] - cell["f"].where(own, 0)
    p_other = safe_rate(others_f, others_n)
    cell["expected"] = cell["n"] * p_other
    cell["variance"] = cell["n"] * p_other * (1 - p_other)
    per = cell.groupby("auditor_id").agg(audits=("n", "sum"), flags=("f", "sum"), expected=("expected", "sum"),
                                         variance=("variance", "sum"))
    per["flag_rate"] = per["flags"] / per["audits"]
    per["expected_rate"] = safe_rate(per["expected"], per["audits"])
    with np.errstate(invalid="ignore", divide="ignore"):
        per["z_score"] = np.where(per["variance"] > 0, (per["flags"] - per["expected"]) / np.sqrt(per["variance"]), np.nan)
    return per
