"""Validation on staging (issue 12): real EXPLAIN ANALYZE before and after, then undone.

Staging is a second PostgreSQL cluster (its own system identifier and roles) filled from the same
sample application as the test database, as a DBA would restore production into staging.
"""

from __future__ import annotations

import json
import tempfile

import psycopg
import pytest
from pytest_postgresql import factories

from conftest import PG_BIN
from pg_architect import cli, sample, validate
from pg_architect.sidecar import Sidecar

staging_proc = factories.postgresql_proc(
    executable=f"{PG_BIN}/pg_ctl",
    port=None,
    unixsocketdir=tempfile.mkdtemp(prefix="pga-staging-sock-"),
    postgres_options="-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c lc_messages=C",
)


@pytest.fixture(scope="module")
def staging(staging_proc):
    """The staging database: the same sample application, in another cluster."""
    base = f"host={staging_proc.unixsocketdir} port={staging_proc.port} user={staging_proc.user}"
    with psycopg.connect(f"{base} dbname=postgres", autocommit=True) as c:
        c.execute("DROP DATABASE IF EXISTS pga_staging")
        c.execute("CREATE DATABASE pga_staging")
    url = f"{base} dbname=pga_staging"
    with psycopg.connect(url) as conn:
        sample.load_sample_app(conn, events=200_000, users=10_000, orders=60_000)
        conn.commit()
    return url


def on_staging(staging: str, sql: str, params=None):
    with psycopg.connect(staging, autocommit=True) as c:
        cur = c.execute(sql, params)
        return cur.fetchall() if cur.description else None


_QID = [9000]


def plant(db, *, kind: str, table: str, ddl: str, rollback: str, query: str, userid: int | None = None,
          est_gain: float = 60.0, confidence: float = 0.85) -> int:
    """A recommendation as an audit stores it, serving one statement (``query``, with $n)."""
    _QID[0] += 1
    qid = _QID[0]
    run = db.value("INSERT INTO arch.audit_run (status) VALUES ('ok') RETURNING id")
    dbid = db.value("SELECT oid FROM pg_database WHERE datname = current_database()")
    userid = userid or db.value("SELECT oid FROM pg_roles WHERE rolname = current_user")
    db.sql("INSERT INTO arch.statement (dbid, userid, queryid, query) VALUES (%s, %s, %s, %s)",
           (dbid, userid, qid, query))
    rec = db.value(
        "INSERT INTO arch.recommendation (fingerprint, kind, schema_name, table_name, definition, ddl, rollback_ddl,"
        " rationale, queryid, query, userid, cost_before, cost_after, est_gain_pct, confidence, confidence_estimate)"
        " VALUES (%s, %s, 'public', %s, %s, %s, %s, 'planted by the test', %s, %s, %s, 100, %s, %s, %s, %s)"
        " RETURNING id",
        (f"test:{qid}", kind, table, ddl, ddl, rollback, qid, query, userid, 100 - est_gain, est_gain,
         confidence, confidence))
    db.sql("INSERT INTO arch.recommendation_statement (recommendation_id, audit_run_id, dbid, userid, queryid,"
           " cost_before, cost_after, est_gain_pct) VALUES (%s, %s, %s, %s, %s, 100, %s, %s)",
           (rec, run, dbid, userid, qid, 100 - est_gain, est_gain))
    return rec


def validations(db, rec_id: int) -> list[dict]:
    return db.dicts("SELECT * FROM arch.validations WHERE recommendation_id = %s ORDER BY id", (rec_id,))


def run_validate(dsn: str, staging: str, rec_id: int) -> dict:
    with psycopg.connect(dsn, autocommit=True) as prod:
        [out] = validate.validate_many(prod, staging, [rec_id])
    return out


