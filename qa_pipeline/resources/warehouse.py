"""The warehouse: SQLAlchemy over DuckDB (embedded default) or PostgreSQL (production).

Partitions are rewritten whole inside one transaction (delete the month, insert the new rows,
commit), so a re-run never duplicates rows and a failure leaves the previous version in place.
Bulk loads use each engine's native path from one Arrow table with the warehouse types: DuckDB
scans it through `register`, PostgreSQL receives it by binary `COPY` (ADBC's libpq driver). SQL is built with SQLAlchemy Core from the table
definitions in `schemas/warehouse.py`; values from the data are always bound parameters.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow as pa
import sqlalchemy as sa
from pydantic import PrivateAttr
from sqlalchemy.engine import Connection, Engine

from qa_pipeline.schemas import warehouse as wh
from qa_pipeline.settings import resolve_url

LOAD_CONNECTIONS = 2
"""Parallel COPY connections for a partition swap (PostgreSQL's backend is the bottleneck)."""
PARALLEL_FROM_ROWS = 100_000

_ENGINES: dict[str, Engine] = {}
_IBIS: dict[str, object] = {}
_LOCK = threading.Lock()


def duckdb_settings() -> dict[str, str]:
    """Bounds on the embedded engine: it spills to disk instead of growing past `memory_limit`."""
    return {"memory_limit": os.environ.get("QA_DUCKDB_MEMORY_LIMIT", "2GB"),
            "threads": os.environ.get("QA_DUCKDB_THREADS", str(min(os.cpu_count() or 2, 4)))}


def get_engine(url: str) -> Engine:
    """One engine per URL and process (DuckDB allows one writing process per file)."""
    url = resolve_url(url)
    with _LOCK:
        if url not in _ENGINES:
            is_duck = url.startswith("duckdb:///") and ":memory:" not in url
            if is_duck:
                Path(url[len("duckdb:///"):]).parent.mkdir(parents=True, exist_ok=True)
            engine = sa.create_engine(url, pool_pre_ping=url.startswith("postgresql"))
            if is_duck:
                temp = Path(url[len("duckdb:///"):]).with_suffix(".tmp")

                @sa.event.listens_for(engine, "connect")
                def _bounded(dbapi_connection, _record, temp=temp):
                    # set on every new connection; memory_limit and temp_directory are global
                    settings = duckdb_settings()
                    dbapi_connection.execute(f"SET memory_limit = '{settings['memory_limit']}'")
                    dbapi_connection.execute(f"SET threads = {int(settings['threads'])}")
                    dbapi_connection.execute(f"SET temp_directory = '{temp}'")
                    # row order is never relied on (every read sorts or aggregates): lets large
                    # INSERT … SELECT stream instead of buffering to keep order
                    dbapi_connection.execute("SET preserve_insertion_order = false")
                    dbapi_connection.execute("SET TimeZone = 'UTC'")
            elif url.startswith("postgresql"):
                @sa.event.listens_for(engine, "connect")
                def _utc(dbapi_connection, _record):
                    with dbapi_connection.cursor() as cur:
                        cur.execute("SET TIME ZONE 'UTC'")
                    dbapi_connection.commit()
            _ENGINES[url] = engine
        return _ENGINES[url]


def get_ibis(url: str):
    """The ibis backend on the same database as `get_engine(url)`: scans, joins and GROUP BYs are
    compiled by ibis for the engine and run there; only their (small) results come back."""
    import ibis

    url = resolve_url(url)
    engine = get_engine(url)
    with _LOCK:
        if url not in _IBIS:
            if engine.dialect.name == "duckdb":
                # a second connection to the same database instance (its own transactions), owned
                # by the engine's pool: duckdb refuses a second instance on the file
                raw = engine.raw_connection()
                base = getattr(raw.driver_connection, "_ConnectionWrapper__c", raw.driver_connection)
                _IBIS[url] = ibis.duckdb.from_connection(base.cursor())
                raw.close()
            elif engine.dialect.name == "postgresql":
                u = engine.url
                _IBIS[url] = ibis.postgres.connect(host=u.host, port=u.port or 5432, user=u.username,
                                                   password=u.password, database=u.database)
                _IBIS[url].raw_sql("SET TIME ZONE 'UTC'")
            else:
                raise ValueError(f"QA_WAREHOUSE_URL: the {engine.dialect.name} warehouse is not supported; "
                                 "use DuckDB or PostgreSQL (README: Past one machine)")
        return _IBIS[url]


def dispose_engines() -> None:
    """Close every cached engine (tests and the CLI call this before handing a DuckDB file over)."""
    with _LOCK:
        for backend in _IBIS.values():
            try:
                backend.disconnect()
            except Exception:  # already closed with its engine
                pass
        _IBIS.clear()
        for engine in _ENGINES.values():
            engine.dispose()
        _ENGINES.clear()


def _sql_type_name(column: sa.Column, dialect: str) -> str:
    t = column.type
    if isinstance(t, sa.Date):
        return "DATE"
    if isinstance(t, sa.DateTime):
        return "TIMESTAMPTZ"
    if isinstance(t, sa.Boolean):
        return "BOOLEAN"
    if isinstance(t, sa.BigInteger):
        return "BIGINT"
    if isinstance(t, sa.Double):
        return "DOUBLE" if dialect == "duckdb" else "DOUBLE PRECISION"
    return "VARCHAR" if dialect == "duckdb" else "TEXT"


_ARROW_TYPES = [
    (sa.Date, pa.date32()), (sa.DateTime, pa.timestamp("us", tz="UTC")), (sa.Boolean, pa.bool_()),
    (sa.BigInteger, pa.int64()), (sa.Double, pa.float64()),
]


def to_arrow(frame: pd.DataFrame, table: sa.Table) -> pa.Table:
    """The frame as an Arrow table with exactly the warehouse column types."""
    def arrow_type(column: sa.Column) -> pa.DataType:
        return next((t for k, t in _ARROW_TYPES if isinstance(column.type, k)), pa.string())

    data = pa.Table.from_pandas(conform(frame, table), preserve_index=False)
    return data.cast(pa.schema([pa.field(c.name, arrow_type(c)) for c in table.columns]))


def conform(frame: pd.DataFrame, table: sa.Table) -> pd.DataFrame:
    """The frame's columns in the table's order; a missing column is an error, not a silent NULL."""
    names = [c.name for c in table.columns]
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise KeyError(f"{table.fullname}: the frame lacks column(s) {missing}")
    return frame.loc[:, names]


class Warehouse(dg.ConfigurableResource):
    """SQLAlchemy warehouse. `url` is `QA_WAREHOUSE_URL` (DuckDB file or PostgreSQL)."""

    url: str
    _engine: Engine | None = PrivateAttr(default=None)

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = get_engine(self.url)
        return self._engine

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def describe(self) -> str:
        """The URL without its password, for logs and the CLI."""
        return self.engine.url.render_as_string(hide_password=True)

    # -- DDL ---------------------------------------------------------------------------------
    @staticmethod
    def publication_lock(conn: Connection) -> None:
        """One publication at a time, held until the transaction ends. PostgreSQL: an advisory
        lock, so that two runs (the production instance allows four at once) never interleave their
        DELETEs and INSERTs under READ COMMITTED. DuckDB has one writing process, and its
        optimistic concurrency aborts the second of two conflicting transactions."""
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(hashtext('qa_pipeline.publish'))")

    @staticmethod
    def ddl_lock(conn: Connection) -> None:
        """PostgreSQL: one transaction at a time creates schemas and tables (steps of concurrent runs
        or of the multiprocess executor would otherwise race on CREATE … IF NOT EXISTS)."""
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(hashtext('qa_pipeline.ddl'))")

    def ensure_table(self, table: sa.Table, conn: Connection | None = None) -> None:
        def _create(c: Connection) -> None:
            if sa.inspect(c).has_table(table.name, schema=table.schema):
                return
            self.ddl_lock(c)
            c.execute(sa.schema.CreateSchema(table.schema, if_not_exists=True))
            partition_by = table.info.get("postgresql_partition_by")
            if c.dialect.name == "postgresql" and partition_by:
                if not sa.inspect(c).has_table(table.name, schema=table.schema):
                    ddl = sa.schema.CreateTable(table).compile(dialect=c.dialect)
                    c.exec_driver_sql(f"{str(ddl).rstrip()} PARTITION BY {partition_by}")
            else:
                table.create(c, checkfirst=True)

        if conn is not None:
            _create(conn)
        else:
            with self.engine.begin() as c:
                _create(c)

    # -- writes --------------------------------------------------------------------------------
    def replace_partition(self, table_name: str, frame: pd.DataFrame, month: date) -> int:
        """Replace the rows of one month in one transaction; returns the rows written."""
        table = wh.table(table_name)
        return self._replace(table, frame, table.c[wh.MONTH] == sa.bindparam("m", month, sa.Date))

    def replace_rows(self, table_name: str, frame: pd.DataFrame, condition) -> int:
        """Replace the rows of `table_name` that `condition` (a SQLAlchemy condition on the table,
        bound values) selects by `frame`, in one transaction; returns the rows written."""
        return self._replace(wh.table(table_name), frame, condition)

    def _replace(self, table: sa.Table, frame: pd.DataFrame, condition) -> int:
        data = to_arrow(frame, table)  # refuses a frame with a missing column before anything is deleted
        if self.dialect == "postgresql":
            return self._replace_postgres(table, data, condition)
        with self.engine.begin() as conn:
            self.ensure_table(table, conn)
            conn.execute(sa.delete(table).where(condition))
            if data.num_rows:
                if self.dialect == "duckdb":
                    self._insert_duckdb(conn, table, data)
                else:  # any other SQLAlchemy backend: portable executemany
                    conn.execute(sa.insert(table), _records(frame))
        return data.num_rows

    @staticmethod
    def _insert_duckdb(conn: Connection, table: sa.Table, data: pa.Table) -> None:
        raw = conn.connection.driver_connection
        view = "__qa_load"
        raw.register(view, data)  # DuckDB scans Arrow directly
        try:
            cols = ", ".join(f'"{c.name}"' for c in table.columns)
            # identifiers come from schemas/warehouse.py, never from the data
            raw.execute(f'INSERT INTO "{table.schema}"."{table.name}" ({cols}) SELECT {cols} FROM {view}')
        finally:
            raw.unregister(view)

    def _replace_postgres(self, table: sa.Table, data: pa.Table, condition) -> int:
        """DELETE and binary COPY (ADBC's libpq driver) in one transaction on one connection."""
        import adbc_driver_postgresql.dbapi as adbc

        self.ensure_table(table)  # DDL is idempotent and commits on its own
        dialect = sa.dialects.postgresql.dialect(paramstyle="numeric_dollar")
        compiled = sa.delete(table).where(condition).compile(dialect=dialect)
        params = tuple(compiled.params[k] for k in (compiled.positiontup or []))
        with adbc.connect(self._adbc_url()) as conn:
            with conn.cursor() as cur:
                cur.execute(str(compiled), parameters=params)
                if data.num_rows:
                    cur.adbc_ingest(table.name, data, mode="append", db_schema_name=table.schema)
            conn.commit()  # leaving the block without commit rolls back: the old rows stay
        return data.num_rows

    def _adbc_url(self) -> str:
        return self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)

    def append_arrow(self, table: sa.Table, data: pa.Table) -> int:
        """Append Arrow rows (already in the table's column types) to an existing table: DuckDB scans
        the Arrow table, PostgreSQL receives it by binary COPY over up to two connections."""
        if not data.num_rows:
            return 0
        if self.dialect == "duckdb":
            with self.engine.begin() as conn:
                self._insert_duckdb(conn, table, data)
        elif self.dialect == "postgresql":
            self._copy_postgres(table, data)
        else:
            with self.engine.begin() as conn:
                conn.execute(sa.insert(table), _records(data.to_pandas()))
        return data.num_rows

    @contextmanager
    def bulk_load(self, commit_rows: int = 1_000_000):
        """Many appends over one connection (a streamed load), committed every `commit_rows` rows
        and at the end: yields `load(table, arrow_table)`. The periodic commits bound what the
        engine holds uncommitted in memory (a 10M-row DuckDB transaction alone grew the process
        past 5 GiB); loads go to staging tables, which nothing publishes before the run succeeds."""
        pending = 0

        def committed(commit, count: int) -> None:
            nonlocal pending
            pending += count
            if pending >= commit_rows:
                commit()
                pending = 0

        if self.dialect == "duckdb":
            with self.engine.connect() as conn:
                def load(table: sa.Table, data: pa.Table) -> None:
                    if data.num_rows:
                        self._insert_duckdb(conn, table, data)
                        committed(conn.commit, data.num_rows)
                yield load
                conn.commit()
        elif self.dialect == "postgresql":
            import adbc_driver_postgresql.dbapi as adbc

            with adbc.connect(self._adbc_url()) as conn:
                with conn.cursor() as cur:
                    def load(table: sa.Table, data: pa.Table) -> None:
                        if data.num_rows:
                            cur.adbc_ingest(table.name, data, mode="append", db_schema_name=table.schema)
                            committed(conn.commit, data.num_rows)
                    yield load
                conn.commit()
        else:
            yield self.append_arrow

    def _copy_postgres(self, table: sa.Table, data: pa.Table) -> None:
        import adbc_driver_postgresql.dbapi as adbc

        url = self._adbc_url()

        def load(chunk: pa.Table) -> None:
            with adbc.connect(url) as c:
                with c.cursor() as cur:
                    cur.adbc_ingest(table.name, chunk, mode="append", db_schema_name=table.schema)
                c.commit()

        n = data.num_rows
        k = LOAD_CONNECTIONS if n >= PARALLEL_FROM_ROWS else 1
        chunks = [data.slice(i * n // k, (i + 1) * n // k - i * n // k) for i in range(k)]
        with ThreadPoolExecutor(max_workers=k) as pool:
            list(pool.map(load, chunks))

    def insert_query(self, table: sa.Table, expr) -> None:
        """INSERT INTO table SELECT … of an ibis expression, run inside the engine."""
        names = [c.name for c in table.columns]
        self.ibis.insert(table.name, expr.select(*names), database=table.schema)

    @property
    def ibis(self):
        return get_ibis(self.url)

    def execute(self, expr) -> pd.DataFrame:
        """Run an ibis expression in the engine; the (small) result comes back through Arrow."""
        return self.ibis.to_pyarrow(expr).to_pandas(date_as_object=False)

    def batches(self, expr, rows: int):
        """An ibis expression's result streamed as Arrow record batches of about `rows` rows: the
        engine holds the result, Python one batch at a time."""
        if self.dialect == "duckdb":
            # ibis's batch reader calls a method duckdb 2.0 no longer has; the relation's reader works
            yield from self.ibis.con.sql(self.ibis.compile(expr)).to_arrow_reader(rows)
        else:
            yield from self.ibis.to_pyarrow_batches(expr, chunk_size=rows)

    def pages(self, expr, order_by: list[str], rows: int):
        """An ordered ibis expression's result as DataFrames of at most `rows` rows each, so that a
        large result never sits in memory at once (ibis's own batch reader does not work with
        duckdb 2.0)."""
        ordered = expr.order_by(order_by)
        offset = 0
        while True:
            page = self.execute(ordered.limit(rows, offset=offset))
            if page.empty:
                return
            yield page
            offset += len(page)
            if len(page) < rows:
                return

    def value(self, expr):
        """Run a scalar ibis expression (a count, a sum) in the engine; a Python value."""
        return self.ibis.to_pyarrow(expr).as_py()

    # -- reads ---------------------------------------------------------------------------------
    def has_table(self, table_name: str) -> bool:
        table = wh.table(table_name)
        return sa.inspect(self.engine).has_table(table.name, schema=table.schema)

    def read(self, statement: sa.Select) -> pd.DataFrame:
        """Run a Core SELECT and return a DataFrame, through Arrow on DuckDB and PostgreSQL."""
        if self.dialect == "duckdb":
            return self._read_duckdb(statement)
        if self.dialect == "postgresql":
            return self._read_postgres(statement)
        with self.engine.connect() as conn:
            result = conn.execute(statement)
            return pd.DataFrame(result.fetchall(), columns=list(result.keys()))

    def _read_duckdb(self, statement: sa.Select) -> pd.DataFrame:
        compiled = statement.compile(dialect=self.engine.dialect, compile_kwargs={"render_postcompile": True})
        params = [compiled.params[k] for k in (compiled.positiontup or [])]
        with self.engine.connect() as conn:
            relation = conn.connection.driver_connection.sql(str(compiled), params=params)
            # Arrow, not .df(): 8× faster on text columns; DATE columns come back as datetimes
            return relation.to_arrow_table().to_pandas(date_as_object=False)

    def _read_postgres(self, statement: sa.Select) -> pd.DataFrame:
        """Arrow through ADBC: the same dtypes as the DuckDB path, and fast on wide tables."""
        import adbc_driver_postgresql.dbapi as adbc

        compiled = statement.compile(dialect=sa.dialects.postgresql.dialect(paramstyle="numeric_dollar"),
                                     compile_kwargs={"render_postcompile": True})
        params = tuple(compiled.params[k] for k in (compiled.positiontup or []))
        url = self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        with adbc.connect(url) as conn, conn.cursor() as cur:
            cur.execute(str(compiled), parameters=params or None)
            return cur.fetch_arrow_table().to_pandas(date_as_object=False)

    def read_table(self, table_name: str, months: Iterable[date] | None = None) -> pd.DataFrame:
        """A whole table, or the given months of a monthly table; empty frame if absent."""
        table = wh.table(table_name)
        if not self.has_table(table_name):
            return pd.DataFrame({c.name: pd.Series(dtype=_empty_dtype(c)) for c in table.columns})
        stmt = sa.select(table)
        if months is not None:
            stmt = stmt.where(table.c[wh.MONTH].in_(list(months)))
        return self.read(stmt)

    def scalar(self, statement) -> object:
        with self.engine.connect() as conn:
            return conn.execute(statement).scalar()


def _empty_dtype(column: sa.Column) -> str:
    t = column.type
    if isinstance(t, sa.Date | sa.DateTime):
        return "datetime64[us]"
    if isinstance(t, sa.Boolean):
        return "boolean"
    if isinstance(t, sa.BigInteger):
        return "Int64"
    if isinstance(t, sa.Double):
        return "float64"
    return "str"


def _records(frame: pd.DataFrame) -> list[dict]:
    return frame.astype(object).where(frame.notna(), None).to_dict("records")
