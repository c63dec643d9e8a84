"""Pipeline steps 4-6 for the workload-level advisors ``partition``, ``materialized_view`` and
``cache`` (issue 12): the audit asks them (:func:`advise`) and stores what they advise as
``arch.recommendation`` rows with the shared lifecycle (:func:`store`).

* ``details`` is the advice object exactly as the advisor returned it (what
  ``arch.advise_partitioning()`` / ``arch.advise_materialized_views()`` return per table or
  statement); ``ddl`` / ``rollback_ddl`` the whole script a human approves: the migration plan
  and its rollback (partition), the view + unique index + pg_cron schedule and their removal
  (materialized_view), and for ``cache`` (no schema change) the advice as SQL comment lines
  (:func:`cache_ddl`, like a rewrite, whose "DDL" is not a migration either) with the fixed
  rollback :data:`CACHE_ROLLBACK`.
* Upserted by fingerprint across audits (:func:`fingerprint`: the decision, not its numbers —
  partition: table, column and interval; materialized_view: the view's definition; cache: the
  statement and its key columns); numbers, DDL, rationale and details are refreshed only while
  ``proposed`` (an approved one is frozen, see ``arch._recommendation_freeze``).  A proposed
  one of the same kind and subject (the table for partition, the statement for the others)
  that this audit did not find again is ``superseded`` by the new one.
* Linked to every statement it serves (``arch.recommendation_statement``).
* Estimates (documented in the README, "Partitioning, materialized views and caching"):
  ``cost_before`` / ``cost_after`` are *estimated statement time over the window* (ms), not
  planner cost units, ``est_gain_pct`` = 100 × (before − after) / before, ``benefit_ms`` =
  before − after; the confidence is ``min(0.9, 0.5 + 0.4 × g)`` with ``g`` = the share of the
  table's statement time on the key × the estimated gain (partition), the net gain (materialized
  view), the expected hit rate (cache) — capped at 0.9 as every one of them is a model, not a
  planner proof.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import guard
from .db import Db

if TYPE_CHECKING:
    from .knowledge import Recall

KINDS = ("partition", "materialized_view", "cache")
CACHE_ROLLBACK = "-- no schema change: remove the application cache (the statement reads the database again)"
MAX_CONFIDENCE = 0.9


def advise(db: Db, notes: guard.Notes) -> list[dict]:
    """The advice of the three advisors (advised ones only); each advisor runs guarded, each
    table / statement in its own subtransaction (a failure is a note, the audit goes on)."""
    from .advisors import matview, partition

    def on_error(what: str, exc: BaseException) -> None:
        notes.add(db, what, exc)

    out: list[dict] = []
    for what, fn in (("partitioning advice", partition.advise), ("materialized-view and cache advice", matview.advise)):
        out.extend(guard.guarded(db, notes, what, fn, db, None, None, on_error, default=[]) or [])
    return [a for a in out if a.get("advised", True)]


# ------------------------------------------------------------------------------ representation

def _key_text(details: dict) -> str:
    params = sorted({int(n) for s in details.get("statements") or [] for n in (s.get("cache_key") or [])})
    return ", ".join(f"${n}" for n in params) if params else "nothing (one entry)"


def cache_ddl(details: dict) -> str:
    """The "DDL" of a cache recommendation: the advice as SQL comment lines (no schema change).
    The sidecar checks a cache recommendation's DDL is exactly this text of its details."""
    est = details.get("estimate") or {}
    st = (details.get("statements") or [{}])[0]
    cols = ", ".join(est.get("key_columns") or []) or "none"
    return "\n".join([
        "-- pg_architect: application cache advice, no schema change.",
        f"-- Cache the result of queryid {st.get('queryid')} (role oid {st.get('userid')}) on "
        f"{details.get('schema_name')}.{details.get('table_name')} in the application,",
        f"-- keyed by {_key_text(details)} (columns: {cols}; about {est.get('keys')} distinct keys),"
        f" TTL {est.get('ttl_s')} s; expected hit rate {float(est.get('hit_rate') or 0) * 100:.1f} %.",
    ])


def fingerprint(a: dict) -> str:
    """The decision of an advice, without its numbers (the same advice found again: the same text)."""
    t = f"{a['schema_name']}.{a['table_name']}"
    if a["kind"] == "partition":
        return f"partition {t} by range ({a['column_name']}) every {a['estimate']['interval']}"
    st = a["statements"][0]
    if a["kind"] == "materialized_view":
        return (f"materialized_view {a['schema_name']}.{a.get('view_name')} of {t}: {a.get('view_sql')}"
                f" unique ({', '.join(a.get('unique_columns') or [])})")
    cols = ", ".join(a["estimate"].get("key_columns") or [])
    return f"cache {st['userid']}:{st['queryid']} on {t} keyed by ({cols})"


