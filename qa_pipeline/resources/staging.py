"""Write–audit–publish: a run stages every table it writes, its checks read the staged rows, and
one transaction at the end of the run publishes all of them.

- Each run's staged tables live in the schema `qa_staging`, named
  `<table>[__<input>]__<YYYYMM>__<run key>`, and are listed in `qa_staging.staged_tables`
  with the published rows they replace (their *scope*: the month, the next month, the whole table,
  or one input's rows of the month).
- Later steps of the same run read a table through `Attempt.table()`: the published rows outside the
  staged scope plus the staged rows. No run ever reads another run's staged rows, so a failed
  attempt is never read.
- `publish()` replaces, in one transaction, every scope the run staged (on PostgreSQL the month's
  `audits_clean` partition is swapped in), records the publication in `qa_core.publications` and
  drops the run's staged tables and those of earlier attempts at the month. A run that fails
  before it leaves the published tables untouched and its staged rows readable until then.

Identifiers come from the table definitions, the partition's month and the run id, never from data.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime

import pandas as pd
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from qa_pipeline.domain.months import month_start, next_month
from qa_pipeline.resources.warehouse import Warehouse, to_arrow
from qa_pipeline.schemas import warehouse as wh

STAGING = wh.STAGING
SCOPES = ("month", "next_month", "whole", "input_month", "input", "internal")


@dataclass(frozen=True)
class Attempt:
    """One run's attempt at publishing one month."""

    warehouse: Warehouse
    month: date
    run_id: str
    shared_by: str | None = None
    """Several runs that make one attempt (the runs of an asset backfill for one month): their id."""

    @property
    def key(self) -> str:
        """The first 8 hex digits of a Dagster run id; a hash of any other attempt id."""
        if self.shared_by:
            return hashlib.sha256(f"{self.shared_by}:{self.month:%Y-%m}".encode()).hexdigest()[:8]
        compact = self.run_id.replace("-", "")
        if len(compact) == 32 and all(ch in "0123456789abcdef" for ch in compact):
            return compact[:8]
        return hashlib.sha256(self.run_id.encode()).hexdigest()[:8]

    def staged_name(self, table_name: str, part: str | None = None) -> str:
        """`<table>[__<input>]__<YYYYMM>__<run key>`: within PostgreSQL's 63-character identifiers."""
        name = table_name.split(".")[1]
        return "__".join([name, *([part] if part else []), f"{self.month:%Y%m}", self.key])

    # -- writing ------------------------------------------------------------------------------
    def create(self, table_name: str, scope: str = "month", scope_input: str | None = None,
               snapshot_at: datetime | None = None) -> sa.Table:
        """An empty staged twin of `table_name` (replacing this run's earlier one), registered.

        `snapshot_at` (whole-table and whole-input scopes): what the rows are computed from — the
        latest publication they read (`watermark()`), or when the raw files were read. Of two
        versions, the publication keeps the one computed from the newer snapshot."""
        if scope not in SCOPES:
            raise ValueError(f"unknown scope {scope!r}")
        target = wh.table(table_name)
        staged = _twin(target, self.staged_name(table_name, scope_input if scope.startswith("input") else None))
        if self.warehouse.dialect == "postgresql" and target.info.get("postgresql_partition_by") and scope == "month":
            # the staged table becomes the month's partition at publication: the CHECK lets
            # PostgreSQL attach it without scanning it
            staged.append_constraint(sa.CheckConstraint(
                sa.and_(staged.c[wh.MONTH].isnot(None), staged.c[wh.MONTH] == sa.literal(self.month, sa.Date)),
                name=f"{staged.name}_month"))
        reg = wh.staged_tables
        with self.warehouse.engine.begin() as conn:
            self.warehouse.ddl_lock(conn)
            conn.execute(sa.schema.CreateSchema(STAGING, if_not_exists=True))
            reg.create(conn, checkfirst=True)
            _add_missing_columns(conn, reg)
            staged.drop(conn, checkfirst=True)
            staged.create(conn)
            conn.execute(sa.delete(reg).where(reg.c.run_key == self.key, reg.c.staged_as == staged.name))
            conn.execute(sa.insert(reg).values(
                run_key=self.key, month=self.month, table_name=table_name, staged_as=staged.name,
                scope=scope, scope_input=scope_input, staged_at=datetime.now(UTC), snapshot_at=snapshot_at))
        return staged

    def write(self, table_name: str, frame: pd.DataFrame, scope: str = "month",
              scope_input: str | None = None, snapshot_at: datetime | None = None) -> int:
        """Stage a frame as the run's new version of `table_name` within `scope`."""
        staged = self.create(table_name, scope, scope_input, snapshot_at)
        if table_name.startswith("qa_reporting."):  # analysts export it: no text a spreadsheet would run
            from qa_pipeline.domain.redaction import neutralise_formulas
            frame = neutralise_formulas(frame)
        return self.warehouse.append_arrow(staged, to_arrow(frame, staged))

    def append(self, staged: sa.Table, data: pa.Table | pd.DataFrame) -> int:
        """Append rows to a table made by `create` (streamed ingest writes chunk by chunk)."""
        if isinstance(data, pd.DataFrame):
            data = to_arrow(data, staged)
        return self.warehouse.append_arrow(staged, data)

    @contextmanager
    def loader(self):
        """`append` for many chunks over one connection, committed every million rows (see
        Warehouse.bulk_load)."""
        with self.warehouse.bulk_load() as load:
            def append(staged: sa.Table, data: pa.Table | pd.DataFrame) -> None:
                load(staged, to_arrow(data, staged) if isinstance(data, pd.DataFrame) else data)
            yield append

    def write_query(self, table_name: str, expr, scope: str = "month") -> sa.Table:
        """Stage the result of an ibis expression, computed inside the engine (INSERT … SELECT)."""
        staged = self.create(table_name, scope)
        self.warehouse.insert_query(staged, expr)
        return staged

    def watermark(self) -> datetime:
        """The snapshot a whole-table output computed now is made from: the time of the latest
        publication (any month) it can read, or the epoch when nothing is published yet. Read it
        *before* reading the published tables."""
        p = wh.publications
        if self.warehouse.has_table(p.fullname):
            with self.warehouse.engine.connect() as conn:
                latest = conn.execute(sa.select(sa.func.max(p.c.published_at))).scalar_one()
            if latest is not None:
                return _aware(latest)
        return datetime(1970, 1, 1, tzinfo=UTC)

    # -- reading ------------------------------------------------------------------------------
    def _registered(self, table_name: str) -> list:
        reg = wh.staged_tables
        if not self.warehouse.has_table(f"{STAGING}.staged_tables"):
            return []
        with self.warehouse.engine.connect() as conn:
            return conn.execute(sa.select(reg).where(reg.c.run_key == self.key, reg.c.month == self.month,
                                                     reg.c.table_name == table_name)).fetchall()

    def staged(self, table_name: str):
        """The run's staged rows of `table_name` (one input's, or all inputs' together), as ibis."""
        rows = self._registered(table_name)
        if not rows:
            raise LookupError(f"{table_name} is not staged by run {self.run_id} for {self.month:%Y-%m}")
        parts = [self.warehouse.ibis.table(r.staged_as, database=STAGING) for r in rows]
        out = parts[0]
        for p in parts[1:]:
            out = out.union(p)
        return out

    def table(self, table_name: str):
        """What the rest of this run reads as `table_name`: published rows outside the staged scope,
        plus the staged rows; just the published table when this run staged nothing of it."""
        ib = self.warehouse.ibis
        target = wh.table(table_name)
        rows = self._registered(table_name)
        published = ib.table(target.name, database=target.schema) if self.warehouse.has_table(table_name) else None
        if not rows:
            if published is None:
                return ib.table(_ensure(self.warehouse, target).name, database=target.schema)
            return published
        staged = self.staged(table_name)
        if published is None:
            return staged
        keep = ~_scope_predicate(published, rows, self.month)
        return published.filter(keep).union(staged)

    def frame(self, table_name: str, months=None) -> pd.DataFrame:
        """`table()` as a DataFrame, optionally only some months (small tables only)."""
        t = self.table(table_name)
        if months is not None:
            t = t.filter(t[wh.MONTH].isin([month_start(m) for m in months]))
        return self.warehouse.execute(t)

    # -- publishing ---------------------------------------------------------------------------
    def record_check(self, table_name: str, check_name: str, passed: bool) -> None:
        """Remember a blocking check's outcome on the staged rows of `table_name`: `publish` refuses
        rows a blocking check failed on, whatever path leads to it (a re-executed step included)."""
        reg = wh.staged_tables
        with self.warehouse.engine.begin() as conn:
            rows = conn.execute(sa.select(reg.c.staged_as, reg.c.failed_checks).where(
                reg.c.run_key == self.key, reg.c.month == self.month, reg.c.table_name == table_name)).fetchall()
            for staged_as, failed in rows:
                names = [n for n in (failed or "").split(",") if n and n != check_name]
                names += [] if passed else [check_name]
                conn.execute(sa.update(reg).where(reg.c.run_key == self.key, reg.c.staged_as == staged_as)
                             .values(failed_checks=",".join(names) or None))

    def publish(self, required: Iterable[str] = (), kept: dict[str, str] | None = None,
                record: Callable[[Connection, datetime], None] | None = None) -> dict[str, int]:
        """Publish everything this run staged for the month in one transaction; rows per table.

        Refused (nothing published) when a table of `required` is not staged by this run, when a
        blocking check failed on any staged table, when a staged row falls outside its scope, or
        when an `audit_id` of the staged month was published for another month by a run that
        published while this one was staging. Publications are serialised (one at a time, on every
        engine), so two runs never interleave their DELETEs and INSERTs. A whole-table output (or
        an input's rows) computed from an older snapshot than the published version is not
        published: the newer version stays, and `kept` receives the table and the run that made it.
        `record(conn, published_at)` runs last inside the same transaction (the publication history:
        what it records is visible exactly when the tables are).
        """
        wh_ = self.warehouse
        reg = wh.staged_tables
        published: dict[str, int] = {}
        with wh_.engine.begin() as conn:
            wh_.publication_lock(conn)
            entries = conn.execute(sa.select(reg).where(reg.c.run_key == self.key, reg.c.month == self.month)
                                   .order_by(reg.c.table_name, reg.c.staged_as)).fetchall()
            if not entries:
                raise LookupError(f"run {self.run_id} staged nothing for {self.month:%Y-%m}: nothing to publish")
            failed = [f"{e.table_name} ({e.failed_checks})" for e in entries if e.failed_checks]
            if failed:
                raise ValueError(f"blocking checks failed on the staged rows of {', '.join(failed)}: "
                                 "nothing was published")
            missing = sorted(set(required) - {e.table_name for e in entries})
            if missing:
                raise LookupError(f"run {self.run_id} has not staged {', '.join(missing)} for {self.month:%Y-%m}: "
                                  "nothing was published")
            started = min(_aware(e.staged_at) for e in entries)
            wh_.ensure_table(wh.publications, conn)
            wh_.ensure_table(wh.table_versions, conn)
            for e in entries:
                staged = _twin(wh.table(e.table_name), e.staged_as)
                if e.scope == "internal":
                    staged.drop(conn, checkfirst=True)
                    continue
                target = wh.table(e.table_name)
                wh_.ensure_table(target, conn)
                _refuse_rows_outside_scope(conn, staged, e, self.month)
                if e.scope in ("whole", "input"):
                    newer = _newer_version(conn, e)
                    if newer is not None:
                        staged.drop(conn)
                        if kept is not None:
                            kept[e.table_name] = newer
                        continue
                    _record_version(conn, e, self.run_id)
                if target is wh.audits_clean:
                    _refuse_ids_published_meanwhile(conn, staged, self.month, started)
                n = conn.execute(sa.select(sa.func.count()).select_from(staged)).scalar_one()
                if wh_.dialect == "postgresql" and target.info.get("postgresql_partition_by") and e.scope == "month":
                    _attach_partition(conn, target, staged, self.month)
                else:
                    conn.execute(sa.delete(target).where(_scope_condition(target, e, self.month)))
                    names = [c.name for c in target.columns]
                    conn.execute(sa.insert(target).from_select(names, sa.select(*[staged.c[c] for c in names])))
                    staged.drop(conn)
                published[e.table_name] = published.get(e.table_name, 0) + int(n)
            conn.execute(sa.delete(reg).where(reg.c.run_key == self.key, reg.c.month == self.month))
            # earlier attempts at the month (their staging ended before this one began); an attempt
            # still staging beside this one is left alone
            others = sa.select(reg.c.run_key).where(reg.c.month == self.month, reg.c.run_key != self.key) \
                .group_by(reg.c.run_key).having(sa.func.max(reg.c.staged_at) < started)
            _drop_attempts(conn, reg, sa.and_(reg.c.month == self.month, reg.c.run_key.in_(others)))
            published_at = datetime.now(UTC)
            conn.execute(sa.insert(wh.publications).values(
                month=self.month, run_id=self.run_id, published_at=published_at,
                tables=len(published), rows=sum(published.values())))
            if record is not None:
                record(conn, published_at)
        return published

    def was_published(self) -> bool:
        """Whether this attempt's publication committed (`qa_core.publications`)."""
        if not self.warehouse.has_table(wh.publications.fullname):
            return False
        p = wh.publications
        with self.warehouse.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(p).where(
                p.c.run_id == self.run_id, p.c.month == self.month)).scalar_one() > 0

    def discard(self) -> int:
        """Drop everything this attempt staged (a dry run such as `qa-pipeline validate`)."""
        reg = wh.staged_tables
        if not self.warehouse.has_table(f"{STAGING}.staged_tables"):
            return 0
        with self.warehouse.engine.begin() as conn:
            return _drop_attempts(conn, reg, sa.and_(reg.c.run_key == self.key, reg.c.month == self.month))

    def staged_tables_of(self, table_name: str) -> list[str]:
        return [f"{STAGING}.{r.staged_as}" for r in self._registered(table_name)]

    def staged_tables(self) -> list[str]:
        """`qa_staging.<name>` of every table this run has staged for the month (for messages)."""
        reg = wh.staged_tables
        if not self.warehouse.has_table(f"{STAGING}.staged_tables"):
            return []
        with self.warehouse.engine.connect() as conn:
            names = conn.execute(sa.select(reg.c.staged_as).where(reg.c.run_key == self.key,
                                                                  reg.c.month == self.month)).scalars()
            return [f"{STAGING}.{n}" for n in names]



