"""Audit scale (issue 10): statements that differ only in IN-list length are analysed as one group;
CALL arch.run_audit_batched() commits between batches, one audit at a time across the commits."""

import threading
import time

import psycopg
import pytest

from conftest import Session

IN_EVENTS = "SELECT id, created_at FROM behavior_log WHERE user_id IN ({}) AND event_type = %s"
BY_TYPE_SINCE = "SELECT count(*) FROM behavior_log WHERE event_type = %s AND created_at >= %s"


def _in_list(db, lengths):
    for n in lengths:
        db.run(IN_EVENTS.format(", ".join(["%s"] * n)), [(*range(1, n + 1), "click")])


def test_in_lists_of_different_lengths_are_analysed_as_one_group(low_thresholds):
    db = low_thresholds
    _in_list(db, (2, 3, 7))
    db.run(BY_TYPE_SINCE, [("view", "2020-01-01")])
    qids = dict(db.sql("SELECT query, queryid FROM pg_stat_statements WHERE query LIKE '%user_id IN%'"))
    assert len(qids) == 3  # pg_stat_statements: three statements
    summary = db.audit()
    assert summary["statements_grouped"] == 2
    rows = db.dicts("SELECT a.queryid, a.outcome, a.grouped_with, a.note FROM arch.audit_statement a"
                    " WHERE a.queryid = ANY(%s)", (list(qids.values()),))
    outcomes = sorted(r["outcome"] for r in rows)
    assert outcomes == ["analyzed", "grouped", "grouped"]
    rep = next(r["queryid"] for r in rows if r["outcome"] == "analyzed")
    for r in rows:
        if r["outcome"] == "grouped":
            assert r["grouped_with"] == rep
            assert f"queryid {rep}" in r["note"] and "IN-list length" in r["note"]
    # the other shape is analysed on its own
    other = db.value("SELECT a.outcome FROM arch.audit_statement a JOIN arch.statement s USING (dbid, userid, queryid)"
                     " WHERE s.query LIKE 'SELECT count(*) FROM behavior_log WHERE event_type%'")
    assert other == "analyzed"
    # the group's recommendation serves every member
    linked = db.dicts("SELECT r.id, array_agg(rs.queryid ORDER BY rs.queryid) AS q FROM arch.recommendation r"
                      " JOIN arch.recommendation_statement rs ON rs.recommendation_id = r.id"
                      " WHERE r.table_name = 'behavior_log' AND r.kind = 'index' AND r.queryid = %s GROUP BY r.id",
                      (rep,))
    assert linked, "the group got no index recommendation"
    assert sorted(linked[0]["q"]) == sorted(qids.values())
    run = db.dicts("SELECT statements_grouped, statements_done, statements_selected FROM arch.audit_run")[0]
    assert run["statements_grouped"] == 2 and run["statements_done"] == run["statements_selected"]


def test_group_is_weighted_with_all_its_members(low_thresholds):
    db = low_thresholds
    _in_list(db, (2, 3, 4, 5))
    summary = db.audit()
    assert summary["statements_grouped"] == 3
    members = db.value("SELECT sum(total_time_ms) FROM arch.audit_statement WHERE outcome IN ('analyzed', 'grouped')")
    rec = db.value("SELECT total_time_ms FROM arch.recommendation WHERE kind = 'index' AND table_name = 'behavior_log'"
                   " ORDER BY total_time_ms DESC LIMIT 1")
    assert rec == pytest.approx(members, rel=1e-6)


def _workload(db, n=10):
    cols = ["user_id", "event_type", "created_at", "id"]
    for i in range(n):
        db.run(f"SELECT {cols[i % 4]}, count(*) FROM behavior_log WHERE user_id = %s AND id > {i} GROUP BY 1",
               [(i + 1,)])


