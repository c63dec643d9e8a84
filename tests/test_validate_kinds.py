"""Validation on staging of rewrite, materialized-view and partition recommendations (issue 12),
the parameter values taken from a parameter's context, and the pg_partman path of the
partitioning plan.

Until the audit stores the partition / materialized_view kinds, the recommendations are planted
from the advisors' real output (``arch.advise_partitioning()`` / ``arch.advise_materialized_views()``):
kind, ``details`` = the advice object, ddl / rollback = its script, plus the links to the served
statements (the contract of migration 0017).
"""

from __future__ import annotations

import json
import tempfile

import psycopg
import pytest
from pytest_postgresql import factories

from conftest import PG_BIN
from pg_architect import sample, validate
from test_partition_matview import BY_DEVICE, EVENTS, PURGE, RANGE, SALES, _psql, _weeks
from test_validate import on_staging, plant, run_validate, validations

kinds_staging_proc = factories.postgresql_proc(
    executable=f"{PG_BIN}/pg_ctl",
    port=None,
    unixsocketdir=tempfile.mkdtemp(prefix="pga-kinds-sock-"),
    postgres_options="-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c lc_messages=C",
)

# The tables of the partition / materialized-view tests, on staging without what only production has.
STAGING_EVENTS = "\n".join(line for line in EVENTS.splitlines() if "arch_reader" not in line)


@pytest.fixture(scope="module")
def staging(kinds_staging_proc):
    """Staging: another cluster with the sample shop (users, orders), pt_events and mv_sales."""
    p = kinds_staging_proc
    base = f"host={p.unixsocketdir} port={p.port} user={p.user}"
    with psycopg.connect(f"{base} dbname=postgres", autocommit=True) as c:
        c.execute("DROP DATABASE IF EXISTS pga_staging_kinds")
        c.execute("CREATE DATABASE pga_staging_kinds")
    url = f"{base} dbname=pga_staging_kinds"
    with psycopg.connect(url) as conn:
        sample.load_sample_app(conn, events=20_000, users=10_000, orders=60_000)
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(STAGING_EVENTS)
        conn.execute(SALES)
    return url


def plant_advice(db, kind: str, advice: dict, statements: list[dict], schema: str, table: str,
                 est_gain: float = 50.0, confidence: float = 0.8) -> int:
    """A recommendation as the audit will store it: details = the advice object, its script as ddl."""
    run = db.value("INSERT INTO arch.audit_run (status) VALUES ('ok') RETURNING id")
    dbid = db.value("SELECT oid FROM pg_database WHERE datname = current_database()")
    for s in statements:
        db.sql("INSERT INTO arch.statement (dbid, userid, queryid, query) VALUES (%s, %s, %s, %s)"
               " ON CONFLICT DO NOTHING", (dbid, s["userid"], s["queryid"], s["query"]))
    first = statements[0]
    rec = db.value(
        "INSERT INTO arch.recommendation (fingerprint, kind, schema_name, table_name, definition, ddl, rollback_ddl,"
        " rationale, queryid, query, userid, cost_before, cost_after, est_gain_pct, confidence, confidence_estimate,"
        " details) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 100, %s, %s, %s, %s, %s) RETURNING id",
        (f"test:{kind}:{first['queryid']}", kind, schema, table, advice["ddl"], advice["ddl"], advice["rollback_ddl"],
         advice["rationale"], first["queryid"], first["query"], first["userid"], 100 - est_gain, est_gain,
         confidence, confidence, json.dumps(advice, default=str)))
    for s in statements:
        db.sql("INSERT INTO arch.recommendation_statement (recommendation_id, audit_run_id, dbid, userid, queryid,"
               " cost_before, cost_after, est_gain_pct) VALUES (%s, %s, %s, %s, %s, 100, %s, %s)",
               (rec, run, dbid, s["userid"], s["queryid"], 100 - est_gain, est_gain))
    return rec


def by_query(rows: list[dict]) -> dict[str, dict]:
    return {r["query"]: r for r in rows}


# ---------------------------------------------------------------------------- rewrite
OR_QUERY = "SELECT id, total FROM orders WHERE user_id = $1 OR status = $2"
OR_UNION = ("SELECT id, total FROM orders WHERE user_id = $1 UNION ALL"
            " SELECT id, total FROM orders WHERE status = $2 AND (user_id <> $1 OR user_id IS NULL)")


