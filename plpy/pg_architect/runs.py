"""Audit bookkeeping: the one-audit-at-a-time lock and the rows of ``arch.audit_run`` /
``arch.audit_statement`` (what the pipeline in audit.py writes about itself).

* :func:`acquire_lock`: a transaction-scoped advisory lock; a second caller gets a clear error
  naming the backend that holds it;
* :func:`start` / :func:`record_window` / :func:`record_statement` / :func:`finish`: the run's row;
* :func:`record_failure`: a failed audit's own row goes with its rolled-back transaction; the
  CLI writes a ``failed`` run with the error after the rollback, in a transaction of its own.
  Inside the server the caller's transaction aborts with the error (pg_cron keeps it in
  ``cron.job_run_details``): nothing of a failed audit is stored there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import LOCK_NOT_AVAILABLE, UserError

if TYPE_CHECKING:
    from .db import Db
    from .workload import Snapshot, WindowStatement

AUDIT_LOCK = 7237858263748198400


def acquire_lock(db: Db) -> None:
    if db.scalar(f"SELECT pg_catalog.pg_try_advisory_xact_lock({AUDIT_LOCK})"):
        return
    holder = db.one(
        "SELECT l.pid, a.usename::text AS usename, a.xact_start FROM pg_catalog.pg_locks l"
        " LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted"
        f" AND ((l.classid::bigint << 32) | l.objid::bigint) = {AUDIT_LOCK} LIMIT 1")
    detail = (f"Backend {holder['pid']} ({holder['usename']}) has been running one since {holder['xact_start']}."
              if holder else "Another session holds the audit lock.")
    raise UserError("an audit is already running", detail=detail,
                    hint="Wait for it to finish (SELECT * FROM arch.audit_runs), or stop it with "
                         "pg_cancel_backend(pid).", sqlstate=LOCK_NOT_AVAILABLE)


def record_failure(db: Db, error: str) -> int:
    """A failed audit whose own row was rolled back with its transaction (call in a new one)."""
    db.execute("SET LOCAL statement_timeout = 0")
    return int(db.scalar("INSERT INTO arch.audit_run (host, status, finished_at, error)"
                         " VALUES ($1, 'failed', clock_timestamp(), $2) RETURNING id", [db.host, error[:2000]]))


def start(db: Db) -> int:
    return int(db.scalar("INSERT INTO arch.audit_run (host) VALUES ($1) RETURNING id", [db.host]))


def record_window(db: Db, run_id: int, snap: Snapshot, totals: dict, selected: int) -> None:
    db.execute("UPDATE arch.audit_run SET snapshot_id = $2, prev_snapshot_id = $3::text::bigint,"
               " window_start = $4::text::timestamptz, window_end = $5::text::timestamptz, stats_reset_detected = $6,"
               " window_total_time_ms = $7, statements_seen = $8, statements_selected = $9 WHERE id = $1",
               [run_id, snap.id, snap.prev_id, None if snap.prev_taken_at is None else str(snap.prev_taken_at),
                str(snap.taken_at), bool(snap.reset), totals["window_total_ms"], totals["statements_seen"], selected])


def record_statement(db: Db, run_id: int, st: WindowStatement, outcome: str, code: str | None, reason: str | None,
                     cost_before: float | None, candidates: int, recommendations: int, duration_ms: float) -> None:
    db.execute(
        "INSERT INTO arch.audit_statement (audit_run_id, dbid, userid, queryid, calls, total_time_ms,"
        " mean_time_ms, time_share, outcome, skip_code, skip_reason, cost_before, candidates,"
        " recommendations, duration_ms) VALUES ($1, $2::bigint::oid, $3::bigint::oid, $4, $5, $6, $7,"
        " $8, $9, $10::text, $11::text, $12::text::float8, $13, $14, $15)",
        [run_id, st.dbid, st.userid, st.queryid, st.calls, st.total_time_ms, st.mean_time_ms, st.share,
         outcome, code, reason, cost_before, candidates, recommendations, duration_ms])


def finish(db: Db, run_id: int, counts: dict[str, Any], duration_ms: float, timings: dict[str, float],
           known: dict, notes: list[str]) -> None:
    db.execute("UPDATE arch.audit_run SET status = 'ok', finished_at = clock_timestamp(), statements_analyzed = $2,"
               " statements_skipped = $3, candidates_tested = $4, recommendations_new = $5,"
               " recommendations_updated = $6, duration_ms = $7, timings = $8::jsonb, knowledge = $9::jsonb,"
               " notes = ARRAY(SELECT jsonb_array_elements_text($10::jsonb)) WHERE id = $1",
               [run_id, counts["statements_analyzed"], counts["skipped"], counts["candidates_tested"],
                counts["recommendations_new"], counts["recommendations_updated"], duration_ms, timings,
                known, notes])