def test_index_recommendation_measured_before_and_after_then_dropped(low_thresholds, dsn, staging):
    db = low_thresholds
    db.run("SELECT id, event_type, created_at FROM behavior_log WHERE user_id = %s", [(u,) for u in (3, 17, 42)],
           times=2)
    db.audit()
    [rec] = [r for r in db.dicts("SELECT * FROM arch.recommendation WHERE table_name = 'behavior_log'"
                                 " AND ddl LIKE '%%(user_id)%%'")]
    out = run_validate(dsn, staging, rec["id"])
    assert out["applied_on_staging"] and out["measured"] >= 1, out
    [v] = [v for v in validations(db, rec["id"]) if v["query"] and "user_id = $1" in v["query"]]
    assert v["status"] == "measured" and v["runs"] == 5 and v["parameter_source"] == "pg_stats"
    assert len(v["parameters"]) == 5 and all(p[0] is not None for p in v["parameters"])
    assert v["median_after_ms"] < v["median_before_ms"] / 5, v
    assert v["buffers_after"] < v["buffers_before"]
    assert any("Seq Scan on" in n for n in v["plan_changes"]["removed"]), v["plan_changes"]
    assert any(rec["index_name"] in n for n in v["plan_changes"]["added"]), v["plan_changes"]
    assert v["size_check"]["ok"] and v["size_check"]["tables"]["public.behavior_log"]["ratio"] == 1.0
    # the index is gone from staging, and was never on production
    assert on_staging(staging, "SELECT to_regclass(%s)", (f"public.{rec['index_name']}",)) == [(None,)]
    assert db.value("SELECT to_regclass(%s)", (f"public.{rec['index_name']}",)) is None
    # the measured gain replaced the estimate in the (still proposed) recommendation's confidence
    conf = db.dicts("SELECT confidence, confidence_factors FROM arch.recommendation WHERE id = %s", (rec["id"],))[0]
    assert conf["confidence"] == pytest.approx(float(v["confidence_measured"]), abs=1e-3)
    assert conf["confidence_factors"]["validated"]["measured_gain_pct"] > 80
    errors = db.dicts("SELECT * FROM arch.estimate_errors WHERE kind = 'index'")
    assert errors and sum(e["validated"] for e in errors) >= 1
    # the pull request body's section
    md = validate.pr_section(validate.PsycopgDb(db.conn), rec["id"])
    assert "### Measured on staging" in md and f"| {v['queryid']} | measured | 5 |" in md


def test_statistics_object_created_analyzed_and_dropped(db, dsn, staging):
    rec = plant(db, kind="statistics", table="orders",
                ddl="CREATE STATISTICS IF NOT EXISTS public.pga_val_orders_stats (dependencies, ndistinct, mcv)"
                    " ON status, user_id FROM public.orders;\nANALYZE public.orders (status, user_id);",
                rollback="DROP STATISTICS IF EXISTS public.pga_val_orders_stats;",
                query="SELECT count(*) FROM orders WHERE status = $1 AND user_id = $2")
    out = run_validate(dsn, staging, rec)
    assert out["applied_on_staging"] and out["measured"] == 1, out
    [v] = validations(db, rec)
    assert v["status"] == "measured" and v["runs"] == 5 and v["error"] is None
    assert all(p[0] and p[1] for p in v["parameters"])  # a status and a user_id from pg_stats
    assert on_staging(staging, "SELECT count(*) FROM pg_statistic_ext WHERE stxname = 'pga_val_orders_stats'") == [(0,)]


def test_write_statement_is_rolled_back(db, dsn, staging):
    before = on_staging(staging, "SELECT count(*), sum(hashtext(status)) FROM orders")
    rec = plant(db, kind="index", table="orders",
                ddl="CREATE INDEX CONCURRENTLY IF NOT EXISTS pga_val_orders_user_idx ON public.orders USING btree (user_id)",
                rollback="DROP INDEX CONCURRENTLY IF EXISTS public.pga_val_orders_user_idx",
                query="UPDATE orders SET status = 'validated' WHERE user_id = $1")
    out = run_validate(dsn, staging, rec)
    [v] = validations(db, rec)
    assert v["status"] == "measured", v
    assert "writes rolled back" in v["parameter_source"]
    assert v["median_after_ms"] < v["median_before_ms"]
    assert on_staging(staging, "SELECT count(*), sum(hashtext(status)) FROM orders") == before
    assert on_staging(staging, "SELECT count(*) FROM orders WHERE status = 'validated'") == [(0,)]
    assert on_staging(staging, "SELECT to_regclass('public.pga_val_orders_user_idx')") == [(None,)]
    assert out["confidence_adopted"]


