"""Least-privilege access (`qa-pipeline grants`) with the login a production pipeline has: the
owner of its own database, no CREATEROLE, no superuser.

- the plain command fails with one line that names the missing privilege and both ways out;
- `--print-sql` changes nothing, and its output applied by an administrator works;
- `--admin-url` creates the roles and logins with the administrator's connection while the
  pipeline's login keeps owning the schemas and issues the grants;
- the analyst role then reads `qa_reporting` and not `qa_core`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import subprocess
import sys
import uuid
from datetime import date

import pytest
import sqlalchemy as sa

from qa_pipeline.resources.access import scram_verifier
from qa_pipeline.schemas import warehouse as wh


def test_the_scram_verifier_answers_the_rfc_7677_exchange():
    """RFC 7677 §3: user "user", password "pencil", salt W22ZaJ0SNY7soEsUEjb6gQ==, 4096 iterations.
    The verifier's ServerKey must sign the exchange's AuthMessage as the RFC's server does (v=), and
    the RFC client's proof (p=) must prove the verifier's StoredKey."""
    salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
    verifier = scram_verifier("pencil", salt=salt)
    head, keys = verifier.split("$", 1)[1].split("$")
    assert head == "4096:W22ZaJ0SNY7soEsUEjb6gQ==" and verifier.startswith("SCRAM-SHA-256$")
    stored_key, server_key = (base64.b64decode(k) for k in keys.split(":"))
    nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
    auth = (f"n=user,r=rOprNGfwEbeRWgbNEkqO,r={nonce},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r={nonce}").encode()
    server_signature = hmac.new(server_key, auth, "sha256").digest()
    assert base64.b64encode(server_signature).decode() == "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    proof = base64.b64decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
    client_key = bytes(a ^ b for a, b in zip(proof, hmac.new(stored_key, auth, "sha256").digest(), strict=True))
    assert hashlib.sha256(client_key).digest() == stored_key
    assert scram_verifier("pencil") != scram_verifier("pencil")  # a fresh salt each time


def _cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "qa_pipeline.cli", "grants", *args], env=env, capture_output=True,
                          text=True, timeout=120)


def _can(url: sa.URL, statement: str) -> bool:
    """Whether the login may run `statement` (False on "permission denied", any other error raises)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(statement)
            return True
    except sa.exc.ProgrammingError as exc:
        if "permission denied" not in str(exc.orig):
            raise
        return False
    finally:
        engine.dispose()


def _roles(admin: sa.Engine, names: list[str]) -> set[str]:
    with admin.connect() as conn:
        return set(conn.execute(sa.text("SELECT rolname FROM pg_roles WHERE rolname = ANY(:n)"), {"n": names}).scalars())


