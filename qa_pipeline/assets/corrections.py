"""The corrections log at publication: history, fingerprint and corrections, in the publication's
transaction (the logic is `domain/corrections.py`).

`month_publication` computes the fingerprint from the run's staged rows before it publishes (the
same rows the publication makes visible), then `recorder()` runs inside the publication's
transaction: it copies the month's published headline figures into
`qa_reporting.publication_history` (INSERT … SELECT in the engine), stores the fingerprint in
`qa_core.publication_fingerprints`, and compares both with the month's previous publication to
append its corrections to `qa_reporting.corrections`. History and corrections are therefore
visible exactly when the figures are, and never disagree with them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

import dagster as dg
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from qa_pipeline.domain import corrections as logic
from qa_pipeline.domain.months import previous_month
from qa_pipeline.resources.staging import Attempt
from qa_pipeline.resources.warehouse import Warehouse
from qa_pipeline.schemas import warehouse as wh
from qa_pipeline.settings import null_literals

HISTORY_CHECK = "publication_history_matches"


def fingerprint(attempt: Attempt, thresholds) -> logic.Fingerprint:
    """What this run's figures of the month are computed from, read from its staged rows."""
    ex = attempt.warehouse.execute
    log = attempt.staged("qa_core.ingest_log")
    log = log.filter(log.input.isin(list(logic.FIGURE_INPUTS)) & (log.month == attempt.month))
    files = logic.input_files(ex(log.select("month", "input", "source_file", "file_sha256", "status")), attempt.month)
    audits = attempt.staged("qa_core.audits_clean")
    disputed = ex(audits.filter(audits.dispute_outcome.notnull())
                  .select("audit_id", "dispute_outcome", "dispute_resolved_at"))
    disputes_sha, disputed_n, overturned_n = logic.disputes_fingerprint(disputed)
    version, code_sha = logic.code_fingerprint()
    return logic.Fingerprint(
        input_files=files, disputes_sha256=disputes_sha, disputed_audits=disputed_n, overturned_audits=overturned_n,
        settings=logic.settings_values(thresholds, null_literals(), logic.tolerance()),
        code_version=version, code_sha256=code_sha)


@dataclass
class Recorded:
    """What the recorder wrote (for the publication's metadata)."""

    figures: int = 0
    corrections: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=logic.CORRECTION_COLUMNS))
    previous: datetime | None = None
    published_at: datetime | None = None
    check: dg.AssetCheckResult | None = None


def recorder(month: date, run_id: str, print_: logic.Fingerprint, rel_tol: float, out: Recorded):
    """`record(conn, published_at)` for `Attempt.publish`."""

    def record(conn: Connection, published_at: datetime) -> None:
        write(conn, published_at)
        # audited before the transaction commits: a history or log that disagrees with what the
        # publication makes visible rolls the whole publication back (the previous version stays)
        out.check = history_check(lambda stmt: _frame(conn, stmt), month, published_at)
        if not out.check.passed:
            raise RuntimeError(f"{month:%Y-%m}: publication refused: {HISTORY_CHECK} failed: {out.check.description}")

    def write(conn: Connection, published_at: datetime) -> None:
        h, f, c = wh.publication_history, wh.publication_fingerprints, wh.corrections
        for table in (h, f, c):
            _ensure(conn, table)
        out.published_at = published_at
        m = sa.bindparam("m", month, sa.Date)
        previous = _frame(conn, sa.select(f).where(f.c.month == m, f.c.published_at < published_at)
                          .order_by(f.c.published_at.desc()).limit(1))
        conn.execute(sa.insert(h).from_select([c_.name for c_ in h.columns], history_select(month, published_at, run_id)))
        conn.execute(sa.insert(f).values(month=month, published_at=published_at, run_id=run_id, **print_.as_row()))
        out.figures = int(conn.execute(sa.select(sa.func.count()).select_from(h).where(
            h.c.month == m, h.c.published_at == published_at)).scalar_one())
        if previous.empty:
            return
        prev = previous.iloc[0].to_dict()
        current = {**print_.as_row(), "month": month, "published_at": published_at, "run_id": run_id}
        snapshot = _frame(conn, sa.select(h).where(h.c.month == m, h.c.published_at == published_at))
        before = _frame(conn, sa.select(h).where(h.c.month == m, h.c.published_at == prev["published_at"]))
        changed = logic.corrections(before, snapshot, prev, current, rel_tol)
        if len(changed):
            rows = changed.astype(object).where(changed.notna(), None).to_dict("records")
            for r in rows:
                r["month"] = month
                r["previous_published_at"] = logic.utc(r["previous_published_at"]).to_pydatetime()
                r["published_at"] = published_at
            conn.execute(sa.insert(c), rows)
        out.corrections = changed
        out.previous = logic.utc(prev["published_at"]).to_pydatetime()

    return record


def history_select(month: date, published_at: datetime, run_id: str) -> sa.Select:
    """The month's published `quality_metrics` as headline figures, computed by the engine."""
    q = wh.quality_metrics
    parts = []
    for metric, (column, denominator) in logic.HEADLINE_METRICS.items():
        value = sa.cast(q.c[column], sa.Double)
        if denominator is not None:
            value = value / sa.func.nullif(sa.cast(q.c[denominator], sa.Double), 0)
        parts.append(sa.select(
            q.c.month, q.c.dimension, q.c.segment, sa.literal(metric, sa.Text).label("metric"), value.label("value"),
            sa.literal(published_at, sa.DateTime(timezone=True)).label("published_at"),
            sa.literal(run_id, sa.Text).label("run_id"),
        ).where(q.c.month == sa.literal(month, sa.Date)))
    return sa.union_all(*parts)


