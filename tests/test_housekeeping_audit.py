"""Index housekeeping inside the audit (issue 10), as a DBA sees it:

    SELECT arch.run_audit();                 -- snapshots index usage, stores drop_index advice
    SELECT * FROM arch.recommendation WHERE kind = 'drop_index';
    SELECT arch.approve(42, 'duplicate, drop it');   -- the sidecar opens the pull request

The hk schema and its planted duplicate, prefix-redundant and unused indexes are those of
tests/test_housekeeping.py; pull requests go to the fake GitHub of tests/test_sidecar.py.
"""

import psycopg
import pytest
import sqlglot

from test_housekeeping import SCHEMA, flush, plant_history, wait_for
from test_sidecar import forge, github, requests_of, sidecar  # noqa: F401  (fixtures)


@pytest.fixture
def hk_audit(low_thresholds, github):
    db = low_thresholds
    db.sql("DROP SCHEMA IF EXISTS hk CASCADE")
    db.sql(SCHEMA)
    flush(db)
    wait_for(db, "SELECT n_tup_ins >= 5000 FROM pg_stat_user_tables WHERE relid = 'hk.booking'::regclass")
    db.sql("UPDATE arch.settings SET github_api_url = %s, github_repo = 'acme/app', github_timeout_s = 2,"
           " request_retry_base_s = 0, pr_sync_interval_s = 0", (github.url,))
    yield db
    db.sql("DROP SCHEMA IF EXISTS hk CASCADE")


def drops(db):
    return {r["index_name"]: r for r in db.dicts(
        "SELECT * FROM arch.recommendation WHERE kind = 'drop_index' AND schema_name = 'hk' ORDER BY id")}


def test_audit_snapshots_index_usage_and_stores_housekeeping(hk_audit):
    db = hk_audit
    before = db.value("SELECT count(*) FROM arch.snapshot_index WHERE schema_name = 'hk'")
    plant_history(db)
    summary = db.audit()
    # the audit's workload step took a snapshot of every hk index
    assert db.value("SELECT count(*) FROM arch.snapshot_index WHERE schema_name = 'hk'") > before + 7
    got = drops(db)
    # (customer_region_idx: nothing scanned it since the planted snapshot of 15 days ago)
    assert {n: r["index_kind"] for n, r in got.items()} == {
        "booking_status_idx1": "duplicate", "booking_room_idx": "prefix_redundant", "booking_note_idx": "unused",
        "customer_email_copy": "duplicate", "customer_region_idx": "unused"}
    assert summary["drop_index_advice"] >= 5
    for name, r in got.items():
        table = "customer" if name.startswith("customer") else "booking"
        unique = "UNIQUE " if name == "customer_email_copy" else ""
        assert r["status"] == "proposed" and r["table_name"] == table
        assert r["ddl"] == f"DROP INDEX CONCURRENTLY IF EXISTS hk.{name};"
        assert r["rollback_ddl"].startswith(f"CREATE {unique}INDEX CONCURRENTLY IF NOT EXISTS {name} ON hk.{table} ")
        assert r["est_size_bytes"] > 0 and 0 < r["confidence"] <= 1 and r["rationale"]
    assert got["booking_status_idx1"]["confidence_factors"]["covering_index"] == "hk.booking_status_idx"
    # never a constraint's index, never the only foreign-key cover
    everything = db.dicts("SELECT index_name FROM arch.recommendation WHERE kind = 'drop_index'")
    assert not {"customer_pkey", "customer_email_key", "booking_pkey", "booking_no_overlap",
                "booking_customer_idx"} & {r["index_name"] for r in everything}
    # the next audit sees the same advice again: one more sighting, no new rows
    again = db.audit()
    assert {n: r["times_seen"] for n, r in drops(db).items()} == {n: 2 for n in got}
    assert {n: r["id"] for n, r in drops(db).items()} == {n: r["id"] for n, r in got.items()}
    assert again["run_id"] != summary["run_id"]


