"""Audit bookkeeping: the one-audit-at-a-time lock and the rows of ``arch.audit_run`` /
``arch.audit_statement`` (what the pipeline in audit.py writes about itself).

* :func:`acquire_lock`: a transaction-scoped advisory lock (``SELECT arch.run_audit()``);
  :func:`acquire_session_lock`: the same lock held by the session across the commits of
  ``CALL arch.run_audit_batched()`` (released by :func:`release_session_lock`, also on error); a
  second caller gets a clear error naming the backend that holds it;
* :class:`OneTransaction` / :class:`Batches`: what the pipeline calls between its steps and its
  statements: nothing in one transaction, a COMMIT every ``batch_size`` statements (with the
  progress written first) when batched;
* :func:`start` / :func:`record_window` / :func:`record_statement` / :func:`finish`: the run's row;
* :func:`record_failure`: a failed audit's own row goes with its rolled-back transaction; the
  CLI writes a ``failed`` run with the error after the rollback, in a transaction of its own.
  Inside the server the caller's transaction aborts with the error (pg_cron keeps it in
  ``cron.job_run_details``): nothing of a failed audit is stored there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import LOCK_NOT_AVAILABLE, DbError, UserError

if TYPE_CHECKING:
    from .db import Db
    from .workload import Snapshot, WindowStatement

AUDIT_LOCK = 7237858263748198400


#: Statements per batch of CALL arch.run_audit_batched() when none is given.
DEFAULT_BATCH = 100


def acquire_lock(db: Db) -> None:
    if db.scalar(f"SELECT pg_catalog.pg_try_advisory_xact_lock({AUDIT_LOCK})"):
        return
    _refuse(db)


def acquire_session_lock(db: Db) -> None:
    """The audit lock for the whole session (it must survive the batches' commits)."""
    if db.scalar(f"SELECT pg_catalog.pg_try_advisory_lock({AUDIT_LOCK})"):
        return
    _refuse(db)


def release_session_lock(db: Db) -> None:
    try:
        db.scalar(f"SELECT pg_catalog.pg_advisory_unlock({AUDIT_LOCK})")
    except DbError:  # the transaction is aborted (the error is on its way): the session's end frees it
        pass


def _refuse(db: Db) -> None:
    holder = db.one(
        "SELECT l.pid, a.usename::text AS usename, a.xact_start, a.query_start FROM pg_catalog.pg_locks l"
        " LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted"
        f" AND ((l.classid::bigint << 32) | l.objid::bigint) = {AUDIT_LOCK} LIMIT 1")
    detail = (f"Backend {holder['pid']} ({holder['usename']}) has been running one since "
              f"{holder['query_start'] or holder['xact_start']}." if holder
              else "Another session holds the audit lock.")
    raise UserError("an audit is already running", detail=detail,
                    hint="Wait for it to finish (SELECT * FROM arch.audit_runs), or stop it with "
                         "pg_cancel_backend(pid).", sqlstate=LOCK_NOT_AVAILABLE)


class OneTransaction:
    """``SELECT arch.run_audit()``: the whole audit in the caller's transaction (no commits)."""

    def __init__(self, db: Db, run_id: int | None = None):
        self.db = db
        self.run_id = run_id
        self.batches = 0

    def settings(self) -> None:
        """The audit's transaction-local settings (``plan_cache_mode``; ``lock_timeout`` is set by
        the caller for the whole transaction)."""
        self.db.execute("SELECT pg_catalog.set_config('plan_cache_mode', 'force_generic_plan', true)")

    def tick(self, done: int) -> None:
        """Called after each statement (``done`` statements of the window handled so far)."""

    def commit(self, done: int | None = None) -> None:
        """Called between the pipeline's steps."""

    def done(self) -> None:
        """Called after the run's row is finished."""


class Batches(OneTransaction):
    """``CALL arch.run_audit_batched()``: COMMIT every ``size`` statements and between the steps,
    the progress written first; the transaction-local settings set again after each commit."""

    def __init__(self, db: Db, size: int):
        super().__init__(db)
        self.size = size
        self.since = 0

    def settings(self) -> None:
        # a procedure that commits cannot have SET clauses: its search_path is set here
        self.db.execute("SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true)")
        super().settings()
        ms = self.db.scalar("SELECT (extract(epoch FROM lock_timeout) * 1000)::bigint FROM arch.settings WHERE id")
        if ms is not None:
            self.db.execute("SELECT pg_catalog.set_config('lock_timeout', $1, true)", [f"{int(ms)}ms"])

    def tick(self, done: int) -> None:
        self.since += 1
        if self.since >= self.size:
            self.commit(done)

    def commit(self, done: int | None = None) -> None:
        if self.run_id is not None:
            self.db.execute("UPDATE arch.audit_run SET batches = batches + 1,"
                            " statements_done = coalesce($2::text::int, statements_done) WHERE id = $1",
                            [self.run_id, done])
        self.batches += 1
        self.since = 0
        self.db.commit()
        self.settings()

    def done(self) -> None:
        self.commit()


def mark_failed(db: Db, run_id: int, error: str) -> None:
    """A batched audit that failed after committing batches: its run row says so (the caller
    rolled the failed batch back first)."""
    db.execute("UPDATE arch.audit_run SET status = 'failed', finished_at = clock_timestamp(), error = $2"
               " WHERE id = $1 AND status = 'running'", [run_id, error[:2000]])
    db.commit()


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


def record_grouped(db: Db, run_id: int, st: WindowStatement, rep: WindowStatement, rep_outcome: str,
                   recommendations: int) -> None:
    """A statement analysed with the representative of its group (``grouping``)."""
    db.execute(
        "INSERT INTO arch.audit_statement (audit_run_id, dbid, userid, queryid, calls, total_time_ms,"
        " mean_time_ms, time_share, outcome, grouped_with, note, recommendations)"
        " VALUES ($1, $2::bigint::oid, $3::bigint::oid, $4, $5, $6, $7, $8, 'grouped', $9, $10, $11)",
        [run_id, st.dbid, st.userid, st.queryid, st.calls, st.total_time_ms, st.mean_time_ms, st.share,
         rep.queryid, f"differs from queryid {rep.queryid} only in normalisation noise (IN-list length, parameter "
         f"numbers): analysed once with it ({rep_outcome}); its recommendations are linked to this statement too",
         recommendations])


def record_reused(db: Db, run_id: int, st: WindowStatement, analysed_in: int, cost_before: float | None,
                  recommendations: int) -> None:
    """A statement whose earlier analysis was reused (``reuse``)."""
    db.execute(
        "INSERT INTO arch.audit_statement (audit_run_id, dbid, userid, queryid, calls, total_time_ms,"
        " mean_time_ms, time_share, outcome, reused_from, cost_before, note, recommendations)"
        " VALUES ($1, $2::bigint::oid, $3::bigint::oid, $4, $5, $6, $7, $8, 'reused', $9, $10::text::float8, $11, $12)",
        [run_id, st.dbid, st.userid, st.queryid, st.calls, st.total_time_ms, st.mean_time_ms, st.share,
         analysed_in, None if cost_before is None else str(cost_before),
         f"its text, tables (columns, indexes) and statistics are unchanged since audit {analysed_in}: that "
         f"analysis is reused, not planned again", recommendations])


def finish(db: Db, run_id: int, counts: dict[str, Any], duration_ms: float, timings: dict[str, float],
           known: dict, notes: list[str]) -> None:
    db.execute("UPDATE arch.audit_run SET status = 'ok', finished_at = clock_timestamp(), statements_analyzed = $2,"
               " statements_skipped = $3, candidates_tested = $4, recommendations_new = $5,"
               " statements_grouped = $11, statements_reused = $12, statements_done = statements_selected,"
               " recommendations_updated = $6, duration_ms = $7, timings = $8::jsonb, knowledge = $9::jsonb,"
               " notes = ARRAY(SELECT jsonb_array_elements_text($10::jsonb)) WHERE id = $1",
               [run_id, counts["statements_analyzed"], counts["skipped"], counts["candidates_tested"],
                counts["recommendations_new"], counts["recommendations_updated"], duration_ms, timings,
                known, notes, counts.get("statements_grouped", 0), counts.get("statements_reused", 0)])