def test_statement_calling_pg_notify_is_skipped(db, dsn, staging):
    rec = plant(db, kind="index", table="users",
                ddl="CREATE INDEX CONCURRENTLY IF NOT EXISTS pga_val_users_email_idx ON public.users USING btree (email)",
                rollback="DROP INDEX CONCURRENTLY IF EXISTS public.pga_val_users_email_idx",
                query="SELECT pg_notify('app', name) FROM users WHERE email = $1")
    out = run_validate(dsn, staging, rec)
    [v] = validations(db, rec)
    assert v["status"] == "skipped" and v["skip_code"] == "outside_effects" and "pg_notify" in v["error"]
    assert not out["applied_on_staging"]
    assert on_staging(staging, "SELECT to_regclass('public.pga_val_users_email_idx')") == [(None,)]
    conf = db.value("SELECT confidence FROM arch.recommendation WHERE id = %s", (rec,))
    assert conf == pytest.approx(0.85)  # nothing measured: the estimate stays


def test_statement_of_a_role_missing_on_staging_is_skipped(db, dsn, staging):
    db.sql("CREATE ROLE pga_prod_only")
    try:
        oid = db.value("SELECT oid FROM pg_roles WHERE rolname = 'pga_prod_only'")
        rec = plant(db, kind="index", table="orders", userid=oid,
                    ddl="CREATE INDEX CONCURRENTLY IF NOT EXISTS pga_val_orders_total_idx ON public.orders USING btree (total)",
                    rollback="DROP INDEX CONCURRENTLY IF EXISTS public.pga_val_orders_total_idx",
                    query="SELECT id FROM orders WHERE total = $1")
        out = run_validate(dsn, staging, rec)
        [v] = db.dicts("SELECT * FROM arch.validation WHERE recommendation_id = %s", (rec,))
        assert v["status"] == "skipped" and v["skip_code"] == "untrusted_code"
        assert "pga_prod_only" in v["error"] and "does not exist on staging" in v["error"]
        assert not out["applied_on_staging"]
    finally:
        db.sql("DELETE FROM arch.recommendation WHERE userid = (SELECT oid FROM pg_roles WHERE rolname = 'pga_prod_only')")
        db.sql("DROP ROLE pga_prod_only")


def test_staging_dsn_reaching_production_is_refused(db, dsn, pg_server):
    rec = plant(db, kind="index", table="orders",
                ddl="CREATE INDEX CONCURRENTLY IF NOT EXISTS pga_val_never_idx ON public.orders USING btree (shipped_at)",
                rollback="DROP INDEX CONCURRENTLY IF EXISTS public.pga_val_never_idx",
                query="SELECT id FROM orders WHERE shipped_at = $1")
    with psycopg.connect(dsn, autocommit=True) as prod:
        with pytest.raises(validate.ValidationRefused, match="reaches the production database itself"):
            validate.validate_many(prod, dsn, [rec])
    # the same cluster, another database is not production: only the check runs here
    with psycopg.connect(dsn, autocommit=True) as prod, psycopg.connect(pg_server("postgres"), autocommit=True) as other:
        assert validate.check_not_production(prod, other)["same_cluster"] is True
    assert cli.main(["validate", "--dsn", dsn, "--staging-dsn", dsn, "--recommendation", str(rec), "--once"]) == 3
    assert db.value("SELECT to_regclass('public.pga_val_never_idx')") is None
    assert db.value("SELECT count(*) FROM arch.validation") == 0


