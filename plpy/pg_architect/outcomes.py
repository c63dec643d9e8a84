"""Pipeline step 6 (the closed loop): which recommendations were applied, and what they did.

Run by every audit right after its workload snapshot:

1. **Applied** — a recommendation becomes ``applied`` when a valid index with the same
   *definition* appears on its table, whatever its name and whoever created it (a human by
   hand, a migration from the pull request).  The definition is compared as PostgreSQL prints
   it: ``hypopg_get_indexdef()`` of the recommendation's hypothetical index (computed once,
   stored in ``recommendation.index_signature``) against ``pg_get_indexdef()`` of the real
   indexes, both from ``ON schema.table USING ...`` on (the name is not part of it).  The
   audit that sees it records ``applied_at`` (now), the index's name, its own snapshot and
   the previous one: the index appeared between those two.

2. **Measured** — for each applied recommendation, every statement it was recommended for is
   compared in two windows of ``pg_stat_statements`` snapshots:

   * *before*: ending at the last snapshot without the index, starting at the earliest
     snapshot within ``outcome_window`` before it (same statistics epoch; none: the counters
     since the last reset);
   * *after*: starting at the snapshot that first saw the index, ending at the latest
     snapshot within ``outcome_window`` after it.

   With at least ``outcome_min_calls`` calls in both, the mean execution time (and the total
   time per call, planning included) before and after give the measured gain, weighted by
   the statements' calls before.  The verdict (``outcome``):

   * ``unused`` — the index was never scanned (``pg_stat_user_indexes.idx_scan = 0``): a
     failed recommendation;
   * ``slower`` — the statements' mean time went up: a failed recommendation;
   * ``improved`` — the gain is at least ``outcome_min_gain_pct``;
   * ``no_gain`` — in between.

   The numbers go on the recommendation and on each knowledge case (per statement).  An
   outcome is re-measured by later audits until the after window is complete.

The same loop for the kinds of issue 12 (:data:`KINDS`):

* ``partition`` — applied when the table (same schema and name) is now a partitioned table
  whose key PostgreSQL prints as the recommended one (``pg_get_partkeydef() = 'RANGE
  (created_at)'``), whatever its partitions are called.  The statements keep their text but
  get a new queryid (it is computed from the relation, which is a new one).
* ``materialized_view`` — applied when a materialized view exists whose definition, as
  PostgreSQL prints it (``pg_get_viewdef()``), is the recommended one: the signature is the
  recommended ``view_sql`` created as a temporary view in a subtransaction that is always
  rolled back (parse analysis only: no function runs) and printed the same way; names are
  ignored.  The statement is measured after the change by its *rewritten* text
  (``details.rewritten_query``, the one the application now sends): a new queryid.
* ``cache`` — cannot be seen from the database (the cache lives in the application); it stays
  ``merged`` and has no measured outcome.

For those two kinds the after window measures the statement found by its text (same role, same
database; the one with the most calls in the window), stored as
``recommendation_statement.queryid_after`` (``arch.kpis`` counts its calls for the time saved).
When none ran enough, the outcome is ``not_measured`` with the reason.
"""

from __future__ import annotations

import json

from .analyze import SkipStatement
from .db import QUERY_CANCELED, Db, DbError
from .guard import Notes, guarded

KINDS = ("partition", "materialized_view")   # applied detection and outcomes beyond indexes


def _obj(v) -> dict:
    """A jsonb value as a dict (PL/Python hands jsonb over as text)."""
    return json.loads(v) if isinstance(v, str) else (v or {})

_SIGNATURE = ("substr({d}, strpos({d}, ' ON ' || quote_ident({s}) || '.' || quote_ident({t}) || ' USING ') + 4)")


def _sig(defn: str, schema: str, table: str) -> str:
    return _SIGNATURE.format(d=defn, s=schema, t=table)


