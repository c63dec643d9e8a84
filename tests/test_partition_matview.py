"""Partitioning, materialized-view and cache advice (issue 12): a DBA session.

Each test plants its own tables (dropped at the end), runs the application's statements so that
pg_stat_statements records them, asks ``arch.advise_partitioning()`` /
``arch.advise_materialized_views()`` and — for the positive cases — runs what was proposed:
the whole partitioning migration plan with psql on a real time-series table, then its
rollback; the materialized view, its refresh and the rewritten statement.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import subprocess
import tempfile

import psycopg
import pytest

from conftest import PG_BIN
from pg_architect.sqltext import quote_literal

EVENTS = """
DROP TABLE IF EXISTS public.pt_events, public.pt_events_partitioned, public.pt_events_unpartitioned CASCADE;
CREATE TABLE public.pt_events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at timestamptz NOT NULL,
    device_id int NOT NULL,
    payload text
);
INSERT INTO public.pt_events (created_at, device_id, payload)
SELECT timestamptz '2025-01-01 00:00+00' + (g * interval '315 seconds'), g % 500, repeat('x', 40) || g
FROM generate_series(1, 100000) g;            -- one row every 5¼ minutes over 365 days
CREATE INDEX pt_events_created_at_idx ON public.pt_events (created_at);
CREATE INDEX pt_events_device_idx ON public.pt_events (device_id);
CREATE VIEW public.pt_events_recent AS SELECT * FROM public.pt_events WHERE created_at > '2025-12-01';
GRANT SELECT ON public.pt_events TO arch_reader;
ANALYZE public.pt_events;
"""
RANGE = "SELECT count(*), max(payload) FROM pt_events WHERE created_at >= %s AND created_at < %s"
PURGE = "DELETE FROM pt_events WHERE created_at < %s"
BY_DEVICE = "SELECT id, created_at FROM pt_events WHERE device_id = %s"
BY_PAYLOAD = "SELECT id FROM pt_events WHERE payload = %s"


def _weeks(n: int):
    start = dt.datetime(2025, 3, 3, tzinfo=dt.UTC)
    return [(start + dt.timedelta(days=7 * i), start + dt.timedelta(days=7 * i + 7)) for i in range(n)]


@pytest.fixture
def events(db):
    db.sql(EVENTS)
    yield db
    db.sql("DROP TABLE IF EXISTS public.pt_events, public.pt_events_partitioned,"
           " public.pt_events_unpartitioned CASCADE")


def _write(db, sql: str, params_list) -> None:
    """Execute a writing statement of the application with each parameter tuple."""
    for params in params_list:
        db.sql(sql, params)


def _psql(dsn: str, script: str) -> str:
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(script)
    try:
        res = subprocess.run([f"{PG_BIN}/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-f", f.name],
                             capture_output=True, text=True)
    finally:
        os.unlink(f.name)
    assert res.returncode == 0, res.stderr
    return res.stdout


def _partitions_scanned(db, sql: str, prefix: str = "pt_events") -> int:
    plan = db.value("EXPLAIN (FORMAT JSON) " + sql)
    plan = plan if isinstance(plan, list) else json.loads(plan)
    found = []

    def walk(node):
        if node.get("Relation Name"):
            found.append(node["Relation Name"])
        for c in node.get("Plans", []) or []:
            walk(c)

    walk(plan[0]["Plan"])
    return len([r for r in found if r.startswith(prefix)])


def test_partitioning_plan_runs_prunes_and_rolls_back(events, dsn):
    db = events
    db.sql("UPDATE arch.settings SET partition_min_table_mb = 1")
    db.sql("SELECT pg_stat_statements_reset()")
    db.run(RANGE, _weeks(12), times=3)
    _write(db, PURGE, [("2024-06-01",)])            # deletes old rows by the key (none that old yet)
    db.run(BY_DEVICE, [(7,)])                    # cheap, does not filter on created_at
    advice = db.dicts("SELECT * FROM arch.advise_partitioning()")
    assert [a["table_name"] for a in advice] == ["public.pt_events"], advice
    a = advice[0]
    assert a["kind"] == "partition" and a["column_name"] == "created_at"
    est = a["estimate"]
    assert est["interval"] == "1 week" and 50 <= est["partitions"] <= 62, est
    assert est["est_gain_pct"] > 50 and est["key_time_share"] >= 0.5
    assert any("PRIMARY KEY pt_events_pkey (id) must include the partition key" in c for c in a["constraint_changes"])
    assert any("view public.pt_events_recent" in c for c in a["constraint_changes"])
    assert [s["query"] for s in a["not_pruned"]] == ["SELECT id, created_at FROM pt_events WHERE device_id = $1"]
    served = {s["query"]: s for s in a["statements"]}
    assert "drop or detach whole partitions" in served["DELETE FROM pt_events WHERE created_at < $1"]["effect"]
    assert 0 < served["SELECT count(*), max(payload) FROM pt_events WHERE created_at >= $1 AND created_at < $2"][
        "scanned_fraction"] < 0.1
    assert [s["step"] for s in a["steps"]] == [1, 2, 3, 4]
    assert "ACCESS EXCLUSIVE" in a["steps"][3]["lock"] and "| 4 | swap" in a["runbook"]

    before = db.one("SELECT count(*), sum(id), sum(extract(epoch FROM created_at)), sum(length(payload)) FROM pt_events")
    _psql(dsn, a["ddl"])                         # the whole migration plan, as written
    assert db.value("SELECT relkind FROM pg_class WHERE oid = 'public.pt_events'::regclass") == "p"
    assert db.one("SELECT count(*), sum(id), sum(extract(epoch FROM created_at)), sum(length(payload))"
                  " FROM pt_events") == before
    assert db.value("SELECT count(*) FROM pg_inherits WHERE inhparent = 'public.pt_events'::regclass") \
        == est["partitions"]
    assert db.value("SELECT count(*) FROM ONLY public.pt_events_default") == 0
    # Pruning: a one-week range reads one or two partitions of ~57.
    q = ("SELECT count(*) FROM pt_events WHERE created_at >= '2025-06-02 00:00+00'"
         " AND created_at < '2025-06-09 00:00+00'")
    assert 1 <= _partitions_scanned(db, q) <= 2
    assert _partitions_scanned(db, "SELECT count(*) FROM pt_events WHERE device_id = 7") == est["partitions"]
    # The application goes on: identity, grants and the primary key (now with the key) work.
    new_id = db.value("INSERT INTO pt_events (created_at, device_id) VALUES ('2026-01-02 10:00+00', 1) RETURNING id")
    assert new_id > before[1] / before[0]  # continues the sequence
    assert db.value("SELECT has_table_privilege('arch_reader', 'public.pt_events', 'SELECT')")
    assert db.value("SELECT count(*) FROM pg_constraint WHERE conrelid = 'public.pt_events'::regclass"
                    " AND contype = 'p'") == 1

    _psql(dsn, a["rollback_ddl"])
    assert db.value("SELECT relkind FROM pg_class WHERE oid = 'public.pt_events'::regclass") == "r"
    assert db.value("SELECT to_regclass('public.pt_events_partitioned')") is None
    assert db.value("SELECT count(*) FROM pt_events") == before[0] + 1
    assert db.value("SELECT count(*) FROM pt_events WHERE id = %s", (new_id,)) == 1
    nxt = db.value("INSERT INTO pt_events (created_at, device_id) VALUES (now(), 2) RETURNING id")
    assert nxt > new_id


def test_partitioning_plan_with_serial_id_moves_sequence_ownership(db, dsn):
    db.sql("DROP TABLE IF EXISTS public.pt_log, public.pt_log_partitioned, public.pt_log_unpartitioned CASCADE")
    db.sql("CREATE TABLE public.pt_log (id bigserial PRIMARY KEY, day date NOT NULL, msg text);"
           " INSERT INTO public.pt_log (day, msg) SELECT date '2025-03-01' + (g / 300), repeat('m', 50)"
           " FROM generate_series(0, 26999) g; ANALYZE public.pt_log;")   # 90 days, no index on day
    try:
        db.sql("UPDATE arch.settings SET partition_min_table_mb = 1")
        db.sql("SELECT pg_stat_statements_reset()")
        db.run("SELECT count(*) FROM pt_log WHERE day BETWEEN %s AND %s", [("2025-04-01", "2025-04-03")], times=5)
        a = db.dicts("SELECT * FROM arch.advise_partitioning()")
        assert [(x["table_name"], x["column_name"], x["estimate"]["interval"]) for x in a] == \
            [("public.pt_log", "day", "1 week")]
        seq = db.value("SELECT pg_get_serial_sequence('public.pt_log', 'id')")
        _psql(dsn, a[0]["ddl"])
        assert db.value("SELECT relkind FROM pg_class WHERE oid = 'public.pt_log'::regclass") == "p"
        assert db.value("SELECT pg_get_serial_sequence('public.pt_log', 'id')") == seq   # owned by the new table
        assert db.value("SELECT count(*) FROM public.pt_log") == 27000
        assert _partitions_scanned(db, "SELECT count(*) FROM pt_log WHERE day BETWEEN '2025-04-01' AND '2025-04-03'",
                                   "pt_log") == 1
        new_id = db.value("INSERT INTO pt_log (day, msg) VALUES ('2025-05-30', 'after') RETURNING id")
        assert new_id == 27001
        _psql(dsn, a[0]["rollback_ddl"])
        assert db.value("SELECT relkind FROM pg_class WHERE oid = 'public.pt_log'::regclass") == "r"
        assert db.value("SELECT pg_get_serial_sequence('public.pt_log', 'id')") == seq
        assert db.value("SELECT count(*) FROM public.pt_log") == 27001
    finally:
        db.sql("DROP TABLE IF EXISTS public.pt_log, public.pt_log_partitioned, public.pt_log_unpartitioned CASCADE")


def test_no_partitioning_for_small_table(events):
    db = events
    db.sql("SELECT pg_stat_statements_reset()")
    db.run(RANGE, _weeks(12), times=3)           # default threshold: 10 GB
    assert db.dicts("SELECT * FROM arch.advise_partitioning()") == []
    db.sql("UPDATE arch.settings SET partition_min_table_mb = 100")   # pt_events is ~20 MB
    assert db.dicts("SELECT * FROM arch.advise_partitioning()") == []


def test_no_partitioning_without_range_column(events):
    db = events
    db.sql("UPDATE arch.settings SET partition_min_table_mb = 1")
    db.sql("SELECT pg_stat_statements_reset()")
    db.run(BY_PAYLOAD, [("x",), ("y",)], times=3)   # seq scans, but on a text column
    db.run(BY_DEVICE, [(3,)], times=3)              # an integer, but equality only and uncorrelated
    assert db.dicts("SELECT * FROM arch.advise_partitioning()") == []


def test_no_partitioning_when_key_time_is_a_minority(events):
    db = events
    db.sql("UPDATE arch.settings SET partition_min_table_mb = 1")
    db.sql("SELECT pg_stat_statements_reset()")
    db.run(RANGE, _weeks(1))
    db.run(BY_PAYLOAD, [("x",), ("y",), ("z",)], times=5)   # most of the time: no key predicate
    assert db.dicts("SELECT * FROM arch.advise_partitioning()") == []


# --------------------------------------------------------------------------- materialized views
SALES = """
DROP TABLE IF EXISTS public.mv_sales CASCADE;
CREATE TABLE public.mv_sales (id bigint PRIMARY KEY, region text NOT NULL, product int NOT NULL,
                              amount numeric NOT NULL, sold_at timestamptz NOT NULL);