def test_validate_request_is_handled_by_the_sidecar(db, dsn, staging, sidecar_dsn):
    rec = plant(db, kind="index", table="behavior_log",
                ddl="CREATE INDEX CONCURRENTLY IF NOT EXISTS pga_val_bl_session_idx ON public.behavior_log USING btree (session_id)",
                rollback="DROP INDEX CONCURRENTLY IF EXISTS public.pga_val_bl_session_idx",
                query="SELECT id, page FROM behavior_log WHERE session_id = $1")
    req = db.value("SELECT arch.validate(%s)", (rec,))
    assert any("queued for validation on staging" in n for n in db.notices)
    assert db.value("SELECT arch.validate(%s)", (rec,)) == req  # still pending: the same request
    Sidecar(sidecar_dsn, env={"PGA_STAGING_DSN": staging}, sleep=lambda s: None).run(once=True)
    r = db.dicts("SELECT status, result, last_error FROM arch.request WHERE id = %s", (req,))[0]
    assert r["status"] == "done", r
    assert r["result"]["measured"] == 1 and r["result"]["applied_on_staging"]
    [v] = validations(db, rec)
    assert v["status"] == "measured" and v["median_after_ms"] < v["median_before_ms"]
    assert db.value("SELECT request_id FROM arch.validation WHERE recommendation_id = %s", (rec,)) == req
    assert on_staging(staging, "SELECT to_regclass('public.pga_val_bl_session_idx')") == [(None,)]
    # without a staging DSN in its environment the sidecar refuses (it is never read from the database)
    req2 = db.value("SELECT arch.validate(%s)", (rec,))
    Sidecar(sidecar_dsn, env={}, sleep=lambda s: None).run(once=True)
    r = db.dicts("SELECT status, last_error FROM arch.request WHERE id = %s", (req2,))[0]
    assert r["status"] == "refused" and "PGA_STAGING_DSN" in r["last_error"]


def test_cli_validate_once_follows_the_policy(db, dsn, staging, capsys):
    rec = plant(db, kind="index", table="orders",
                ddl="CREATE INDEX CONCURRENTLY IF NOT EXISTS pga_val_orders_created_idx ON public.orders USING btree (created_at)",
                rollback="DROP INDEX CONCURRENTLY IF EXISTS public.pga_val_orders_created_idx",
                query="SELECT id, total FROM orders WHERE created_at >= $1 ORDER BY created_at LIMIT $2")
    assert cli.main(["validate", "--dsn", dsn, "--staging-dsn", staging, "--once"]) == 0
    assert db.value("SELECT count(*) FROM arch.validation") == 0  # validate_policy = 'none'
    db.sql("UPDATE arch.settings SET validate_policy = 'before_approval', validate_runs = 3")
    capsys.readouterr()
    assert cli.main(["validate", "--dsn", dsn, "--staging-dsn", staging, "--once"]) == 0
    [line] = capsys.readouterr().out.strip().splitlines()
    assert json.loads(line)["recommendation"] == rec
    [v] = validations(db, rec)
    assert v["status"] == "measured" and v["runs"] == 3
    assert [p[1] for p in v["parameters"]] == ["100"] * 3  # LIMIT $2
    # validated since its last change: the next pass picks nothing
    assert cli.main(["validate", "--dsn", dsn, "--staging-dsn", staging, "--once"]) == 0
    assert len(validations(db, rec)) == 1
    with pytest.raises(psycopg.errors.CheckViolation, match="settings_validate_policy"):
        db.sql("UPDATE arch.settings SET validate_policy = 'always'")


def test_approved_recommendation_keeps_its_confidence(db, dsn, staging):
    rec = plant(db, kind="index", table="users",
                ddl="CREATE INDEX CONCURRENTLY IF NOT EXISTS pga_val_users_created_idx ON public.users USING btree (created_at)",
                rollback="DROP INDEX CONCURRENTLY IF EXISTS public.pga_val_users_created_idx",
                query="SELECT id FROM users WHERE created_at = $1", confidence=0.9)
    db.sql("SELECT arch.approve(%s)", (rec,))
    out = run_validate(dsn, staging, rec)
    assert out["measured"] == 1 and not out["confidence_adopted"]
    assert db.value("SELECT confidence FROM arch.recommendation WHERE id = %s", (rec,)) == pytest.approx(0.9)
    assert validations(db, rec)[0]["confidence_measured"] is not None


