"""The audit finds the right indexes for the sample application's slow statements."""

import json

import pytest

from conftest import ddl_for, index_cols, recommendations

USER_EVENTS = ("SELECT id, event_type, created_at FROM behavior_log "
               "WHERE user_id = %s AND created_at >= %s ORDER BY created_at DESC LIMIT 20")
EMAIL = "SELECT id, name FROM users WHERE lower(email) = lower(%s)"
BY_ID = "SELECT * FROM users WHERE id = %s"
EVENTS_OF_TYPE = "SELECT count(*) FROM behavior_log WHERE event_type = %s AND created_at >= now() - interval '1 day'"


def _workload(db):
    db.run(USER_EVENTS, [(u, "2020-01-01") for u in (1, 2, 3)])
    db.run(EMAIL, [("User1@Example.com",), ("user2@example.com",)])
    db.run(BY_ID, [(1,), (2,)])


def test_audit_finds_expected_indexes(low_thresholds):
    db = low_thresholds
    _workload(db)
    summary = db.audit()
    assert summary["statements_analyzed"] >= 3
    ddls = [r["ddl"] for r in recommendations(db)]
    # One index led by the equality column serves the user's events.  The audit chooses one set
    # for the workload (arch.settings.audit_index_set): with ~20 events per user the
    # deduplicated (user_id) costs about the same as (user_id, created_at) at a fraction of its
    # size; the statement's own best index, proven alone, is still the multi-column one:
    # equality column first, then the range/ordering column.
    [bl] = ddl_for(db, "behavior_log")
    assert index_cols(bl).split(", ")[0] == "user_id", ddls
    alone = db.dicts("SELECT ddl FROM arch.analyze_query(%s) WHERE kind = 'index'",
                     (USER_EVENTS.replace("%s", "$1", 1).replace("%s", "$2"),))
    assert index_cols(alone[0]["ddl"]) == "user_id, created_at", alone
    # The expression index for lower(email) = $1.
    assert any(index_cols(d) == "(lower(email))" for d in ddl_for(db, "users")), ddls
    for r in recommendations(db):
        assert r["ddl"].startswith("CREATE INDEX CONCURRENTLY")
        assert r["status"] == "proposed"
        assert 0 < r["confidence"] <= 1
        assert r["cost_after"] < r["cost_before"]
        assert r["est_gain_pct"] >= 10
        assert r["est_size_bytes"] > 0
        assert r["rationale"] and r["plan_changes"]["removed"]


def test_well_indexed_statement_gets_nothing(low_thresholds):
    db = low_thresholds
    db.run(BY_ID, [(1,), (2,), (3,)])
    summary = db.audit()
    assert summary["statements_analyzed"] >= 1
    assert recommendations(db) == []
    row = db.dicts("SELECT a.outcome, a.recommendations FROM arch.audit_statement a"
                   " JOIN arch.statement s USING (dbid, userid, queryid) WHERE s.query LIKE 'SELECT * FROM users WHERE id%'")
    assert row == [{"outcome": "analyzed", "recommendations": 0}]


def test_thresholds_select_statements(db):
    """With the seed defaults (mean >= 500 ms, calls >= 100) nothing of this quick workload is audited."""
    db.sql("SELECT pg_stat_statements_reset()")
    _workload(db)
    summary = db.audit()
    assert summary["statements_selected"] == 0
    assert recommendations(db) == []


def test_same_recommendation_is_updated_not_duplicated(low_thresholds):
    db = low_thresholds
    _workload(db)
    db.audit()
    first = {r["fingerprint"]: r for r in recommendations(db)}
    _workload(db)
    s2 = db.audit()
    second = {r["fingerprint"]: r for r in recommendations(db)}
    assert set(first) == set(second)
    assert s2["recommendations_new"] == 0 and s2["recommendations_updated"] == len(first)
    assert all(r["times_seen"] == 2 for r in second.values())


def test_delta_windows_and_stats_reset(low_thresholds):
    db = low_thresholds
    q = "SELECT count(*) FROM orders WHERE user_id = %s"
    db.run(q, [(7,)], times=5)
    db.audit()
    db.run(q, [(8,)], times=3)
    second = db.audit()
    db.sql("SELECT pg_stat_statements_reset()")
    db.run(q, [(9,)], times=2)
    third = db.audit()
    calls = db.dicts("""
        SELECT a.audit_run_id, a.calls, r.stats_reset_detected FROM arch.audit_statement a
        JOIN arch.audit_run r ON r.id = a.audit_run_id
        JOIN arch.statement s USING (dbid, userid, queryid)
        WHERE s.query LIKE 'SELECT count(*) FROM orders WHERE user_id%' ORDER BY a.audit_run_id""")
    assert [c["calls"] for c in calls] == [5, 3, 2]
    assert [c["stats_reset_detected"] for c in calls] == [False, False, True]
    assert "delta since" in second["window"]
    assert "reset" in third["window"]


