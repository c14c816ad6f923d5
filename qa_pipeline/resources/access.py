"""Access control on the PostgreSQL warehouse (`qa-pipeline grants`), least privilege, idempotent.

Roles: the analyst role (`qa_analyst`, QA_ANALYST_ROLE) reads `qa_reporting` only, which holds no
person identifier; the engineer role (`qa_engineer`, QA_ENGINEER_ROLE) reads and writes both schemas.
Optional logins come from the environment (QA_ANALYST_LOGIN / QA_ANALYST_PASSWORD,
QA_ENGINEER_LOGIN / QA_ENGINEER_PASSWORD) and are members of their role.

The statements come in two parts, run by two different logins:

1. **administrator** (CREATEROLE; roles are cluster-wide): create the roles and the logins, set the
   logins' passwords (as SCRAM-SHA-256 verifiers computed here, so no password travels or is
   printed in clear), make each login a member of its role;
2. **owner** — the pipeline's own login (the user of QA_WAREHOUSE_URL), which keeps owning its
   schemas: create the schemas, grant on schemas and tables, and set the default privileges that
   make every table it creates later readable by the right role. These are issued by the owner.

`apply_grants` runs part 1 with the administrator's connection (`--admin-url`, QA_ADMIN_URL) or,
without one, with the pipeline's login when it may (CREATEROLE or superuser, or nothing left to
create); then part 2 with the pipeline's login. `script` prints both for a DBA and changes nothing.
A missing privilege is one line naming it and both ways out (`AccessError`). Names are composed as
identifiers and passwords as literals by psycopg.sql, never spliced.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass

import sqlalchemy as sa
from psycopg import sql

from qa_pipeline.schemas.warehouse import CORE, REPORTING

ANALYST, ENGINEER = "qa_analyst", "qa_engineer"
TABLE_WRITE = "SELECT, INSERT, UPDATE, DELETE, TRUNCATE"
SCRAM_ITERATIONS = 4096  # PostgreSQL's default (scram_iterations)
WAYS_OUT = ("either give an administrator's connection: qa-pipeline grants --admin-url postgresql+psycopg://"
            "ADMIN@HOST/DB (or QA_ADMIN_URL), or print the statements for a DBA: qa-pipeline grants --print-sql")


class AccessError(ValueError):
    """The grants cannot be applied as asked: one line for the person who ran the command."""


@dataclass(frozen=True)
class Roles:
    analyst: str = ANALYST
    engineer: str = ENGINEER

    @classmethod
    def from_env(cls) -> Roles:
        return cls(analyst=os.environ.get("QA_ANALYST_ROLE") or ANALYST,
                   engineer=os.environ.get("QA_ENGINEER_ROLE") or ENGINEER)


@dataclass(frozen=True)
class Login:
    name: str
    password: str
    role: str


def logins_from_env(roles: Roles | None = None) -> list[Login]:
    roles = roles or Roles.from_env()
    out = []
    for role, prefix in ((roles.analyst, "QA_ANALYST"), (roles.engineer, "QA_ENGINEER")):
        login, password = os.environ.get(f"{prefix}_LOGIN"), os.environ.get(f"{prefix}_PASSWORD")
        if login and password:
            out.append(Login(login, password, role))
        elif login:
            raise AccessError(f"{prefix}_LOGIN is set but {prefix}_PASSWORD is not")
    return out


def scram_verifier(password: str, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (RFC 5802 / 7677, in
    PostgreSQL's `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` form). PostgreSQL
    SASLprep-normalises a password first, which leaves an ASCII one unchanged: only ASCII
    passwords are pre-hashed here."""
    if not password.isascii():
        raise AccessError("a login password with non-ASCII characters cannot be pre-hashed exactly; use an ASCII "
                          "password, or set it afterwards with psql's \\password")
    salt = salt if salt is not None else os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("ascii"), salt, iterations)
    stored_key = hashlib.sha256(hmac.new(salted, b"Client Key", "sha256").digest()).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()

    def b64(b: bytes) -> str:
        return base64.b64encode(b).decode("ascii")

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def _if_missing(name: str, create: sql.Composable) -> sql.Composed:
    """`create` unless the role exists, as one statement (it also runs from `--print-sql` output). The
    body's dollar-quote tag is one the name does not contain: a name holding `$do$` cannot end the
    body early and run the rest as SQL (quoting the identifier does not protect against that)."""
    tag = next(t for t in (f"qa{i}" for i in range(len(name) + 2)) if f"${t}$" not in name)
    return sql.SQL("DO ${tag}$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {name}) THEN {create}; "
                   "END IF; END ${tag}$").format(tag=sql.SQL(tag), name=sql.Literal(name), create=create)