def test_query_samples_give_the_parameter_values_when_they_exist(db, dsn, staging):
    """arch.query_sample (built by the workload's sampling) holds texts with literals: used as they are;
    a sample that is not the same kind of statement, or calls something outside, is not."""
    rec = plant(db, kind="index", table="orders",
                ddl="CREATE INDEX CONCURRENTLY IF NOT EXISTS pga_val_orders_ship_idx ON public.orders USING btree (shipped_at)",
                rollback="DROP INDEX CONCURRENTLY IF EXISTS public.pga_val_orders_ship_idx",
                query="SELECT id FROM orders WHERE user_id = $1")
    st = db.dicts("SELECT dbid, userid, queryid FROM arch.recommendation_statement WHERE recommendation_id = %s",
                  (rec,))[0]
    key = (st["dbid"], st["userid"], st["queryid"])
    try:
        for q in ("SELECT id FROM orders WHERE user_id = 7", "SELECT id FROM orders WHERE user_id = 8",
                  "DELETE FROM orders WHERE user_id = 9", "SELECT pg_notify('x', 'y'), id FROM orders WHERE user_id = 1"):
            db.sql("INSERT INTO arch.query_sample (dbid, userid, queryid, query) VALUES (%s, %s, %s, %s)", (*key, q))
        run_validate(dsn, staging, rec)
        [v] = validations(db, rec)
        assert v["status"] == "measured" and v["parameter_source"] == "query_sample"
        assert sorted(set(v["parameters"])) == ["SELECT id FROM orders WHERE user_id = 7",
                                                "SELECT id FROM orders WHERE user_id = 8"]
        assert on_staging(staging, "SELECT count(*) FROM orders WHERE user_id = 9") != [(0,)]
    finally:
        db.sql("DELETE FROM arch.query_sample WHERE dbid = %s AND userid = %s AND queryid = %s", key)


PART_SETUP = [
    "CREATE TABLE pga_val_events (id bigint, user_id bigint, at date) PARTITION BY RANGE (at)",
    "CREATE TABLE pga_val_events_2024 PARTITION OF pga_val_events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')",
    "CREATE TABLE pga_val_events_2025 PARTITION OF pga_val_events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')",
    "INSERT INTO pga_val_events SELECT g, g % 5000, date '2024-01-01' + (g % 700) FROM generate_series(1, 150000) g",
    "ANALYZE pga_val_events",
]


def test_partitioned_table_procedure_applied_line_by_line_and_undone(db, dsn, staging):
    for s in PART_SETUP:
        db.sql(s)
        on_staging(staging, s)
    try:
        rec = plant(db, kind="index", table="pga_val_events",
                    ddl="CREATE INDEX IF NOT EXISTS pga_val_events_user_idx ON ONLY public.pga_val_events USING btree (user_id);\n"
                        "CREATE INDEX CONCURRENTLY IF NOT EXISTS pga_val_events_2024_u_idx ON public.pga_val_events_2024 USING btree (user_id);\n"
                        "ALTER INDEX public.pga_val_events_user_idx ATTACH PARTITION public.pga_val_events_2024_u_idx;\n"
                        "CREATE INDEX CONCURRENTLY IF NOT EXISTS pga_val_events_2025_u_idx ON public.pga_val_events_2025 USING btree (user_id);\n"
                        "ALTER INDEX public.pga_val_events_user_idx ATTACH PARTITION public.pga_val_events_2025_u_idx;",
                    rollback="DROP INDEX IF EXISTS public.pga_val_events_user_idx;\n"
                             "DROP INDEX IF EXISTS public.pga_val_events_2024_u_idx;\n"
                             "DROP INDEX IF EXISTS public.pga_val_events_2025_u_idx;",
                    query="SELECT id, at FROM pga_val_events WHERE user_id = $1")
        out = run_validate(dsn, staging, rec)
        [v] = validations(db, rec)
        assert v["status"] == "measured" and out["applied_on_staging"], v
        assert any("pga_val_events_2024_u_idx" in n for n in v["plan_changes"]["added"]), v["plan_changes"]
        assert v["median_after_ms"] < v["median_before_ms"]
        assert on_staging(staging, "SELECT count(*) FROM pg_indexes WHERE tablename LIKE 'pga_val_events%%'") == [(0,)]
    finally:
        db.sql("DROP TABLE pga_val_events")
        on_staging(staging, "DROP TABLE pga_val_events")