def test_audit_reports_progress_with_notices(low_thresholds):
    db = low_thresholds
    _workload(db)
    db.notices.clear()
    db.audit()
    assert any("statements in the window" in n for n in db.notices)
    assert any("[1/" in n for n in db.notices)
    assert any(n.startswith("pg_architect: audit") and "done in" in n for n in db.notices)


def test_views_show_the_audit(low_thresholds):
    db = low_thresholds
    _workload(db)
    summary = db.audit()
    run = db.dicts("SELECT * FROM arch.audit_runs")[0]
    assert run["id"] == summary["run_id"] and run["status"] == "ok"
    assert run["statements_analyzed"] == summary["statements_analyzed"]
    pending = db.dicts("SELECT * FROM arch.pending_recommendations")
    assert all(float(p["confidence"]) >= 0.8 for p in pending)
    benefits = [float(p["benefit_ms"]) for p in pending]
    assert benefits == sorted(benefits, reverse=True)
    assert db.dicts("SELECT * FROM arch.recommendations")


def test_analyze_query_with_parameters(db):
    rows = db.dicts("SELECT * FROM arch.analyze_query($q$SELECT * FROM orders WHERE user_id = $1$q$)")
    assert len(rows) == 1
    assert rows[0]["kind"] == "index" and rows[0]["index_kind"] == "single"  # the advisor, then its subtype
    assert index_cols(rows[0]["ddl"]) == "user_id"
    assert rows[0]["est_gain_pct"] > 50
    assert "Seq Scan on orders" in rows[0]["plan_changes"]["removed"]
    assert db.value("SELECT count(*) FROM arch.recommendation") == 0


def test_analyze_query_partial_index_for_constant_predicate(db):
    rows = db.dicts("SELECT * FROM arch.analyze_query("
                    "$q$SELECT id, created_at FROM orders WHERE status = 'pending' ORDER BY created_at LIMIT 50$q$)")
    assert rows, db.notices
    assert "WHERE (status = 'pending'" in rows[0]["ddl"] or "WHERE status = 'pending'" in rows[0]["ddl"], rows


def test_analyze_query_covering_index(db):
    rows = db.dicts("SELECT * FROM arch.analyze_query("
                    "$q$SELECT sum(total) FROM orders WHERE created_at >= $1 AND created_at < $2$q$)")
    assert rows
    assert index_cols(rows[0]["ddl"]).startswith("created_at")
    kinds = {r["index_kind"] for r in rows}
    assert kinds & {"covering", "single"}


def test_analyze_query_uses_callers_search_path(db):
    db.sql("CREATE SCHEMA shop_sp")
    try:
        db.sql("CREATE TABLE shop_sp.items AS SELECT g AS id, g % 1000 AS sku FROM generate_series(1, 50000) g")
        db.sql("ANALYZE shop_sp.items")
        db.sql("SET search_path = shop_sp, public")
        rows = db.dicts("SELECT * FROM arch.analyze_query('SELECT * FROM items WHERE sku = $1')")
        assert rows and rows[0]["table_name"] == "shop_sp.items"
    finally:
        db.sql("RESET search_path")
        db.sql("DROP SCHEMA shop_sp CASCADE")


def test_analyze_query_wrong_arguments(db):
    import psycopg

    with pytest.raises(psycopg.Error) as err:
        db.sql("SELECT * FROM arch.analyze_query('')")
    assert "statement is empty" in str(err.value) and err.value.diag.message_hint
    with pytest.raises(psycopg.Error) as err:
        db.sql("SELECT * FROM arch.analyze_query(NULL)")
    assert "statement is empty" in str(err.value)


def test_cli_audit_over_psycopg(low_thresholds, dsn, capsys):
    """The same pipeline runs from the command line for databases without plpython3u."""
    from pg_architect import cli

    db = low_thresholds
    _workload(db)
    assert cli.main(["audit", "--dsn", dsn, "--quiet"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["statements_analyzed"] >= 3
    runs = db.dicts("SELECT host FROM arch.audit_run")
    assert runs == [{"host": "cli"}]
    assert [index_cols(d).split(", ")[0] for d in ddl_for(db, "behavior_log")] == ["user_id"]


def test_cli_failed_audit_is_recorded_as_failed(low_thresholds, dsn, capsys):
    """A failed audit's transaction is rolled back; the CLI records the run as failed with its error."""
    from psycopg.conninfo import make_conninfo

    from pg_architect import cli

    db = low_thresholds
    _workload(db)
    assert cli.main(["audit", "--dsn", make_conninfo(dsn, options="-c statement_timeout=1"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "statement timeout" in err and "recorded as failed run" in err
    runs = db.dicts("SELECT host, status, error, finished_at IS NOT NULL AS finished FROM arch.audit_run")
    assert len(runs) == 1 and runs[0]["status"] == "failed" and runs[0]["finished"]
    assert "statement timeout" in runs[0]["error"] and runs[0]["host"] == "cli"
    assert db.value("SELECT count(*) FROM arch.recommendation") == 0
    assert db.dicts("SELECT status, error FROM arch.audit_runs") == [{"status": "failed", "error": runs[0]["error"]}]
