"""Deep dive on one segment of one month: what the analyst used to do by hand, as pure logic.

A segment is a conjunction of audit dimensions (`site = X` and `queue = Y`, …). The deep dive
reads published `qa_core.audits_clean` only; the SQL here is SQLAlchemy Core (values are bound
parameters) and aggregates in the engine, so only per-group counts come back to Python, except the
month's auditor comments, which are paged for the comment themes.

Definitions (README, "Deep dive"):
- **peers**: the other values of the *first* `--where` dimension under the same other conditions
  (`site = X, queue = Y` → hate speech at the other sites); with one condition, the rest of the
  month's audits.
- **what moved inside it**: the exact rate/mix decomposition of the contract (`rca.decompose`) of the
  segment's error-rate change against the previous month, over tenure band, content type, policy,
  auditor and moderator (the filtered dimensions left out); per dimension the contributions add up
  to the segment's change.
- **main driver**: of every (dimension, value) in that decomposition, the one whose contribution
  exceeds its proportional part of the change the most: excess = contribution − s̄·Δ, s̄ the value's
  mean share of the segment's audits over the two months. A uniform change gives every value an
  excess of 0 (its contribution is its share of the change); a value that carried the change (a new
  cohort, a content type whose errors rose) stands out, however many values its dimension has.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
import sqlalchemy as sa

from qa_pipeline.domain.months import month_key, months_back, previous_month
from qa_pipeline.domain.rca import decompose
from qa_pipeline.domain.redaction import redact_text
from qa_pipeline.schemas import warehouse as wh
from qa_pipeline.stats.proportions import safe_rate, wilson_interval

DIMENSIONS = ["site", "team_type", "queue", "market", "content_type", "policy", "tenure_band",
              "moderator_id", "auditor_id"]
"""The dimensions a deep dive may filter on: the contract's audit dimensions and the two people."""
ALIASES = {"moderator": "moderator_id", "auditor": "auditor_id", "tenure": "tenure_band"}
DRIVER_DIMENSIONS = ["tenure_band", "content_type", "policy", "auditor_id", "moderator_id"]
DIMENSION_LABELS = {"site": "site", "team_type": "team type", "queue": "queue", "market": "market",
                    "content_type": "content type", "policy": "policy", "tenure_band": "tenure band",
                    "moderator_id": "moderator", "auditor_id": "auditor"}
HISTORY_MONTHS = 12
MISSING = "(none)"
CLOSEST = 3
PEOPLE_ROWS = 15


class DeepDiveInputError(ValueError):
    """A deep dive asked for something that is not there: one line, for the person who asked."""


@dataclass(frozen=True)
class Segment:
    """The month and the conditions, in the order given (the first names the peers)."""

    month: date
    conditions: tuple[tuple[str, str], ...]

    @property
    def dimensions(self) -> list[str]:
        return [d for d, _ in self.conditions]

    @property
    def label(self) -> str:
        return " · ".join(f"{d} = {v}" for d, v in self.conditions)

    @property
    def first(self) -> tuple[str, str]:
        return self.conditions[0]

    @property
    def others(self) -> tuple[tuple[str, str], ...]:
        return self.conditions[1:]

    @property
    def slug(self) -> str:
        """`YYYY-MM-<readable>-<hash>`: only `[a-z0-9-]` of the redacted values (a value can never leave
        the folder, nor put personal data in a path), and a hash of the exact conditions, so that two
        segments that read alike never share a folder."""
        text = "-".join(f"{d}-{redact_text(v)}" for d, v in self.conditions)  # no e-mail address in a path
        readable = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
        digest = hashlib.sha256(repr(self.conditions).encode("utf-8")).hexdigest()[:8]
        return f"{month_key(self.month)}-{readable[:80].rstrip('-')}-{digest}"

    @property
    def peers_label(self) -> str:
        dim, _ = self.first
        if not self.others:
            return f"the other {DIMENSION_LABELS[dim]} values"
        where = " · ".join(f"{d} = {v}" for d, v in self.others)
        return f"the other {DIMENSION_LABELS[dim]} values with {where}"


