"""The figures of a dashboard selection, from the published `qa_reporting` tables (pure pandas).

A filter picks segments of one dimension (`site`, `team_type`, `queue`, `policy`, `tenure_band`,
`market`), as published in `quality_metrics`, `error_trends`, `dispute_metrics` and
`rca_drivers`. The warehouse publishes each dimension on its own and the `site×queue` pair, not
every combination, so a selection shows one series per chosen segment (and the `site×queue` cells
when sites and queues are both chosen) rather than an intersection it could not compute exactly.

Over a month range a segment's accuracy is pooled: 1 − Σerrors / Σaudits over its published
months, with the 95 % Wilson score interval of that pooled proportion (data contract §4).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from qa_pipeline.stats.proportions import safe_rate, wilson_interval

FILTER_DIMENSIONS = ("site", "team_type", "queue", "policy", "tenure_band", "market")
PAIR = "site×queue"
PAIR_SEPARATOR = "|"
LABELS = {"site": "Site", "team_type": "Team type", "queue": "Queue", "policy": "Policy",
          "tenure_band": "Tenure band", "market": "Market", "overall": "Overall", PAIR: "Site × queue"}


@dataclass(frozen=True)
class Selection:
    first_month: pd.Timestamp
    last_month: pd.Timestamp
    filters: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def months(self, frame: pd.DataFrame) -> pd.Series:
        """The rows of `frame` (a monthly table) inside the month range."""
        month = pd.to_datetime(frame["month"])
        return (month >= self.first_month) & (month <= self.last_month)

    def chosen(self, dimension: str) -> tuple[str, ...]:
        return tuple(self.filters.get(dimension, ()))

    def segments(self) -> list[tuple[str, str]]:
        """(dimension, segment) of every series to show: each chosen segment, the site × queue
        cells when sites and queues are both chosen, the overall figure when nothing is."""
        out = [(d, s) for d in FILTER_DIMENSIONS for s in self.chosen(d)]
        out += [(PAIR, f"{site}{PAIR_SEPARATOR}{queue}") for site in self.chosen("site") for queue in self.chosen("queue")]
        return out or [("overall", "all")]


def label(dimension: str, segment: str) -> str:
    if dimension == "overall":
        return "Overall"
    return f"{LABELS.get(dimension, dimension)}: {segment.replace(PAIR_SEPARATOR, ' · ')}"


def options(quality_metrics: pd.DataFrame, dimension: str) -> list[str]:
    """The segments published for a dimension, sorted."""
    values = quality_metrics.loc[quality_metrics["dimension"] == dimension, "segment"]
    return sorted(values.dropna().astype(str).unique())


def months_published(quality_metrics: pd.DataFrame) -> list[pd.Timestamp]:
    return sorted(pd.to_datetime(quality_metrics["month"]).unique())


def _of(frame: pd.DataFrame, segments: list[tuple[str, str]]) -> pd.DataFrame:
    keys = pd.MultiIndex.from_tuples(segments, names=["dimension", "segment"])
    on = pd.MultiIndex.from_frame(frame[["dimension", "segment"]].astype(str))
    return frame[on.isin(keys)]


def pool(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Audits and errors summed over `by`; accuracy = 1 − Σerrors/Σaudits with its Wilson interval."""
    summed = frame.groupby(by, sort=True, observed=True)[["audits", "errors", "critical_errors"]].sum().reset_index()
    correct = summed["audits"] - summed["errors"]
    low, high = wilson_interval(correct, summed["audits"])
    summed["accuracy"] = safe_rate(correct, summed["audits"])
    summed["accuracy_ci_low"], summed["accuracy_ci_high"] = low, high
    summed["critical_error_rate"] = safe_rate(summed["critical_errors"], summed["audits"])
    for col in ("audits", "errors", "critical_errors"):
        summed[col] = summed[col].astype("int64")
    return summed


def selection_summary(quality_metrics: pd.DataFrame, selection: Selection) -> pd.DataFrame:
    """One row per chosen segment, pooled over the month range, in the order of `segments()`."""
    segments = selection.segments()
    rows = _of(quality_metrics[selection.months(quality_metrics)], segments)
    out = pool(rows.assign(dimension=rows["dimension"].astype(str), segment=rows["segment"].astype(str)),
               ["dimension", "segment"])
    months = rows.groupby(["dimension", "segment"])["month"].nunique().rename("months").reset_index()
    out = out.merge(months, on=["dimension", "segment"], how="left")
    order = {key: i for i, key in enumerate(segments)}
    out["order"] = [order[(d, s)] for d, s in zip(out["dimension"], out["segment"], strict=True)]
    out.insert(0, "series", [label(d, s) for d, s in zip(out["dimension"], out["segment"], strict=True)])
    return out.sort_values("order", ignore_index=True).drop(columns="order")