def test_batched_audit_commits_between_batches_and_refuses_a_second(low_thresholds, dsn):
    """While the batched audit runs, another session sees its committed progress and the
    auditor's transaction is younger than the run; a second audit is refused."""
    db = low_thresholds
    db.sql("UPDATE arch.settings SET lock_timeout = '60 s'")
    _workload(db)
    auditor, locker = Session(dsn), Session(dsn)
    pid = auditor.value("SELECT pg_backend_pid()")
    errors: list[Exception] = []

    def audit():
        try:
            auditor.sql("CALL arch.run_audit_batched(1)")
        except Exception as exc:
            errors.append(exc)

    th = threading.Thread(target=audit)
    th.start()
    try:
        # once a batch is committed, hold behavior_log (every statement's table): the audit's
        # next batch waits for it, mid-run
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not db.value(
                "SELECT statements_done > 0 FROM arch.audit_run WHERE status = 'running'"):
            assert th.is_alive(), errors
            time.sleep(0.002)
        locker.sql("BEGIN")
        locker.sql("LOCK TABLE public.behavior_log IN ACCESS EXCLUSIVE MODE")
        while time.monotonic() < deadline and db.value(
                "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)) != "Lock":
            assert th.is_alive(), errors
            time.sleep(0.01)
        run = db.dicts("SELECT id, started_at, statements_done, statements_selected, batches FROM arch.audit_runs"
                       " WHERE status = 'running'")[0]
        assert 0 < run["statements_done"] < run["statements_selected"] and run["batches"] >= 2
        # the auditor's transaction began after the run: it committed since (no xmin held for the run)
        xact_start = db.value("SELECT xact_start FROM pg_stat_activity WHERE pid = %s", (pid,))
        assert xact_start > run["started_at"]
        for stmt in ("SELECT arch.run_audit()", "CALL arch.run_audit_batched()"):
            with pytest.raises(psycopg.Error) as err:
                db.sql(stmt)
            assert "an audit is already running" in str(err.value)
            assert f"Backend {pid}" in err.value.diag.message_detail
        locker.sql("COMMIT")
    finally:
        locker.close()
        th.join(300)
        auditor.close()
    assert not errors, errors
    run = db.dicts("SELECT status, batches, statements_done, statements_selected, statements_analyzed, statements_skipped"
                   " FROM arch.audit_run")[0]
    assert run["status"] == "ok"
    assert run["batches"] > run["statements_analyzed"] >= 4  # 10 statements, 4 shapes (grouped)
    assert run["statements_done"] == run["statements_selected"]
    # the lock went with the run: the next audit runs
    assert db.audit()["run_id"]


def test_batched_audit_releases_its_lock_on_error(low_thresholds, dsn):
    db = low_thresholds
    _workload(db, 6)
    auditor = Session(dsn)
    try:
        pid = auditor.value("SELECT pg_backend_pid()")
        auditor.sql("SET statement_timeout = '150ms'")
        with pytest.raises(psycopg.errors.QueryCanceled):
            auditor.sql("CALL arch.run_audit_batched(1)")
        locks = db.value("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = %s", (pid,))
        assert locks == 0
        assert db.value("SELECT count(*) FROM arch.audit_run WHERE status = 'running'") == 0
        failed = db.dicts("SELECT status, error FROM arch.audit_run")
        assert all(r["status"] == "failed" and "statement timeout" in r["error"] for r in failed)
        # another session audits now; so does the same session
        assert db.audit()["run_id"]
        auditor.sql("SET statement_timeout = 0")
        auditor.sql("CALL arch.run_audit_batched()")
        assert db.value("SELECT status FROM arch.audit_run ORDER BY id DESC LIMIT 1") == "ok"
    finally:
        auditor.close()


def test_batched_audit_refuses_a_transaction_block(low_thresholds, dsn):
    db = low_thresholds
    with psycopg.connect(dsn) as conn:  # not autocommit: CALL inside BEGIN ... cannot COMMIT
        with pytest.raises(psycopg.Error) as err:
            conn.execute("CALL arch.run_audit_batched()")
        assert "invalid transaction termination" in str(err.value)
        conn.rollback()
    assert db.value("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0
    assert db.value("SELECT count(*) FROM arch.audit_run WHERE status = 'running'") == 0


# --------------------------------------------------------------------------- reuse
PARTS = "SELECT id, note FROM public.scale_parts WHERE owner_id = %s AND created_at >= %s"


@pytest.fixture
def parts(low_thresholds):
    db = low_thresholds
    db.sql("CREATE TABLE public.scale_parts (id bigint PRIMARY KEY, owner_id int NOT NULL, created_at timestamptz"
           " NOT NULL, note text) WITH (autovacuum_enabled = off)")
    db.sql("INSERT INTO public.scale_parts SELECT g, g % 500, now() - g * interval '1 minute', md5(g::text)"
           " FROM generate_series(1, 50000) g")
    db.sql("ANALYZE public.scale_parts")
    db.sql("SELECT pg_stat_statements_reset()")
    yield db
    db.sql("DROP TABLE IF EXISTS public.scale_parts")


def _audit_parts(db):
    db.run(PARTS, [(7, "2020-01-01"), (8, "2020-01-01")])
    db.audit()
    run = db.value("SELECT max(id) FROM arch.audit_run")
    row = db.dicts("SELECT a.outcome, a.reused_from, a.note, a.recommendations FROM arch.audit_statement a"
                   " JOIN arch.statement s USING (dbid, userid, queryid)"
                   " WHERE a.audit_run_id = %s AND s.query LIKE 'SELECT id, note FROM public.scale_parts%%'", (run,))
    assert len(row) == 1, row
    return run, row[0]


def test_unchanged_statement_reuses_its_analysis(parts):
    db = parts
    first, row = _audit_parts(db)
    assert row["outcome"] == "analyzed" and row["recommendations"] >= 1
    rec = db.dicts("SELECT id, times_seen FROM arch.recommendation WHERE table_name = 'scale_parts'")
    assert rec
    second, row = _audit_parts(db)
    assert row["outcome"] == "reused" and row["reused_from"] == first
    assert f"unchanged since audit {first}" in row["note"]
    assert db.value("SELECT statements_reused FROM arch.audit_run WHERE id = %s", (second,)) >= 1
    # the recommendation still serves the statement, seen by this audit too
    assert db.value("SELECT count(*) FROM arch.recommendation_statement WHERE audit_run_id = %s"
                    " AND recommendation_id = %s", (second, rec[0]["id"])) == 1
    after = db.dicts("SELECT times_seen, last_audit_run_id, status FROM arch.recommendation WHERE id = %s",
                     (rec[0]["id"],))[0]
    assert after == {"times_seen": rec[0]["times_seen"] + 1, "last_audit_run_id": second, "status": "proposed"}
    # a third audit still reuses the first analysis
    _, row = _audit_parts(db)
    assert row["outcome"] == "reused" and row["reused_from"] == first and row["recommendations"] >= 1


@pytest.mark.parametrize("change", [
    "INSERT INTO public.scale_parts SELECT g, g % 7, now(), 'x' FROM generate_series(50001, 150000) g;"
    " ANALYZE public.scale_parts",
    "CREATE INDEX scale_parts_note ON public.scale_parts (note)",
    "ALTER TABLE public.scale_parts ADD COLUMN extra int",
    "ANALYZE public.scale_parts",
], ids=["analyze_changed_data", "new_index", "new_column", "analyze"])
def test_a_changed_input_is_analysed_again(parts, change):
    db = parts
    _audit_parts(db)
    for stmt in change.split(";"):
        db.sql(stmt)
    _, row = _audit_parts(db)
    assert row["outcome"] == "analyzed"


def test_analysis_is_not_reused_across_roles(parts, dsn):
    db = parts
    db.sql("CREATE ROLE pga_scale_app LOGIN")
    try:
        db.sql("GRANT SELECT ON public.scale_parts TO pga_scale_app")  # before: a GRANT changes the inputs
        _audit_parts(db)
        with psycopg.connect(dsn + " user=pga_scale_app", autocommit=True) as app:
            for v in (7, 8):
                app.execute(PARTS, (v, "2020-01-01")).fetchall()
        db.run(PARTS, [(7, "2020-01-01")])
        db.audit()
        run = db.value("SELECT max(id) FROM arch.audit_run")
        rows = dict(db.sql("SELECT r.rolname, a.outcome FROM arch.audit_statement a JOIN pg_roles r ON r.oid = a.userid"
                           " JOIN arch.statement s USING (dbid, userid, queryid) WHERE a.audit_run_id = %s"
                           " AND s.query LIKE 'SELECT id, note FROM public.scale_parts%%'", (run,)))
        assert rows == {"postgres": "reused", "pga_scale_app": "analyzed"}
    finally:
        db.sql("DROP OWNED BY pga_scale_app")
        db.sql("DROP ROLE pga_scale_app")


def test_reuse_can_be_turned_off(parts):
    db = parts
    _audit_parts(db)
    db.sql("UPDATE arch.settings SET reuse_analyses = false")
    _, row = _audit_parts(db)
    assert row["outcome"] == "analyzed"


def test_a_revoked_privilege_is_not_reused(parts, dsn):
    db = parts
    db.sql("CREATE ROLE pga_scale_ro LOGIN")
    try:
        db.sql("GRANT SELECT ON public.scale_parts TO pga_scale_ro")
        with psycopg.connect(dsn + " user=pga_scale_ro", autocommit=True) as app:
            app.execute(PARTS, (7, "2020-01-01")).fetchall()
        db.audit()
        with psycopg.connect(dsn + " user=pga_scale_ro", autocommit=True) as app:
            app.execute(PARTS, (8, "2020-01-01")).fetchall()
        db.sql("REVOKE SELECT ON public.scale_parts FROM pga_scale_ro")  # after it ran: planning must refuse
        db.audit()
        run = db.value("SELECT max(id) FROM arch.audit_run")
        row = db.dicts("SELECT a.outcome, a.skip_code FROM arch.audit_statement a JOIN pg_roles r ON r.oid = a.userid"
                       " WHERE a.audit_run_id = %s AND r.rolname = 'pga_scale_ro'", (run,))
        assert row == [{"outcome": "skipped", "skip_code": "permission"}]
    finally:
        db.sql("DROP OWNED BY pga_scale_ro")
        db.sql("DROP ROLE pga_scale_ro")