def parse_conditions(items: list[str]) -> tuple[tuple[str, str], ...]:
    """`["site=X", "queue=Y"]` → `(("site", "X"), ("queue", "Y"))`; a bad condition is one clear line."""
    if not items:
        raise DeepDiveInputError(f"at least one --where dimension=value is needed; dimensions: {', '.join(DIMENSIONS)}")
    out: list[tuple[str, str]] = []
    for item in items:
        if "=" not in item:
            raise DeepDiveInputError(f"--where {item!r}: expected dimension=value, e.g. site=Dublin")
        name, value = item.split("=", 1)
        name = ALIASES.get(name.strip(), name.strip())
        value = value.strip()
        if name not in DIMENSIONS:
            close = difflib.get_close_matches(name, DIMENSIONS + list(ALIASES), n=1, cutoff=0.6)
            hint = f"did you mean {ALIASES.get(close[0], close[0])!r}? " if close else ""
            raise DeepDiveInputError(f"unknown dimension {name!r}; {hint}valid dimensions: {', '.join(DIMENSIONS)}")
        if not value:
            raise DeepDiveInputError(f"--where {item!r}: the value is empty")
        if any(name == d for d, _ in out):
            raise DeepDiveInputError(f"dimension {name!r} is given twice")
        out.append((name, value))
    return tuple(out)


def closest_matches(value: str, known: list[str], n: int = CLOSEST) -> list[str]:
    """The known values nearest to `value` (difflib), case-insensitive, best first."""
    by_lower: dict[str, str] = {}
    for k in sorted(known):
        by_lower.setdefault(k.lower(), k)
    hits = difflib.get_close_matches(value.lower(), list(by_lower), n=n, cutoff=0.5)
    return [by_lower[h] for h in hits]


def unknown_value_message(dimension: str, value: str, month: date, known: list[str]) -> str:
    close = closest_matches(value, known)
    if close:
        hint = "closest matches: " + ", ".join(repr(c) for c in close)
    elif known:
        shown = sorted(known)[:10]
        hint = "values that month: " + ", ".join(repr(c) for c in shown) + (" …" if len(known) > 10 else "")
    else:
        hint = "no audit of that month has a value there"
    return f"no audit of {month_key(month)} has {dimension} = {value!r}; {hint}"


# -- SQL (SQLAlchemy Core over the published audits) --------------------------------------------
AUDITS = wh.audits_clean


def _errors(condition=None) -> sa.ColumnElement:
    """COUNT(*) FILTER (WHERE condition): a BIGINT in DuckDB and PostgreSQL (a SUM would be a DECIMAL)."""
    condition = AUDITS.c.is_error_final if condition is None else condition
    return sa.func.count().filter(condition)


def _where(conditions) -> list[sa.ColumnElement]:
    return [AUDITS.c[d] == sa.bindparam(None, v, type_=sa.Text) for d, v in conditions]


def _in_months(months: list[date]) -> sa.ColumnElement:
    return AUDITS.c.month.in_([sa.bindparam(None, m, type_=sa.Date) for m in months])


def published_months_query() -> sa.Select:
    p = wh.publications
    return sa.select(p.c.month).distinct().order_by(p.c.month)


def known_values_query(segment: Segment, dimension: str) -> sa.Select:
    col = AUDITS.c[dimension]
    return (sa.select(col.label("value")).where(AUDITS.c.month == sa.bindparam(None, segment.month, type_=sa.Date),
                                                 col.isnot(None)).distinct())


def count_query(segment: Segment) -> sa.Select:
    return sa.select(sa.func.count().label("audits")).where(
        AUDITS.c.month == sa.bindparam(None, segment.month, type_=sa.Date), *_where(segment.conditions))


def history_query(segment: Segment) -> sa.Select:
    """Audits and errors per month and value of the first dimension, under the other conditions,
    for the month and the 11 before it."""
    first = AUDITS.c[segment.first[0]]
    months = months_back(segment.month, HISTORY_MONTHS - 1)
    return (sa.select(AUDITS.c.month, first.label("value"), sa.func.count().label("audits"),
                      _errors().label("errors"))
            .where(_in_months(months), *_where(segment.others))
            .group_by(AUDITS.c.month, first))


def overall_history_query(segment: Segment) -> sa.Select:
    months = months_back(segment.month, HISTORY_MONTHS - 1)
    return (sa.select(AUDITS.c.month, sa.func.count().label("audits"), _errors().label("errors"))
            .where(_in_months(months)).group_by(AUDITS.c.month))


def driver_query(segment: Segment, dimension: str) -> sa.Select:
    """The segment's audits and errors per value of `dimension`, this month and the one before."""
    col = sa.func.coalesce(AUDITS.c[dimension], MISSING).label("value")
    months = [previous_month(segment.month), segment.month]
    return (sa.select(AUDITS.c.month, col, sa.func.count().label("audits"), _errors().label("errors"))
            .where(_in_months(months), *_where(segment.conditions))
            .group_by(AUDITS.c.month, col))


def _in_segment_month(segment: Segment) -> list[sa.ColumnElement]:
    return [AUDITS.c.month == sa.bindparam(None, segment.month, type_=sa.Date), *_where(segment.conditions)]