def accuracy_over_time(quality_metrics: pd.DataFrame, selection: Selection) -> pd.DataFrame:
    """The published monthly accuracy and its interval for every chosen segment."""
    rows = _of(quality_metrics[selection.months(quality_metrics)], selection.segments())
    out = rows[["month", "dimension", "segment", "audits", "errors", "accuracy", "accuracy_ci_low",
                "accuracy_ci_high"]].copy()
    out.insert(0, "series", [label(d, s) for d, s in zip(out["dimension"], out["segment"], strict=True)])
    return out.sort_values(["series", "month"], ignore_index=True)


def _pair_parts(frame: pd.DataFrame) -> pd.DataFrame:
    parts = frame["segment"].astype(str).str.split(PAIR_SEPARATOR, n=1, expand=True)
    return frame.assign(site=parts[0], queue=parts[1])


def heat_map(quality_metrics: pd.DataFrame, selection: Selection) -> pd.DataFrame:
    """Site × queue cells pooled over the month range (sites and queues narrowed by the filters)."""
    rows = quality_metrics[(quality_metrics["dimension"] == PAIR) & selection.months(quality_metrics)]
    rows = _pair_parts(rows)
    if selection.chosen("site"):
        rows = rows[rows["site"].isin(selection.chosen("site"))]
    if selection.chosen("queue"):
        rows = rows[rows["queue"].isin(selection.chosen("queue"))]
    return pool(rows, ["site", "queue"])


def site_queues(quality_metrics: pd.DataFrame, selection: Selection, site: str) -> pd.DataFrame:
    """Drill-down, step 1: the queues of one site, worst accuracy first."""
    cells = heat_map(quality_metrics, Selection(selection.first_month, selection.last_month))
    return cells[cells["site"] == site].sort_values(["accuracy", "queue"], ignore_index=True)


def root_causes(rca_pareto: pd.DataFrame, selection: Selection, queue: str | None,
                site: str | None = None) -> pd.DataFrame:
    """Root causes over the month range, of one site × queue (`site×queue:<s>|<q>`), one queue
    (`queue:<q>`) or `overall`: errors summed, share of the range's errors, cumulative share, vital
    few (the causes that reach 80 %, the rule of `domain/rca.py`)."""
    from qa_pipeline.domain.rca import SITE_QUEUE_SCOPE, VITAL_FEW_SHARE

    if queue and site:
        scope = f"{SITE_QUEUE_SCOPE}:{site}|{queue}"
    else:
        scope = f"queue:{queue}" if queue else "overall"
    rows = rca_pareto[(rca_pareto["scope"] == scope) & selection.months(rca_pareto)]
    out = rows.groupby("root_cause", sort=True)["errors"].sum().reset_index()
    out = out.sort_values(["errors", "root_cause"], ascending=[False, True], ignore_index=True)
    out["errors"] = out["errors"].astype("int64")
    total = out["errors"].sum()
    out["share"] = out["errors"] / total if total else np.nan
    out["cumulative_share"] = out["share"].cumsum()
    out["vital_few"] = (out["cumulative_share"] - out["share"]) < VITAL_FEW_SHARE - 1e-12
    out.insert(0, "scope", scope)
    return out


def of_segments(frame: pd.DataFrame, selection: Selection, overall_when_empty: bool = True) -> pd.DataFrame:
    """Rows of a month × dimension × segment table for the chosen segments and months."""
    segments = selection.segments()
    if not overall_when_empty and segments == [("overall", "all")]:
        rows = frame[selection.months(frame)]
    else:
        rows = _of(frame[selection.months(frame)], segments)
    return rows.sort_values(["month", "dimension", "segment"], ignore_index=True)


def alerts(error_trends: pd.DataFrame, selection: Selection) -> pd.DataFrame:
    """Alerts, improvements and out-of-control points in the range, of the chosen segments (all
    segments when nothing is chosen)."""
    rows = of_segments(error_trends, selection, overall_when_empty=False)
    flagged = rows["alert"].fillna(False).astype(bool) | rows["out_of_control"].fillna(False).astype(bool) | \
        rows["improved"].fillna(False).astype(bool)
    return rows[flagged].reset_index(drop=True)


def narrow(frame: pd.DataFrame, selection: Selection, columns: dict[str, str]) -> pd.DataFrame:
    """A table's rows in the month range (when it has `month`) and matching the filters of the
    dimensions it has as columns (`columns`: filter dimension → column)."""
    out = frame
    if "month" in out.columns:
        out = out[selection.months(out)]
    for dimension, column in columns.items():
        chosen = selection.chosen(dimension)
        if chosen and column in out.columns:
            out = out[out[column].astype(str).isin(chosen)]
    return out.reset_index(drop=True)


def policy_impact_in_range(impact: pd.DataFrame, selection: Selection) -> pd.DataFrame:
    """Policy changes effective in the month range (and of the chosen policies)."""
    effective = pd.to_datetime(impact["effective_date"])
    last = selection.last_month + pd.offsets.MonthEnd(0)
    rows = impact[(effective >= selection.first_month) & (effective <= last)]
    if selection.chosen("policy"):
        rows = rows[rows["policy"].astype(str).isin(selection.chosen("policy"))]
    return rows.sort_values("effective_date", ignore_index=True)