def admin_statements(roles: Roles, logins: list[Login]) -> list[sql.Composed]:
    """Part 1, for an administrator with CREATEROLE: the roles, the logins, their passwords and
    memberships. Nothing about the warehouse's schemas."""
    out = [_if_missing(r, sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(r)))
           for r in (roles.analyst, roles.engineer)]
    for login in logins:
        ident = sql.Identifier(login.name)
        out += [
            _if_missing(login.name, sql.SQL("CREATE ROLE {} LOGIN").format(ident)),
            sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(ident, sql.Literal(scram_verifier(login.password))),
            sql.SQL("GRANT {} TO {}").format(sql.Identifier(login.role), ident),
        ]
    return out


def owner_statements(owner: str, database: str, roles: Roles) -> list[sql.Composed]:
    """Part 2, issued by the pipeline's login, which owns the database's schemas: schemas, grants
    on schemas and tables, default privileges for the tables it creates later."""
    me = sql.Identifier(owner)
    core, reporting = sql.Identifier(CORE), sql.Identifier(REPORTING)
    analyst, engineer = sql.Identifier(roles.analyst), sql.Identifier(roles.engineer)
    out = [sql.SQL("CREATE SCHEMA IF NOT EXISTS {} AUTHORIZATION {}").format(s, me) for s in (core, reporting)]
    out += [sql.SQL("GRANT CONNECT ON DATABASE {} TO {}, {}").format(sql.Identifier(database), analyst, engineer)]
    out += [sql.SQL("REVOKE ALL ON SCHEMA {} FROM PUBLIC").format(s) for s in (core, reporting)]
    # analysts: the aggregates of qa_reporting only (no person identifier there)
    out += [
        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(reporting, analyst),
        sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(reporting, analyst),
        sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} GRANT SELECT ON TABLES TO {}").format(
            me, reporting, analyst),
    ]
    # engineers: read and write both schemas
    for s in (core, reporting):
        out += [
            sql.SQL("GRANT USAGE, CREATE ON SCHEMA {} TO {}").format(s, engineer),
            sql.SQL("GRANT " + TABLE_WRITE + " ON ALL TABLES IN SCHEMA {} TO {}").format(s, engineer),
            sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} GRANT " + TABLE_WRITE + " ON TABLES TO {}").format(
                me, s, engineer),
        ]
    return out


def _postgres_url(url: str, what: str) -> sa.URL:
    parsed = sa.make_url(url)
    if not parsed.drivername.startswith("postgresql"):
        raise AccessError(f"grants apply to a PostgreSQL warehouse: {what} is {parsed.drivername}://…, not "
                          "postgresql+psycopg://…")
    if not parsed.username or not parsed.database:
        raise AccessError(f"{what} must name the login and the database (postgresql+psycopg://USER@HOST/DB)")
    return parsed


