"""The weekly audit through pg_cron."""

import psycopg
import pytest

from conftest import create_database, drop_database


def jobs(db):
    return db.dicts("SELECT jobname, schedule, command, database FROM cron.job WHERE jobname = 'pg_architect_audit'")


def test_schedule_and_unschedule(db):
    try:
        jobid = db.value("SELECT arch.schedule()")
        assert jobs(db) == [{"jobname": "pg_architect_audit", "schedule": "0 2 * * 0",
                             "command": "CALL arch.run_audit_batched()", "database": "pga_test"}]
        assert db.value("SELECT arch.schedule()") == jobid  # idempotent
        db.value("SELECT arch.schedule('30 3 * * 1')")
        assert [j["schedule"] for j in jobs(db)] == ["30 3 * * 1"]
        assert db.value("SELECT arch.unschedule()") is True
        assert jobs(db) == []
        assert db.value("SELECT arch.unschedule()") is False
    finally:
        db.sql("SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = 'pg_architect_audit'")


def test_invalid_cron_expression(db):
    with pytest.raises(psycopg.Error) as err:
        db.sql("SELECT arch.schedule('every sunday')")
    assert "invalid cron expression" in str(err.value)
    assert "five-field" in err.value.diag.message_hint
    assert jobs(db) == []


def test_schedule_without_pg_cron_explains(pg_server):
    from pg_architect.install import install

    url = create_database(pg_server, "pga_nocron")
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            install(conn)
            with pytest.raises(psycopg.Error) as err:
                conn.execute("SELECT arch.schedule()")
        assert "pg_cron is not installed in database pga_nocron" in str(err.value)
        assert "shared_preload_libraries" in err.value.diag.message_hint
    finally:
        drop_database(pg_server, "pga_nocron")