def _aware(value: datetime) -> datetime:
    """Time stamps come back naive from some drivers: they are UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _add_missing_columns(conn, table: sa.Table) -> None:
    """A registry created by an earlier version of the pipeline gets the columns added since."""
    cols = sa.table("columns", sa.column("table_schema"), sa.column("table_name"), sa.column("column_name"),
                    schema="information_schema")
    have = set(conn.execute(sa.select(cols.c.column_name).where(
        cols.c.table_schema == table.schema, cols.c.table_name == table.name)).scalars())
    q = conn.dialect.identifier_preparer.quote
    for column in table.columns:
        if column.name not in have:
            kind = column.type.compile(dialect=conn.dialect)
            conn.exec_driver_sql(f"ALTER TABLE {q(table.schema)}.{q(table.name)} ADD COLUMN {q(column.name)} {kind}")


def _version_key(entry) -> tuple[str, str]:
    return entry.table_name, entry.scope_input or ""


def _newer_version(conn, entry) -> str | None:
    """The run id of the published version of a whole-table output when it was computed from a
    newer snapshot than `entry` (ties: the later staged wins); None when `entry` is newer."""
    v = wh.table_versions
    table_name, scope_input = _version_key(entry)
    row = conn.execute(sa.select(v.c.snapshot_at, v.c.staged_at, v.c.run_id).where(
        v.c.table_name == table_name, v.c.scope_input == scope_input)).first()
    if row is None:
        return None
    mine = (_aware(entry.snapshot_at or entry.staged_at), _aware(entry.staged_at))
    theirs = (_aware(row.snapshot_at), _aware(row.staged_at))
    return row.run_id if theirs > mine else None


def _record_version(conn, entry, run_id: str) -> None:
    v = wh.table_versions
    table_name, scope_input = _version_key(entry)
    conn.execute(sa.delete(v).where(v.c.table_name == table_name, v.c.scope_input == scope_input))
    conn.execute(sa.insert(v).values(table_name=table_name, scope_input=scope_input,
                                     snapshot_at=entry.snapshot_at or entry.staged_at, staged_at=entry.staged_at,
                                     run_id=run_id, published_at=datetime.now(UTC)))


def _refuse_ids_published_meanwhile(conn, staged: sa.Table, month: date, started: datetime) -> None:
    """An `audit_id` is published in at most one month. The gate quarantines ids that another month
    holds when it runs; a run of another month that published since this attempt began staging is
    the one case it cannot see, and is checked here, under the publication lock."""
    p, t = wh.publications, wh.audits_clean
    since = conn.execute(sa.select(sa.func.count()).select_from(p).where(
        p.c.month != sa.bindparam("m", month, sa.Date), p.c.published_at >= started)).scalar_one()
    if not since:
        return
    clash = conn.execute(sa.select(staged.c.audit_id, t.c.month).select_from(
        staged.join(t, sa.and_(t.c.audit_id == staged.c.audit_id, t.c.month != sa.bindparam("m", month, sa.Date))))
        .limit(1)).first()
    if clash is not None:
        raise ValueError(f"audit_id {clash.audit_id!r} of {month:%Y-%m} was published for {clash.month:%Y-%m} by a "
                         "run that published while this one ran: nothing was published; re-run "
                         f"{month:%Y-%m} (its gate quarantines the ids another month holds)")

def _twin(target: sa.Table, name: str) -> sa.Table:
    """A staging table with the target's columns (no constraints beyond NOT NULL)."""
    meta = sa.MetaData()
    return sa.Table(name, meta, *[sa.Column(c.name, c.type, nullable=c.nullable) for c in target.columns],
                    schema=STAGING)