def sign_recommendations(db: Db, prover, plan_as=None, notes: Notes | None = None) -> int:
    """Store the definition signature of index recommendations that have none yet.

    With ``plan_as`` (security.PlanAs) the hypothetical index is created as the role whose
    statement the recommendation was made for (hypopg checks its expressions and predicate like
    CREATE INDEX, which may evaluate functions), never as the auditor.  Each recommendation is
    signed in its own subtransaction: an error on one becomes a note."""
    recs = db.query("SELECT id, schema_name::text AS schema_name, table_name::text AS table_name, hypo_ddl,"
                    " userid::bigint AS userid"
                    " FROM arch.recommendation WHERE kind = 'index' AND index_signature IS NULL"
                    " AND hypo_ddl IS NOT NULL AND status NOT IN ('applied', 'superseded')")
    n = 0
    for r in recs:
        if plan_as is not None:
            if r["userid"] is None:
                continue  # whose rights to use is unknown: never the auditor's
            try:
                prover.run_as = plan_as.wrapper_for(r["userid"])
            except SkipStatement:
                continue
        try:
            ok = guarded(db, notes, f"signing recommendation {r['id']} ({r['schema_name']}.{r['table_name']})",
                         _sign_one, db, prover, r, default=False)
        finally:
            prover.run_as = None
        if ok:
            n += 1
    return n


class _Undo(Exception):
    """Raised to roll back the subtransaction that created the temporary view."""


_PARTKEY = "SELECT 'RANGE (' || quote_ident($1) || ')'"


def sign_kinds(db: Db, notes: Notes | None = None) -> int:
    """The definition signature of partition (the partition key as PostgreSQL prints it) and
    materialized_view recommendations (the view's definition as PostgreSQL prints it)."""
    recs = db.query("SELECT id, kind, schema_name::text AS schema_name, table_name::text AS table_name, columns,"
                    " details FROM arch.recommendation WHERE kind = ANY($1::text[]) AND index_signature IS NULL"
                    " AND status NOT IN ('applied', 'superseded', 'rejected')", ["{" + ",".join(KINDS) + "}"])
    n = 0
    for r in recs:
        if guarded(db, notes, f"signing {r['kind']} recommendation {r['id']} ({r['schema_name']}.{r['table_name']})",
                   _sign_kind, db, r, default=False):
            n += 1
    return n


def _view_signature(db: Db, schema: str, view_sql: str) -> str | None:
    """``pg_get_viewdef()`` of ``view_sql`` (one SELECT, as the advisor wrote it), resolved with
    ``schema`` on the search_path and printed under ``pg_catalog, pg_temp`` like the real views;
    the temporary view is rolled back."""
    import sqlglot

    from .sqltext import quote_ident

    parsed = [e for e in sqlglot.parse(view_sql, read="postgres") if e is not None]
    if len(parsed) != 1 or parsed[0].key not in ("select", "union", "intersect", "except"):
        return None  # not one query: never executed
    out: list[str] = []
    try:
        with db.subtransaction():
            db.execute("SELECT set_config('search_path', $1, true)", [f"pg_catalog, {quote_ident(schema)}, pg_temp"])
            db.execute(f"CREATE TEMPORARY VIEW pga_outcome_signature AS {view_sql}")
            db.execute("SELECT set_config('search_path', 'pg_catalog, pg_temp', true)")
            out.append(db.scalar("SELECT pg_get_viewdef('pg_temp.pga_outcome_signature'::regclass)"))
            raise _Undo
    except _Undo:
        pass
    return out[0] if out else None


def _sign_kind(db: Db, r: dict) -> bool:
    d = _obj(r["details"])
    if r["kind"] == "partition":
        col = d.get("column_name") or (r["columns"] or [None])[0]
        sig = db.scalar(_PARTKEY, [col]) if col else None
    else:
        sig = _view_signature(db, r["schema_name"], d["view_sql"]) if d.get("view_sql") else None
    if not sig:
        return False
    db.execute("UPDATE arch.recommendation SET index_signature = $2 WHERE id = $1", [r["id"], sig])
    return True


