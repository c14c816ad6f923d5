"""Access control on the PostgreSQL warehouse (`qa-pipeline grants`), idempotent.

Roles: `qa_analyst` reads `qa_reporting` only; `qa_engineer` reads and writes both schemas. The
pipeline's own login (the user of QA_WAREHOUSE_URL) owns the schemas, and default privileges make
every table it creates later readable by the right role. Optional logins come from the
environment (QA_ANALYST_LOGIN / QA_ANALYST_PASSWORD, QA_ENGINEER_LOGIN / QA_ENGINEER_PASSWORD).
Names are composed as identifiers and passwords as literals by psycopg.sql, never spliced.
"""

from __future__ import annotations

import os

import sqlalchemy as sa
from psycopg import sql

from qa_pipeline.schemas.warehouse import CORE, REPORTING

ANALYST, ENGINEER = "qa_analyst", "qa_engineer"
TABLE_WRITE = "SELECT, INSERT, UPDATE, DELETE, TRUNCATE"


def _role(name: str) -> sql.Composed:
    return sql.SQL(
        "DO $do$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {lit}) THEN "
        "CREATE ROLE {ident} NOLOGIN; END IF; END $do$"
    ).format(lit=sql.Literal(name), ident=sql.Identifier(name))


def _login(login: str, password: str, role: str) -> list[sql.Composed]:
    return [
        sql.SQL(
            "DO $do$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {lit}) THEN "
            "CREATE ROLE {ident} LOGIN; END IF; END $do$"
        ).format(lit=sql.Literal(login), ident=sql.Identifier(login)),
        sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(sql.Identifier(login), sql.Literal(password)),
        sql.SQL("GRANT {} TO {}").format(sql.Identifier(role), sql.Identifier(login)),
    ]


def statements(pipeline_login: str, database: str, logins: dict[str, tuple[str, str]]) -> list[sql.Composed]:
    me = sql.Identifier(pipeline_login)
    core, reporting = sql.Identifier(CORE), sql.Identifier(REPORTING)
    out = [_role(ANALYST), _role(ENGINEER)]
    out += [sql.SQL("CREATE SCHEMA IF NOT EXISTS {} AUTHORIZATION {}").format(s, me) for s in (core, reporting)]
    out += [sql.SQL("GRANT CONNECT ON DATABASE {} TO {}, {}").format(
        sql.Identifier(database), sql.Identifier(ANALYST), sql.Identifier(ENGINEER))]
    out += [sql.SQL("REVOKE ALL ON SCHEMA {} FROM PUBLIC").format(s) for s in (core, reporting)]
    # analysts: aggregates only
    out += [
        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(reporting, sql.Identifier(ANALYST)),
        sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(reporting, sql.Identifier(ANALYST)),
        sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} GRANT SELECT ON TABLES TO {}").format(
            me, reporting, sql.Identifier(ANALYST)),
    ]
    # engineers: read and write both schemas
    for s in (core, reporting):
        out += [
            sql.SQL("GRANT USAGE, CREATE ON SCHEMA {} TO {}").format(s, sql.Identifier(ENGINEER)),
            sql.SQL("GRANT " + TABLE_WRITE + " ON ALL TABLES IN SCHEMA {} TO {}").format(s, sql.Identifier(ENGINEER)),
            sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} GRANT " + TABLE_WRITE + " ON TABLES TO {}").format(
                me, s, sql.Identifier(ENGINEER)),
        ]
    for role, (login, password) in logins.items():
        out += _login(login, password, role)
    return out


def logins_from_env() -> dict[str, tuple[str, str]]:
    out = {}
    for role, prefix in ((ANALYST, "QA_ANALYST"), (ENGINEER, "QA_ENGINEER")):
        login, password = os.environ.get(f"{prefix}_LOGIN"), os.environ.get(f"{prefix}_PASSWORD")
        if login and password:
            out[role] = (login, password)
        elif login:
            raise ValueError(f"{prefix}_LOGIN is set but {prefix}_PASSWORD is not")
    return out


def apply_grants(url: str, logins: dict[str, tuple[str, str]]) -> list[str]:
    """Run the grants on the warehouse at `url`; returns the statements (passwords masked)."""
    engine = sa.create_engine(url)
    if engine.dialect.name != "postgresql":
        raise ValueError("grants apply to a PostgreSQL warehouse (QA_WAREHOUSE_URL=postgresql+psycopg://…)")
    done = []
    try:
        with engine.begin() as conn:
            raw = conn.connection.driver_connection
            stmts = statements(engine.url.username, engine.url.database, logins)
            with raw.cursor() as cur:
                for stmt in stmts:
                    cur.execute(stmt)
                    text = stmt.as_string(raw)
                    done.append(text.split(" PASSWORD ")[0] + (" PASSWORD ***" if " PASSWORD " in text else ""))
    finally:
        engine.dispose()
    return done
