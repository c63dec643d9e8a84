"""Never aborts, never hangs (issue 7, items 4 and 5).

* A non-superuser auditor (arch_admin + pg_read_all_stats) without USAGE on a schema that holds
  an earlier recommendation: the audit completes; an object a step cannot handle becomes a note.
* `pg-architect audit` prints ERROR / DETAIL / HINT, never a Python traceback.
* A table locked by another session (ACCESS EXCLUSIVE): the audit, with its default settings and
  no statement_timeout, skips the statements on it with reason ``locked`` and completes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psycopg
import pytest

from conftest import Session

#: Safety net so a regression cannot hang the suite: far above what a passing test needs.
HANG_GUARD = "120s"


@pytest.fixture
def secret_schema(low_thresholds, dsn):
    """Schema pga_secret with a table, an audited statement on it and a signed recommendation
    (two superuser audits: the first proposes, the second signs it); login role pga_alice is a
    member of arch_admin and pg_read_all_stats and can read public, not pga_secret.  The statements
    on public are the application's (role pga_app, which alice may act as: an audit plans a statement
    only as the role that ran it); the one on pga_secret is a superuser's, which alice never plans."""
    db = low_thresholds
    db.sql("CREATE SCHEMA pga_secret")
    db.sql("CREATE TABLE pga_secret.ledger (id bigint, account int, amount numeric)")
    db.sql("INSERT INTO pga_secret.ledger SELECT g, g % 5000, g FROM generate_series(1, 50000) g")
    db.sql("ANALYZE pga_secret.ledger")
    db.sql("CREATE ROLE pga_alice LOGIN IN ROLE arch_admin, pg_read_all_stats")
    db.sql("GRANT SELECT ON ALL TABLES IN SCHEMA public TO pga_alice")
    db.sql("CREATE ROLE pga_app LOGIN")
    db.sql("GRANT SELECT ON ALL TABLES IN SCHEMA public TO pga_app")
    db.sql("GRANT pga_app TO pga_alice")
    app = Session(f"{dsn} user=pga_app")
    db.app = app
    try:
        db.run("SELECT * FROM pga_secret.ledger WHERE account = %s", [(7,), (8,)])
        app.run("SELECT * FROM orders WHERE user_id = %s", [(3,)])
        db.audit()
        db.audit()
        sig = db.value("SELECT index_signature FROM arch.recommendation WHERE table_name = 'ledger'")
        assert sig and "account" in sig, "the setup must leave a signed recommendation on pga_secret.ledger"
        yield db
    finally:
        app.close()
        db.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename IN ('pga_alice', 'pga_app')")
        db.sql("DROP SCHEMA pga_secret CASCADE")
        db.sql("DROP OWNED BY pga_alice, pga_app")
        db.sql("DROP ROLE pga_alice")
        db.sql("DROP ROLE pga_app")


def test_audit_without_usage_on_a_recommendations_schema_completes(secret_schema, dsn):
    db = secret_schema
    db.app.run("SELECT * FROM orders WHERE user_id = %s", [(4,)])
    db.run("SELECT * FROM pga_secret.ledger WHERE account = %s", [(9,)])
    alice = Session(f"{dsn} user=pga_alice")
    try:
        assert alice.value("SELECT has_schema_privilege('pga_secret', 'USAGE')") is False
        summary = alice.audit()  # failed with: permission denied for schema pga_secret
    finally:
        alice.close()
    assert summary["statements_analyzed"] >= 1
    run = db.dicts("SELECT status, notes FROM arch.audit_runs WHERE id = %s", (summary["run_id"],))[0]
    assert run["status"] == "ok"
    # The superuser's statement on the schema alice cannot use is skipped with a reason, not an
    # abort (alice, not a superuser, never plans a superuser's statement).
    skipped = db.dicts("SELECT code, reason, query FROM arch.skipped_statements WHERE audit_run_id = %s",
                       (summary["run_id"],))
    assert [s["code"] for s in skipped if "ledger" in s["query"]] == ["untrusted_code"], skipped
    assert db.value("SELECT status FROM arch.recommendation WHERE table_name = 'ledger'") == "proposed"


def test_applied_detection_still_works_for_the_others(secret_schema, dsn):
    """The same non-superuser audit still sees an index applied on a table it can read."""
    db = secret_schema
    ddl = db.value("SELECT ddl FROM arch.recommendation WHERE table_name = 'orders'")
    assert ddl
    db.sql(ddl)
    alice = Session(f"{dsn} user=pga_alice")
    try:
        summary = alice.audit()
    finally:
        alice.close()
    assert summary["knowledge"]["applied_detected"] == 1
    assert db.value("SELECT status FROM arch.recommendation WHERE table_name = 'orders'") == "applied"
    db.sql(db.value("SELECT rollback_ddl FROM arch.recommendation WHERE table_name = 'orders'"))


def _cli(dsn: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pg_architect.cli", "audit", "--dsn", dsn, "-q", *args],
                          capture_output=True, text=True, timeout=300, env=dict(os.environ))


def test_cli_audit_as_the_non_superuser(secret_schema, dsn):
    proc = _cli(f"{dsn} user=pga_alice")
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 0, proc.stderr
    assert '"statements_analyzed"' in proc.stdout


