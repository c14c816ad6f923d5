"""Audits as analysts read them: error flags and types, policy at stake, tenure, disputes."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from qa_pipeline.domain.disputes import latest_outcomes

TENURE_BANDS = ["0-30", "31-90", "91-180", "181-365", "366+"]
UNKNOWN_TENURE = "unknown"


def error_type(action_moderator: pd.Series, action_auditor: pd.Series,
               policy_moderator: pd.Series, policy_auditor: pd.Series) -> np.ndarray:
    """over_enforcement, under_enforcement, wrong_action, wrong_policy or correct (contract §4)."""
    mod_approve = action_moderator.eq("approve").to_numpy()
    aud_approve = action_auditor.eq("approve").to_numpy()
    same_action = action_moderator.eq(action_auditor).to_numpy()
    same_policy = policy_moderator.eq(policy_auditor).to_numpy()
    return np.select(
        [aud_approve & ~mod_approve, mod_approve & ~aud_approve, ~same_action, ~same_policy],
        ["over_enforcement", "under_enforcement", "wrong_action", "wrong_policy"],
        default="correct",
    )


def tenure_band(days: pd.Series) -> pd.Series:
    bands = pd.cut(days, bins=[-np.inf, 30, 90, 180, 365, np.inf], labels=TENURE_BANDS)
    return bands.astype("str").where(days.notna(), UNKNOWN_TENURE)


def enrich_audits(audits: pd.DataFrame, roster: pd.DataFrame, month: date,
                  disputes: pd.DataFrame | None = None) -> pd.DataFrame:
    """Add the derived columns of `qa_core.audits_clean` to validated audits.

    `disputes` holds validated disputes (`dispute_id, audit_id, resolved_at, outcome`); the latest
    resolution of an audit counts, and an overturned one clears the error in `is_error_final`.
    """
    df = audits.copy()
    df.insert(0, "month", pd.Timestamp(month))
    df["is_error"] = (df["action_moderator"] != df["action_auditor"]) | (
        df["policy_moderator"] != df["policy_auditor"])
    df["error_type"] = error_type(df["action_moderator"], df["action_auditor"],
                                  df["policy_moderator"], df["policy_auditor"])
    df["is_critical"] = df["error_severity"].eq("critical")
    df["policy"] = df["policy_auditor"].where(df["policy_auditor"] != "NONE", df["policy_moderator"])
    hire = df["moderator_id"].map(roster.set_index("moderator_id")["hire_date"])
    decision_day = df["decision_at"].dt.floor("D")
    df["tenure_days"] = (decision_day - hire).dt.days.astype("Int64")
    df["tenure_band"] = tenure_band(df["tenure_days"].astype("float64"))
    if disputes is not None and len(disputes):
        latest = latest_outcomes(disputes).set_index("audit_id")
        df["dispute_outcome"] = df["audit_id"].map(latest["outcome"]).astype("str")
        df["dispute_resolved_at"] = df["audit_id"].map(latest["resolved_at"]).astype("datetime64[us, UTC]")
    else:
        df["dispute_outcome"] = pd.Series(pd.NA, index=df.index, dtype="str")
        df["dispute_resolved_at"] = pd.Series(pd.NaT, index=df.index, dtype="datetime64[us, UTC]")
    df["is_error_final"] = df["is_error"] & ~df["dispute_outcome"].eq("overturned").fillna(False)
    return df