def _confidence(g: float) -> float:
    return round(min(MAX_CONFIDENCE, 0.5 + 0.4 * max(0.0, min(1.0, g))), 4)


def numbers(a: dict) -> dict[str, Any]:
    """Estimated time before/after over the window (ms), gain, benefit, confidence and factors;
    the statements served with their own before/after (see the module docstring)."""
    est = a["estimate"]
    links: list[tuple[dict, float, float]] = []
    if a["kind"] == "partition":
        before = float(est["statement_time_ms"])
        saved = min(float(est["est_time_saved_ms"]), before)
        share = float(est["key_time_share"])
        gain = 100.0 * saved / before if before else 0.0
        confidence = _confidence(share * gain / 100.0)
        factors = {"key_time_share": share, "est_gain_pct": round(gain, 2), "partitions": est["partitions"],
                   "interval": est["interval"], "constraint_changes": len(a.get("constraint_changes") or []),
                   "not_pruned": len(a.get("not_pruned") or []), "model": "0.5 + 0.4 x key_time_share x gain, max 0.9"}
        for s in a.get("statements") or []:
            f = float(s.get("scanned_fraction", 1.0))
            links.append((s, float(s["total_ms"]), float(s["total_ms"]) * f))
        size = int(est.get("table_bytes") or 0) or None  # the copy needs as much space again
    elif a["kind"] == "materialized_view":
        rate = float(est.get("calls_per_s") or 0)
        before = float(est["calls"]) * float(est["mean_ms"])
        window = float(est["calls"]) / rate if rate > 0 else 0.0
        refreshes = window / float(est["refresh_interval_s"]) if est.get("refresh_interval_s") else 0.0
        saved = max(0.0, min(before, float(est["benefit_ms_per_refresh"]) * refreshes))
        gain = 100.0 * saved / before if before else 0.0
        confidence = _confidence(gain / 100.0)
        factors = {"net_gain": round(gain / 100.0, 4), "refresh_interval_s": est["refresh_interval_s"],
                   "refresh_ms": est["refresh_ms"], "read_ms_after": est["read_ms_after"],
                   "reads_per_write": est["reads_per_write"], "model": "0.5 + 0.4 x net gain, max 0.9"}
        links.append((a["statements"][0], before, before - saved))
        size = None
    else:
        before = float(est["calls"]) * float(est["mean_ms"])
        hit = float(est.get("hit_rate") or 0)
        saved = before * hit
        gain = 100.0 * hit
        confidence = _confidence(hit)
        factors = {"hit_rate": hit, "ttl_s": est["ttl_s"], "keys": est["keys"],
                   "reads_per_write": est["reads_per_write"], "model": "0.5 + 0.4 x hit rate, max 0.9"}
        links.append((a["statements"][0], before, before - saved))
        size = None
    best = max(links, key=lambda x: x[1])[0] if links else None
    return {"before": before, "after": before - saved, "gain": min(gain, 100.0), "benefit": saved,
            "confidence": confidence, "factors": factors, "links": links, "best": best, "size": size}


def ddl_of(a: dict) -> tuple[str, str]:
    if a["kind"] == "cache":
        return cache_ddl(a), CACHE_ROLLBACK
    return a["ddl"], a["rollback_ddl"]


def index_name_of(a: dict) -> str | None:
    return a.get("view_name") if a["kind"] == "materialized_view" else None


def columns_of(a: dict) -> list[str]:
    if a["kind"] == "partition":
        return [a["column_name"]]
    if a["kind"] == "materialized_view":
        return list(a.get("unique_columns") or [])
    return list(a["estimate"].get("key_columns") or [])


# ------------------------------------------------------------------------------ storage

@dataclass
class ServedStatement:
    """A statement an advice serves, as the knowledge base remembers it."""

    dbid: int
    userid: int
    queryid: int
    query: str


def store(db: Db, run_id: int, advice: list[dict], notes: guard.Notes | None = None,
          recall: Recall | None = None) -> tuple[int, int]:
    """Store each advice in its own subtransaction; (new, updated).  With ``recall``, each
    statement it serves becomes a knowledge case (``arch.similar_optimizations()`` finds it)."""
    new = updated = 0
    dbid = int(db.scalar("SELECT oid::bigint FROM pg_catalog.pg_database WHERE datname = current_database()"))
    for a in advice:
        got = guard.guarded(db, notes, f"storing the {a['kind']} advice on {a['schema_name']}.{a['table_name']}",
                            store_one, db, run_id, dbid, a, recall)
        if got is True:
            new += 1
        elif got is False:
            updated += 1
    return new, updated