def test_staging_that_does_not_look_like_production_is_a_mismatch(db, dsn, staging):
    db.sql("CREATE TABLE pga_val_small (id bigint, code text)")
    db.sql("INSERT INTO pga_val_small SELECT g, 'c' || g % 50 FROM generate_series(1, 20000) g")
    db.sql("ANALYZE pga_val_small")
    on_staging(staging, "CREATE TABLE pga_val_small (id bigint, code text)")
    on_staging(staging, "INSERT INTO pga_val_small SELECT g, 'c' || g % 50 FROM generate_series(1, 100) g")
    on_staging(staging, "ANALYZE pga_val_small")
    try:
        rec = plant(db, kind="index", table="pga_val_small",
                    ddl="CREATE INDEX CONCURRENTLY IF NOT EXISTS pga_val_small_code_idx ON public.pga_val_small USING btree (code)",
                    rollback="DROP INDEX CONCURRENTLY IF EXISTS public.pga_val_small_code_idx",
                    query="SELECT id FROM pga_val_small WHERE code = $1")
        out = run_validate(dsn, staging, rec)
        [v] = validations(db, rec)
        assert v["status"] == "mismatch" and "row counts differ by 200.0×" in v["error"], v["error"]
        assert not v["size_check"]["ok"] and v["size_check"]["tables"]["public.pga_val_small"]["rows_staging"] == 100
        assert not out["applied_on_staging"]
        on_staging(staging, "ALTER TABLE pga_val_small ADD COLUMN extra int")
        on_staging(staging, "INSERT INTO pga_val_small SELECT g, 'c' || g % 50 FROM generate_series(1, 19900) g")
        on_staging(staging, "ANALYZE pga_val_small")
        run_validate(dsn, staging, rec)
        assert "columns differ: extra" in validations(db, rec)[-1]["error"]
    finally:
        db.sql("DROP TABLE pga_val_small")
        on_staging(staging, "DROP TABLE pga_val_small")


def test_statement_calling_a_volatile_user_function_is_skipped(db, dsn, staging):
    fn = ("CREATE FUNCTION pga_val_touch(bigint) RETURNS bigint LANGUAGE plpgsql VOLATILE AS"
          " $$ BEGIN PERFORM pg_notify('touched', $1::text); RETURN $1; END $$")
    db.sql(fn)
    on_staging(staging, fn)
    try:
        rec = plant(db, kind="index", table="orders",
                    ddl="CREATE INDEX CONCURRENTLY IF NOT EXISTS pga_val_orders_uid2_idx ON public.orders USING btree (user_id)",
                    rollback="DROP INDEX CONCURRENTLY IF EXISTS public.pga_val_orders_uid2_idx",
                    query="SELECT pga_val_touch(id) FROM orders WHERE user_id = $1")
        out = run_validate(dsn, staging, rec)
        [v] = validations(db, rec)
        assert v["skip_code"] == "outside_effects" and "public.pga_val_touch" in v["error"], v["error"]
        assert not out["applied_on_staging"]
    finally:
        db.sql("DROP FUNCTION pga_val_touch(bigint)")
        on_staging(staging, "DROP FUNCTION pga_val_touch(bigint)")


# ---------------------------------------------------------------------------- wired into the workflow
@pytest.fixture
def github():
    from fake_github import FakeGitHub

    fake = FakeGitHub().start()
    yield fake
    fake.stop()


def _behavior_log_index(db) -> dict:
    """An audit's index recommendation on behavior_log (user_id), as a DBA would see it."""
    db.run("SELECT id, event_type, created_at FROM behavior_log WHERE user_id = %s", [(u,) for u in (3, 17, 42)],
           times=2)
    summary = db.audit()
    [rec] = db.dicts("SELECT * FROM arch.recommendation WHERE table_name = 'behavior_log'"
                     " AND ddl LIKE '%%(user_id)%%'")
    return {"summary": summary, **rec}