def _sign_one(db: Db, prover, r: dict) -> bool:
    try:
        oid, _name = prover.create_hypothetical(r["hypo_ddl"])
    except DbError as exc:
        if exc.sqlstate == QUERY_CANCELED:
            raise
        return False  # the table is gone or changed: try again next audit
    try:
        sig = db.scalar(f"SELECT {_sig(f'{prover.h}.hypopg_get_indexdef($1::bigint::oid)', '$2::text', '$3::text')}",
                        [oid, r["schema_name"], r["table_name"]])
    finally:
        prover.drop_hypothetical(oid)
    if sig:
        db.execute("UPDATE arch.recommendation SET index_signature = $2 WHERE id = $1", [r["id"], sig])
        return True
    return False


# Index definitions compared from ``USING`` on (the table is matched by name in pg_class, not
# with to_regclass(), which needs USAGE on its schema; the index of a partitioned table prints as
# ``ON ONLY``), without double quotes: hypopg_get_indexdef() does not quote identifiers
# (``btree (order, kind)``, ``Kundenübersicht``) where pg_get_indexdef() does.
def _using(expr: str) -> str:
    return f"replace(substr({expr}, strpos({expr}, ' USING ')), '\"', '')"


_MATCH = f"""
SELECT ic.relname::text AS index_name
FROM pg_namespace n
JOIN pg_class t ON t.relnamespace = n.oid AND t.relname = $2
JOIN pg_index i ON i.indrelid = t.oid AND i.indisvalid AND i.indisready
JOIN pg_class ic ON ic.oid = i.indexrelid
WHERE n.nspname = $1 AND strpos($3, ' USING ') > 0
  AND {_using('pg_get_indexdef(i.indexrelid)')} = {_using('$3')}
ORDER BY ic.oid LIMIT 1
"""


# A partitioned table of the same name, partitioned by the recommended key.
_MATCH_PARTITION = """
SELECT t.relname::text FROM pg_namespace n JOIN pg_class t ON t.relnamespace = n.oid AND t.relname = $2
WHERE n.nspname = $1 AND t.relkind = 'p' AND pg_get_partkeydef(t.oid) = $3
"""

# A materialized view with the recommended definition, whatever its name and schema.
_MATCH_VIEW = """
SELECT v.relname::text FROM pg_class v
WHERE v.relkind = 'm' AND v.relispopulated AND pg_get_viewdef(v.oid) = $3 AND ($1, $2) IS NOT NULL
ORDER BY v.oid LIMIT 1
"""

_NOUN = {"partition": "partitioned table", "materialized_view": "materialized view"}
_WHAT = {"index": ("index", _MATCH), "partition": ("partitioned table", _MATCH_PARTITION),
         "materialized_view": ("materialized view", _MATCH_VIEW)}


def detect_applied(db: Db, snap, notes: Notes | None = None) -> list[int]:
    """Mark recommendations whose index (partitioned table, materialized view) now exists by
    definition as applied; one recommendation at a time (an error on one is a note, the others
    carry on)."""
    recs = db.query("SELECT id, kind, schema_name::text AS schema_name, table_name::text AS table_name,"
                    " index_signature FROM arch.recommendation WHERE kind = ANY($1::text[])"
                    " AND status NOT IN ('applied', 'superseded')"
                    " AND index_signature IS NOT NULL ORDER BY id", ["{index," + ",".join(KINDS) + "}"])
    out = []
    for r in recs:
        if guarded(db, notes, f"applied-{r['kind']} detection for recommendation {r['id']} "
                              f"({r['schema_name']}.{r['table_name']})", _detect_one, db, snap, r, default=False):
            out.append(int(r["id"]))
    return out


def _detect_one(db: Db, snap, r: dict) -> bool:
    what, match = _WHAT[r["kind"]]
    name = db.scalar(match, [r["schema_name"], r["table_name"], r["index_signature"]])
    if name is None:
        return False
    db.execute(
        "UPDATE arch.recommendation SET status = 'applied', applied_at = clock_timestamp(), applied_index = $2,"
        " applied_snapshot_id = $3, applied_prev_snapshot_id = $4::text::bigint, updated_at = now(),"
        " outcome_detail = $5 || ' ' || quote_ident($2) || ' seen at ' || to_char(clock_timestamp(),"
        " 'YYYY-MM-DD HH24:MI') || '; waiting for the statements to run after it'"
        " WHERE id = $1",
        [r["id"], name, snap.id, None if snap.prev_id is None else str(snap.prev_id), what])
    return True