_COLUMNS = ("rationale, ddl, rollback_ddl, details, queryid, query, userid, calls, total_time_ms, cost_before,"
            " cost_after, est_gain_pct, est_size_bytes, benefit_ms, confidence, confidence_factors")


def _placeholders(first: int) -> str:
    casts = ["", "", "", "::jsonb", "::text::bigint", "::text", "::text::bigint::oid", "::text::bigint",
             "::text::float8", "", "", "", "::text::bigint", "", "", "::jsonb"]
    return ", ".join(f"${first + i}{c}" for i, c in enumerate(casts))


def _opt(v: Any, kind: type) -> str | None:
    return None if v is None else str(kind(v))


def store_one(db: Db, run_id: int, dbid: int, a: dict, recall: Recall | None = None) -> bool:
    """Insert or refresh one advice; True when it is new."""
    n = numbers(a)
    ddl, rollback = ddl_of(a)
    best = n["best"] or {}
    values = [a["rationale"], ddl, rollback, a, _opt(best.get("queryid"), int), best.get("query"),
              _opt(best.get("userid"), int), _opt(best.get("calls"), int), _opt(best.get("total_ms"), float),
              float(n["before"]), float(n["after"]), float(n["gain"]), _opt(n["size"], int), float(n["benefit"]),
              float(n["confidence"]), n["factors"]]
    row = db.row(
        "INSERT INTO arch.recommendation AS r (fingerprint, definition, kind, index_kind, schema_name, table_name,"
        " index_name, columns, first_audit_run_id, last_audit_run_id, " + _COLUMNS + ")"
        " VALUES (md5($1), $1, $2, $3::text, $4, $5, $6::text, ARRAY(SELECT jsonb_array_elements_text($7)), $8, $8, "
        + _placeholders(9) + ")"
        " ON CONFLICT (fingerprint) DO UPDATE SET last_audit_run_id = EXCLUDED.last_audit_run_id,"
        " times_seen = r.times_seen + 1, updated_at = now()"
        " RETURNING id, (xmax = 0) AS inserted, status",
        [fingerprint(a), a["kind"], "range" if a["kind"] == "partition" else None, a["schema_name"],
         a["table_name"], index_name_of(a), columns_of(a), run_id, *values])
    rec_id = row["id"]
    if not row["inserted"] and row["status"] == "proposed":  # refreshed while proposed; frozen after
        db.execute("UPDATE arch.recommendation SET (" + _COLUMNS + ") = (" + _placeholders(2) + ")"
                   " WHERE id = $1 AND status = 'proposed'", [rec_id, *values])
    for s, before, after in n["links"]:
        db.execute(
            "INSERT INTO arch.recommendation_statement (recommendation_id, audit_run_id, dbid, userid, queryid,"
            " cost_before, cost_after, est_gain_pct) VALUES ($1, $2, $3::bigint::oid, $4::bigint::oid, $5, $6, $7, $8)"
            " ON CONFLICT DO NOTHING",
            [rec_id, run_id, dbid, int(s["userid"]), int(s["queryid"]), float(before), float(after),
             100.0 * (before - after) / before if before else 0.0])
    if recall is not None:
        for s, before, after in n["links"]:
            if s.get("query"):
                served = ServedStatement(dbid, int(s["userid"]), int(s["queryid"]), s["query"])
                recall.remember_statement(rec_id, served, before, after,
                                          100.0 * (before - after) / before if before else 0.0)
    if row["status"] == "proposed":
        _supersede(db, run_id, rec_id, a)
    return bool(row["inserted"])


def _supersede(db: Db, run_id: int, rec_id: int, a: dict) -> None:
    """A proposed recommendation of the same kind and subject (the table for partition, the
    statement for the others) that this audit did not find again is superseded by ``rec_id``."""
    if a["kind"] == "partition":
        cond, args = "o.schema_name = $4 AND o.table_name = $5", [a["schema_name"], a["table_name"]]
    else:
        st = a["statements"][0]
        cond, args = "o.userid = $4::bigint::oid AND o.queryid = $5", [int(st["userid"]), int(st["queryid"])]
    db.execute(
        "UPDATE arch.recommendation o SET status = 'superseded', superseded_by = $2"
        " WHERE o.kind = $3 AND o.status = 'proposed' AND o.id <> $2"
        " AND o.last_audit_run_id IS DISTINCT FROM $1 AND " + cond, [run_id, rec_id, a["kind"], *args])