def test_rewrite_runs_both_forms_with_the_same_values_and_the_same_rows(db, dsn, staging):
    rec = plant(db, kind="rewrite", table="orders", ddl=OR_UNION,
                rollback="-- keep (or go back to) the original statement in the application", query=OR_QUERY)
    out = run_validate(dsn, staging, rec)
    [v] = validations(db, rec)
    assert v["status"] == "measured" and v["error"] is None, v
    assert v["parameter_source"] == "pg_stats" and all(p[0] and p[1] for p in v["parameters"])
    assert v["median_before_ms"] > 0 and v["median_after_ms"] > 0
    d = v["details"]
    assert d["same_rows"] is True and d["rows_before"] == d["rows_after"] > 0, d
    assert not out["applied_on_staging"]  # nothing to apply: the application sends the other text


def test_rewrite_returning_other_rows_fails_with_that_reason(db, dsn, staging):
    rec = plant(db, kind="rewrite", table="orders", ddl="SELECT id, total FROM orders WHERE user_id = $1",
                rollback="-- keep the original statement", query=OR_QUERY)
    out = run_validate(dsn, staging, rec)
    [v] = validations(db, rec)
    assert v["status"] == "failed" and "returns different rows than the original" in v["error"], v
    assert v["details"]["same_rows"] is False and v["details"]["rows_before"] > v["details"]["rows_after"]
    assert out["measured"] == 0 and out["confidence"] is None


# ---------------------------------------------------------------------------- parameter values
def test_parameters_compared_with_no_column_get_values_from_their_context(db, dsn, staging):
    query = ("SELECT date_trunc($1, created_at) AS day, count(*), $2 AS tag FROM orders"
             " WHERE created_at > now() - $3::interval AND user_id > $4::int * 0"
             " GROUP BY 1 ORDER BY 1 LIMIT $5 OFFSET $6")
    rec = plant(db, kind="index", table="orders",
                ddl="CREATE INDEX CONCURRENTLY IF NOT EXISTS pga_val_ctx_idx ON public.orders USING btree (created_at)",
                rollback="DROP INDEX CONCURRENTLY IF EXISTS public.pga_val_ctx_idx", query=query)
    run_validate(dsn, staging, rec)
    [v] = validations(db, rec)
    assert v["status"] == "measured", v["error"]
    assert v["parameter_source"] == "context"
    # unit 'day', the select-list $2 by its inferred type (text), '1 day', an arithmetic 1, LIMIT 100, OFFSET 0
    assert v["parameters"][0] == ["day", "a", "1 day", "1", "100", "0"]
    assert on_staging(staging, "SELECT to_regclass('public.pga_val_ctx_idx')") == [(None,)]


def test_range_parameters_on_one_column_take_ordered_histogram_bounds(db, dsn, staging):
    rec = plant(db, kind="index", table="orders",
                ddl="CREATE INDEX CONCURRENTLY IF NOT EXISTS pga_val_rng_idx ON public.orders USING btree (total)",
                rollback="DROP INDEX CONCURRENTLY IF EXISTS public.pga_val_rng_idx",
                query="SELECT count(*) FROM orders WHERE total >= $1 AND total < $2")
    run_validate(dsn, staging, rec)
    [v] = validations(db, rec)
    assert v["status"] == "measured", v["error"]
    assert all(float(lo) < float(hi) for lo, hi in v["parameters"]), v["parameters"]


# ---------------------------------------------------------------------------- materialized view
BY_REGION = ("SELECT region, count(*) AS orders, sum(amount) AS revenue FROM mv_sales"
             " WHERE region = %s GROUP BY region")
REGIONS = [(f"region-{i}",) for i in range(12)]


@pytest.fixture
def sales(db):
    db.sql(SALES)
    db.sql("UPDATE arch.settings SET matview_min_calls = 20, matview_min_mean_time_ms = 1")
    db.sql("SELECT pg_stat_statements_reset()")
    yield db
    db.sql("DROP TABLE IF EXISTS public.mv_sales CASCADE")