_COUNTERS = ("SELECT calls, total_exec_time AS exec_ms, total_plan_time AS plan_ms FROM arch.snapshot_statement"
             " WHERE snapshot_id = $1 AND dbid = $2::bigint::oid AND userid = $3::bigint::oid AND queryid = $4")


def _delta(db: Db, start: dict | None, end: dict, key: tuple) -> tuple[int, float, float]:
    """(calls, exec ms, plan ms) of one statement between two snapshots (or since the last reset)."""
    e = db.one(_COUNTERS, [end["id"], *key])
    if e is None:
        return 0, 0.0, 0.0
    s = db.one(_COUNTERS, [start["id"], *key]) if start is not None else None
    if s is None or start is None or start["stats_reset"] != end["stats_reset"] or e["calls"] < s["calls"]:
        return int(e["calls"]), float(e["exec_ms"]), float(e["plan_ms"])
    return (int(e["calls"] - s["calls"]), max(0.0, float(e["exec_ms"] - s["exec_ms"])),
            max(0.0, float(e["plan_ms"] - s["plan_ms"])))


def _windows(db: Db, r: dict, window: str):
    """(before start, before end, after start, after end) snapshots; None where missing."""
    snap = "SELECT id, taken_at, stats_reset FROM arch.snapshot WHERE id = $1"
    b_end = db.one(snap, [r["applied_prev_snapshot_id"]]) if r["applied_prev_snapshot_id"] else None
    a_start = db.one(snap, [r["applied_snapshot_id"]]) if r["applied_snapshot_id"] else None
    b_start = a_end = None
    if b_end is not None:
        b_start = db.one(
            "SELECT id, taken_at, stats_reset FROM arch.snapshot WHERE id < $1"
            " AND stats_reset IS NOT DISTINCT FROM (SELECT stats_reset FROM arch.snapshot WHERE id = $1)"
            " ORDER BY (taken_at >= (SELECT taken_at FROM arch.snapshot WHERE id = $1) - $2::text::interval) DESC,"
            " CASE WHEN taken_at >= (SELECT taken_at FROM arch.snapshot WHERE id = $1) - $2::text::interval"
            "      THEN id END ASC, id DESC LIMIT 1", [b_end["id"], window])
    if a_start is not None:
        a_end = db.one(
            "SELECT id, taken_at, stats_reset FROM arch.snapshot WHERE id > $1"
            " AND taken_at <= (SELECT taken_at FROM arch.snapshot WHERE id = $1) + $2::text::interval"
            " ORDER BY id DESC LIMIT 1", [a_start["id"], window])
    return b_start, b_end, a_start, a_end


def classify(gain_pct: float, index_scans: int | None, min_gain_pct: float) -> str:
    if index_scans == 0:
        return "unused"
    if gain_pct < 0:
        return "slower"
    if gain_pct >= min_gain_pct:
        return "improved"
    return "no_gain"


def measure(db: Db, ks, notes: Notes | None = None) -> int:
    """Measure (or re-measure) the outcome of applied recommendations; returns how many."""
    recs = db.query(
        "SELECT r.id, r.kind, r.schema_name::text AS schema_name, r.applied_index::text AS applied_index,"
        " r.applied_snapshot_id, r.applied_prev_snapshot_id, r.details"
        " FROM arch.recommendation r LEFT JOIN arch.snapshot s ON s.id = r.applied_snapshot_id"
        " WHERE r.status = 'applied' AND r.applied_snapshot_id IS NOT NULL"
        "   AND (r.measured_at IS NULL OR r.measured_at < s.taken_at + $1::text::interval)",
        [ks.outcome_window])
    done = 0
    for r in recs:
        if guarded(db, notes, f"measuring the outcome of recommendation {r['id']}", _measure_one, db, ks, r,
                   default=False):
            done += 1
    return done


