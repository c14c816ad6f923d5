"""The deep-dive file: `QA_REPORTS_DIR/deep-dives/<month>-<slug>/deep_dive.html|md` and its charts.

Reads the published warehouse only (`domain.deep_dive` holds the SQL and the figures), then builds the
same kind of context the monthly report does: every value passes through `content.records` (PII
redacted, spreadsheet formulas neutralised), the HTML is autoescaped and self-contained (inline
charts, a Content-Security-Policy that loads nothing from the network), the Markdown escaped once.
Unlike the monthly report this file names moderators and auditors: it is for the quality team.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import matplotlib
import matplotlib.dates
import numpy as np
import pandas as pd
import sqlalchemy as sa

from qa_pipeline.domain import deep_dive as dd
from qa_pipeline.domain.months import month_key, month_start, previous_month
from qa_pipeline.domain.redaction import neutralise_formula, redact_text
from qa_pipeline.domain.segments import PAIR, PAIR_VALUE
from qa_pipeline.domain.themes import CommentThemeCounts
from qa_pipeline.reports import charts
from qa_pipeline.reports.content import records
from qa_pipeline.reports.render import render
from qa_pipeline.resources.report_store import ReportStore
from qa_pipeline.resources.warehouse import Warehouse
from qa_pipeline.schemas import warehouse as wh

FOLDER = "deep-dives"
EARLY_WARNINGS = "qa_reporting.early_warnings"


@dataclass
class DeepDive:
    """What a deep dive read from the warehouse (small frames) and where it was written."""

    segment: dd.Segment
    history: pd.DataFrame
    peers: pd.DataFrame
    drivers: pd.DataFrame
    main_driver: dict | None
    pareto: pd.DataFrame
    themes: pd.DataFrame
    disputes: dict
    early_warnings: pd.DataFrame | None
    moderators: pd.DataFrame
    auditors: pd.DataFrame
    finding: str
    paths: dict[str, str] = field(default_factory=dict)


def segment_for(warehouse: Warehouse, month: str, where: list[str]) -> dd.Segment:
    """The segment asked for, checked against the published warehouse; `DeepDiveInputError` (one
    line) for a malformed month, an unknown dimension or value, or a month not published."""
    conditions = dd.parse_conditions(where)
    try:
        start = month_start(month)
        if len(month) != 7:
            raise ValueError(month)
    except (ValueError, IndexError):
        raise dd.DeepDiveInputError(f"--month {month!r}: expected YYYY-MM, e.g. 2026-04") from None
    segment = dd.Segment(start, conditions)
    published = (warehouse.read(dd.published_months_query())["month"]
                 if warehouse.has_table(wh.publications.fullname) else pd.Series(dtype="datetime64[us]"))
    published = sorted({pd.Timestamp(m).date() for m in published})
    if start not in published:
        known = ", ".join(month_key(m) for m in published) or "none"
        raise dd.DeepDiveInputError(f"{month_key(start)} is not published (published months: {known}); "
                                    f"run `qa-pipeline run --month {month_key(start)}` first")
    for dimension, value in conditions:
        known = warehouse.read(dd.known_values_query(segment, dimension))["value"].astype("str").tolist()
        if value not in known:
            raise dd.DeepDiveInputError(dd.unknown_value_message(dimension, value, start, known))
    if int(warehouse.read(dd.count_query(segment))["audits"].iloc[0]) == 0:
        raise dd.DeepDiveInputError(f"no audit of {month_key(start)} has {segment.label} together "
                                    "(each value exists on its own)")
    return segment


def read(warehouse: Warehouse, segment: dd.Segment, min_people: int) -> DeepDive:
    """Every figure of the deep dive, aggregated in the engine."""
    q = warehouse.read
    history_counts = q(dd.history_query(segment))
    hist = dd.history(segment, history_counts, q(dd.overall_history_query(segment)))
    driver_counts = {d: q(dd.driver_query(segment, d)) for d in dd.DRIVER_DIMENSIONS if d not in segment.dimensions}
    decomposition = dd.drivers(segment, driver_counts)
    driver = dd.main_driver(decomposition)
    return DeepDive(
        segment=segment, history=hist, peers=dd.peers(segment, history_counts), drivers=decomposition,
        main_driver=driver, pareto=dd.pareto(q(dd.root_cause_query(segment))),
        themes=_themes(warehouse, segment, min_people), disputes=dd.disputes(q(dd.dispute_query(segment))),
        early_warnings=_early_warnings(warehouse, segment),
        moderators=dd.moderators(q(dd.moderator_query(segment))), auditors=dd.auditors(q(dd.auditor_query(segment))),
        finding=dd.finding(segment, hist, decomposition, driver),
    )


def _themes(warehouse: Warehouse, segment: dd.Segment, min_people: int) -> pd.DataFrame:
    """The terms that set the segment's error comments apart from every other comment of the month
    (the monthly themes' method and k-anonymity rule, `domain.themes`), a page of comments at a time."""
    counts = CommentThemeCounts(min_people)
    after = None
    while True:
        page = warehouse.read(dd.comments_query(segment, after))
        if page.empty:
            break
        counts.add(page.assign(root_cause=None))
        after = str(page["audit_id"].iloc[-1])
        if len(page) < dd.COMMENT_PAGE_ROWS:
            break
    themes = counts.themes(segment.month)
    return themes[themes["scope"] == "queue:in_segment"].reset_index(drop=True) if len(themes) else themes


def _early_warnings(warehouse: Warehouse, segment: dd.Segment) -> pd.DataFrame | None:
    """The segment's rows of `qa_reporting.early_warnings` for the month (the segment itself, and
    each of its conditions alone); None when the warehouse has no early-warning table."""
    table = wh.metadata.tables.get(EARLY_WARNINGS)
    if table is None or not warehouse.has_table(EARLY_WARNINGS):
        return None
    wanted = [(d, v) for d, v in segment.conditions]
    if len(segment.conditions) > 1:
        from itertools import permutations

        for order in permutations(segment.conditions):
            wanted.append((PAIR.join(d for d, _ in order), PAIR_VALUE.join(v for _, v in order)))
    match = sa.or_(*(sa.and_(table.c.dimension == sa.bindparam(None, d, type_=sa.Text),
                             table.c.segment == sa.bindparam(None, v, type_=sa.Text)) for d, v in wanted))
    stmt = sa.select(table).where(table.c.month == sa.bindparam(None, segment.month, type_=sa.Date), match)
    return warehouse.read(stmt)


# -- the file -------------------------------------------------------------------------------------
def _clean_text(text: str) -> str:
    return neutralise_formula(redact_text(text))


def history_chart(segment: dd.Segment, hist: pd.DataFrame, target: float) -> bytes:
    plt = charts.plt
    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    months = pd.to_datetime(hist["month"])
    seen = hist["audits"] > 0
    err = np.vstack([(hist["accuracy"] - hist["ci_low"])[seen], (hist["ci_high"] - hist["accuracy"])[seen]])
    ax.errorbar(months[seen], hist["accuracy"][seen], yerr=err, marker="o", ms=4, lw=1.8, capsize=3,
                color=charts.PALETTE[1], label=charts.label(f"{segment.label} (95 % Wilson)"))
    peers = hist["peers_audits"] > 0
    ax.plot(months[peers], hist["peers_accuracy"][peers], marker="o", ms=3, lw=1.2, color=charts.PALETTE[0],
            label="peers")
    ax.plot(months, hist["all_accuracy"], lw=1, ls=":", color=charts.PALETTE[5], label="all audits")
    ax.axhline(target, color="#444", ls="--", lw=1, label=f"target {target:.0%}")
    ax.set_title("Accuracy, 12 months: the segment against its peers", fontsize=10, loc="left")
    ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0, decimals=0))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left", frameon=False)
    ax.xaxis.set_major_locator(matplotlib.dates.MonthLocator())
    ax.xaxis.set_major_formatter(matplotlib.dates.DateFormatter("%Y-%m"))
    fig.autofmt_xdate()
    return charts._png(fig)