@pytest.mark.parametrize("fmt", ["sql", "prisma", "flyway"])
def test_approved_drop_index_becomes_a_pull_request(hk_audit, github, sidecar_dsn, dsn, fmt):
    db = hk_audit
    db.sql("UPDATE arch.settings SET migration_format = %s, migrations_dir = 'db/migrations'", (fmt,))
    plant_history(db)
    db.audit()
    rec = drops(db)["booking_status_idx1"]
    db.sql("SELECT arch.approve(%s, 'duplicate, drop it')", (rec["id"],))
    sidecar(sidecar_dsn, github).run(once=True)
    [req] = requests_of(db)
    assert req["status"] == "done", req
    [pr] = github.pulls()
    assert pr["title"].startswith(f"pg_architect #{rec['id']}: drop index booking_status_idx1 on hk.booking")
    for needle in (rec["ddl"], "hk.booking_status_idx", "Rollback", rec["rollback_ddl"].rstrip(";"),
                   "scans since the statistics reset", "Approved by `postgres`"):
        assert needle in pr["body"], needle
    files = {p: t for p, t in github.files(f"arch/rec-{rec['id']}").items() if p != "README.md"}
    if fmt == "flyway":
        sql_path, conf_path = sorted(files)
        assert conf_path == sql_path + ".conf"
        assert "executeInTransaction=false" in files[conf_path].splitlines()
    else:
        [sql_path] = files
        assert sql_path.endswith("/migration.sql" if fmt == "prisma" else ".sql")
    content = files[sql_path]
    [stmt] = [s for s in sqlglot.parse(content, read="postgres") if s is not None]
    assert isinstance(stmt, sqlglot.exp.Drop) and stmt.args["concurrently"] and stmt.args["exists"]
    assert "-- Rollback: CREATE INDEX CONCURRENTLY IF NOT EXISTS booking_status_idx1 ON hk.booking" in content
    # Nothing was applied; the migration and its rollback run for real, outside a transaction.
    assert db.value("SELECT to_regclass('hk.booking_status_idx1')") is not None
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(content)
        assert conn.execute("SELECT to_regclass('hk.booking_status_idx1')").fetchone()[0] is None
        conn.execute(rec["rollback_ddl"])
        assert conn.execute("SELECT to_regclass('hk.booking_status_idx1')").fetchone()[0] is not None


@pytest.mark.parametrize("ddl, why", [
    ("DROP INDEX hk.booking_status_idx1;", "IF EXISTS"),
    ("DROP INDEX IF EXISTS hk.booking_status_idx1;", "without CONCURRENTLY"),
    ("DROP INDEX CONCURRENTLY IF EXISTS hk.booking_status_idx1 CASCADE;", "CASCADE"),
    ("DROP INDEX CONCURRENTLY IF EXISTS hk.booking_pkey;", "another index"),
    ("DROP TABLE hk.booking;", "must be DROP INDEX"),
])
def test_forged_drop_index_ddl_is_refused(hk_audit, github, sidecar_dsn, ddl, why):
    db = hk_audit
    plant_history(db)
    db.audit()
    rec = drops(db)["booking_status_idx1"]
    db.sql("SELECT arch.approve(%s, 'ok')", (rec["id"],))
    forge(db, rec["id"], "ddl", ddl)
    sidecar(sidecar_dsn, github).run(once=True)
    [req] = requests_of(db)
    assert req["status"] == "refused" and req["last_error"].startswith("DDL validation:"), req
    assert why in req["last_error"], req["last_error"]
    assert github.pulls() == []
    assert db.value("SELECT to_regclass('hk.booking_status_idx1')") is not None


def test_a_constraint_index_is_refused_even_when_forged(hk_audit, github, sidecar_dsn):
    db = hk_audit
    plant_history(db)
    db.audit()
    rec = drops(db)["booking_status_idx1"]
    db.sql("SELECT arch.approve(%s, 'ok')", (rec["id"],))
    forge(db, rec["id"], "index_name", "booking_pkey", rehash=False)
    forge(db, rec["id"], "ddl", "DROP INDEX CONCURRENTLY IF EXISTS hk.booking_pkey;")
    sidecar(sidecar_dsn, github).run(once=True)
    [req] = requests_of(db)
    assert req["status"] == "refused" and "backs a constraint" in req["last_error"], req
    assert github.pulls() == []
