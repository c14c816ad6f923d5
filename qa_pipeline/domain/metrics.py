"""Quality metrics per dimension and segment (contract §4), and per moderator.

Every count uses `is_error_final`: an error whose dispute was overturned is not an error, and for
precision and recall the moderator's decision then counts as the correct one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from qa_pipeline.stats.proportions import safe_rate, wilson_interval

PAIR = "×"
PAIR_VALUE = "|"
DIMENSIONS: list[tuple[str, ...]] = [
    (), ("site",), ("team_type",), ("queue",), ("policy",), ("market",), ("content_type",),
    ("tenure_band",), ("site", "queue"),
]


def dimension_name(columns: tuple[str, ...]) -> str:
    return PAIR.join(columns) if columns else "overall"


def segment_values(df: pd.DataFrame, columns: tuple[str, ...]) -> pd.Series:
    """The segment label of each audit for a dimension (`all` for overall, pairs joined by `|`)."""
    if not columns:
        return pd.Series("all", index=df.index, dtype="str")
    out = df[columns[0]].astype("str")
    for c in columns[1:]:
        out = out + PAIR_VALUE + df[c].astype("str")
    return out


def indicator_frame(audits: pd.DataFrame) -> pd.DataFrame:
    """One numeric column per count that a segment sums."""
    err = audits["is_error_final"].astype(bool).to_numpy()
    overturned = audits["dispute_outcome"].eq("overturned").fillna(False).to_numpy()
    mod_enforce = audits["action_moderator"].ne("approve").to_numpy()
    truth_enforce = np.where(overturned, mod_enforce, audits["action_auditor"].ne("approve").to_numpy())
    weight = audits["sampling_weight"].astype("float64").fillna(1.0).to_numpy()
    handle = audits["handle_time_s"].astype("float64")
    return pd.DataFrame({
        "audits": 1,
        "errors": err.astype("int64"),
        "critical_errors": (err & audits["is_critical"].to_numpy()).astype("int64"),
        "over_enforcement_errors": (err & (audits["error_type"] == "over_enforcement").to_numpy()).astype("int64"),
        "under_enforcement_errors": (err & (audits["error_type"] == "under_enforcement").to_numpy()).astype("int64"),
        "weight": weight,
        "weighted_errors": weight * err,
        "mod_enforce": mod_enforce.astype("int64"),
        "truth_enforce": truth_enforce.astype("int64"),
        "both_enforce": (mod_enforce & truth_enforce).astype("int64"),
        "handle_sum": handle.fillna(0.0).to_numpy(),
        "handle_n": handle.notna().astype("int64").to_numpy(),
    }, index=audits.index)


def _finish(sums: pd.DataFrame) -> pd.DataFrame:
    n = sums["audits"].to_numpy()
    e = sums["errors"].to_numpy()
    low, high = wilson_interval(n - e, n)
    out = sums[["audits", "errors", "critical_errors", "over_enforcement_errors",
                "under_enforcement_errors"]].astype("int64").copy()
    out["accuracy"] = 1.0 - safe_rate(e, n)
    out["accuracy_ci_low"] = low
    out["accuracy_ci_high"] = high
    out["weighted_accuracy"] = 1.0 - safe_rate(sums["weighted_errors"], sums["weight"])
    out["critical_error_rate"] = safe_rate(sums["critical_errors"], n)
    out["over_enforcement_rate"] = safe_rate(sums["over_enforcement_errors"], n)
    out["under_enforcement_rate"] = safe_rate(sums["under_enforcement_errors"], n)
    out["precision"] = safe_rate(sums["both_enforce"], sums["mod_enforce"])
    out["recall"] = safe_rate(sums["both_enforce"], sums["truth_enforce"])
    out["mean_handle_time_s"] = safe_rate(sums["handle_sum"], sums["handle_n"])
    return out


def quality_metrics(audits: pd.DataFrame, month) -> pd.DataFrame:
    """`qa_reporting.quality_metrics` for one month: every dimension, every segment."""
    ind = indicator_frame(audits)
    parts = []
    for columns in DIMENSIONS:
        seg = segment_values(audits, columns)
        sums = ind.groupby(seg.to_numpy(), sort=True).sum()
        frame = _finish(sums)
        frame.insert(0, "segment", sums.index.astype("str"))
        frame.insert(0, "dimension", dimension_name(columns))
        parts.append(frame.reset_index(drop=True))
    out = pd.concat(parts, ignore_index=True)
    out.insert(0, "month", pd.Timestamp(month))
    return out


def moderator_quality(audits: pd.DataFrame, month, target_accuracy: float, min_audits: int) -> pd.DataFrame:
    """`qa_core.moderator_quality`: accuracy per moderator with its Wilson interval.

    `below_target` only when the whole interval is below target and the moderator has at least
    `min_audits` audits: a moderator is not named on noise.
    """
    ind = indicator_frame(audits)
    keys = audits["moderator_id"].to_numpy()
    sums = ind.groupby(keys, sort=True).sum()
    frame = _finish(sums)
    # the site, team type and tenure band the moderator worked in most this month
    profile = (audits.groupby(["moderator_id", "site", "team_type", "tenure_band"]).size()
               .reset_index(name="k").sort_values(["moderator_id", "k"], ascending=[True, False])
               .drop_duplicates("moderator_id").set_index("moderator_id"))
    out = pd.DataFrame({
        "month": pd.Timestamp(month),
        "moderator_id": sums.index.astype("str"),
        "site": profile.loc[sums.index, "site"].to_numpy(),
        "team_type": profile.loc[sums.index, "team_type"].to_numpy(),
        "tenure_band": profile.loc[sums.index, "tenure_band"].to_numpy(),
    })
    for c in ["audits", "errors", "critical_errors", "accuracy", "accuracy_ci_low", "accuracy_ci_high"]:
        out[c] = frame[c].to_numpy()
    out["below_target"] = (out["audits"] >= min_audits) & (out["accuracy_ci_high"] < target_accuracy)
    return out