def test_before_pr_policy_validates_before_the_pull_request_and_shows_the_numbers(low_thresholds, staging,
                                                                                   sidecar_dsn, github):
    db = low_thresholds
    db.sql("UPDATE arch.settings SET github_api_url = %s, github_repo = 'acme/app', github_timeout_s = 2,"
           " request_retry_base_s = 0, pr_sync_interval_s = 0, validate_policy = 'before_pr', validate_runs = 3",
           (github.url,))
    rec = _behavior_log_index(db)
    db.sql("SELECT arch.approve(%s, 'ship it once measured')", (rec["id"],))
    # A sidecar without a staging database: no validation, so no pull request.
    Sidecar(sidecar_dsn, env={"PGA_GITHUB_TOKEN": github.token}, sleep=lambda s: None).run(once=True)
    [req] = db.dicts("SELECT id, status, last_error FROM arch.request WHERE kind = 'open_pr'")
    assert req["status"] == "refused" and "before_pr" in req["last_error"] and "PGA_STAGING_DSN" in req["last_error"]
    assert github.pulls() == [] and validations(db, rec["id"]) == []
    # With PGA_STAGING_DSN the sidecar validates first, then opens the pull request with the measurements.
    db.sql("SELECT arch.retry_request(%s)", (req["id"],))
    Sidecar(sidecar_dsn, env={"PGA_GITHUB_TOKEN": github.token, "PGA_STAGING_DSN": staging},
            sleep=lambda s: None).run(once=True)
    r = db.dicts("SELECT status, last_error FROM arch.request WHERE id = %s", (req["id"],))[0]
    assert r["status"] == "done", r
    [v] = [v for v in validations(db, rec["id"]) if v["status"] == "measured"]
    assert db.value("SELECT request_id FROM arch.validation WHERE id = %s", (v["id"],)) == req["id"]
    assert v["median_after_ms"] < v["median_before_ms"]
    [pr] = github.pulls()
    body = pr["body"]
    assert "### Measured on staging" in body and f"| {v['queryid']} | measured | 3 |" in body, body
    assert f"{v['median_before_ms']:,.3f}" in body and f"{v['median_after_ms']:,.3f}" in body
    assert body.index("### Measured on staging") < body.index("### Rollback")
    assert on_staging(staging, "SELECT to_regclass(%s)", (f"public.{rec['index_name']}",)) == [(None,)]


def test_pull_request_body_without_a_validation_has_no_measured_section(low_thresholds, sidecar_dsn, github):
    db = low_thresholds
    db.sql("UPDATE arch.settings SET github_api_url = %s, github_repo = 'acme/app', github_timeout_s = 2,"
           " request_retry_base_s = 0, pr_sync_interval_s = 0", (github.url,))
    rec = _behavior_log_index(db)
    db.sql("SELECT arch.approve(%s)", (rec["id"],))
    Sidecar(sidecar_dsn, env={"PGA_GITHUB_TOKEN": github.token}, sleep=lambda s: None).run(once=True)
    [pr] = github.pulls()  # validate_policy = 'none': no validation needed
    assert "Measured on staging" not in pr["body"] and rec["ddl"] in pr["body"]


def test_before_approval_policy_queues_validations_after_the_audit(low_thresholds, staging, sidecar_dsn):
    db = low_thresholds
    db.sql("UPDATE arch.settings SET validate_policy = 'before_approval', validate_runs = 2,"
           " confidence_threshold = 0")
    rec = _behavior_log_index(db)
    queued = db.dicts("SELECT id, (payload->>'recommendation_id')::bigint AS rec FROM arch.request"
                      " WHERE kind = 'validate' AND status = 'pending'")
    expected = db.dicts("SELECT id FROM arch.recommendation WHERE status = 'proposed'"
                        " AND kind IN ('index', 'statistics', 'rewrite', 'materialized_view', 'partition')")
    assert sorted(q["rec"] for q in queued) == sorted(e["id"] for e in expected)
    assert rec["id"] in [q["rec"] for q in queued]
    assert rec["summary"]["validate_requests"] == len(queued)
    Sidecar(sidecar_dsn, env={"PGA_STAGING_DSN": staging}, sleep=lambda s: None).run(once=True)
    [v] = [v for v in validations(db, rec["id"]) if v["query"] and "user_id = $1" in v["query"]]
    assert v["status"] == "measured" and v["runs"] == 2
    # still proposed: the measured gain is now its confidence, before anyone approves it
    conf = db.value("SELECT confidence FROM arch.recommendation WHERE id = %s", (rec["id"],))
    assert conf == pytest.approx(float(v["confidence_measured"]), abs=1e-3)
    assert db.value("SELECT count(*) FROM arch.request WHERE kind = 'validate' AND status = 'done'") == len(queued)


def test_no_validation_is_queued_under_the_default_policy(low_thresholds):
    db = low_thresholds
    db.sql("UPDATE arch.settings SET confidence_threshold = 0")
    rec = _behavior_log_index(db)
    assert "validate_requests" not in rec["summary"]
    assert db.value("SELECT count(*) FROM arch.request WHERE kind = 'validate'") == 0
