"""Test harness: a real PostgreSQL 15 (pytest-postgresql) with pg_stat_statements, pg_cron,
hypopg, pgvector and plpython3u, and pg_architect installed from the package under test.

Tests read like DBA sessions: they run statements, call ``arch.*`` functions and look at the
views.  Every test that touches the database leaves no state behind (see ``clean_state``).
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile

import psycopg
import pytest
from pytest_postgresql import factories

PG_BIN = os.environ.get("PGA_PG_BIN", "/usr/lib/postgresql/15/bin")
TEST_DB = "pga_test"
SOCKET_DIR = tempfile.mkdtemp(prefix="pga-test-sock-")

postgresql_proc = factories.postgresql_proc(
    executable=f"{PG_BIN}/pg_ctl",
    port=None,
    unixsocketdir=SOCKET_DIR,
    postgres_options=" ".join([
        "-c shared_preload_libraries=pg_stat_statements,pg_cron",
        f"-c cron.database_name={TEST_DB}",
        "-c pg_stat_statements.track=top",
        "-c pg_stat_statements.max=5000",
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off",
        "-c shared_buffers=128MB -c max_connections=50",
        "-c lc_messages=C",
    ]),
)


def _dsn(proc, dbname: str) -> str:
    return f"host={proc.unixsocketdir} port={proc.port} user={proc.user} dbname={dbname}"


@pytest.fixture(scope="session")
def pg_server(postgresql_proc):
    """The running test server; returns a function dbname -> DSN."""
    return lambda dbname=TEST_DB: _dsn(postgresql_proc, dbname)


def create_database(pg_server, name: str) -> str:
    with psycopg.connect(pg_server("postgres"), autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        c.execute(f'CREATE DATABASE "{name}"')
    return pg_server(name)


def drop_database(pg_server, name: str) -> None:
    with psycopg.connect(pg_server("postgres"), autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def dsn(pg_server):
    """The test database: pg_architect installed and the sample application loaded (small)."""
    from pg_architect import sample
    from pg_architect.install import install

    url = create_database(pg_server, TEST_DB)
    with psycopg.connect(url) as conn:
        install(conn)
        conn.commit()
        sample.load_sample_app(conn, events=200_000, users=10_000, orders=60_000)
        conn.commit()
    return url


class Session:
    """A psql-like session: run SQL, collect NOTICEs."""

    def __init__(self, url: str):
        self.conn = psycopg.connect(url, autocommit=True)
        self.notices: list[str] = []
        self.conn.add_notice_handler(lambda d: self.notices.append(d.message_primary))

    def sql(self, query: str, params=None) -> list[tuple]:
        cur = self.conn.execute(query, params)
        return cur.fetchall() if cur.description else []

    def one(self, query: str, params=None):
        rows = self.sql(query, params)
        return rows[0] if rows else None

    def value(self, query: str, params=None):
        row = self.one(query, params)
        return None if row is None else row[0]

    def dicts(self, query: str, params=None) -> list[dict]:
        cur = self.conn.execute(query, params)
        names = [d.name for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]

    def audit(self) -> dict:
        return self.value("SELECT arch.run_audit()")

    def run(self, query: str, params_list, times: int = 1) -> None:
        """Execute a statement with each parameter tuple (the application's workload)."""
        for _ in range(times):
            for params in params_list:
                self.conn.execute(query, params).fetchall()

    def close(self):
        self.conn.close()


# Tables that are configuration or install bookkeeping: never truncated between tests.
KEEP_TABLES = {"migration", "python_env", "settings"}


def reset_state(url: str) -> None:
    """Forget everything tests did to arch (all data tables) and the workload statistics."""
    with psycopg.connect(url, autocommit=True) as c:
        tables = [r[0] for r in c.execute(
            "SELECT format('arch.%%I', relname) FROM pg_class WHERE relnamespace = 'arch'::regnamespace"
            " AND relkind IN ('r', 'p') AND NOT (relname = ANY(%s))", (list(KEEP_TABLES),))]
        if tables:
            c.execute("TRUNCATE " + ", ".join(tables) + " RESTART IDENTITY CASCADE")
        cols = [r[0] for r in c.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = 'arch.settings'::regclass"
            " AND attnum > 0 AND NOT attisdropped AND attname <> 'id'")]
        c.execute("UPDATE arch.settings SET " + ", ".join(f"{col} = DEFAULT" for col in cols))
        c.execute("SELECT hypopg_reset()")
        c.execute("SELECT pg_stat_statements_reset()")


@pytest.fixture
def db(dsn):
    """A DBA's psql session on the test database; state is reset before and after."""
    reset_state(dsn)
    s = Session(dsn)
    yield s
    s.close()
    reset_state(dsn)


@pytest.fixture
def low_thresholds(db):
    """Audit every statement that ran at least once (the seed defaults are 500 ms / 100 calls)."""
    db.sql("UPDATE arch.settings SET min_mean_time_ms = 0, min_calls = 1, min_gain_pct = 10")
    db.sql("UPDATE arch.settings SET embedding_model = 'hashing'")  # the real model: tests/test_embed_model.py
    db.sql("SELECT pg_stat_statements_reset()")
    return db


@pytest.fixture
def sidecar_dsn(dsn):
    """DSN of a login role that is a member of arch_sidecar, as `pg-architect sidecar` should use."""
    with psycopg.connect(dsn, autocommit=True) as su:
        su.execute("CREATE ROLE pga_sidecar LOGIN IN ROLE arch_sidecar")
    yield f"{dsn} user=pga_sidecar"
    with psycopg.connect(dsn, autocommit=True) as su:
        su.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'pga_sidecar'")
        su.execute("DROP OWNED BY pga_sidecar")
        su.execute("DROP ROLE pga_sidecar")


def recommendations(db: Session) -> list[dict]:
    return db.dicts("SELECT * FROM arch.recommendation ORDER BY id")


def ddl_for(db: Session, table: str) -> list[str]:
    return [r["ddl"] for r in recommendations(db) if r["table_name"] == table]


def index_cols(ddl: str) -> str:
    """'CREATE INDEX ... ON public.t USING btree (a, b) ...' -> 'a, b'"""
    m = re.search(r"USING btree \((.*?)\)(?: INCLUDE| WHERE|$)", ddl)
    return m.group(1) if m else ddl


def pg_dump_schema(url: str) -> str:
    out = subprocess.run([f"{PG_BIN}/pg_dump", "--schema-only", "--schema=arch", "-d", url],
                         check=True, capture_output=True, text=True).stdout
    return "\n".join(line for line in out.splitlines()
                     if not line.startswith(("--", "\\restrict", "\\unrestrict")))


class _Rollback(Exception):
    pass


def can_run(dsn: str, role: str, sql: str) -> bool:
    """True if ``sql`` runs for login role ``role`` (then rolled back), False if refused for privileges."""
    with psycopg.connect(f"{dsn} user={role}", autocommit=True) as conn:
        try:
            with conn.transaction():
                conn.execute(sql)
                raise _Rollback
        except _Rollback:
            return True
        except psycopg.errors.InsufficientPrivilege:
            return False
