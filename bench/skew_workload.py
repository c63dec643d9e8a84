"""The skewed workload of bench_advisors.py (``--workload skewed``): where the right indexes are
expression and partial indexes that only the literal values reveal.

Schema ``bench_skew`` (primary keys only), filled server-side with a fixed seed:

- ``accounts``  (--rows / 6): mixed-case e-mail addresses (look-ups need ``lower(email)``), a
  skewed ``plan`` ('free' ~90 %, 'pro' ~9 %, 'enterprise' ~1 %);
- ``tickets``   (--rows / 2): ``status`` 'closed' ~97 %, 'open' ~2.5 %, 'pending' ~0.5 %;
- ``events``    (--rows): ``kind`` skewed like the demo's behaviour log (``floor(10 * random()^3)``:
  'view' ~46 %, 'refund' ~2 %), a jsonb ``payload`` with the keys ``order_id`` (purchases only),
  ``sku`` and ``campaign`` (skewed).

The statements (``ITEMS``) are run with literal values; pg_stat_statements normalises them
(``payload->>$1 = $2``, ``status = $1``), so an advisor that reads only the normalised text cannot
see that ``status`` is always 'pending' or which JSON key is looked up.  What a DBA would create:
``events ((payload->>'order_id'))``, ``tickets (created_at) WHERE status = 'pending'``,
``tickets (account_id) WHERE status = 'open'``, ``accounts (lower(email))``,
``events (account_id, created_at)``, ``events (created_at) WHERE kind = 'refund'`` (or on kind).
"""

from __future__ import annotations

import random
import time

from advisor_metrics import Item

SCHEMA = "bench_skew"
TABLES = ("accounts", "tickets", "events")

KINDS = ("view", "click", "search", "add_to_cart", "purchase", "login", "share", "review",
         "refund", "error")
CAMPAIGNS = tuple(f"c{i:02d}" for i in range(40))


def _marker(rows: int) -> str:
    return f"bench_skew rows={rows} v1"