@pytest.mark.postgres
def test_grants_with_a_non_superuser_owner_login():
    from qa_pipeline_tests.conftest import _postgres_admin_url

    admin_url = sa.make_url(_postgres_admin_url())
    tag = uuid.uuid4().hex[:8]
    owner, database = f"qa_owner_{tag}", f"qa_own_{tag}"
    owner_password = "owner-pw-1"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    first = {"QA_ANALYST_ROLE": f"qa_analyst_{tag}", "QA_ENGINEER_ROLE": f"qa_engineer_{tag}",
             "QA_ANALYST_LOGIN": f"alice_{tag}", "QA_ANALYST_PASSWORD": "s3cret-'quote\"$x",
             "QA_ENGINEER_LOGIN": f"erin_{tag}", "QA_ENGINEER_PASSWORD": "an0ther"}
    second = {"QA_ANALYST_ROLE": f"qa_analyst2_{tag}", "QA_ENGINEER_ROLE": f"qa_engineer2_{tag}",
              "QA_ANALYST_LOGIN": f"bob_{tag}", "QA_ANALYST_PASSWORD": "b0b-pw", "QA_ENGINEER_LOGIN": f"eve_{tag}",
              "QA_ENGINEER_PASSWORD": "eve-pw"}
    created = [owner] + [v for env in (first, second) for k, v in env.items() if k.endswith(("_ROLE", "_LOGIN"))]
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE ROLE \"{owner}\" LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB "
                             f"PASSWORD '{owner_password}'")
        conn.exec_driver_sql(f'CREATE DATABASE "{database}" OWNER "{owner}"')
    owner_url = admin_url.set(username=owner, password=owner_password, database=database)
    admin_here = admin_url.set(database=database)  # the administrator, connected to the warehouse's database
    base = {k: v for k, v in os.environ.items() if not k.startswith(("QA_ANALYST", "QA_ENGINEER", "QA_ADMIN"))}
    base["QA_WAREHOUSE_URL"] = owner_url.render_as_string(hide_password=False)
    try:
        # 1. the plain command with the owner's login: one line, the privilege, both ways out
        plain = _cli({**base, **first})
        assert plain.returncode == 2 and plain.stdout == ""
        lines = plain.stderr.strip().splitlines()
        assert len(lines) == 1, plain.stderr
        assert "CREATEROLE" in lines[0] and "--admin-url" in lines[0] and "QA_ADMIN_URL" in lines[0] \
            and "--print-sql" in lines[0] and owner in lines[0]
        assert "Traceback" not in plain.stderr and "inline_code_block" not in plain.stderr
        assert _roles(admin, created) == {owner}

        # 2. --print-sql: every statement, changes nothing, no password in clear
        printed = _cli({**base, **first}, "--print-sql")
        assert printed.returncode == 0, printed.stderr
        sql = printed.stdout
        assert "s3cret" not in sql and "an0ther" not in sql and "SCRAM-SHA-256$4096:" in sql
        assert sql.index("CREATE ROLE") < sql.index(f'SET ROLE "{owner}"') < sql.index("GRANT USAGE ON SCHEMA")
        assert _roles(admin, created) == {owner}
        looking = sa.create_engine(owner_url)
        with looking.connect() as conn:
            assert not conn.execute(sa.text("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'qa\\_%'")).scalar()
        looking.dispose()

        # ... applied by the administrator, as a DBA would (connected to the warehouse's database)
        dba = sa.create_engine(admin_here, isolation_level="AUTOCOMMIT")
        with dba.connect() as conn:
            conn.connection.driver_connection.execute(sql)
        dba.dispose()
        assert _roles(admin, created) == {owner, *[first[k] for k in first if k.endswith(("_ROLE", "_LOGIN"))]}

        # the pipeline's login creates its tables afterwards (default privileges) and owns everything
        warehouse = sa.create_engine(owner_url)
        with warehouse.begin() as conn:
            for table in (wh.quality_metrics, wh.moderator_quality):
                table.create(conn, checkfirst=True)
            conn.execute(sa.insert(wh.quality_metrics).values(month=date(2026, 1, 1), dimension="overall",
                                                              segment="all", audits=10))
            conn.execute(sa.insert(wh.moderator_quality).values(month=date(2026, 1, 1), moderator_id="MOD-1",
                                                                audits=10))
            owners = set(conn.execute(sa.text(
                "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname IN ('qa_core', 'qa_reporting') "
                "UNION SELECT tableowner FROM pg_tables WHERE schemaname IN ('qa_core', 'qa_reporting')")).scalars())
        warehouse.dispose()
        assert owners == {owner}

        alice = owner_url.set(username=first["QA_ANALYST_LOGIN"], password=first["QA_ANALYST_PASSWORD"])
        erin = owner_url.set(username=first["QA_ENGINEER_LOGIN"], password=first["QA_ENGINEER_PASSWORD"])
        assert _can(alice, "SELECT count(*) FROM qa_reporting.quality_metrics") is True
        assert _can(alice, "SELECT count(*) FROM qa_core.moderator_quality") is False
        assert _can(alice, "DELETE FROM qa_reporting.quality_metrics") is False
        assert _can(erin, "SELECT count(*) FROM qa_core.moderator_quality") is True

        # with the roles in place, the owner's own login re-issues the grants without CREATEROLE
        again = _cli({**base, "QA_ANALYST_ROLE": first["QA_ANALYST_ROLE"], "QA_ENGINEER_ROLE": first["QA_ENGINEER_ROLE"]})
        assert again.returncode == 0, again.stderr

        # 3. --admin-url: the administrator creates roles and logins, the owner issues the grants
        by_admin = _cli({**base, **second}, "--admin-url", admin_url.render_as_string(hide_password=False))
        assert by_admin.returncode == 0, by_admin.stderr
        assert "b0b-pw" not in by_admin.stdout and "PASSWORD ***" in by_admin.stdout
        assert _roles(admin, created) == set(created)
        bob = owner_url.set(username=second["QA_ANALYST_LOGIN"], password=second["QA_ANALYST_PASSWORD"])
        eve = owner_url.set(username=second["QA_ENGINEER_LOGIN"], password=second["QA_ENGINEER_PASSWORD"])
        assert _can(bob, "SELECT count(*) FROM qa_reporting.quality_metrics") is True  # a table made before
        assert _can(bob, "SELECT count(*) FROM qa_core.moderator_quality") is False
        assert _can(eve, "SELECT count(*) FROM qa_core.moderator_quality") is True
        dba = sa.create_engine(admin_here)
        with dba.connect() as conn:  # who granted the analyst role its SELECT: the owner, not the administrator
            grantors = set(conn.execute(sa.text(
                "SELECT DISTINCT pg_get_userbyid(a.grantor) FROM pg_class c, aclexplode(c.relacl) a "
                "WHERE c.relnamespace = 'qa_reporting'::regnamespace AND a.grantee = to_regrole(:g)"),
                {"g": second["QA_ANALYST_ROLE"]}).scalars())
        dba.dispose()
        assert grantors == {owner}
    finally:
        from qa_pipeline.resources.warehouse import dispose_engines

        dispose_engines()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            for role in reversed(created):
                conn.exec_driver_sql(f'DROP ROLE IF EXISTS "{role}"')
        admin.dispose()


def test_a_role_name_cannot_end_the_do_block_it_is_created_in():
    """A name holding the body's dollar-quote tag would end the `DO` body early: the tag is chosen
    so that the name never contains it, and the name stays one quoted identifier and one literal."""
    from qa_pipeline.resources.access import _if_missing

    name = 'x$qa0$; DROP SCHEMA qa_core CASCADE; $qa0$'
    from psycopg import sql

    text = _if_missing(name, sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(name))).as_string(None)
    opening = text.split(" ", 2)[1]  # DO $tag$ …
    assert opening.startswith("$") and opening.endswith("$") and opening not in name
    assert text.endswith(f"END IF; END {opening}") and text.count(opening) == 2
