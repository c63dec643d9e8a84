"""Partitioning, materialized-view and cache advice stored by the audit, with pull requests
(issue 12), as a DBA sees it:

    SELECT arch.run_audit();     -- stores partition / materialized_view / cache recommendations
    SELECT * FROM arch.recommendation WHERE kind IN ('partition', 'materialized_view', 'cache');
    SELECT arch.approve(42, 'partition it');   -- the sidecar opens the pull request

The planted tables and workloads are those of tests/test_partition_matview.py; pull requests go
to the fake GitHub of tests/test_sidecar.py, and every migration they carry is run for real.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile

import psycopg
import pytest

from conftest import PG_BIN
from test_partition_matview import (
    BY_DEVICE,
    BY_REGION,
    BY_REGION_PG,
    EVENTS,
    PRODUCT,
    PRODUCT_PG,
    PRODUCTS,
    PURGE,
    RANGE,
    REGIONS,
    SALES,
    _bind,
    _partitions_scanned,
    _weeks,
    _write,
)
from test_sidecar import forge, github, requests_of, sidecar  # noqa: F401  (fixtures)

RANGE_PG = "SELECT count(*), max(payload) FROM pt_events WHERE created_at >= $1 AND created_at < $2"
PURGE_PG = "DELETE FROM pt_events WHERE created_at < $1"


@pytest.fixture
def gh_db(db, github):
    """No statement above the audit's index thresholds (the audit stays quick), the hashing
    embedder, the fake GitHub."""
    db.sql("UPDATE arch.settings SET embedding_model = 'hashing', github_api_url = %s, github_repo = 'acme/app',"
           " github_timeout_s = 2, request_retry_base_s = 0, pr_sync_interval_s = 0", (github.url,))
    return db


@pytest.fixture
def events(gh_db):
    db = gh_db
    db.sql(EVENTS)
    db.sql("UPDATE arch.settings SET partition_min_table_mb = 1")
    db.sql("SELECT pg_stat_statements_reset()")
    yield db
    db.sql("DROP TABLE IF EXISTS public.pt_events, public.pt_events_partitioned, public.pt_events_unpartitioned"
           " CASCADE")


def _events_workload(db) -> None:
    db.run(RANGE, _weeks(12), times=3)
    _write(db, PURGE, [("2024-06-01",)])
    db.run(BY_DEVICE, [(7,)])


def kind(db, k: str) -> list[dict]:
    return db.dicts("SELECT * FROM arch.recommendation WHERE kind = %s ORDER BY id", (k,))


def linked(db, rec_id: int) -> set[str]:
    return {r[0] for r in db.sql(
        "SELECT DISTINCT s.query FROM arch.recommendation_statement l JOIN arch.statement s"
        " ON (s.dbid, s.userid, s.queryid) = (l.dbid, l.userid, l.queryid) WHERE l.recommendation_id = %s",
        (rec_id,))}


def _queries(db, rec_id: int) -> set[int]:
    return {r[0] for r in db.sql("SELECT DISTINCT queryid FROM arch.recommendation_statement"
                                 " WHERE recommendation_id = %s", (rec_id,))}


def test_audit_stores_partition_advice_with_the_lifecycle(events):
    db = events
    _events_workload(db)
    summary = db.audit()
    assert summary["partition_advice"] == 1, summary
    [rec] = kind(db, "partition")
    d = rec["details"]
    # details: the advisor's object, exactly (arch.advise_partitioning() returns the same advice)
    [fresh] = db.dicts("SELECT * FROM arch.advise_partitioning()")
    assert (d["kind"], f"{d['schema_name']}.{d['table_name']}", d["column_name"]) == \
        (fresh["kind"], fresh["table_name"], fresh["column_name"]) == ("partition", "public.pt_events", "created_at")
    assert d["ddl"] == fresh["ddl"] == rec["ddl"] and d["rollback_ddl"] == fresh["rollback_ddl"] == rec["rollback_ddl"]
    assert d["steps"] == fresh["steps"] and d["runbook"] == fresh["runbook"]
    assert d["constraint_changes"] == fresh["constraint_changes"]
    assert [s["query"] for s in d["not_pruned"]] == ["SELECT id, created_at FROM pt_events WHERE device_id = $1"]
    assert set(d) >= {"estimate", "statements", "not_pruned", "steps", "runbook", "rationale", "bounds"}
    assert (rec["status"], rec["schema_name"], rec["table_name"], rec["columns"], rec["index_kind"]) == \
        ("proposed", "public", "pt_events", ["created_at"], "range")
    # the numbers: estimated statement time over the window, before and after pruning
    est = d["estimate"]
    assert rec["cost_before"] == pytest.approx(est["statement_time_ms"])
    assert rec["cost_before"] - rec["cost_after"] == pytest.approx(est["est_time_saved_ms"])
    assert rec["est_gain_pct"] == pytest.approx(est["est_gain_pct"], abs=0.01) and rec["est_gain_pct"] > 50
    assert rec["benefit_ms"] == pytest.approx(est["est_time_saved_ms"])
    assert rec["confidence"] == pytest.approx(min(0.9, 0.5 + 0.4 * est["key_time_share"] * rec["est_gain_pct"] / 100),
                                              abs=1e-3)
    assert rec["query"] == RANGE_PG and "Must change" in rec["rationale"]
    # linked to every statement it serves, not to the one that will not prune
    assert linked(db, rec["id"]) == {RANGE_PG, PURGE_PG}
    # the knowledge base remembers a case per statement served: a similar statement finds it
    assert db.value("SELECT count(*) FROM arch.knowledge WHERE recommendation_id = %s", (rec["id"],)) == 2
    similar = db.dicts("SELECT recommendation_id, kind, similarity FROM arch.similar_optimizations(%s, 3)",
                       (RANGE_PG.replace("max(payload)", "min(payload)"),))
    assert similar[0]["recommendation_id"] == rec["id"] and similar[0]["kind"] == "partition", similar
    # the next audit finds it again: one more sighting, same row, refreshed while proposed
    again = db.audit()
    [rec2] = kind(db, "partition")
    assert (rec2["id"], rec2["times_seen"], rec2["last_audit_run_id"]) == (rec["id"], 2, again["run_id"])
    # KPIs count the new kind
    by_kind = db.value("SELECT recommendations_by_kind FROM arch.kpis WHERE period_kind = 'week'"
                       " ORDER BY period_start DESC LIMIT 1")
    assert by_kind.get("partition") == 1, by_kind
    # a changed decision (here: another interval) supersedes the old proposal
    db.sql("UPDATE arch.recommendation SET fingerprint = md5('older'), definition = 'older' WHERE id = %s",
           (rec["id"],))
    db.audit()
    recs = kind(db, "partition")
    assert [(r["id"] == rec["id"], r["status"]) for r in recs] == [(True, "superseded"), (False, "proposed")]
    assert recs[0]["superseded_by"] == recs[1]["id"]


def test_one_bad_table_is_a_note_and_the_others_are_advised(events):
    db = events
    # A sentinel 'infinity' timestamp: the key's span is infinite, no interval can cover it.
    db.sql("DROP TABLE IF EXISTS public.pt_bad; CREATE TABLE public.pt_bad (id bigint PRIMARY KEY, at timestamptz,"
           " note text); INSERT INTO public.pt_bad SELECT g, timestamptz '2025-01-01' + g * interval '1 hour',"
           " repeat('n', 60) FROM generate_series(1, 20000) g; INSERT INTO public.pt_bad VALUES (0, 'infinity', '');"
           " CREATE INDEX pt_bad_at_idx ON public.pt_bad (at); ANALYZE public.pt_bad")
    try:
        db.sql("SELECT pg_stat_statements_reset()")
        _events_workload(db)
        db.run("SELECT count(*) FROM pt_bad WHERE at >= %s AND at < %s", [("2025-02-01", "2025-02-08")], times=5)
        summary = db.audit()
        assert [(r["table_name"], r["status"]) for r in kind(db, "partition")] == [("pt_events", "proposed")]
        assert [n for n in summary["notes"] if n.startswith("partitioning advice for public.pt_bad: ")], summary
    finally:
        db.sql("DROP TABLE IF EXISTS public.pt_bad")


def test_no_partition_recommendation_for_small_tables(gh_db):
    db = gh_db
    db.run("SELECT count(*) FROM behavior_log WHERE created_at >= %s AND created_at < %s",
           [("2020-01-01", "2030-01-01")], times=5)
    db.audit()                                             # default partition_min_table_mb: 10 GB
    db.sql("UPDATE arch.settings SET partition_min_table_mb = 1000")
    db.audit()
    assert kind(db, "partition") == []


def _psql(dsn: str, script: str, single: bool = False) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(script)
    try:
        res = subprocess.run([f"{PG_BIN}/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", *(["-1"] if single else []),
                              "-d", dsn, "-f", f.name], capture_output=True, text=True)
    finally:
        os.unlink(f.name)
    assert res.returncode == 0, res.stderr


def _run_migrations(dsn: str, fmt: str, files: dict[str, str], migrations: list[str]) -> None:
    """Run migration files as their tool would: plain SQL with psql (autocommit), Flyway each file
    in one transaction unless its .sql.conf says executeInTransaction=false, Prisma each file as
    one query string."""
    for path in migrations:
        if fmt == "prisma":
            with psycopg.connect(dsn, autocommit=True) as c:
                c.execute(files[path].encode())          # one query string, as Prisma Migrate sends it
        elif fmt == "flyway":
            conf = files.get(path + ".conf", "")
            _psql(dsn, files[path], single="executeInTransaction=false" not in conf)
        else:
            _psql(dsn, files[path])


@pytest.mark.parametrize("fmt", ["sql", "prisma", "flyway"])
def test_partition_pull_request_runs_for_real(events, github, sidecar_dsn, dsn, fmt):
    db = events
    db.sql("UPDATE arch.settings SET migration_format = %s, migrations_dir = 'db/migrations'", (fmt,))
    _events_workload(db)
    db.audit()
    [rec] = kind(db, "partition")
    db.sql("SELECT arch.approve(%s, 'partition it')", (rec["id"],))
    sidecar(sidecar_dsn, github).run(once=True)
    [req] = requests_of(db)
    assert req["status"] == "done", req
    [pr] = github.pulls()
    files = {p: t for p, t in github.files(pr["head"]).items() if p != "README.md"}
    migrations = sorted(p for p in files if p.startswith("db/migrations/") and p.endswith(".sql"))
    docs = sorted(p for p in files if p.startswith("docs/pg_architect/"))
    assert len(docs) == 2 and docs[0].endswith("_rollback.sql") and docs[1].endswith("_runbook.md")
    d = rec["details"]
    n_copies = len([s for s in d["steps"][1]["sql"].splitlines() if s.strip()])
    if fmt == "prisma":   # one migration per step, the copy one per batch (each its own transaction)
        assert len(migrations) == 3 + n_copies and all(p.endswith("/migration.sql") for p in migrations)
    else:
        assert len(migrations) == 4, migrations
    if fmt == "flyway":   # the copy and the swap cannot run inside Flyway's transaction
        assert [re.sub(r".*__arch_rec_\d+_partition_pt_events_", "", p) for p in sorted(files)
                if p.endswith(".conf")] == ["step2.sql.conf", "step4.sql.conf"]
        assert all(re.search(r"/V\d{14}_\d__arch_rec_", p) for p in migrations)
    # the body: the runbook (locks, durations), what will not prune, the constraint changes
    body = pr["body"]
    for needle in ("### Runbook: partition public.pt_events by created_at", "ACCESS EXCLUSIVE", "estimated duration",
                   "Statements that will not prune", "SELECT id, created_at FROM pt_events WHERE device_id = $1",
                   "PRIMARY KEY pt_events_pkey (id) must include the partition key", "view public.pt_events_recent",
                   "Approved by `postgres`", "partition it"):
        assert needle in body, needle
    assert pr["title"].startswith(f"pg_architect #{rec['id']}: partition public.pt_events by created_at (1 week)")

    before = db.one("SELECT count(*), sum(id) FROM pt_events")
    _run_migrations(dsn, fmt, files, migrations)
    assert db.value("SELECT relkind FROM pg_class WHERE oid = 'public.pt_events'::regclass") == "p"
    assert db.one("SELECT count(*), sum(id) FROM pt_events") == before
    q = ("SELECT count(*) FROM pt_events WHERE created_at >= '2025-06-02 00:00+00'"
         " AND created_at < '2025-06-09 00:00+00'")
    assert 1 <= _partitions_scanned(db, q) <= 2
    _psql(dsn, files[docs[0]])
    assert db.value("SELECT relkind FROM pg_class WHERE oid = 'public.pt_events'::regclass") == "r"
    assert db.value("SELECT to_regclass('public.pt_events_partitioned')") is None
    assert db.one("SELECT count(*), sum(id) FROM pt_events") == before


def test_sidecar_refuses_a_partition_plan_it_did_not_generate(events, github, sidecar_dsn):
    db = events
    _events_workload(db)
    db.audit()
    [rec] = kind(db, "partition")
    db.sql("SELECT arch.approve(%s, 'partition it')", (rec["id"],))
    # A statement slipped into the plan, in the DDL and in details alike, with a matching hash.
    bad = rec["ddl"].replace("\n-- step 2", "\nDROP TABLE public.users CASCADE;\n-- step 2", 1)
    details = dict(rec["details"], ddl=bad)
    forge(db, rec["id"], "ddl", bad, rehash=False)
    forge(db, rec["id"], "details", json.dumps(details), rehash=False)
    db.sql("ALTER TABLE arch.recommendation DISABLE TRIGGER recommendation_freeze")
    db.sql("UPDATE arch.recommendation SET approved_hash = arch.approval_hash(kind, schema_name, table_name, ddl,"
           " rollback_ddl, details) WHERE id = %s", (rec["id"],))
    db.sql("ALTER TABLE arch.recommendation ENABLE TRIGGER recommendation_freeze")
    sidecar(sidecar_dsn, github).run(once=True)
    [req] = requests_of(db)
    assert req["status"] == "refused" and "not what pg_architect generates" in req["last_error"], req
    assert github.pulls() == []
    # The table changed since the audit (a new index): the stored plan no longer fits, refused too.
    db.sql("SELECT arch.retry_request(%s)", (req["id"],))
    forge(db, rec["id"], "ddl", rec["ddl"], rehash=False)
    forge(db, rec["id"], "details", json.dumps(rec["details"]), rehash=False)
    db.sql("ALTER TABLE arch.recommendation DISABLE TRIGGER recommendation_freeze")
    db.sql("UPDATE arch.recommendation SET approved_hash = arch.approval_hash(kind, schema_name, table_name, ddl,"
           " rollback_ddl, details) WHERE id = %s", (rec["id"],))
    db.sql("ALTER TABLE arch.recommendation ENABLE TRIGGER recommendation_freeze")
    db.sql("CREATE INDEX pt_events_payload_idx ON public.pt_events (payload)")
    sidecar(sidecar_dsn, github).run(once=True)
    [req] = requests_of(db)
    assert req["status"] == "refused" and "changed since the audit" in req["last_error"], req
    db.sql("DROP INDEX public.pt_events_payload_idx")
    db.sql("SELECT arch.retry_request(%s)", (req["id"],))
    sidecar(sidecar_dsn, github).run(once=True)
    assert requests_of(db)[0]["status"] == "done"


# --------------------------------------------------------------------------- materialized views and caches
@pytest.fixture
def sales(gh_db):
    db = gh_db
    db.sql(SALES)
    db.sql("UPDATE arch.settings SET matview_min_calls = 20, matview_min_mean_time_ms = 1")
    db.sql("SELECT pg_stat_statements_reset()")
    yield db
    db.sql("SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname LIKE 'arch_refresh_%'")
    db.sql("DROP TABLE IF EXISTS public.mv_sales CASCADE")


@pytest.mark.parametrize("fmt", ["sql", "prisma", "flyway"])
def test_audit_stores_materialized_view_and_its_pull_request_runs(sales, github, sidecar_dsn, dsn, fmt):
    db = sales
    db.sql("UPDATE arch.settings SET migration_format = %s", (fmt,))
    db.run(BY_REGION, REGIONS, times=3)
    summary = db.audit()
    assert summary["materialized_view_advice"] == 1, summary
    [rec] = kind(db, "materialized_view")
    d = rec["details"]
    assert d["advised"] and d["statements"][0]["query"] == BY_REGION_PG and d["ddl"] == rec["ddl"]
    assert rec["index_name"] == d["view_name"] and rec["columns"] == d["unique_columns"] == ["region"]
    assert linked(db, rec["id"]) == {BY_REGION_PG} and rec["query"] == BY_REGION_PG
    est = d["estimate"]
    assert 0 < rec["est_gain_pct"] <= 100 and rec["cost_before"] == pytest.approx(est["calls"] * est["mean_ms"])
    assert rec["confidence"] == pytest.approx(min(0.9, 0.5 + 0.4 * rec["est_gain_pct"] / 100), abs=1e-3)
    db.sql("SELECT arch.approve(%s, 'precompute it')", (rec["id"],))
    sidecar(sidecar_dsn, github).run(once=True)
    [req] = requests_of(db)
    assert req["status"] == "done", req
    [pr] = github.pulls()
    files = {p: t for p, t in github.files(pr["head"]).items() if p != "README.md"}
    [path] = [p for p in files if p.endswith(".sql")]
    assert not [p for p in files if p.endswith(".conf")]    # all three statements may run in a transaction
    for needle in (d["rewritten_query"], "Staleness it accepts", "refreshed every 3600 s", "0 * * * *",
                   "REFRESH MATERIALIZED VIEW CONCURRENTLY", BY_REGION_PG):
        assert needle in pr["body"], needle
    assert path.startswith("migrations/") and rec["rollback_ddl"].splitlines()[0] in files[path]
    _run_migrations(dsn, fmt, files, [path])
    assert db.value("SELECT count(*) FROM cron.job WHERE jobname = %s", (d["refresh_job"],)) == 1
    for (region,) in REGIONS[:3]:
        assert db.sql(_bind(d["rewritten_query"], [region])) == db.sql(BY_REGION, (region,))
    _psql(dsn, rec["rollback_ddl"])
    assert db.value("SELECT count(*) FROM cron.job WHERE jobname = %s", (d["refresh_job"],)) == 0
    assert db.value("SELECT to_regclass(%s)", (f"public.{d['view_name']}",)) is None


def test_no_materialized_view_recommendation_over_a_write_heavy_table(sales):
    db = sales
    db.run(BY_REGION, REGIONS, times=3)
    _write(db, "UPDATE mv_sales SET amount = amount + 1 WHERE id = %s", [(i,) for i in range(1, 40)])
    db.audit()
    assert kind(db, "materialized_view") == []


def test_sidecar_refuses_a_materialized_view_it_did_not_generate(sales, github, sidecar_dsn):
    db = sales
    db.run(BY_REGION, REGIONS, times=3)
    db.audit()
    [rec] = kind(db, "materialized_view")
    db.sql("SELECT arch.approve(%s, 'precompute it')", (rec["id"],))
    bad = rec["ddl"].replace("0 * * * *", "* * * * *")     # a refresh every minute: not what was advised
    forge(db, rec["id"], "ddl", bad, rehash=False)
    forge(db, rec["id"], "details", json.dumps(dict(rec["details"], ddl=bad)), rehash=False)
    db.sql("ALTER TABLE arch.recommendation DISABLE TRIGGER recommendation_freeze")
    db.sql("UPDATE arch.recommendation SET approved_hash = arch.approval_hash(kind, schema_name, table_name, ddl,"
           " rollback_ddl, details) WHERE id = %s", (rec["id"],))
    db.sql("ALTER TABLE arch.recommendation ENABLE TRIGGER recommendation_freeze")
    sidecar(sidecar_dsn, github).run(once=True)
    [req] = requests_of(db)
    assert req["status"] == "refused" and "as pg_architect writes them" in req["last_error"], req
    assert github.pulls() == []


@pytest.fixture
def products(gh_db):
    db = gh_db
    db.sql(PRODUCTS)
    db.sql("UPDATE arch.settings SET cache_min_calls = 600")
    db.sql("SELECT pg_stat_statements_reset()")
    yield db
    db.sql("DROP TABLE IF EXISTS public.cache_products CASCADE")


@pytest.mark.parametrize("fmt", ["sql", "prisma", "flyway"])
def test_audit_stores_cache_advice_and_its_pull_request_is_a_note(products, github, sidecar_dsn, fmt):
    db = products
    db.sql("UPDATE arch.settings SET migration_format = %s", (fmt,))
    db.run(PRODUCT, [(i % 200 + 1,) for i in range(800)])
    _write(db, "UPDATE cache_products SET price = price + 1 WHERE id = %s", [(3,)])
    db.run("SELECT name FROM cache_products WHERE price = %s", [(1,)] * 10)     # too rare: no cache
    db.audit()
    [rec] = kind(db, "cache")
    d = rec["details"]
    est = d["estimate"]
    assert d["kind"] == "cache" and d["ddl"] is None and linked(db, rec["id"]) == {PRODUCT_PG}
    # no DDL: the advice as comment lines, the fixed rollback
    assert rec["ddl"].startswith("-- pg_architect: application cache advice, no schema change.")
    assert all(line.startswith("--") for line in rec["ddl"].splitlines()) and rec["rollback_ddl"].startswith("--")
    assert f"TTL {est['ttl_s']} s" in rec["ddl"] and "keyed by $1" in rec["ddl"]
    assert rec["est_gain_pct"] == pytest.approx(100 * est["hit_rate"], abs=0.01) and rec["columns"] == ["id"]
    db.sql("SELECT arch.approve(%s, 'cache it')", (rec["id"],))
    sidecar(sidecar_dsn, github).run(once=True)
    [req] = requests_of(db)
    assert req["status"] == "done", req
    [pr] = github.pulls()
    files = {p: t for p, t in github.files(pr["head"]).items() if p != "README.md"}
    [(path, note)] = files.items()
    assert path.startswith("docs/pg_architect/") and path.endswith(".md")   # a note, no migration
    for needle in (PRODUCT_PG, "Key: the statement's parameters `$1`", f"TTL: **{est['ttl_s']} s**",
                   "Expected hit rate", "Invalidation", "public.cache_products"):
        assert needle in note, needle
    assert "Invalidation" in pr["body"] and "no schema change" in pr["body"]


def test_rejected_cache_advice_is_not_proposed_again(products):
    db = products
    db.run(PRODUCT, [(i % 200 + 1,) for i in range(800)])
    first = db.audit()
    [rec] = kind(db, "cache")
    assert db.value("SELECT (timings->>'advice_ms')::float8 FROM arch.audit_run WHERE id = %s",
                    (first["run_id"],)) > 0
    db.sql("SELECT arch.reject(%s, 'the product page is cached by the CDN already')", (rec["id"],))
    db.run(PRODUCT, [(i % 200 + 1,) for i in range(100)])
    db.audit()
    [again] = kind(db, "cache")
    assert (again["id"], again["status"], again["times_seen"]) == (rec["id"], "rejected", 2)
    assert again["details"] == rec["details"]              # frozen: the advice the DBA rejected


def test_approved_details_are_frozen_and_a_forgery_is_refused(products, github, sidecar_dsn):
    db = products
    db.run(PRODUCT, [(i % 200 + 1,) for i in range(800)])
    db.audit()
    [rec] = kind(db, "cache")
    db.sql("SELECT arch.approve(%s, 'cache it')", (rec["id"],))
    approved = db.dicts("SELECT * FROM arch.recommendation WHERE id = %s", (rec["id"],))[0]
    assert approved["approved_hash"] == db.value(
        "SELECT arch.approval_hash(kind, schema_name, table_name, ddl, rollback_ddl, details)"
        " FROM arch.recommendation WHERE id = %s", (rec["id"],))
    assert approved["approved_hash"] != db.value(
        "SELECT arch.approval_hash(kind, schema_name, table_name, ddl, rollback_ddl)"
        " FROM arch.recommendation WHERE id = %s", (rec["id"],))
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState) as err:
        db.sql("UPDATE arch.recommendation SET details = details || '{\"schedule\": \"TTL 86400 s\"}'"
               " WHERE id = %s", (rec["id"],))
    assert "frozen" in err.value.diag.message_primary and err.value.diag.message_hint
    # Behind the trigger (a superuser): the approval hash no longer matches, the sidecar refuses.
    forge(db, rec["id"], "details", json.dumps(dict(rec["details"], rationale="forged")), rehash=False)
    sidecar(sidecar_dsn, github).run(once=True)
    [req] = requests_of(db)
    assert req["status"] == "refused" and "approval hash does not match" in req["last_error"], req
    assert github.pulls() == []