def _ensure(warehouse: Warehouse, target: sa.Table) -> sa.Table:
    warehouse.ensure_table(target)
    return target


def _scope_condition(target: sa.Table, entry, month: date):
    """The published rows a staged table replaces, as a SQLAlchemy condition (bound values)."""
    m = target.c.get(wh.MONTH)
    kind = entry.scope
    if kind == "whole":
        return sa.true()
    if kind == "month":
        return m == sa.bindparam("scope_month", month, sa.Date)
    if kind == "next_month":
        return m == sa.bindparam("scope_month", next_month(month), sa.Date)
    if kind == "input_month":
        return sa.and_(target.c.input == sa.bindparam("scope_input", entry.scope_input),
                       m == sa.bindparam("scope_month", month, sa.Date))
    if kind == "input":
        return target.c.input == sa.bindparam("scope_input", entry.scope_input)
    raise ValueError(f"unknown scope {kind!r}")


def _refuse_rows_outside_scope(conn, staged: sa.Table, entry, month: date) -> None:
    """A staged row that its scope would not replace (another month, another input) would be
    published beside the rows it should replace: refuse the whole publication instead."""
    if entry.scope == "whole":
        return
    outside = conn.execute(sa.select(sa.func.count()).select_from(staged).where(
        sa.not_(sa.func.coalesce(_scope_condition(staged, entry, month), False)))).scalar_one()
    if outside:
        raise ValueError(f"{STAGING}.{staged.name}: {outside} staged row(s) fall outside its scope "
                         f"({entry.scope} {month:%Y-%m}{' ' + entry.scope_input if entry.scope_input else ''}); "
                         "nothing was published")


