"""Safe on production: one audit at a time, reader locks only, nothing executed, no leftovers."""


import psycopg
import pytest

from conftest import Session


def test_concurrent_audit_is_refused(low_thresholds, dsn):
    db = low_thresholds
    first = Session(dsn)
    try:
        first.sql("BEGIN")
        first.sql("SELECT arch.run_audit()")  # holds the audit lock until COMMIT/ROLLBACK
        with pytest.raises(psycopg.errors.LockNotAvailable) as err:
            db.sql("SELECT arch.run_audit()")
        assert "an audit is already running" in str(err.value)
        assert str(first.conn.info.backend_pid) in err.value.diag.message_detail
        assert "pg_cancel_backend" in err.value.diag.message_hint
    finally:
        first.sql("ROLLBACK")
        first.close()
    db.audit()  # free again


def test_only_reader_locks_on_user_tables(low_thresholds, dsn):
    db = low_thresholds
    db.run("SELECT * FROM orders WHERE user_id = %s", [(1,)])
    db.run("SELECT count(*) FROM behavior_log b JOIN users u ON u.id = b.user_id WHERE u.country = %s", [("DE",)])
    auditor = Session(dsn)
    try:
        auditor.sql("BEGIN")
        auditor.sql("SELECT arch.run_audit()")
        modes = db.sql("""
            SELECT DISTINCT c.relname, l.mode FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE l.pid = %s AND n.nspname = 'public'""", (auditor.conn.info.backend_pid,))
    finally:
        auditor.sql("ROLLBACK")
        auditor.close()
    assert {r[0] for r in modes} >= {"orders", "behavior_log", "users"}
    assert {r[1] for r in modes} == {"AccessShareLock"}


def test_user_statements_are_never_executed(low_thresholds):
    db = low_thresholds
    db.sql("CREATE SEQUENCE pga_side_effect")
    try:
        before = db.value("SELECT sum(total) FROM orders")
        users = db.value("SELECT count(*) FROM users")
        with db.conn.transaction(force_rollback=True):
            db.sql("UPDATE orders SET total = total + 1 WHERE user_id = %s", (3,))
            db.sql("DELETE FROM users WHERE country = %s", ("DE",))
        db.run("SELECT nextval('pga_side_effect') FROM orders WHERE user_id = %s", [(4,)])
        seq = db.value("SELECT last_value FROM pga_side_effect")
        db.audit()
        analysed = db.value("""SELECT count(*) FROM arch.audit_statement a JOIN arch.statement s
                               USING (dbid, userid, queryid)
                               WHERE a.outcome = 'analyzed' AND (s.query LIKE 'UPDATE orders%%'
                                  OR s.query LIKE 'DELETE FROM users%%' OR s.query LIKE '%%nextval%%')""")
        assert analysed == 3
        assert db.value("SELECT sum(total) FROM orders") == before
        assert db.value("SELECT count(*) FROM users") == users
        assert db.value("SELECT last_value FROM pga_side_effect") == seq
    finally:
        db.sql("DROP SEQUENCE pga_side_effect")


def test_no_hypothetical_index_left_behind(low_thresholds):
    db = low_thresholds
    db.run("SELECT * FROM orders WHERE user_id = %s", [(1,)])
    db.audit()
    assert db.value("SELECT count(*) FROM hypopg_list_indexes") == 0
    db.sql("SELECT * FROM arch.analyze_query('SELECT * FROM orders WHERE status = $1')")
    assert db.value("SELECT count(*) FROM hypopg_list_indexes") == 0
    assert db.value("SELECT count(*) FROM pg_prepared_statements") == 0


def test_statement_timeout_is_respected_and_cleans_up(low_thresholds):
    db = low_thresholds
    from pg_architect.sample import run_workload

    run_workload(db.conn, rounds=1)
    db.sql("SELECT * FROM arch.analyze_query('SELECT * FROM users WHERE id = 1')")  # warm: imports done
    db.sql("SET statement_timeout = '40ms'")
    try:
        with pytest.raises(psycopg.errors.QueryCanceled):
            db.sql("SELECT arch.run_audit()")
    finally:
        db.sql("RESET statement_timeout")
    assert db.value("SELECT count(*) FROM hypopg_list_indexes") == 0
    assert db.value("SELECT count(*) FROM pg_prepared_statements") == 0
    assert db.value("SELECT count(*) FROM arch.audit_run") == 0


def test_prover_refuses_several_statements_whatever_the_parser_says(db, dsn):
    """Even if a statement slipped past the parser, PostgreSQL's one-statement path refuses it."""
    from pg_architect.analyze import SkipStatement
    from pg_architect.db import PsycopgDb
    from pg_architect.prove import Prover

    orders = db.value("SELECT count(*) FROM orders")
    with psycopg.connect(dsn) as conn:
        prover = Prover(PsycopgDb(conn))
        with pytest.raises(SkipStatement):
            prover.load("SELECT 1; DELETE FROM orders", 0)
        prover.close()
        conn.commit()
    # and inside the server (PL/Python host)
    db.sql("""DO $$
plpy.execute("SELECT arch._boot()")
from pg_architect.db import PlpyDb
from pg_architect.prove import Prover
from pg_architect.analyze import SkipStatement
p = Prover(PlpyDb(plpy))
try:
    p.load("SELECT 1; DELETE FROM orders", 0)
    plpy.error("not refused")
except SkipStatement:
    pass
finally:
    p.close()
$$ LANGUAGE plpython3u""")
    assert db.value("SELECT count(*) FROM orders") == orders
