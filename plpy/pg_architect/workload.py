"""Pipeline step 1, workload: snapshot pg_stat_statements and select from the delta.

Each audit copies the cumulative counters of this database's statements into
``arch.snapshot_statement`` and works on the difference with the previous snapshot, so a
weekly audit sees this week's load.  The window falls back to the totals when there is no
previous snapshot, when ``pg_stat_statements_reset()`` ran since (``stats_reset`` moved), or
for an entry whose counters went down (it was evicted and came back).
"""

from __future__ import annotations

from dataclasses import dataclass

from . import security
from .db import Db, DbError, UserError, extension_schema
from .sqltext import quote_ident


@dataclass
class Snapshot:
    id: int
    taken_at: object
    prev_id: int | None
    prev_taken_at: object
    reset: bool
    statements: int


@dataclass
class WindowStatement:
    dbid: int
    userid: int
    queryid: int
    query: str
    calls: int
    total_time_ms: float
    mean_time_ms: float
    share: float


def pgss_schema(db: Db) -> str:
    schema = extension_schema(db, "pg_stat_statements")
    if schema is None:
        raise UserError("pg_stat_statements is not installed in this database",
                        detail="The audit reads the workload from pg_stat_statements.",
                        hint="CREATE EXTENSION pg_stat_statements; (it must also be in shared_preload_libraries)")
    return schema


def take_snapshot(db: Db) -> Snapshot:
    pgss = quote_ident(pgss_schema(db), always=True)
    try:
        with db.subtransaction():
            snap = db.row(f"INSERT INTO arch.snapshot (stats_reset, dealloc)"
                          f" SELECT stats_reset, dealloc FROM {pgss}.pg_stat_statements_info"
                          f" RETURNING id, taken_at, stats_reset")
    except DbError as exc:
        raise UserError("cannot read pg_stat_statements", detail=str(exc),
                        hint="Add pg_stat_statements to shared_preload_libraries and restart; "
                             "the audit role needs pg_read_all_stats to see other roles' statements.") from None
    sid = snap["id"]
    db.execute(
        f"INSERT INTO arch.statement AS s (dbid, userid, queryid, query)"
        f" SELECT dbid, userid, queryid, CASE WHEN min(query) ~* $1 THEN min(query)"
        f"   ELSE ltrim(upper(coalesce(substring(min(query) FROM $3), '')) || ' ' || $2) END"
        f" FROM {pgss}.pg_stat_statements(true)"
        f" WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
        f"   AND queryid IS NOT NULL AND query IS NOT NULL"
        f" GROUP BY dbid, userid, queryid"
        f" ON CONFLICT (dbid, userid, queryid) DO UPDATE SET last_seen = now(), query = EXCLUDED.query",
        # utility texts (passwords) are never stored
        [security.PLANNABLE_SQL_RE, security.UTILITY_TEXT, security.FIRST_WORD_SQL_RE])
    n = db.scalar(
        f"WITH ins AS (INSERT INTO arch.snapshot_statement (snapshot_id, dbid, userid, queryid, calls,"
        f"   total_exec_time, total_plan_time, rows, shared_blks_hit, shared_blks_read)"
        f" SELECT $1, dbid, userid, queryid, sum(calls), sum(total_exec_time), sum(total_plan_time),"
        f"   sum(rows), sum(shared_blks_hit), sum(shared_blks_read)"
        f" FROM {pgss}.pg_stat_statements(false)"
        f" WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
        f"   AND queryid IS NOT NULL"
        f" GROUP BY dbid, userid, queryid RETURNING 1) SELECT count(*) FROM ins", [sid])
    db.execute("UPDATE arch.snapshot SET statements = $2 WHERE id = $1", [sid, int(n)])
    prev = db.one("SELECT id, taken_at, stats_reset FROM arch.snapshot WHERE id < $1"
                  " ORDER BY id DESC LIMIT 1", [sid])
    reset = prev is not None and (prev["stats_reset"] != snap["stats_reset"])
    return Snapshot(id=sid, taken_at=snap["taken_at"], prev_id=prev["id"] if prev else None,
                    prev_taken_at=prev["taken_at"] if prev else None, reset=reset, statements=int(n))


_DELTA = """
WITH cur AS (SELECT * FROM arch.snapshot_statement WHERE snapshot_id = $1),
     prev AS (SELECT * FROM arch.snapshot_statement WHERE snapshot_id = $2),
     delta AS (
       SELECT c.dbid, c.userid, c.queryid,
              CASE WHEN $3 OR p.calls IS NULL OR c.calls < p.calls THEN c.calls
                   ELSE c.calls - p.calls END AS calls,
              CASE WHEN $3 OR p.calls IS NULL OR c.calls < p.calls THEN c.total_exec_time
                   ELSE greatest(c.total_exec_time - p.total_exec_time, 0) END AS total_time
       FROM cur c LEFT JOIN prev p USING (dbid, userid, queryid))
SELECT d.dbid::bigint AS dbid, d.userid::bigint AS userid, d.queryid, s.query,
       d.calls, d.total_time AS total_time_ms, d.total_time / d.calls AS mean_time_ms,
       d.total_time / nullif(sum(d.total_time) OVER (), 0) AS share,
       sum(d.total_time) OVER () AS window_total_ms,
       count(*) OVER () AS seen
FROM delta d JOIN arch.statement s USING (dbid, userid, queryid)
WHERE d.calls > 0
ORDER BY d.total_time DESC
"""


def window(db: Db, snap: Snapshot, *, min_calls: int, min_mean_ms: float, limit: int,
           exclude=lambda q: False) -> tuple[list[WindowStatement], dict]:
    """Statements of the window above the thresholds, costliest first, and window totals."""
    rows = db.query(_DELTA, [snap.id, snap.prev_id if snap.prev_id is not None else -1,
                             bool(snap.reset or snap.prev_id is None)])
    total = float(rows[0]["window_total_ms"] or 0) if rows else 0.0
    out = []
    for r in rows:
        if r["calls"] < min_calls or r["mean_time_ms"] < min_mean_ms or exclude(r["query"]):
            continue
        out.append(WindowStatement(dbid=r["dbid"], userid=r["userid"], queryid=r["queryid"],
                                   query=r["query"], calls=int(r["calls"]),
                                   total_time_ms=float(r["total_time_ms"]),
                                   mean_time_ms=float(r["mean_time_ms"]),
                                   share=float(r["share"] or 0.0)))
        if len(out) >= limit:
            break
    return out, {"window_total_ms": total, "statements_seen": len(rows)}


def prune(db: Db, retention) -> int:
    """Delete snapshots older than the retention, always keeping the latest two."""
    return int(db.scalar(
        "WITH d AS (DELETE FROM arch.snapshot WHERE taken_at < now() - $1::text::interval"
        " AND id NOT IN (SELECT id FROM arch.snapshot ORDER BY id DESC LIMIT 2) RETURNING 1)"
        " SELECT count(*) FROM d", [str(retention)]) or 0)