def _scope_predicate(t, entries, month: date):
    """The same rows as `_scope_condition`, as an ibis predicate over the published table."""
    import ibis

    preds = []
    for e in entries:
        kind = e.scope
        if kind == "whole":
            preds.append(ibis.literal(True))
        elif kind == "month":
            preds.append(t[wh.MONTH] == month)
        elif kind == "next_month":
            preds.append(t[wh.MONTH] == next_month(month))
        elif kind == "input_month":
            preds.append((t.input == e.scope_input) & (t[wh.MONTH] == month))
        elif kind == "input":
            preds.append(t.input == e.scope_input)
    out = preds[0]
    for p in preds[1:]:
        out = out | p
    return out


def _attach_partition(conn, target: sa.Table, staged: sa.Table, month: date) -> None:
    """PostgreSQL: the staged table replaces the month's partition of `target` (same transaction)."""
    q = conn.dialect.identifier_preparer.quote
    part = f"{target.name}_{month:%Y_%m}"
    literal = sa.literal(month, sa.Date).compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {q(target.schema)}.{q(part)}")
    conn.exec_driver_sql(f"ALTER TABLE {q(STAGING)}.{q(staged.name)} SET SCHEMA {q(target.schema)}")
    conn.exec_driver_sql(f"ALTER TABLE {q(target.schema)}.{q(staged.name)} RENAME TO {q(part)}")
    conn.exec_driver_sql(f"ALTER TABLE {q(target.schema)}.{q(target.name)} ATTACH PARTITION "
                         f"{q(target.schema)}.{q(part)} FOR VALUES IN ({literal})")


def _drop_attempts(conn, reg: sa.Table, which) -> int:
    """Drop the staged tables of the attempts selected by `which` and forget them."""
    names = conn.execute(sa.select(reg.c.staged_as).where(which)).scalars().all()
    q = conn.dialect.identifier_preparer.quote
    for name in names:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {q(STAGING)}.{q(name)}")
    conn.execute(sa.delete(reg).where(which))
    return len(names)
