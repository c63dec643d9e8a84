"""The demo's sample application: a small web shop with a behaviour log.

Used by the ``pg-architect demo`` command, by the tests and by the benches.  It loads three
tables that carry **only primary keys** -- every other index is for the advisor to find -- and
runs a workload of realistic statement shapes against them so that ``pg_stat_statements`` has
something to show.

All loading happens server-side with ``INSERT ... SELECT generate_series(...)`` (about 1M
events in well under a minute on a small machine).  Statements of the workload are executed
with real query parameters (``%s`` -> ``$n``), so ``pg_stat_statements`` records one entry
per shape; integers are always sent as ``bigint`` so that parameter types do not split a
shape into several entries.

This module is only used from psycopg (CLI, tests, benches), never inside PL/Python.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "COUNTRIES",
    "EVENT_TYPES",
    "TABLES",
    "WorkloadStatement",
    "load_sample_app",
    "run_workload",
    "sample_app_loaded",
    "workload_statements",
]

TABLES = ("users", "orders", "behavior_log")

#: Event types of the behaviour log, most frequent first.  Generated with a skew of
#: ``floor(20 * random()^3)``: 'page_view' is ~37 % of the rows, the last ones ~1 % each.
EVENT_TYPES = (
    "page_view", "click", "scroll", "search", "view_item", "add_to_cart", "remove_from_cart",
    "login", "logout", "signup", "begin_checkout", "add_payment_info", "purchase", "refund",
    "share", "review", "wishlist_add", "newsletter_signup", "support_chat", "error",
)

#: Countries of users, most frequent first (skewed with ``random()^2``).
COUNTRIES = (
    "US", "DE", "GB", "FR", "IN", "BR", "JP", "CA", "ES", "IT",
    "NL", "PL", "SE", "MX", "AU", "KR", "TR", "CH", "BE", "NO",
)

PAGES = (
    "/", "/search", "/cart", "/checkout", "/account", "/help", "/blog", "/deals",
    "/category/books", "/category/shoes", "/category/garden", "/category/toys",
    "/product/1", "/product/2", "/product/3", "/product/4", "/product/5", "/login",
    "/signup", "/orders",
)

#: Average number of events per session (``session_no = id / EVENTS_PER_SESSION``).
EVENTS_PER_SESSION = 12

_CHUNK = 250_000

ProgressFn = Callable[[int, int], Any]


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------

def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _prefix(schema: str) -> str:
    """Qualifier put before table names: nothing for ``public`` so statements read naturally."""
    return "" if schema == "public" else _ident(schema) + "."


def _sql_array(values) -> str:
    return "ARRAY[" + ",".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


class _Tx:
    """Run statements on ``conn`` whatever its autocommit mode; commit only what we opened."""

    def __init__(self, conn):
        self.conn = conn
        self.owned = not conn.autocommit and _idle(conn)

    def commit(self):
        if not self.conn.autocommit and self.owned:
            self.conn.commit()


def _idle(conn) -> bool:
    from psycopg.pq import TransactionStatus

    return conn.info.transaction_status == TransactionStatus.IDLE


def _int8(v):
    from psycopg.types.numeric import Int8

    if isinstance(v, bool) or not isinstance(v, int):
        return v
    return Int8(v)


# ---------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------

def _ddl(p: str) -> list[str]:
    return [
        f"""CREATE TABLE {p}users (
            id          bigint NOT NULL,
            email       text NOT NULL,
            name        text NOT NULL,
            country     char(2) NOT NULL,
            created_at  timestamptz NOT NULL,
            status      text NOT NULL,
            is_active   boolean NOT NULL
        )""",
        f"""CREATE TABLE {p}orders (
            id          bigint NOT NULL,
            user_id     bigint NOT NULL,
            status      text NOT NULL,
            total       numeric(10,2) NOT NULL,
            created_at  timestamptz NOT NULL,
            shipped_at  timestamptz
        )""",
        f"""CREATE TABLE {p}behavior_log (
            id          bigint NOT NULL,
            user_id     bigint NOT NULL,
            event_type  text NOT NULL,
            session_id  uuid NOT NULL,
            page        text NOT NULL,
            created_at  timestamptz NOT NULL,
            duration_ms integer NOT NULL,
            payload     jsonb
        )""",
    ]


def _users_insert(p: str, lo: int, hi: int, n: int) -> str:
    # Mixed-case e-mail addresses: look-ups only make sense with lower(email).
    return f"""
        INSERT INTO {p}users (id, email, name, country, created_at, status, is_active)
        SELECT i,
               CASE i % 4
                   WHEN 0 THEN 'User' || i || '@Example.com'
                   WHEN 1 THEN 'user' || i || '@example.com'
                   WHEN 2 THEN 'USER' || i || '@MAIL.example.org'
                   ELSE 'user.' || i || '@Shop.Example.net'
               END,
               initcap(({_sql_array(('anna', 'ben', 'chloe', 'david', 'emma', 'felix', 'greta',
                                     'hugo', 'ida', 'jonas', 'karla', 'leo', 'mia', 'noah',
                                     'olga', 'paul'))})[1 + (i % 16)])
                   || ' ' || initcap(({_sql_array(('smith', 'muller', 'garcia', 'rossi',
                                                    'dubois', 'kowalski', 'silva', 'tanaka',
                                                    'nguyen', 'jensen', 'novak', 'ivanova'))})
                                     [1 + ((i / 16) % 12)]),
               ({_sql_array(COUNTRIES)})[1 + floor(20 * random() ^ 2)::int]::char(2),
               now() - interval '3 years' * (1 - i::float8 / {n}) - random() * interval '1 day',
               CASE WHEN r < 0.90 THEN 'active' WHEN r < 0.97 THEN 'suspended' ELSE 'deleted' END,
               r < 0.90
        FROM (SELECT i, random() AS r FROM generate_series({lo}, {hi}) AS i) s
    """


def _orders_insert(p: str, lo: int, hi: int, n: int, n_users: int) -> str:
    # status: shipped 72 %, paid 20 %, cancelled 5 %, pending 3 %;
    # created_at over the last two years, growing with id (orders are appended).
    return f"""
        INSERT INTO {p}orders (id, user_id, status, total, created_at, shipped_at)
        SELECT i, user_id, status, total, created_at,
               CASE WHEN status = 'shipped'
                    THEN created_at + interval '6 hours' + random() * interval '5 days' END
        FROM (
            SELECT i,
                   1 + floor(random() * {n_users})::bigint AS user_id,
                   CASE WHEN r < 0.72 THEN 'shipped' WHEN r < 0.92 THEN 'paid'
                        WHEN r < 0.97 THEN 'cancelled' ELSE 'pending' END AS status,
                   round((5 + random() ^ 2 * 495)::numeric, 2) AS total,
                   now() - interval '730 days' * (1 - i::float8 / {n})
                         - random() * interval '2 hours' AS created_at
            FROM (SELECT i, random() AS r FROM generate_series({lo}, {hi}) AS i) g
        ) s
    """


def _events_insert(p: str, lo: int, hi: int, n_total: int, n_users: int) -> str:
    # An append-only log: created_at grows with id (plus a little jitter) over the last
    # 365 days.  Events come in sessions of ~EVENTS_PER_SESSION consecutive rows; the
    # session id and its user are derived from the session number, so a session's events
    # share a user and the workload can compute existing session ids.
    return f"""
        INSERT INTO {p}behavior_log
            (id, user_id, event_type, session_id, page, created_at, duration_ms, payload)
        SELECT i,
               1 + (abs(hashint8(i / {EVENTS_PER_SESSION})::bigint) % {n_users}),
               ({_sql_array(EVENT_TYPES)})[1 + floor(20 * random() ^ 3)::int],
               md5('s' || (i / {EVENTS_PER_SESSION}))::uuid,
               ({_sql_array(PAGES)})[1 + floor(20 * random() ^ 2)::int],
               now() - interval '365 days' * (1 - i::float8 / {n_total})
                     - random() * interval '5 minutes',
               (random() ^ 2 * 30000)::int,
               jsonb_build_object('v', 1 + i % 3,
                                  'ab', CASE WHEN i % 2 = 0 THEN 'a' ELSE 'b' END,
                                  'ref', ({_sql_array(('direct', 'search', 'ads', 'email',
                                                       'social'))})[1 + (i % 5)::int])
        FROM generate_series({lo}, {hi}) AS i
    """


def load_sample_app(
    conn,
    *,
    events: int = 1_000_000,
    users: int = 20_000,
    orders: int = 200_000,
    schema: str = "public",
    progress: ProgressFn | None = None,
    seed: float = 0.42,
) -> dict:
    """(Re)create and fill ``users``, ``orders`` and ``behavior_log`` in ``schema``.

    Existing tables of those names in ``schema`` are dropped.  Only primary keys are created.
    The load is committed (whatever ``conn.autocommit`` is; a transaction the caller had open
    is committed with it), then the tables are vacuumed and analysed.  ``progress(done, total)`` is
    called with row counts as the load advances.
    Returns ``{"users": n, "orders": n, "behavior_log": n}``.
    """
    if users < 1 or orders < 0 or events < 0:
        raise ValueError("users must be >= 1, orders and events >= 0")
    p = _prefix(schema)
    total = users + orders + events
    done = 0
    if progress:
        progress(0, total)

    def step(n):
        nonlocal done
        done += n
        if progress:
            progress(done, total)

    with conn.cursor() as cur:
        if schema != "public":
            cur.execute(f"CREATE SCHEMA IF NOT EXISTS {_ident(schema)}")
        for t in ("behavior_log", "orders", "users"):
            cur.execute(f"DROP TABLE IF EXISTS {p}{t}")
        for ddl in _ddl(p):
            cur.execute(ddl)
        cur.execute("SELECT setseed(%s)", (seed,))

        def chunks(n):
            lo = 1
            while lo <= n:
                hi = min(n, lo + _CHUNK - 1)
                yield lo, hi
                lo = hi + 1

        for lo, hi in chunks(users):
            cur.execute(_users_insert(p, lo, hi, users))
            step(hi - lo + 1)
        for lo, hi in chunks(orders):
            cur.execute(_orders_insert(p, lo, hi, orders, users))
            step(hi - lo + 1)
        for lo, hi in chunks(events):
            cur.execute(_events_insert(p, lo, hi, events, users))
            step(hi - lo + 1)
        # Primary keys after the load: building an index once is much faster than
        # maintaining it row by row.
        for t in TABLES:
            cur.execute(f"ALTER TABLE {p}{t} ADD PRIMARY KEY (id)")
    if not conn.autocommit:
        conn.commit()  # always: the load must persist (this also commits what the caller had open)
    _vacuum_analyze(conn, [f"{p}{t}" for t in TABLES])
    return {"users": users, "orders": orders, "behavior_log": events}


def _vacuum_analyze(conn, tables: list[str]) -> None:
    """VACUUM ANALYZE (needs autocommit); fall back to ANALYZE inside a transaction."""
    if conn.autocommit or _idle(conn):
        was = conn.autocommit
        conn.autocommit = True
        try:
            for t in tables:
                conn.execute(f"VACUUM (ANALYZE) {t}")
        finally:
            conn.autocommit = was
    else:  # the caller has a transaction open: ANALYZE is allowed in it
        for t in tables:
            conn.execute(f"ANALYZE {t}")


def sample_app_loaded(conn, schema: str = "public", events: int | None = None) -> bool:
    """True when the three tables exist in ``schema`` (and behavior_log has >= ``events`` rows)."""
    tx = _Tx(conn)
    try:
        return _loaded(conn, schema, events)
    finally:
        tx.commit()


def _loaded(conn, schema: str, events: int | None) -> bool:
    with conn.cursor() as cur:
        cur.execute(
            """SELECT count(*) FROM pg_catalog.pg_class c
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = %s AND c.relname = ANY(%s) AND c.relkind IN ('r', 'p')""",
            (schema, list(TABLES)),
        )
        if cur.fetchone()[0] != len(TABLES):
            return False
        p = _prefix(schema)
        cur.execute(f"SELECT EXISTS (SELECT 1 FROM {p}users)")
        if not cur.fetchone()[0]:
            return False
        if events:
            cur.execute(
                f"SELECT count(*) FROM (SELECT 1 FROM {p}behavior_log LIMIT %s) s",
                (_int8(events),),
            )
            if cur.fetchone()[0] < events:
                return False
    return True


# ---------------------------------------------------------------------------------------
# workload
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class WorkloadContext:
    """What parameter generators know about the loaded data."""

    n_users: int
    n_orders: int
    n_events: int
    now: _dt.datetime


@dataclass(frozen=True)
class WorkloadStatement:
    """One statement shape of the sample workload.

    ``template`` is the SQL with ``%s`` placeholders and ``{p}`` before each table name
    (the schema qualifier); ``sql`` is the text for schema ``public``.  ``params(rng, ctx)``
    returns the parameters of one execution.  ``weight`` multiplies ``rounds``: cheap
    statements run more often than full scans of the 1M-row log.  ``hint`` says which index
    the advisor is expected to find (documentation for humans and tests, not a contract).
    """

    name: str
    template: str
    params: Callable[[random.Random, WorkloadContext], tuple] = field(repr=False)
    weight: int = 1
    table: str = ""
    hint: str = ""

    def sql_for(self, schema: str = "public") -> str:
        return self.template.replace("{p}", _prefix(schema))

    @property
    def sql(self) -> str:
        return self.sql_for("public")


def _user(rng: random.Random, ctx: WorkloadContext) -> int:
    # a few heavy users get a good share of the look-ups
    if rng.random() < 0.3:
        return rng.randint(1, max(1, ctx.n_users // 100))
    return rng.randint(1, ctx.n_users)


def _ago(ctx: WorkloadContext, **kw) -> _dt.datetime:
    return ctx.now - _dt.timedelta(**kw)


def _email(rng: random.Random, ctx: WorkloadContext) -> str:
    i = rng.randint(1, ctx.n_users)
    base = {0: f"user{i}@example.com", 1: f"user{i}@example.com",
            2: f"user{i}@mail.example.org", 3: f"user.{i}@shop.example.net"}[i % 4]
    # callers type addresses in any case
    return "".join(ch.upper() if rng.random() < 0.2 else ch for ch in base)


def _session(rng: random.Random, ctx: WorkloadContext) -> uuid.UUID:
    n = rng.randint(1, max(1, ctx.n_events // EVENTS_PER_SESSION))
    return uuid.UUID(hashlib.md5(f"s{n}".encode()).hexdigest())


_RARE_EVENTS = EVENT_TYPES[8:]


def workload_statements() -> list[WorkloadStatement]:
    """The statement shapes of the sample workload (plain SELECTs only)."""
    S = WorkloadStatement
    return [
        S("events_by_user",
          "SELECT id, event_type, page, created_at FROM {p}behavior_log WHERE user_id = %s",
          lambda r, c: (_user(r, c),), weight=1, table="behavior_log",
          hint="behavior_log (user_id)"),
        S("events_last_hours",
          "SELECT id, user_id, event_type, page, created_at FROM {p}behavior_log "
          "WHERE created_at >= now() - %s ORDER BY created_at DESC",
          lambda r, c: (_dt.timedelta(hours=r.randint(1, 6)),), weight=1, table="behavior_log",
          hint="behavior_log (created_at)"),
        S("user_recent_events",
          "SELECT id, event_type, page, created_at FROM {p}behavior_log "
          "WHERE user_id = %s AND created_at >= %s ORDER BY created_at DESC LIMIT 20",
          lambda r, c: (_user(r, c), _ago(c, days=r.randint(7, 90))), weight=1,
          table="behavior_log", hint="behavior_log (user_id, created_at)"),
        S("event_type_window",
          "SELECT count(*) AS events, avg(duration_ms) AS avg_ms FROM {p}behavior_log "
          "WHERE event_type = %s AND created_at BETWEEN %s AND %s",
          lambda r, c: (lambda d: (r.choice(_RARE_EVENTS), _ago(c, days=d + r.randint(1, 7)),
                                   _ago(c, days=d)))(r.randint(0, 300)),
          weight=1, table="behavior_log", hint="behavior_log (event_type, created_at)"),
        S("event_type_counts",
          "SELECT event_type, count(*) AS events FROM {p}behavior_log "
          "WHERE created_at >= %s AND created_at < %s GROUP BY event_type ORDER BY events DESC",
          lambda r, c: (lambda d: (_ago(c, days=d + 1), _ago(c, days=d)))(r.randint(0, 360)),
          weight=1, table="behavior_log", hint="behavior_log (created_at)"),
        S("top_users_last_day",
          "SELECT user_id, count(*) AS events FROM {p}behavior_log "
          "WHERE created_at >= now() - interval '1 day' "
          "GROUP BY user_id ORDER BY events DESC LIMIT %s",
          lambda r, c: (r.choice((10, 20, 50)),), weight=1, table="behavior_log",
          hint="behavior_log (created_at) INCLUDE (user_id)"),
        S("user_sessions",
          "SELECT b.session_id, min(b.created_at) AS started, max(b.created_at) AS ended, "
          "count(*) AS events, u.email FROM {p}behavior_log b JOIN {p}users u ON u.id = b.user_id "
          "WHERE u.id = %s GROUP BY b.session_id, u.email ORDER BY started DESC LIMIT 10",
          lambda r, c: (_user(r, c),), weight=1, table="behavior_log",
          hint="behavior_log (user_id)"),
        S("events_by_session",
          "SELECT id, event_type, page, created_at, duration_ms FROM {p}behavior_log "
          "WHERE session_id = %s ORDER BY created_at",
          lambda r, c: (_session(r, c),), weight=1, table="behavior_log",
          hint="behavior_log (session_id)"),
        S("orders_by_user",
          "SELECT id, status, total, created_at FROM {p}orders "
          "WHERE user_id = %s ORDER BY created_at DESC LIMIT %s",
          lambda r, c: (_user(r, c), r.choice((5, 10, 20))), weight=3, table="orders",
          hint="orders (user_id, created_at)"),
        S("pending_orders",
          "SELECT id, user_id, total, created_at FROM {p}orders "
          "WHERE status = 'pending' ORDER BY created_at LIMIT %s",
          lambda r, c: (r.choice((50, 100, 200)),), weight=3, table="orders",
          hint="orders (created_at) WHERE status = 'pending'"),
        S("unshipped_old_orders",
          "SELECT id, user_id, status, total, created_at FROM {p}orders "
          "WHERE shipped_at IS NULL AND created_at < %s ORDER BY created_at",
          lambda r, c: (_ago(c, days=r.randint(660, 725)),), weight=3, table="orders",
          hint="orders (created_at) WHERE shipped_at IS NULL"),
        S("daily_revenue",
          "SELECT date_trunc('day', created_at) AS day, sum(total) AS revenue, count(*) AS orders "
          "FROM {p}orders WHERE created_at >= %s AND created_at < %s AND status <> 'cancelled' "
          "GROUP BY 1 ORDER BY 1",
          lambda r, c: (lambda d, w: (_ago(c, days=d + w), _ago(c, days=d)))(
              r.randint(0, 600), r.randint(7, 31)),
          weight=3, table="orders", hint="orders (created_at)"),
        S("country_orders",
          "SELECT u.country, count(*) AS orders, sum(o.total) AS revenue "
          "FROM {p}orders o JOIN {p}users u ON u.id = o.user_id "
          "WHERE u.country = %s AND o.created_at >= %s AND o.created_at < %s GROUP BY u.country",
          lambda r, c: (lambda d: (r.choice(COUNTRIES[5:]), _ago(c, days=d + r.randint(1, 7)),
                                   _ago(c, days=d)))(r.randint(0, 700)),
          weight=3, table="orders", hint="orders (created_at), users (country)"),
        S("user_by_email",
          "SELECT id, name, country, status FROM {p}users WHERE lower(email) = lower(%s)",
          lambda r, c: (_email(r, c),), weight=5, table="users",
          hint="users (lower(email))"),
        S("new_users",
          "SELECT id, email, country, created_at FROM {p}users "
          "WHERE created_at >= %s AND created_at < %s ORDER BY id LIMIT 50",
          lambda r, c: (lambda d: (_ago(c, days=d + r.randint(1, 3)), _ago(c, days=d)))(
              r.randint(0, 1000)),
          weight=5, table="users", hint="users (created_at)"),
    ]


def _context(conn, schema: str) -> WorkloadContext:
    p = _prefix(schema)
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT (SELECT coalesce(max(id), 0) FROM {p}users), "
            f"(SELECT coalesce(max(id), 0) FROM {p}orders), "
            f"(SELECT coalesce(max(id), 0) FROM {p}behavior_log), now()")
        u, o, e, now = cur.fetchone()
    if not u:
        raise RuntimeError(f"sample app not loaded in schema {schema!r}: run load_sample_app() first")
    return WorkloadContext(n_users=u, n_orders=o, n_events=e, now=now)


def run_workload(
    conn,
    *,
    rounds: int = 20,
    seed: int = 42,
    progress: ProgressFn | None = None,
    schema: str = "public",
    statements: list[WorkloadStatement] | None = None,
) -> dict:
    """Execute every statement shape ``rounds * weight`` times with random parameters.

    Executions are interleaved (shuffled) like a real application's.  Returns
    ``{name: calls}``.  If ``conn`` is not in autocommit mode, the transaction opened here is
    committed at the end (there is nothing to commit: the workload only reads).
    """
    stmts = statements if statements is not None else workload_statements()
    rng = random.Random(seed)
    tx = _Tx(conn)
    ctx = _context(conn, schema)
    plan = [s for s in stmts for _ in range(max(0, rounds) * s.weight)]
    rng.shuffle(plan)
    calls = {s.name: 0 for s in stmts}
    total = len(plan)
    if progress:
        progress(0, total)
    texts = {s.name: s.sql_for(schema) for s in stmts}
    with conn.cursor() as cur:
        for i, s in enumerate(plan, 1):
            params = tuple(_int8(v) for v in s.params(rng, ctx))
            cur.execute(texts[s.name], params)
            cur.fetchall()
            calls[s.name] += 1
            if progress:
                progress(i, total)
    tx.commit()
    return calls


if __name__ == "__main__":  # pragma: no cover - manual check: python -m pg_architect.sample DSN
    import sys

    import psycopg

    dsn = sys.argv[1] if len(sys.argv) > 1 else ""
    with psycopg.connect(dsn, autocommit=True) as c:
        t0 = time.monotonic()
        if not sample_app_loaded(c, events=1_000_000):
            print(load_sample_app(c), f"loaded in {time.monotonic() - t0:.1f}s")
        t0 = time.monotonic()
        print(run_workload(c), f"workload in {time.monotonic() - t0:.1f}s")