def _measure_one(db: Db, ks, r: dict) -> bool:
    b_start, b_end, a_start, a_end = _windows(db, r, ks.outcome_window)
    if b_end is None:
        db.execute("UPDATE arch.recommendation SET outcome_detail = $2 WHERE id = $1",
                   [r["id"], "cannot be measured: no workload snapshot from before the index appeared"])
        return False
    if a_end is None:
        return False
    stmts = db.query("SELECT DISTINCT l.dbid::bigint AS dbid, l.userid::bigint AS userid, l.queryid, s.query"
                     " FROM arch.recommendation_statement l LEFT JOIN arch.statement s"
                     " ON (s.dbid, s.userid, s.queryid) = (l.dbid, l.userid, l.queryid)"
                     " WHERE l.recommendation_id = $1", [r["id"]])
    kinds = r.get("kind", "index") in KINDS
    scans = None
    if not kinds:
        scans = db.scalar("SELECT idx_scan FROM pg_stat_user_indexes WHERE schemaname = $1 AND indexrelname = $2",
                          [r["schema_name"], r["applied_index"]])
        scans = None if scans is None else int(scans)
    per = []
    unseen = 0
    for s in stmts:
        key = (s["dbid"], s["userid"], s["queryid"])
        cb, eb, pb = _delta(db, b_start, b_end, key)
        after_key = _after_key(db, r, s, a_start, a_end) if kinds else key
        if after_key is None:
            unseen += 1
            continue
        ca, ea, pa = _delta(db, a_start, a_end, after_key)
        if cb < ks.outcome_min_calls or ca < ks.outcome_min_calls:
            continue
        if after_key != key:
            db.execute("UPDATE arch.recommendation_statement SET queryid_after = $5 WHERE recommendation_id = $1"
                       " AND dbid = $2::bigint::oid AND userid = $3::bigint::oid AND queryid = $4",
                       [r["id"], *key, after_key[2]])
        per.append((key, cb, eb, pb, ca, ea, pa))
    if not per:
        what = _NOUN.get(str(r.get("kind")), "index")
        if kinds and unseen and unseen == len(stmts):
            reason = ("not measured: the rewritten statement (details.rewritten_query) has not run since the "
                      f"materialized view {r['applied_index']} appeared: the application still sends the statement it "
                      "replaces" if r["kind"] == "materialized_view" else
                      f"not measured: its statements have not run since the {what} {r['applied_index']} appeared")
            db.execute("UPDATE arch.recommendation SET outcome = 'not_measured', outcome_detail = $2,"
                       " measured_at = clock_timestamp() WHERE id = $1", [r["id"], reason])
            return False
        db.execute("UPDATE arch.recommendation SET outcome_detail = $2 WHERE id = $1",
                   [r["id"], f"{what} {r['applied_index']} applied; waiting for at least {ks.outcome_min_calls} calls "
                             "of its statements in both windows"])
        return False
    w = sum(cb for _k, cb, *_ in per)
    before = sum(eb for _k, _cb, eb, *_ in per) / w
    after = sum(cb * (ea / ca) for _k, cb, _eb, _pb, ca, ea, _pa in per) / w
    tpc_before = sum(eb + pb for _k, _cb, eb, pb, *_ in per) / w
    tpc_after = sum(cb * ((ea + pa) / ca) for _k, cb, _eb, _pb, ca, ea, pa in per) / w
    calls_before = sum(cb for _k, cb, *_ in per)
    calls_after = sum(ca for *_x, ca, _ea, _pa in per)
    gain = (before - after) / before * 100.0 if before > 0 else 0.0
    verdict = classify(gain, scans, ks.outcome_min_gain_pct)
    idx = r["applied_index"]
    if kinds:
        idx = ({"partition": "partitioned table ", "materialized_view": "materialized view "}[r["kind"]] + idx
               + (" (measured by the rewritten statement that reads it)" if r["kind"] == "materialized_view" else
                  " (measured by the same statements over the partitioned table)"))
    if verdict == "unused":
        detail = (f"failed: index {idx} was never used (pg_stat_user_indexes.idx_scan = 0) although its "
                  f"statements ran {calls_after:,} times since it appeared")
    else:
        change = (f"mean time {before:,.2f} ms → {after:,.2f} ms over {calls_before:,} calls before and "
                  f"{calls_after:,} after")
        used = "" if scans is None else f"; the index was scanned {scans:,} times"
        with_idx = idx if kinds else f"index {idx}"
        detail = {"slower": f"failed: the statements got slower with {with_idx}: {change} ({-gain:.1f} % slower)",
                  "improved": f"{change}: {gain:.1f} % faster",
                  "no_gain": f"{change}: {gain:.1f} % faster, below the {ks.outcome_min_gain_pct:g} % that counts "
                             "as a real gain"}[verdict] + used + (f"; {idx}" if kinds and verdict != "slower" else "")
    db.execute(
        "UPDATE arch.recommendation SET mean_time_before_ms = $2, mean_time_after_ms = $3,"
        " time_per_call_before_ms = $4, time_per_call_after_ms = $5, calls_before = $6, calls_after = $7,"
        " measured_gain_pct = $8, index_scans = $9::text::bigint, outcome = $10, outcome_detail = $11,"
        " measured_at = clock_timestamp() WHERE id = $1",
        [r["id"], before, after, tpc_before, tpc_after, calls_before, calls_after, gain,
         None if scans is None else str(scans), verdict, detail])
    for key, cb, eb, _pb, ca, ea, _pa in per:
        mb, ma = eb / cb, ea / ca
        g = (mb - ma) / mb * 100.0 if mb > 0 else 0.0
        db.execute(
            "UPDATE arch.knowledge SET mean_time_before_ms = $5, mean_time_after_ms = $6, calls_before = $7,"
            " calls_after = $8, measured_gain_pct = $9, outcome = $10, measured_at = clock_timestamp(),"
            " updated_at = now() WHERE recommendation_id = $1 AND dbid = $2::bigint::oid"
            " AND userid = $3::bigint::oid AND queryid = $4",
            [r["id"], *key, mb, ma, cb, ca, g, classify(g, scans, ks.outcome_min_gain_pct)])
    return True