def root_cause_query(segment: Segment) -> sa.Select:
    cause = sa.func.coalesce(AUDITS.c.root_cause, "unknown").label("root_cause")
    return (sa.select(cause, sa.func.count().label("errors"))
            .where(*_in_segment_month(segment), AUDITS.c.is_error_final).group_by(cause))


def dispute_query(segment: Segment) -> sa.Select:
    outcome = AUDITS.c.dispute_outcome
    return sa.select(
        sa.func.count().label("audits"),
        _errors(AUDITS.c.is_error).label("flagged"),
        _errors().label("errors"),
        _errors(outcome.isnot(None)).label("disputed"),
        _errors(outcome == "overturned").label("overturned"),
        _errors(outcome == "upheld").label("upheld"),
    ).where(*_in_segment_month(segment))


def moderator_query(segment: Segment) -> sa.Select:
    return (sa.select(AUDITS.c.moderator_id, sa.func.count().label("audits"), _errors().label("errors"),
                      _errors(sa.and_(AUDITS.c.is_error_final, AUDITS.c.is_critical)).label("critical_errors"),
                      sa.func.min(AUDITS.c.tenure_days).label("tenure_min"),
                      sa.func.max(AUDITS.c.tenure_days).label("tenure_max"))
            .where(*_in_segment_month(segment)).group_by(AUDITS.c.moderator_id))


def auditor_query(segment: Segment) -> sa.Select:
    outcome = AUDITS.c.dispute_outcome
    return (sa.select(AUDITS.c.auditor_id, sa.func.count().label("audits"),
                      _errors(AUDITS.c.is_error).label("flagged"), _errors().label("errors"),
                      _errors(sa.and_(AUDITS.c.is_error, outcome == "overturned")).label("overturned"))
            .where(*_in_segment_month(segment)).group_by(AUDITS.c.auditor_id))


COMMENT_PAGE_ROWS = 200_000


def comments_query(segment: Segment, after: str | None, rows: int = COMMENT_PAGE_ROWS) -> sa.Select:
    """One page of the month's commented audits (keyset paging on audit_id), each marked in or out
    of the segment: the themes contrast the segment's error comments with every other comment."""
    inside = sa.and_(*_where(segment.conditions)) if segment.conditions else sa.true()
    stmt = (sa.select(AUDITS.c.audit_id, AUDITS.c.auditor_comment, AUDITS.c.is_error_final,
                      sa.case((inside, "in_segment"), else_="outside").label("queue"),
                      AUDITS.c.auditor_id, AUDITS.c.moderator_id)
            .where(AUDITS.c.month == sa.bindparam(None, segment.month, type_=sa.Date),
                   AUDITS.c.auditor_comment.isnot(None))
            .order_by(AUDITS.c.audit_id).limit(rows))
    if after is not None:
        stmt = stmt.where(AUDITS.c.audit_id > sa.bindparam(None, after, type_=sa.Text))
    return stmt


# -- figures (pandas, from the small frames the queries return) ----------------------------------
def _with_accuracy(frame: pd.DataFrame, prefix: str = "") -> pd.DataFrame:
    n = frame[f"{prefix}audits"].to_numpy(dtype=float)
    e = frame[f"{prefix}errors"].to_numpy(dtype=float)
    low, high = wilson_interval(n - e, n)
    frame[f"{prefix}error_rate"] = safe_rate(e, n)
    frame[f"{prefix}accuracy"] = 1 - frame[f"{prefix}error_rate"]
    frame[f"{prefix}ci_low"], frame[f"{prefix}ci_high"] = low, high
    return frame


def history(segment: Segment, counts: pd.DataFrame, overall: pd.DataFrame) -> pd.DataFrame:
    """Per month (oldest first, 12 months): the segment, its peers together and every audit, each
    with audits, errors, accuracy and its 95 % Wilson interval. A month without audits is absent."""
    counts = counts.assign(month=pd.to_datetime(counts["month"]), value=counts["value"].astype("str"))
    value = segment.first[1]
    mine = counts[counts["value"] == value].groupby("month")[["audits", "errors"]].sum()
    peers = counts[counts["value"] != value].groupby("month")[["audits", "errors"]].sum()
    everyone = overall.assign(month=pd.to_datetime(overall["month"])).set_index("month")[["audits", "errors"]]
    out = (mine.join(peers.add_prefix("peers_"), how="outer").join(everyone.add_prefix("all_"), how="outer")
           .fillna(0).astype("int64").sort_index())
    out = out.reset_index()
    for prefix in ("", "peers_", "all_"):
        _with_accuracy(out, prefix)
    return out