def ensure_skew(conn, rows: int, reload: bool = False, log=print) -> bool:
    """Create and fill schema bench_skew unless the same size is there. True if loaded now."""
    marker = _marker(rows)
    have = conn.execute(
        "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = %s", (SCHEMA,)
    ).fetchone()
    if have and have[0] == marker and not reload:
        log(f"reusing schema {SCHEMA} ({marker})")
        return False
    if have and have[0] and not have[0].startswith("bench_skew "):
        from bench_audit import BenchError

        raise BenchError(f"schema {SCHEMA} exists and was not made by this bench")
    t0 = time.perf_counter()
    n_acc, n_tix = max(rows // 6, 100), max(rows // 2, 100)
    kinds = "ARRAY[" + ",".join(f"'{k}'" for k in KINDS) + "]"
    camps = "ARRAY[" + ",".join(f"'{c}'" for c in CAMPAIGNS) + "]"
    conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    conn.execute(f"CREATE SCHEMA {SCHEMA}")
    conn.execute("SELECT setseed(0.42)")
    conn.execute(f"""
        CREATE TABLE {SCHEMA}.accounts (
            id bigint NOT NULL, email text NOT NULL, country char(2) NOT NULL,
            plan text NOT NULL, created_at timestamptz NOT NULL)""")
    conn.execute(f"""
        INSERT INTO {SCHEMA}.accounts
        SELECT i,
               CASE i % 3 WHEN 0 THEN 'User' || i || '@Example.com'
                          WHEN 1 THEN 'user' || i || '@example.com'
                          ELSE 'USER' || i || '@EXAMPLE.COM' END,
               (ARRAY['US','DE','GB','FR','IN','BR','JP','CA'])[1 + floor(8 * random() ^ 2)::int],
               CASE WHEN random() < 0.90 THEN 'free' WHEN random() < 0.9 THEN 'pro' ELSE 'enterprise' END,
               now() - random() * interval '3 years'
        FROM generate_series(1, {n_acc}) AS i""")
    conn.execute(f"""
        CREATE TABLE {SCHEMA}.tickets (
            id bigint NOT NULL, account_id bigint NOT NULL, status text NOT NULL,
            priority integer NOT NULL, created_at timestamptz NOT NULL)""")
    conn.execute(f"""
        INSERT INTO {SCHEMA}.tickets
        SELECT i, 1 + floor(random() * {n_acc})::bigint,
               (CASE WHEN r < 0.97 THEN 'closed' WHEN r < 0.995 THEN 'open' ELSE 'pending' END),
               1 + floor(5 * random())::int,
               now() - random() * interval '2 years'
        FROM (SELECT i, random() AS r FROM generate_series(1, {n_tix}) AS i) s""")
    conn.execute(f"""
        CREATE TABLE {SCHEMA}.events (
            id bigint NOT NULL, account_id bigint NOT NULL, kind text NOT NULL,
            created_at timestamptz NOT NULL, payload jsonb)""")
    conn.execute(f"""
        INSERT INTO {SCHEMA}.events
        SELECT i, a, k, now() - random() * interval '365 days',
               jsonb_strip_nulls(jsonb_build_object(
                   'order_id', CASE WHEN k = 'purchase' THEN (100000 + i)::text END,
                   'sku', 'SKU-' || (1 + floor(500 * random() ^ 2)::int),
                   'campaign', ({camps})[1 + floor(40 * random() ^ 3)::int]))
        FROM (SELECT i, 1 + floor(random() * {n_acc})::bigint AS a,
                     ({kinds})[1 + floor(10 * random() ^ 3)::int] AS k
              FROM generate_series(1, {rows}) AS i) s""")
    for t in TABLES:
        conn.execute(f"ALTER TABLE {SCHEMA}.{t} ADD PRIMARY KEY (id)")
        conn.execute(f"VACUUM (ANALYZE) {SCHEMA}.{t}")
    conn.execute(f"COMMENT ON SCHEMA {SCHEMA} IS '{marker}'")
    log(f"loaded {SCHEMA}: {n_acc} accounts, {n_tix} tickets, {rows} events in "
        f"{time.perf_counter() - t0:.1f}s")
    return True


def skew_items(conn, seed: int = 5) -> list[Item]:
    """The workload: statement shapes with literal values drawn from the data (fixed seed)."""
    rng = random.Random(seed)
    n_acc = conn.execute(f"SELECT max(id) FROM {SCHEMA}.accounts").fetchone()[0]
    orders = [r[0] for r in conn.execute(
        f"SELECT payload->>'order_id' FROM {SCHEMA}.events WHERE kind = 'purchase' ORDER BY id LIMIT 2000"
    ).fetchall()]
    open_accounts = [r[0] for r in conn.execute(
        f"SELECT DISTINCT account_id FROM {SCHEMA}.tickets WHERE status = 'open' ORDER BY 1 LIMIT 500"
    ).fetchall()]
    items: list[Item] = []

    def add(shape: str, variants: list[str], executions: int) -> None:
        for i, sql in enumerate(variants):
            items.append(Item(key=f"{shape}.{i + 1}", sql=sql, executions=executions))

    # JSON key in a literal: payload->>'order_id' (normalised to payload->>$1 = $2)
    add("order_by_id", [
        f"SELECT id, account_id, created_at FROM {SCHEMA}.events WHERE payload->>'order_id' = '{o}'"
        for o in rng.sample(orders, 6)], 3)
    # a JSON key and a skewed campaign, recent rows
    add("campaign_recent", [
        f"SELECT count(*) FROM {SCHEMA}.events WHERE payload->>'campaign' = '{c}' "
        f"AND created_at >= now() - interval '7 days'" for c in ("c05", "c17", "c33")], 2)
    # constant status: always 'pending' (a partial index), newest first
    add("pending_queue", [
        f"SELECT id, account_id, created_at FROM {SCHEMA}.tickets WHERE status = 'pending' "
        f"ORDER BY created_at LIMIT 50"], 8)
    # constant 'open' with a varying account
    add("open_by_account", [
        f"SELECT id, priority FROM {SCHEMA}.tickets WHERE status = 'open' AND account_id = {a}"
        for a in rng.sample(open_accounts, 6)], 2)
    # mixed-case e-mail: lower(email)
    add("login", [
        f"SELECT id, plan FROM {SCHEMA}.accounts WHERE lower(email) = 'user{a}@example.com'"
        for a in rng.sample(range(1, n_acc + 1), 6)], 3)
    # an account's latest events
    add("account_feed", [
        f"SELECT id, kind, created_at FROM {SCHEMA}.events WHERE account_id = {a} "
        f"ORDER BY created_at DESC LIMIT 20" for a in rng.sample(range(1, n_acc + 1), 6)], 2)
    # a rare kind (constant)
    add("refunds_today", [
        f"SELECT count(*), max(created_at) FROM {SCHEMA}.events WHERE kind = 'refund' "
        f"AND created_at >= now() - interval '1 day'"], 6)
    # a join on a rare plan and the non-closed tickets
    add("enterprise_open", [
        f"SELECT a.id, count(*) FROM {SCHEMA}.accounts a JOIN {SCHEMA}.tickets t ON t.account_id = a.id "
        f"WHERE a.plan = 'enterprise' AND t.status = 'open' GROUP BY a.id ORDER BY 2 DESC LIMIT 10"], 3)
    return items