def _norm(text: str | None) -> str:
    return " ".join((text or "").split()).rstrip(";").strip()


def _after_key(db: Db, r: dict, s: dict, a_start: dict | None, a_end: dict | None) -> tuple | None:
    """The statement that does the work of ``s`` after the change (see the module docstring): the
    one of the same role with the same text (partition) or the rewritten text (materialized view)
    with the most calls in the after window; None when none ran."""
    if a_end is None:
        return None
    text = _obj(r["details"]).get("rewritten_query") if r["kind"] == "materialized_view" else s["query"]
    if not text:
        return None
    cands = db.query("SELECT q.queryid FROM arch.statement q JOIN arch.snapshot_statement c"
                     " ON (c.dbid, c.userid, c.queryid) = (q.dbid, q.userid, q.queryid) AND c.snapshot_id = $4"
                     " WHERE q.dbid = $1::bigint::oid AND q.userid = $2::bigint::oid"
                     " AND btrim(regexp_replace(q.query, '\\s+', ' ', 'g'), ' ;') = $3",
                     [s["dbid"], s["userid"], _norm(text), a_end["id"]])
    best, calls = None, 0
    for c in cands:
        key = (s["dbid"], s["userid"], c["queryid"])
        n = _delta(db, a_start, a_end, key)[0]
        if n > calls:
            best, calls = key, n
    return best


def update(db: Db, snap, prover, ks, plan_as=None, notes: Notes | None = None) -> dict:
    """The outcome step of an audit: sign, detect applied indexes, measure outcomes."""
    saved = db.scalar("SELECT current_setting('search_path')")
    # pg_get_indexdef() qualifies function names that are not on the search_path: compare both
    # sides under the same one.
    db.execute("SELECT set_config('search_path', 'pg_catalog, pg_temp', true)")
    try:
        signed = sign_recommendations(db, prover, plan_as, notes) + sign_kinds(db, notes)
        applied = detect_applied(db, snap, notes)
        measured = measure(db, ks, notes)
    finally:
        db.execute("SELECT set_config('search_path', $1, true)", [saved])
    return {"signed": signed, "applied_detected": len(applied), "outcomes_measured": measured}