def test_materialized_view_created_refreshed_compared_and_dropped(sales, dsn, staging):
    db = sales
    db.run(BY_REGION, REGIONS, times=3)
    [a] = [r for r in db.dicts("SELECT * FROM arch.advise_materialized_views() WHERE kind = 'materialized_view'")
           if r["advised"]]
    rec = plant_advice(db, "materialized_view", a, a["statements"], "public", "mv_sales")
    out = run_validate(dsn, staging, rec)
    [v] = validations(db, rec)
    assert v["status"] == "measured" and v["error"] is None, v
    assert out["applied_on_staging"]
    d = v["details"]
    assert d["same_rows"] is True and d["rows_before"] == d["rows_after"] == 1, d
    assert d["create_ms"] > 0 and d["refresh_ms"] > 0 and d["refresh_concurrently_ms"] > 0
    assert "pg_cron refresh schedule is not created on staging" in d["notes"][0]
    assert v["median_after_ms"] < v["median_before_ms"], v
    # the benefit per refresh interval, measured: calls in the interval × time saved − the refresh
    per = d["calls_per_refresh_interval"]
    assert d["benefit_ms_per_refresh"] == pytest.approx(
        per * (float(v["median_before_ms"]) - float(v["median_after_ms"])) - d["refresh_concurrently_ms"], abs=0.05)
    md = validate.pr_section(validate.PsycopgDb(db.conn), rec)
    assert "same rows as the original (1 row(s)" in md and "REFRESH CONCURRENTLY" in md, md
    view = a["ddl"].split()[3]
    assert on_staging(staging, "SELECT to_regclass(%s)", (view,)) == [(None,)]
    assert db.value("SELECT to_regclass(%s)", (view,)) is None  # never created on production


# ---------------------------------------------------------------------------- partition
@pytest.fixture
def events(db):
    db.sql(EVENTS)
    db.sql("UPDATE arch.settings SET partition_min_table_mb = 1")
    db.sql("SELECT pg_stat_statements_reset()")
    yield db
    db.sql("DROP TABLE IF EXISTS public.pt_events, public.pt_events_partitioned,"
           " public.pt_events_unpartitioned CASCADE")


def _partition_advice(db) -> tuple[dict, list[dict]]:
    db.run(RANGE, _weeks(12), times=3)
    db.sql(PURGE, ("2024-06-01",))
    db.run(BY_DEVICE, [(7,)])
    [a] = db.dicts("SELECT * FROM arch.advise_partitioning()")
    return a, a["statements"] + a["not_pruned"]


def test_partition_copy_prunes_answers_the_same_and_is_dropped(events, dsn, staging):
    db = events
    a, stmts = _partition_advice(db)
    rec = plant_advice(db, "partition", a, stmts, "public", "pt_events")
    out = run_validate(dsn, staging, rec)
    rows = by_query(validations(db, rec))
    assert out["applied_on_staging"] and out["measured"] == 3, out
    rng = rows["SELECT count(*), max(payload) FROM pt_events WHERE created_at >= $1 AND created_at < $2"]
    d = rng["details"]
    assert rng["status"] == "measured" and d["same_rows"] is True, rng
    assert d["partitions"] == a["estimate"]["partitions"] and d["rows_copied"] == 100000
    assert 1 <= d["partitions_scanned"] <= 2, d          # pruned: one or two of ~57 partitions
    md = validate.pr_section(validate.PsycopgDb(db.conn), rec)
    assert f"{d['partitions_scanned']} of {d['partitions']} partitions scanned on the copy" in md, md
    dev = rows["SELECT id, created_at FROM pt_events WHERE device_id = $1"]["details"]
    assert dev["partitions_scanned"] == dev["partitions"]  # no predicate on the key: every partition
    purge = rows["DELETE FROM pt_events WHERE created_at < $1"]
    assert purge["status"] == "measured" and "writes rolled back" in purge["parameter_source"]
    assert on_staging(staging, "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'pga_validate_%%'") == [(0,)]
    assert on_staging(staging, "SELECT count(*), relkind FROM pt_events, pg_class"
                               " WHERE pg_class.oid = 'pt_events'::regclass GROUP BY 2") == [(100000, "r")]


def test_partition_above_the_row_cap_is_skipped_and_a_timeout_drops_the_copy(events, dsn, staging):
    db = events
    a, stmts = _partition_advice(db)
    rec = plant_advice(db, "partition", a, stmts, "public", "pt_events")
    db.sql("UPDATE arch.settings SET validate_partition_max_rows = 50000")
    out = run_validate(dsn, staging, rec)
    vs = validations(db, rec)
    assert not out["applied_on_staging"] and {v["skip_code"] for v in vs} == {"too_large"}
    assert "100,000 rows on staging, above validate_partition_max_rows (50,000)" in vs[0]["error"]
    with pytest.raises(psycopg.errors.CheckViolation, match="settings_validate_partition_max_rows"):
        db.sql("UPDATE arch.settings SET validate_partition_max_rows = 0")
    db.sql("UPDATE arch.settings SET validate_partition_max_rows = DEFAULT, validate_statement_timeout_ms = 100")
    out = run_validate(dsn, staging, rec)
    batch = [v for v in validations(db, rec) if v["id"] > vs[-1]["id"]]
    assert out["applied_on_staging"] and {v["status"] for v in batch} == {"failed"}, batch
    assert all("statement timeout" in v["error"] for v in batch), [v["error"] for v in batch]
    assert on_staging(staging, "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'pga_validate_%%'") == [(0,)]