def drivers_chart(rows: pd.DataFrame) -> bytes:
    plt = charts.plt
    rows = rows.iloc[::-1]
    fig, ax = plt.subplots(figsize=(7.5, 0.32 * max(len(rows), 3) + 1.2))
    y = np.arange(len(rows))
    ax.barh(y, rows["rate_effect"] * 100, color=charts.PALETTE[1], label="rate effect")
    ax.barh(y, rows["mix_effect"] * 100, left=np.where((rows["rate_effect"] >= 0) == (rows["mix_effect"] >= 0),
                                                        rows["rate_effect"] * 100, 0),
            color=charts.PALETTE[2], label="mix effect")
    ax.set_yticks(y, [charts.label(f"{dd.DIMENSION_LABELS.get(d, d)}: {s}")
                      for d, s in zip(rows["dimension"], rows["segment"], strict=True)], fontsize=7)
    ax.axvline(0, color="#444", lw=0.8)
    ax.set_xlabel("contribution to the change of the error rate (pp)")
    ax.legend(fontsize=7, frameon=False)
    ax.set_title("What moved inside the segment (largest contributions)", fontsize=10, loc="left")
    return charts._png(fig)


def build(dive: DeepDive, target: float) -> tuple[dict, dict[str, bytes]]:
    """The template context and the charts (PNG bytes by file name)."""
    seg = dive.segment
    hist = dive.history
    top = dd.top_contributions(dive.drivers)
    largest = (dive.drivers.assign(_abs=dive.drivers["contribution"].abs()).sort_values("_abs", ascending=False)
               .head(12) if len(dive.drivers) else dive.drivers)
    pngs = {"accuracy_12_months.png": history_chart(seg, hist, target)}
    if len(largest):
        pngs["drivers.png"] = drivers_chart(largest)
    if len(dive.pareto):
        pngs["root_causes.png"] = charts.pareto_chart(dive.pareto.assign(scope="overall",
                                                                         rank=np.arange(1, len(dive.pareto) + 1)))
    main = dive.main_driver
    change = float(dive.drivers["overall_change"].iloc[0]) if len(dive.drivers) else None
    warnings = dive.early_warnings
    context = {
        "title": _clean_text(seg.label),
        "month": pd.Timestamp(seg.month).strftime("%B %Y"),
        "prev_month": pd.Timestamp(previous_month(seg.month)).strftime("%B %Y"),
        "conditions": [{"dimension": d, "value": _clean_text(v)} for d, v in seg.conditions],
        "finding": _clean_text(dive.finding),
        "peers_label": _clean_text(seg.peers_label),
        "first_dimension": dd.DIMENSION_LABELS[seg.first[0]],
        "target": target,
        "history": records(hist.assign(month=pd.to_datetime(hist["month"]).dt.strftime("%Y-%m")),
                           ["month", "audits", "errors", "accuracy", "ci_low", "ci_high", "peers_audits",
                            "peers_accuracy", "peers_ci_low", "peers_ci_high", "all_accuracy"]),
        "peers": records(_shown_peers(dive.peers), ["value", "audits", "errors", "accuracy", "ci_low", "ci_high",
                                                    "is_segment"]),
        "peers_total": len(dive.peers),
        "change": change,
        "main_driver": None if main is None else {
            "dimension": dd.DIMENSION_LABELS.get(main["dimension"], main["dimension"]),
            "segment": _clean_text(str(main["segment"])), "contribution": main["contribution"],
            "excess": main["excess"]},
        "drivers": records(top.assign(dimension=top["dimension"].map(dd.DIMENSION_LABELS)) if len(top) else top,
                           ["dimension", "segment", "audits_prev", "audits", "rate_prev", "rate", "share_prev",
                            "share", "rate_effect", "mix_effect", "contribution", "excess"]) if len(top) else [],
        "pareto": records(dive.pareto, ["root_cause", "errors", "share", "cumulative_share", "vital_few"]),
        "themes": records(dive.themes, ["term", "errors_with_term", "share", "z_score"]) if len(dive.themes) else [],
        "disputes": dive.disputes,
        "early_warnings": None if warnings is None else _warning_rows(warnings),
        "moderators": records(dive.moderators, ["moderator_id", "audits", "errors", "critical_errors", "error_rate",
                                                "ci_low", "ci_high", "tenure_days"]),
        "auditors": records(dive.auditors, ["auditor_id", "audits", "flagged", "flag_rate", "overturned", "errors"]),
        "charts": {name: charts.data_uri(png) for name, png in pngs.items()},
    }
    return context, pngs


