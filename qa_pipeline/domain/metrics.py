"""Quality metrics per dimension and segment (contract §4), and per moderator.

Every count uses `is_error_final`: an error whose dispute was overturned is not an error, and for
precision and recall the moderator's decision then counts as the correct one.

The counting is SQL, built here with ibis and run inside the engine: `segment_counts` (one row per
dimension × segment) and `moderator_counts` (one row per moderator and the site, team type and
tenure band they worked in). The statistics (Wilson intervals, rates) run in pandas on those
small frames: `quality_metrics` and `moderator_quality`.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir
import pandas as pd

from qa_pipeline.domain.segments import in_dimension_order, per_segment
from qa_pipeline.stats.proportions import safe_rate, wilson_interval

DIMENSIONS: list[tuple[str, ...]] = [
    (), ("site",), ("team_type",), ("queue",), ("policy",), ("market",), ("content_type",),
    ("tenure_band",), ("site", "queue"),
]
COUNT_COLUMNS = ["audits", "errors", "critical_errors", "over_enforcement_errors", "under_enforcement_errors",
                 "mod_enforce", "truth_enforce", "both_enforce", "handle_n"]
SUM_COLUMNS = ["weight", "weighted_errors", "handle_sum"]
PROFILE = ["site", "team_type", "tenure_band"]


def quality_sums(audits: ir.Table) -> dict[str, ir.Scalar]:
    """What a set of audits sums to for its quality figures, as reductions over `audits`.

    Integer counts (`audits`, `errors`, `critical_errors`, `over_/under_enforcement_errors`,
    `mod_enforce`, `truth_enforce`, `both_enforce`, `handle_n`) and float sums (`weight`:
    Σ sampling_weight with a missing weight counted as 1.0, `weighted_errors`, `handle_sum`: Σ
    handle_time_s over the audits that have one). Booleans are counted with FILTER, never cast
    (PostgreSQL has no boolean → bigint cast).
    """
    t = audits
    err = t.is_error_final
    overturned = (t.dispute_outcome == "overturned").fill_null(False)
    mod_enforce = t.action_moderator != "approve"
    # an overturned dispute makes the moderator's decision the true one
    truth_enforce = ibis.ifelse(overturned, mod_enforce, t.action_auditor != "approve")
    weight = t.sampling_weight.cast("float64").fill_null(1.0)
    handle = t.handle_time_s.cast("float64")
    return {
        "audits": t.count(),
        "errors": t.count(where=err),
        "critical_errors": t.count(where=err & t.is_critical),
        "over_enforcement_errors": t.count(where=err & (t.error_type == "over_enforcement")),
        "under_enforcement_errors": t.count(where=err & (t.error_type == "under_enforcement")),
        "weight": weight.sum(),
        "weighted_errors": ibis.ifelse(err, weight, 0.0).sum(),
        "mod_enforce": t.count(where=mod_enforce),
        "truth_enforce": t.count(where=truth_enforce),
        "both_enforce": t.count(where=mod_enforce & truth_enforce),
        "handle_sum": handle.sum().fill_null(0.0),
        "handle_n": handle.count(),
    }


def segment_counts(audits: ir.Table) -> ir.Table:
    """SQL of `quality_metrics`: one row per dimension × segment of `DIMENSIONS` with the
    `quality_sums` of its audits (dimension, segment, counts, sums)."""
    return per_segment(audits, DIMENSIONS, quality_sums)


def moderator_counts(audits: ir.Table) -> ir.Table:
    """SQL of `moderator_quality`: the `quality_sums` per moderator × site × team_type ×
    tenure_band (a moderator changes tenure band within a month, rarely site or team): a few rows
    per moderator, folded in pandas."""
    t = audits.filter(audits.moderator_id.notnull())
    return t.group_by(["moderator_id", *PROFILE]).aggregate(**quality_sums(t))


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


def quality_metrics(counts: pd.DataFrame, month) -> pd.DataFrame:
    """`qa_reporting.quality_metrics` for one month from `segment_counts`: every dimension (in
    the order of `DIMENSIONS`), every segment (by code point)."""
    sums = in_dimension_order(counts, DIMENSIONS)
    out = _finish(sums)
    out.insert(0, "segment", sums["segment"].astype("str"))
    out.insert(0, "dimension", sums["dimension"].astype("str"))
    out.insert(0, "month", pd.Timestamp(month))
    return out


def moderator_quality(counts: pd.DataFrame, month, target_accuracy: float, min_audits: int) -> pd.DataFrame:
    """`qa_core.moderator_quality` from `moderator_counts`: accuracy per moderator with its
    Wilson interval, ordered by moderator id.

    `site`, `team_type`, `tenure_band`: the combination the moderator had the most audits in this
    month; a tie goes to the first by site, then team type, then tenure band (code point order,
    the same on every engine).

    `below_target` only when the whole interval is below target and the moderator has at least
    `min_audits` audits: a moderator is not named on noise.
    """
    counts = counts.assign(moderator_id=counts["moderator_id"].astype("str"))
    sums = counts.groupby("moderator_id", sort=True)[COUNT_COLUMNS + SUM_COLUMNS].sum()
    frame = _finish(sums)
    profile = (counts.dropna(subset=PROFILE)
               .sort_values(["moderator_id", "audits", *PROFILE], ascending=[True, False, True, True, True],
                            kind="stable")
               .drop_duplicates("moderator_id").set_index("moderator_id")
               .reindex(sums.index))
    out = pd.DataFrame({
        "month": pd.Timestamp(month),
        "moderator_id": sums.index.astype("str"),
        "site": profile["site"].to_numpy(),
        "team_type": profile["team_type"].to_numpy(),
        "tenure_band": profile["tenure_band"].to_numpy(),
    })
    for c in ["audits", "errors", "critical_errors", "accuracy", "accuracy_ci_low", "accuracy_ci_high"]:
        out[c] = frame[c].to_numpy()
    out["below_target"] = (out["audits"] >= min_audits) & (out["accuracy_ci_high"] < target_accuracy)
    return out