def script(warehouse_url: str, roles: Roles, logins: list[Login]) -> str:
    """Every statement, in order, for a DBA (`--print-sql`): part 1 as an administrator, part 2 as
    the pipeline's login (`SET ROLE` lets a superuser run it as the owner). Passwords appear as
    SCRAM verifiers only."""
    url = _postgres_url(warehouse_url, "QA_WAREHOUSE_URL")
    owner = url.username
    admin, own = admin_statements(roles, logins), owner_statements(owner, url.database, roles)
    lines = [f"-- qa-pipeline grants for database {url.database}, owner {owner}: {len(admin) + len(own)} "
             "statements; nothing has been changed.",
             f"-- Run connected to the database {url.database} (e.g. psql -d {url.database} -f grants.sql).",
             "-- 1. As an administrator with CREATEROLE (roles and logins are cluster-wide):"]
    lines += [s.as_string() + ";" for s in admin]
    lines += [f"-- 2. As {owner}, the owner of the schemas (grants and default privileges are issued by the owner;",
              "--    a superuser runs them through SET ROLE):",
              sql.SQL("SET ROLE {};").format(sql.Identifier(owner)).as_string()]
    lines += [s.as_string() + ";" for s in own]
    lines += ["RESET ROLE;"]
    return "\n".join(lines) + "\n"


def _shown(text: str) -> str:
    return text.split(" PASSWORD ")[0] + (" PASSWORD ***" if " PASSWORD " in text else "")


def _run(url: sa.URL, statements: list[sql.Composed], who: str, done: list[str], hint: str = "") -> None:
    import psycopg

    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            raw = conn.connection.driver_connection
            with raw.cursor() as cur:
                for stmt in statements:
                    text = stmt.as_string(raw)
                    try:
                        cur.execute(stmt)
                    except psycopg.Error as exc:
                        reason = (exc.diag.message_primary or str(exc).splitlines()[0]).rstrip(".")
                        raise AccessError(f'{who} "{url.username}" could not run `{_shown(text)[:120]}`: {reason}'
                                          f"{hint}; {WAYS_OUT}") from None
                    done.append(_shown(text))
    except sa.exc.OperationalError as exc:
        raise AccessError(f'cannot connect as {who} "{url.username}": {str(exc.orig).splitlines()[0]}') from None
    finally:
        engine.dispose()


def _role_state(url: sa.URL, names: list[str]) -> tuple[bool, list[str]]:
    """Whether the login may create roles (CREATEROLE or superuser), and which of `names` do not
    exist yet."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            may = bool(conn.execute(sa.text(
                "SELECT rolcreaterole OR rolsuper FROM pg_roles WHERE rolname = current_user")).scalar())
            present = set(conn.execute(sa.text("SELECT rolname FROM pg_roles WHERE rolname = ANY(:names)"),
                                       {"names": names}).scalars())
    except sa.exc.OperationalError as exc:
        raise AccessError(f'cannot connect as "{url.username}": {str(exc.orig).splitlines()[0]}') from None
    finally:
        engine.dispose()
    return may, [n for n in names if n not in present]


def apply_grants(warehouse_url: str, roles: Roles, logins: list[Login], admin_url: str | None = None) -> list[str]:
    """Part 1 with `admin_url` (or, without it, with the pipeline's login when it may), then part 2
    with the pipeline's login; returns the statements run (passwords masked)."""
    owner_url = _postgres_url(warehouse_url, "QA_WAREHOUSE_URL")
    done: list[str] = []
    admin = admin_statements(roles, logins)
    if admin_url:
        _run(_postgres_url(admin_url, "the admin URL"), admin, "the administrator", done)
    else:
        may, missing = _role_state(owner_url, [roles.analyst, roles.engineer])
        if not may and (missing or logins):
            needed = " and ".join(part for part in (
                f"the role(s) {', '.join(missing)}" if missing else "",
                f"the login(s) {', '.join(x.name for x in logins)}" if logins else "") if part)
            raise AccessError(f'the login "{owner_url.username}" lacks the CREATEROLE privilege, which creating '
                              f"{needed} needs; {WAYS_OUT}")
        if may:
            _run(owner_url, admin, "the pipeline's login", done)
    _run(owner_url, owner_statements(owner_url.username, owner_url.database, roles), "the pipeline's login", done,
         hint=f" (grants on schemas and tables are issued by their owner: the pipeline's login must own the schemas "
              f"{CORE} and {REPORTING} and the database {owner_url.database})")
    return done