PEER_ROWS = 25
"""Rows of the peers table at most (the segment always among them): a dimension such as the moderator
has thousands of values."""


def _shown_peers(peers: pd.DataFrame) -> pd.DataFrame:
    if len(peers) <= PEER_ROWS:
        return peers
    head = peers.head(PEER_ROWS)
    if head["is_segment"].any():
        return head
    return pd.concat([peers.head(PEER_ROWS - 1), peers[peers["is_segment"]]])


def _warning_rows(frame: pd.DataFrame) -> list[dict]:
    """The early-warning rows in the names the template shows (`audits_to_date` as in the contract,
    or `audits`), first signals first."""
    out = frame.rename(columns={"audits_to_date": "audits", "errors_to_date": "errors"})
    for column in ("audits", "errors", "baseline_error_rate", "cusum_max", "threshold", "first_signal_date",
                   "signalled"):
        if column not in out:
            out[column] = None
    out["first_signal"] = [pd.Timestamp(d).strftime("%Y-%m-%d") if d is not None and pd.notna(d) else None
                           for d in out["first_signal_date"]]
    out = out.sort_values(["first_signal", "dimension"], na_position="last")
    return records(out, ["dimension", "segment", "baseline_error_rate", "audits", "errors", "cusum_max", "threshold",
                         "first_signal", "signalled"])


def write(dive: DeepDive, store: ReportStore, target: float) -> DeepDive:
    """Render and write the HTML, the Markdown and the charts; the paths go in `dive.paths`."""
    ctx, pngs = build(dive, target)
    generated = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    folder = f"{FOLDER}/{dive.segment.slug}"
    dive.paths["html"] = store.write(f"{folder}/deep_dive.html", render("deep_dive.html.j2", generated_at=generated, **ctx))
    dive.paths["md"] = store.write(f"{folder}/deep_dive.md", render("deep_dive.md.j2", generated_at=generated, **ctx))
    for name, png in pngs.items():
        dive.paths[name] = store.write(f"{folder}/charts/{name}", png)
    return dive


def deep_dive(warehouse: Warehouse, store: ReportStore, month: str, where: list[str], target: float,
              min_people: int) -> DeepDive:
    """Check the request, read the figures, write the file: the CLI's and the Dagster job's one call."""
    segment = segment_for(warehouse, month, where)
    return write(read(warehouse, segment, min_people), store, target)