def test_cli_prints_errors_as_error_detail_hint(low_thresholds, dsn):
    """A role that may not run audits: psql-like ERROR lines and exit code 2, never a traceback."""
    db = low_thresholds
    db.sql("CREATE ROLE pga_nobody LOGIN")
    try:
        proc = _cli(f"{dsn} user=pga_nobody")
        assert "Traceback" not in proc.stderr, proc.stderr
        assert proc.returncode == 2
        assert "pg-architect audit: ERROR: permission denied" in proc.stderr
        assert "\nHINT: " in proc.stderr
        proc = _cli(f"{dsn} dbname=pga_no_such_database")
        assert "Traceback" not in proc.stderr and proc.returncode == 2
        assert "ERROR: cannot connect" in proc.stderr
    finally:
        db.sql("DROP ROLE pga_nobody")


def test_a_failing_object_becomes_a_note(low_thresholds, dsn):
    """A recommendation row held FOR UPDATE by another session: storing it times out on the
    audit's lock_timeout; the audit notes it and stores the others."""
    db = low_thresholds
    db.run("SELECT * FROM orders WHERE user_id = %s", [(3,)])
    db.run("SELECT * FROM behavior_log WHERE user_id = %s", [(3,)])
    db.audit()
    assert {r["table_name"] for r in db.dicts("SELECT table_name FROM arch.recommendation")} >= {"orders", "behavior_log"}
    db.sql("UPDATE arch.settings SET lock_timeout = '200 ms'")
    holder = Session(dsn)
    try:
        holder.sql("BEGIN")
        holder.sql("SELECT id FROM arch.recommendation WHERE table_name = 'orders' FOR UPDATE")
        db.sql(f"SET statement_timeout = '{HANG_GUARD}'")
        db.run("SELECT * FROM orders WHERE user_id = %s", [(4,)])
        db.run("SELECT * FROM behavior_log WHERE user_id = %s", [(4,)])
        summary = db.audit()
    finally:
        holder.sql("ROLLBACK")
        holder.close()
    assert any("storing the index on public.orders" in n and "lock" in n for n in summary["notes"]), summary["notes"]
    assert summary["recommendations_updated"] >= 1  # behavior_log's
    notes = db.value("SELECT notes FROM arch.audit_runs WHERE id = %s", (summary["run_id"],))
    assert notes == summary["notes"]


def test_lock_timeout_setting(db):
    assert db.value("SELECT value FROM arch.settings_overview WHERE name = 'lock_timeout'") == "00:00:05"
    assert "lock_timeout" in db.value("SELECT description FROM arch.settings_overview WHERE name = 'lock_timeout'")
    with pytest.raises(psycopg.errors.CheckViolation) as err:
        db.sql("UPDATE arch.settings SET lock_timeout = '-1 s'")
    assert err.value.diag.constraint_name == "settings_lock_timeout"
    with pytest.raises(psycopg.errors.CheckViolation):
        db.sql("UPDATE arch.settings SET lock_timeout = '2 hours'")


def test_audit_skips_a_locked_table_and_completes(low_thresholds, dsn):
    """BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE; in another session: the audit (default
    lock_timeout, no statement_timeout of its own) skips the statements on users as `locked`."""
    db = low_thresholds
    db.run("SELECT * FROM users WHERE email = %s", [("a@example.com",)])
    db.run("SELECT * FROM orders WHERE user_id = %s", [(5,)])
    holder = Session(dsn)
    auditor = Session(dsn)
    try:
        holder.sql("BEGIN")
        holder.sql("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        assert auditor.value("SHOW statement_timeout") == "0" and auditor.value("SHOW lock_timeout") == "0"
        # Not the audit's setting: only the net that keeps a regression from hanging the suite.
        auditor.sql(f"SET statement_timeout = '{HANG_GUARD}'")
        auditor.sql("SET pg_stat_statements.track = 'none'")
        t0 = time.monotonic()
        summary = auditor.audit()
        elapsed = time.monotonic() - t0
        assert auditor.value("SHOW lock_timeout") == "0"  # restored after the audit
    finally:
        holder.sql("ROLLBACK")
        holder.close()
        auditor.close()
    assert elapsed < 60
    skipped = db.dicts("SELECT code, reason, query FROM arch.skipped_statements WHERE audit_run_id = %s",
                       (summary["run_id"],))
    locked = [s for s in skipped if s["code"] == "locked"]
    assert locked and all("users" in s["query"] for s in locked), skipped
    assert "locked by another session" in locked[0]["reason"]
    assert any(r["table_name"] == "orders" for r in db.dicts("SELECT table_name FROM arch.recommendation"))
    assert db.value("SELECT status FROM arch.audit_runs WHERE id = %s", (summary["run_id"],)) == "ok"


def test_cli_audit_skips_a_locked_table(low_thresholds, dsn):
    db = low_thresholds
    db.run("SELECT * FROM users WHERE email = %s", [("b@example.com",)])
    holder = Session(dsn)
    try:
        holder.sql("BEGIN")
        holder.sql("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        proc = _cli(f"{dsn} options='-c statement_timeout={HANG_GUARD}'")
    finally:
        holder.sql("ROLLBACK")
        holder.close()
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert db.value("SELECT count(*) FROM arch.skipped_statements WHERE code = 'locked'") >= 1


def test_analyze_query_does_not_wait_on_a_locked_table(low_thresholds, dsn):
    db = low_thresholds
    db.sql("UPDATE arch.settings SET lock_timeout = '300 ms'")
    holder = Session(dsn)
    try:
        holder.sql("BEGIN")
        holder.sql("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        db.sql(f"SET statement_timeout = '{HANG_GUARD}'")
        with pytest.raises(psycopg.errors.InvalidParameterValue) as err:
            db.sql("SELECT * FROM arch.analyze_query('SELECT * FROM users WHERE email = $1')")
        assert "(locked)" in err.value.diag.message_detail
    finally:
        holder.sql("ROLLBACK")
        holder.close()
    assert db.value("SHOW lock_timeout") == "0"