# ---------------------------------------------------------------------------- pg_partman
TEMPLATES = "SELECT count(*) FROM pg_tables WHERE schemaname = 'partman' AND tablename LIKE 'template%%'"

def test_partition_plan_with_pg_partman_runs_routes_rows_and_rolls_back(events, dsn, staging):
    """pg_partman 4.7 (Debian's postgresql-15-partman) in schema partman: the plan calls
    partman.create_parent(p_type => 'native'); rows land in the partition of their range; the
    rollback restores the table and pg_partman's configuration. The same plan validates on staging."""
    db = events
    for target in (db.sql, lambda s: on_staging(staging, s)):
        target("CREATE SCHEMA IF NOT EXISTS partman; CREATE EXTENSION IF NOT EXISTS pg_partman SCHEMA partman")
    try:
        a, stmts = _partition_advice(db)
        assert "partman.create_parent(p_parent_table => 'public.pt_events_partitioned'" in a["ddl"]
        assert "p_type => 'native'" in a["ddl"] and "p_interval => '1 week'" in a["ddl"]
        rec = plant_advice(db, "partition", a, stmts, "public", "pt_events")
        out = run_validate(dsn, staging, rec)
        rows = by_query(validations(db, rec))
        rng = rows["SELECT count(*), max(payload) FROM pt_events WHERE created_at >= $1 AND created_at < $2"]
        assert out["applied_on_staging"] and rng["status"] == "measured", rng
        assert rng["details"]["pg_partman"] and rng["details"]["same_rows"] and rng["details"]["partitions_scanned"] <= 2
        assert on_staging(staging, "SELECT count(*) FROM partman.part_config") == [(0,)]
        assert on_staging(staging, TEMPLATES) == [(0,)]

        before = db.one("SELECT count(*), sum(id) FROM pt_events")
        _psql(dsn, a["ddl"])
        assert db.value("SELECT relkind FROM pg_class WHERE oid = 'public.pt_events'::regclass") == "p"
        assert db.one("SELECT count(*), sum(id) FROM pt_events") == before
        assert db.value("SELECT parent_table FROM partman.part_config") == "public.pt_events"
        # every row is in the partition whose bounds hold it, none in the default partition
        misplaced = db.value(
            "SELECT count(*) FROM pt_events e JOIN pg_class c ON c.oid = e.tableoid"
            " WHERE c.relname LIKE '%%default' OR NOT (e.created_at >= (regexp_match(pg_get_expr(c.relpartbound, c.oid),"
            " 'FROM \\(''([^'']+)''\\)'))[1]::timestamptz AND e.created_at < (regexp_match("
            " pg_get_expr(c.relpartbound, c.oid), 'TO \\(''([^'']+)''\\)'))[1]::timestamptz)")
        assert misplaced == 0
        assert db.value("SELECT count(DISTINCT tableoid) FROM pt_events") >= 52
        new_id = db.value("INSERT INTO pt_events (created_at, device_id) VALUES ('2026-01-02 10:00+00', 1)"
                          " RETURNING id")
        assert db.value("SELECT c.relname FROM pt_events e JOIN pg_class c ON c.oid = e.tableoid"
                        " WHERE e.id = %s", (new_id,)) == "pt_events_partitioned_p2025_12_29"

        _psql(dsn, a["rollback_ddl"])
        assert db.value("SELECT relkind FROM pg_class WHERE oid = 'public.pt_events'::regclass") == "r"
        assert db.value("SELECT count(*) FROM pt_events") == before[0] + 1
        assert db.value("SELECT count(*) FROM partman.part_config") == 0
        assert db.value(TEMPLATES) == 0
    finally:
        for target in (db.sql, lambda s: on_staging(staging, s)):
            target("DROP EXTENSION IF EXISTS pg_partman; DROP SCHEMA IF EXISTS partman CASCADE")