def peers(segment: Segment, counts: pd.DataFrame) -> pd.DataFrame:
    """The month's values of the first dimension under the other conditions (the segment among
    them), lowest accuracy first, with Wilson intervals."""
    month = counts[pd.to_datetime(counts["month"]) == pd.Timestamp(segment.month)]
    out = month.assign(value=month["value"].astype("str"))[["value", "audits", "errors"]].copy()
    out = _with_accuracy(out.astype({"audits": "int64", "errors": "int64"}))
    out["is_segment"] = out["value"] == segment.first[1]
    return out.sort_values(["accuracy", "value"], ignore_index=True)


def drivers(segment: Segment, counts: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The decomposition of the segment's error-rate change per driver dimension (`rca.decompose`),
    with each value's excess over its proportional part of the change (module docstring)."""
    prev, cur = pd.Timestamp(previous_month(segment.month)), pd.Timestamp(segment.month)
    parts = []
    for dimension, frame in counts.items():
        frame = frame.assign(month=pd.to_datetime(frame["month"]), segment=frame["value"].astype("str"))
        before, now = frame[frame["month"] == prev], frame[frame["month"] == cur]
        if before.empty or now.empty:
            continue
        d = decompose(before[["segment", "audits", "errors"]], now[["segment", "audits", "errors"]])
        d["audits_prev"] = d["segment"].map(before.set_index("segment")["audits"]).fillna(0).astype("int64")
        d["audits"] = d["segment"].map(now.set_index("segment")["audits"]).fillna(0).astype("int64")
        d["excess"] = d["contribution"] - (d["share_prev"] + d["share"]) / 2 * d["overall_change"]
        d.insert(0, "dimension", dimension)
        parts.append(d)
    if not parts:
        return pd.DataFrame(columns=["dimension", "segment", "audits_prev", "audits", "share_prev", "share",
                                     "rate_prev", "rate", "rate_effect", "mix_effect", "contribution",
                                     "overall_change", "contribution_share", "excess"])
    return pd.concat(parts, ignore_index=True)


def main_driver(decomposition: pd.DataFrame) -> dict | None:
    """The (dimension, value) with the largest excess in the direction of the change; None when
    there is no change to explain."""
    if decomposition.empty:
        return None
    change = float(decomposition["overall_change"].iloc[0])
    if change == 0 or np.isnan(change):
        return None
    signed = decomposition["excess"] * np.sign(change)
    row = decomposition.loc[signed.idxmax()]
    return row.to_dict()


def top_contributions(decomposition: pd.DataFrame, per_dimension: int = 5) -> pd.DataFrame:
    """Per dimension, the values with the largest contributions by size (all dimensions in the
    order of DRIVER_DIMENSIONS)."""
    if decomposition.empty:
        return decomposition
    d = decomposition.assign(_abs=decomposition["contribution"].abs(),
                             _dim=decomposition["dimension"].map({k: i for i, k in enumerate(DRIVER_DIMENSIONS)}))
    d = d.sort_values(["_dim", "_abs", "segment"], ascending=[True, False, True]).groupby("dimension", sort=False)
    return d.head(per_dimension).drop(columns=["_abs", "_dim"]).reset_index(drop=True)


def pareto(causes: pd.DataFrame) -> pd.DataFrame:
    """Root causes of the segment's errors, largest first (ties by name), with the vital few to 80 %
    (the rule of `rca.rca_pareto`)."""
    from qa_pipeline.domain.rca import VITAL_FEW_SHARE

    if causes.empty:
        return pd.DataFrame(columns=["root_cause", "errors", "share", "cumulative_share", "vital_few"])
    out = causes.assign(root_cause=causes["root_cause"].astype("str"), errors=causes["errors"].astype("int64"))
    out = out.sort_values(["errors", "root_cause"], ascending=[False, True], ignore_index=True)
    out["share"] = out["errors"] / out["errors"].sum()
    out["cumulative_share"] = out["share"].cumsum()
    out["vital_few"] = (out["cumulative_share"] - out["share"]) < VITAL_FEW_SHARE - 1e-12
    return out


def disputes(counts: pd.DataFrame) -> dict:
    row = counts.iloc[0].to_dict() if len(counts) else {}
    n = {k: int(row.get(k) or 0) for k in ("audits", "flagged", "errors", "disputed", "overturned", "upheld")}
    n["dispute_rate"] = n["disputed"] / n["audits"] if n["audits"] else None
    resolved = n["overturned"] + n["upheld"]
    n["overturn_rate"] = n["overturned"] / resolved if resolved else None
    return n


def moderators(counts: pd.DataFrame, rows: int = PEOPLE_ROWS) -> pd.DataFrame:
    """The moderators behind the segment's errors: most errors first, with their accuracy interval."""
    out = _with_accuracy(counts.astype({"audits": "int64", "errors": "int64"}).copy())
    out = out[out["errors"] > 0]
    out["tenure_days"] = [_span(a, b) for a, b in zip(out["tenure_min"], out["tenure_max"], strict=True)]
    return out.sort_values(["errors", "error_rate", "moderator_id"], ascending=[False, False, True],
                           ignore_index=True).head(rows)


def auditors(counts: pd.DataFrame, rows: int = PEOPLE_ROWS) -> pd.DataFrame:
    """The auditors who flagged the segment's errors: most final errors first, with their flag rate
    (before disputes) and the flags that disputes overturned."""
    out = counts.astype({"audits": "int64", "flagged": "int64", "errors": "int64", "overturned": "int64"}).copy()
    out = out[out["flagged"] > 0]
    out["flag_rate"] = safe_rate(out["flagged"], out["audits"])
    return out.sort_values(["errors", "flagged", "auditor_id"], ascending=[False, False, True],
                           ignore_index=True).head(rows)


def _span(low, high) -> str:
    if pd.isna(low) or pd.isna(high):
        return "not on the roster"
    low, high = int(low), int(high)
    return f"{low}" if low == high else f"{low}–{high}"


def _pct(v: float, digits: int = 1) -> str:
    return f"{v * 100:.{digits}f} %"


def _times(ratio: float) -> str:
    words = {2: "twice", 3: "three times", 4: "four times", 5: "five times"}
    rounded = round(ratio)
    if abs(ratio - rounded) < 0.15 and rounded in words:
        return f"about {words[rounded]}"
    return f"{ratio:.1f} times"


def finding(segment: Segment, hist: pd.DataFrame, decomposition: pd.DataFrame, driver: dict | None) -> str:
    """The first paragraph: the segment's error rate, its change and its size in words, its peers,
    and the main driver with its share of the change."""
    month = pd.Timestamp(segment.month)
    at = hist.set_index("month")
    cur = at.loc[month]
    prev_month = pd.Timestamp(previous_month(segment.month))
    opening = (f"In {month:%B %Y}, {segment.label} had {int(cur['errors']):,} errors in {int(cur['audits']):,} "
               f"audits: an error rate of {_pct(cur['error_rate'])} (accuracy {_pct(cur['accuracy'])}, "
               f"95 % interval {_pct(cur['ci_low'])}–{_pct(cur['ci_high'])})")
    parts = [opening]
    if prev_month in at.index and at.loc[prev_month, "audits"] > 0:
        prev = at.loc[prev_month]
        delta = cur["error_rate"] - prev["error_rate"]
        direction = "up" if delta > 0 else "down" if delta < 0 else "unchanged"
        size = f"{abs(delta) * 100:.1f} percentage points"
        ratio = (f", {_times(cur['error_rate'] / prev['error_rate'])} the rate"
                 if prev["error_rate"] > 0 and delta > 0 else "")
        parts[0] += (f", {direction} {size} from {_pct(prev['error_rate'])} in {prev_month:%B}{ratio}"
                     if delta else f", unchanged from {prev_month:%B}")
    else:
        parts[0] += f"; no audits of {prev_month:%B %Y} to compare with"
    parts[0] += "."
    if cur["peers_audits"] > 0:
        gap = cur["error_rate"] - cur["peers_error_rate"]
        relation = "above" if gap > 0 else "below" if gap < 0 else "level with"
        parts.append(f"Its peers ({segment.peers_label}) had {_pct(cur['peers_error_rate'])} on "
                     f"{int(cur['peers_audits']):,} audits: {abs(gap) * 100:.1f} pp {relation} them"
                     if gap else f"Its peers ({segment.peers_label}) had the same error rate")
        parts[-1] += "."
    if driver is not None:
        change = driver["overall_change"]
        label = DIMENSION_LABELS.get(driver["dimension"], driver["dimension"])
        kind = "mix" if abs(driver["mix_effect"]) > abs(driver["rate_effect"]) else "rate"
        parts.append(f"Main driver: {label} {driver['segment']}, {driver['contribution'] * 100:+.1f} pp of the "
                     f"{change * 100:+.1f} pp change ({driver['contribution'] / change * 100:.0f} % of it, mostly "
                     f"{kind}): its share of the segment's audits went from {_pct(driver['share_prev'], 0)} to "
                     f"{_pct(driver['share'], 0)} and its error rate from {_pct(driver['rate_prev'])} to "
                     f"{_pct(driver['rate'])}.")
    return " ".join(parts)