INSERT INTO public.mv_sales SELECT g, 'region-' || (g % 12), g % 300, (g % 997) / 10.0,
       timestamptz '2025-01-01' + g * interval '1 minute' FROM generate_series(1, 150000) g;
ANALYZE public.mv_sales;
"""
BY_REGION = ("SELECT region, count(*) AS orders, sum(amount) AS revenue FROM mv_sales"
             " WHERE region = %s GROUP BY region")
BY_REGION_PG = ("SELECT region, count(*) AS orders, sum(amount) AS revenue FROM mv_sales"
                " WHERE region = $1 GROUP BY region")
TOP = "SELECT product, sum(amount) AS total FROM mv_sales GROUP BY product ORDER BY total DESC, product LIMIT %s"
SINCE = "SELECT region, count(*) FROM mv_sales WHERE sold_at >= %s GROUP BY region"
REGIONS = [(f"region-{i}",) for i in range(12)]


@pytest.fixture
def sales(db):
    db.sql(SALES)
    db.sql("UPDATE arch.settings SET matview_min_calls = 20, matview_min_mean_time_ms = 1")
    db.sql("SELECT pg_stat_statements_reset()")
    yield db
    db.sql("SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname LIKE 'arch_refresh_%'")
    db.sql("DROP TABLE IF EXISTS public.mv_sales CASCADE")


def _bind(sql: str, values: list) -> str:
    for i, v in reversed(list(enumerate(values, 1))):
        sql = sql.replace(f"${i}", quote_literal(str(v)))
    return sql


def test_materialized_view_advice_runs_and_answers_the_same(sales):
    db = sales
    db.run(BY_REGION, REGIONS, times=3)
    db.run(TOP, [(5,)], times=25)
    db.run(SINCE, [("2025-02-01",)], times=25)
    rows = db.dicts("SELECT * FROM arch.advise_materialized_views() WHERE kind = 'materialized_view'")
    by_q = {r["statements"][0]["query"]: r for r in rows}
    a = by_q[BY_REGION_PG]
    assert a["advised"] and a["table_name"] == "public.mv_sales", (a["rationale"], a["estimate"])
    assert a["schedule"] == "0 * * * *"        # written once in the window: refresh at the staleness bound, 1 h
    est = a["estimate"]
    assert est["write_calls"] == 0 and est["benefit_ms_per_refresh"] > 0 and est["read_ms_after"] < est["mean_ms"]
    assert "REFRESH MATERIALIZED VIEW CONCURRENTLY" in a["ddl"] and "CREATE UNIQUE INDEX" in a["ddl"]
    # Parameters on a column that is not grouped: not served by a view, and said why.
    since = by_q["SELECT region, count(*) FROM mv_sales WHERE sold_at >= $1 GROUP BY region"]
    assert not since["advised"] and "only group_column = $n" in since["rationale"]

    db.sql(a["ddl"])                               # CREATE MATERIALIZED VIEW, unique index, cron job
    assert db.value("SELECT count(*) FROM cron.job WHERE command LIKE 'REFRESH MATERIALIZED VIEW CONCURRENTLY%'") == 1
    for (region,) in REGIONS[:4] + [("nowhere",)]:
        assert db.sql(_bind(a["rewritten_query"], [region])) == db.sql(BY_REGION, (region,))
    top = by_q["SELECT product, sum(amount) AS total FROM mv_sales GROUP BY product ORDER BY total DESC, product LIMIT $1"]
    assert top["advised"]
    db.sql(top["ddl"])
    assert db.sql(_bind(top["rewritten_query"], [5])) == db.sql(TOP, (5,))

    db.sql("INSERT INTO mv_sales VALUES (200001, 'region-1', 7, 99999, now()), (200002, 'region-new', 7, 1, now())")
    mv = a["ddl"].split()[3]
    db.sql(f"REFRESH MATERIALIZED VIEW CONCURRENTLY {mv}")
    for region in ("region-1", "region-new"):
        assert db.sql(_bind(a["rewritten_query"], [region])) == db.sql(BY_REGION, (region,))
    db.sql(f"REFRESH MATERIALIZED VIEW CONCURRENTLY {top['ddl'].split()[3]}")
    assert db.sql(_bind(top["rewritten_query"], [5])) == db.sql(TOP, (5,))

    db.sql(a["rollback_ddl"])
    db.sql(top["rollback_ddl"])
    assert db.value("SELECT count(*) FROM cron.job WHERE jobname LIKE 'arch_refresh_%'") == 0
    assert db.value("SELECT count(*) FROM pg_matviews WHERE matviewname LIKE 'mv_sales_%'") == 0


def test_no_materialized_view_over_write_heavy_table(sales):
    db = sales
    db.run(BY_REGION, REGIONS, times=3)                                   # 36 reads
    _write(db, "UPDATE mv_sales SET amount = amount + 1 WHERE id = %s", [(i,) for i in range(1, 40)])
    rows = db.dicts("SELECT * FROM arch.advise_materialized_views()")
    assert not [r for r in rows if r["statements"][0]["query"] == BY_REGION_PG], rows


def test_materialized_view_refresh_follows_writes_and_staleness(sales):
    db = sales
    db.sql("UPDATE arch.settings SET matview_max_staleness = '10 minutes'")
    db.run(BY_REGION, REGIONS, times=3)

    def advice():
        return next(r for r in db.dicts("SELECT * FROM arch.advise_materialized_views()")
                    if r["statements"][0]["query"] == BY_REGION_PG)

    a = advice()                     # never written in the window: the staleness bound
    assert a["schedule"] == "*/10 * * * *" and a["estimate"]["mean_write_interval_s"] is None
    _write(db, "UPDATE mv_sales SET amount = amount + 1 WHERE id = %s", [(1,), (2,)])
    a = advice()                     # written every few seconds: refresh every minute (pg_cron's step)
    assert a["estimate"]["write_calls"] == 2 and a["estimate"]["mean_write_interval_s"] < 60
    assert a["schedule"] == "*/1 * * * *" and a["estimate"]["refresh_interval_s"] == 60


def test_statement_texts_follow_visibility(sales, dsn):
    db = sales
    db.run(BY_REGION, REGIONS, times=3)
    db.sql("CREATE ROLE pga_mv_admin LOGIN IN ROLE arch_admin")
    try:
        with psycopg.connect(f"{dsn} user=pga_mv_admin", autocommit=True) as c:
            # pg_stat_statements hides the superuser's texts from this admin: nothing read, nothing shown
            assert c.execute("SELECT count(*) FROM arch.advise_materialized_views()").fetchone() == (0,)
            hidden = c.execute("SELECT arch._visible_statements('[{\"userid\": 10, \"query\": \"SELECT 1\"}]'::jsonb)"
                               "->0->>'query'").fetchone()[0]
            assert hidden == "<insufficient privilege>"
        db.sql("GRANT pg_read_all_stats TO pga_mv_admin")
        with psycopg.connect(f"{dsn} user=pga_mv_admin", autocommit=True) as c:
            rows = c.execute("SELECT statements->0->>'query', advised, rationale FROM arch.advise_materialized_views()"
                             " WHERE kind = 'materialized_view'").fetchall()
        # It sees the text now, but never plans a superuser's statement with its own rights.
        assert rows and rows[0][0] == BY_REGION_PG and rows[0][1] is False
        assert "untrusted_code" in rows[0][2] and "not a superuser" in rows[0][2]
    finally:
        db.sql("DROP ROLE pga_mv_admin")


def test_materialized_view_is_planned_as_the_statements_role(sales, dsn):
    db = sales
    db.sql("CREATE ROLE pga_tenant LOGIN; GRANT SELECT ON public.mv_sales TO pga_tenant")
    try:
        with psycopg.connect(f"{dsn} user=pga_tenant", autocommit=True) as t:
            for _ in range(3):
                for (region,) in REGIONS:
                    t.execute(BY_REGION, (region,)).fetchall()
        rows = db.dicts("SELECT advised, rationale, statements FROM arch.advise_materialized_views()"
                        " WHERE kind = 'materialized_view'")
        assert [r["advised"] for r in rows] == [True]
        assert rows[0]["statements"][0]["userid"] == db.value("SELECT oid FROM pg_roles WHERE rolname = 'pga_tenant'")
        # The tenant loses its right to read the table: the superuser auditor could still plan it,
        # but the statement is planned as the tenant, so it is not advised.
        db.sql("REVOKE SELECT ON public.mv_sales FROM pga_tenant")
        rows = db.dicts("SELECT advised, rationale FROM arch.advise_materialized_views() WHERE kind = 'materialized_view'")
        assert [r["advised"] for r in rows] == [False] and "permission denied" in rows[0]["rationale"]
    finally:
        db.sql("DROP OWNED BY pga_tenant; DROP ROLE pga_tenant")


# --------------------------------------------------------------------------- cache
PRODUCTS = """
DROP TABLE IF EXISTS public.cache_products CASCADE;
CREATE TABLE public.cache_products (id int PRIMARY KEY, name text NOT NULL, price numeric NOT NULL);
INSERT INTO public.cache_products SELECT g, 'product ' || g, g % 50 FROM generate_series(1, 200) g;
ANALYZE public.cache_products;
"""
PRODUCT = "SELECT name, price FROM cache_products WHERE id = %s"
PRODUCT_PG = "SELECT name, price FROM cache_products WHERE id = $1"


@pytest.fixture
def products(db):
    db.sql(PRODUCTS)
    db.sql("UPDATE arch.settings SET cache_min_calls = 600")
    db.sql("SELECT pg_stat_statements_reset()")
    yield db
    db.sql("DROP TABLE IF EXISTS public.cache_products CASCADE")


def test_cache_advice_with_ttl_keys_and_hit_rate(products):
    db = products
    db.run(PRODUCT, [(i % 200 + 1,) for i in range(800)])
    _write(db, "UPDATE cache_products SET price = price + 1 WHERE id = %s", [(3,)])   # one write
    rows = [r for r in db.dicts("SELECT * FROM arch.advise_materialized_views()") if r["kind"] == "cache"]
    assert [r["statements"][0]["query"] for r in rows] == [PRODUCT_PG], rows
    c = rows[0]
    est = c["estimate"]
    assert c["ddl"] is None and c["statements"][0]["cache_key"] == [1]
    assert est["key_columns"] == ["id"] and est["keys"] == 200 and est["write_calls"] == 1
    assert est["ttl_s"] <= 300 and est["ttl_s"] == pytest.approx(min(300, est["mean_write_interval_s"]), abs=0.2)
    n = est["calls_per_s"] * est["ttl_s"]
    expected = 1 - 200 * (1 - (1 - 1 / 200) ** n) / n
    assert est["hit_rate"] == pytest.approx(max(expected, 0), abs=1e-3)
    assert "keyed by $1" in c["rationale"]


def test_no_cache_advice_for_write_heavy_or_rare_statements(products):
    db = products
    db.run(PRODUCT, [(i % 200 + 1,) for i in range(700)])
    _write(db, "UPDATE cache_products SET price = price + 1 WHERE id = %s", [(i % 200 + 1,) for i in range(50)])
    db.run("SELECT name FROM cache_products WHERE price = %s", [(1,)] * 10)   # too rare
    assert [r for r in db.dicts("SELECT * FROM arch.advise_materialized_views()") if r["kind"] == "cache"] == []


def test_hit_rate_model():
    from pg_architect.advisors.matview import hit_rate, refresh_step

    assert hit_rate(1, 100) == pytest.approx(0.99)
    assert hit_rate(1000, 10) == pytest.approx(1 - 1000 * (1 - (1 - 1 / 1000) ** 10) / 10)
    assert hit_rate(10, 0) == 0.0
    assert refresh_step(3600, 10) == (60, "*/1 * * * *")
    assert refresh_step(3600, 1000) == (900, "*/15 * * * *")
    assert refresh_step(3600, 1e9) == (3600, "0 * * * *")
    assert math.isclose(hit_rate(2, 2), 1 - 2 * (1 - 0.25) / 2)