def _ensure(conn: Connection, table: sa.Table) -> None:
    if not sa.inspect(conn).has_table(table.name, schema=table.schema):
        Warehouse.ddl_lock(conn)
        conn.execute(sa.schema.CreateSchema(table.schema, if_not_exists=True))
        table.create(conn, checkfirst=True)


def _frame(conn: Connection, statement) -> pd.DataFrame:
    result = conn.execute(statement)
    return pd.DataFrame(result.fetchall(), columns=list(result.keys()))


def metadata(out: Recorded) -> dict:
    """The publication's corrections as metadata: their count and a preview."""
    meta = {"history_figures": dg.MetadataValue.int(out.figures),
            "corrections": dg.MetadataValue.int(len(out.corrections))}
    if len(out.corrections):
        shown = out.corrections[["dimension", "segment", "metric", "previous_value", "new_value", "cause"]].head(10)
        meta["corrections_preview"] = dg.MetadataValue.md(shown.to_markdown(index=False, floatfmt=".6g"))
    return meta


def history_check(read, month: date, published_at: datetime | None) -> dg.AssetCheckResult:
    """The publication's history is what it makes visible, and the corrections are exactly those
    the history and fingerprints imply (recomputed here in pandas from the tables). `read(stmt)`
    reads inside the publication's transaction, before it commits, under the publication lock: the
    publication being recorded is the month's latest."""
    q, h, f = wh.quality_metrics, wh.publication_history, wh.publication_fingerprints
    m = sa.bindparam("m", month, sa.Date)
    prints = read(sa.select(f).where(f.c.month == m).order_by(f.c.published_at))
    if published_at is None or prints.empty:
        return dg.AssetCheckResult(check_name=HISTORY_CHECK, passed=False, severity=dg.AssetCheckSeverity.ERROR,
                                   description="the publication recorded no history")
    latest = logic.utc(prints["published_at"].iloc[-1])
    if latest != logic.utc(published_at):
        return dg.AssetCheckResult(check_name=HISTORY_CHECK, passed=False, severity=dg.AssetCheckSeverity.ERROR,
                                   description="the month's latest recorded publication is not this one")
    expected = logic.headline_figures(read(sa.select(q).where(q.c.month == m)))
    history = read(sa.select(h).where(h.c.month == m))
    mine = history[pd.to_datetime(history["published_at"], utc=True) == latest]
    diff = logic.changed_figures(expected, mine, 0.0)
    derived = logic.derive_corrections(history, prints)
    c = wh.corrections
    logged = read(sa.select(c).where(c.c.month == m))
    key = ["published_at", "dimension", "segment", "metric"]
    mismatch = _log_mismatch(derived, logged, key)
    ok = diff.empty and mismatch == 0
    return dg.AssetCheckResult(
        check_name=HISTORY_CHECK, passed=bool(ok), severity=dg.AssetCheckSeverity.ERROR,
        description=(f"{len(mine)} figures recorded as published; {len(logged)} correction(s) of the month, as the "
                     "history implies" if ok else
                     f"{len(diff)} figure(s) differ from the published quality_metrics; {mismatch} correction "
                     "row(s) differ from those the history implies"),
        metadata={"figures": dg.MetadataValue.int(len(mine)), "figures_differing": dg.MetadataValue.int(len(diff)),
                  "corrections": dg.MetadataValue.int(len(logged)),
                  "corrections_differing": dg.MetadataValue.int(mismatch)},
    )


def _log_mismatch(derived: pd.DataFrame, logged: pd.DataFrame, key: list[str]) -> int:
    """Rows of the corrections log that differ from the derived ones (either side), causes included."""
    def norm(frame: pd.DataFrame) -> pd.DataFrame:
        out = frame[[*key, "previous_value", "new_value", "cause", "causes"]].copy()
        out["published_at"] = pd.to_datetime(out["published_at"], utc=True)
        return out
    merged = norm(derived).merge(norm(logged), on=key, how="outer", indicator=True, suffixes=("_d", "_l"))
    both = merged["_merge"] == "both"
    same = both.copy()
    for col in ("previous_value", "new_value"):
        same &= ~logic.differs(merged[f"{col}_d"], merged[f"{col}_l"], 0.0)
    for col in ("cause", "causes"):
        same &= merged[f"{col}_d"].astype("str") == merged[f"{col}_l"].astype("str")
    return int((~same).sum())


def report_corrections(warehouse: Warehouse, month: date) -> pd.DataFrame:
    """The corrections the month's report lists: to earlier months, published since the previous
    report went out (the first publication of the month before; every correction to an earlier
    month when that month was never published)."""
    c, f = wh.corrections, wh.publication_fingerprints
    if not warehouse.has_table(c.fullname):
        return pd.DataFrame(columns=logic.CORRECTION_COLUMNS)
    since = warehouse.scalar(sa.select(sa.func.min(f.c.published_at)).where(
        f.c.month == sa.bindparam("prev", previous_month(month), sa.Date)))
    stmt = sa.select(c).where(c.c.month < sa.bindparam("m", month, sa.Date))
    if since is not None:
        stmt = stmt.where(c.c.published_at > sa.bindparam("since", logic.utc(since).to_pydatetime(),
                                                         sa.DateTime(timezone=True)))
    return logic.corrections_for_report(warehouse.read(stmt), month, since)
