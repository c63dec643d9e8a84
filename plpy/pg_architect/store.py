"""Pipeline step 6, remember: proven candidates of any kind become ``arch.recommendation`` rows.

The audit merges the proofs of all statements by fingerprint (:class:`Merged`: the best proof, the
statement it came from, the summed benefit, every statement it helps), then :func:`store` writes
each one in its own subtransaction (a failure is a note, the audit carries on):

* a new fingerprint is inserted;
* a known one counts one more sighting (``times_seen``, ``last_audit_run_id``); its numbers,
  DDL and rationale are refreshed only while it is still ``proposed`` (an approved one is frozen);
* ``arch.recommendation_statement`` links it to each statement, and :class:`knowledge.Recall`
  remembers the cases (embeddings) and the confidence history.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import guard
from .errors import NotApplicable

if TYPE_CHECKING:
    from .advisors.base import Proof
    from .db import Db
    from .knowledge import Recall
    from .workload import WindowStatement


@dataclass
class Merged:
    """One fingerprint across the audit's statements."""

    best: Proof
    stmt: WindowStatement
    benefit: float = 0.0
    links: list[tuple[WindowStatement, Proof]] = field(default_factory=list)


def merge(merged: dict[str, Merged], st: WindowStatement, proofs: list[Proof]) -> None:
    """Add the proofs of statement ``st``: benefit summed, the best proof kept (highest
    confidence, then the statement with more time)."""
    for p in proofs:
        fp = p.candidate.fingerprint()
        m = merged.setdefault(fp, Merged(best=p, stmt=st))
        m.benefit += p.gain_pct / 100.0 * st.total_time_ms
        m.links.append((st, p))
        if p.confidence > m.best.confidence or (
                p.confidence == m.best.confidence and st.total_time_ms > m.stmt.total_time_ms):
            m.best, m.stmt = p, st


def link(merged: dict[str, Merged], members: list[WindowStatement], proofs: list[Proof]) -> None:
    """Link the members of a group (``grouping``) to the proofs of its representative (already
    merged): they get rows in ``arch.recommendation_statement`` with the representative's costs;
    the benefit already counts their time (the representative was weighted with the group's)."""
    for p in proofs:
        m = merged.get(p.candidate.fingerprint())
        if m is not None:
            m.links.extend((st, p) for st in members)


def store(db: Db, run_id: int, merged: dict[str, Merged], recall: Recall | None = None,
          notes: guard.Notes | None = None) -> tuple[int, int]:
    """Store every merged proof; (new, updated)."""
    new = updated = 0
    for fp, m in merged.items():
        c = m.best.candidate
        try:
            inserted = guard.guarded(db, notes, f"storing the {c.kind} on {c.schema}.{c.table}",
                                     store_one, db, run_id, fp, m, recall)
        except NotApplicable as exc:
            if notes is not None:
                notes.add(db, f"no {c.kind} proposed on {c.schema}.{c.table}", exc)
            continue
        if inserted is True:
            new += 1
        elif inserted is False:
            updated += 1
    return new, updated


_NUMBERS = ("rationale, ddl, rollback_ddl, queryid, query, userid, calls, total_time_ms, time_share,"
            " cost_before, cost_after, est_gain_pct, est_size_bytes, benefit_ms, confidence,"
            " confidence_factors, plan_changes")


def found_again(db: Db, row: dict) -> dict:
    """A superseded recommendation this audit found again is proposed again (its superseding one
    may in turn be superseded by this audit); ``row`` (id, inserted, status) is updated."""
    if not row["inserted"] and row["status"] == "superseded":
        db.execute("UPDATE arch.recommendation SET status = 'proposed', superseded_by = NULL"
                   " WHERE id = $1 AND status = 'superseded'", [row["id"]])
        row = {**row, "status": "proposed"}
    return row


def store_one(db: Db, run_id: int, fp: str, m: Merged, recall: Recall | None) -> bool:
    """Insert or refresh one recommendation; True when it is new."""
    p, st = m.best, m.stmt
    c = p.candidate
    ddl, rollback = c.ddl(db), c.rollback(db)
    values = [p.rationale, ddl, rollback, st.queryid, st.query, st.userid, st.calls, st.total_time_ms, st.share,
              p.cost_before, p.cost_after, min(p.gain_pct, 100.0), p.size_bytes, m.benefit, p.confidence,
              p.factors, p.changes]
    row = db.row(
        "INSERT INTO arch.recommendation AS r (fingerprint, definition, kind, index_kind, schema_name, table_name,"
        " index_name, hypo_ddl, columns, first_audit_run_id, last_audit_run_id, " + _NUMBERS + ")"
        " VALUES (md5($1), $1, $2, $3::text, $4, $5, $6::text, $7::text, ARRAY(SELECT jsonb_array_elements_text($8)),"
        " $9, $9, $10, $11, $12, $13, $14, $15::bigint::oid, $16, $17, $18, $19, $20, $21, $22::text::bigint, $23,"
        " $24, $25::jsonb, $26::jsonb)"
        " ON CONFLICT (fingerprint) DO UPDATE SET last_audit_run_id = EXCLUDED.last_audit_run_id,"
        " times_seen = r.times_seen + 1, updated_at = now()"
        " RETURNING id, (xmax = 0) AS inserted, status",
        [fp, c.kind, c.subtype, c.schema, c.table, c.name(), c.hypo_sql(), c.columns(), run_id, *values])
    row = found_again(db, row)
    if not row["inserted"] and row["status"] == "proposed":
        db.execute(
            "UPDATE arch.recommendation SET (" + _NUMBERS + ") = ($2, $3, $4, $5, $6, $7::bigint::oid, $8, $9, $10,"
            " $11, $12, $13, $14::text::bigint, $15, $16, $17::jsonb, $18::jsonb)"
            " WHERE id = $1 AND status = 'proposed'",
            [row["id"], *values])
    if recall is not None:
        recall.remember(row["id"], m)  # embeddings of its statements, confidence history
    for lst, lp in m.links:
        db.execute(
            "INSERT INTO arch.recommendation_statement (recommendation_id, audit_run_id, dbid, userid,"
            " queryid, cost_before, cost_after, est_gain_pct) VALUES ($1, $2, $3::bigint::oid,"
            " $4::bigint::oid, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
            [row["id"], run_id, lst.dbid, lst.userid, lst.queryid, lp.cost_before, lp.cost_after,
             min(lp.gain_pct, 100.0)])
    return bool(row["inserted"])


# Confidence of housekeeping advice by reason: an exact duplicate is certain, a prefix-redundant
# one nearly (the wider index serves the same lookups, a little larger), an unused one rests on a
# usage window that may miss a monthly job.
DROP_CONFIDENCE = {"duplicate": 0.95, "prefix_redundant": 0.9, "unused": 0.85}


def store_housekeeping(db: Db, run_id: int, advice: list, notes: guard.Notes | None = None) -> tuple[int, int]:
    """Store the ``drop_index`` advice (:func:`advisors.drop_index.advise`) as recommendations of
    kind ``drop_index``, each in its own subtransaction; (new, updated).  The fingerprint is the
    index and the reason: the same advice found again counts one more sighting."""
    new = updated = 0
    for a in advice:
        got = guard.guarded(db, notes, f"storing the drop_index of {a.index_name}", store_drop_one, db, run_id, a)
        if got is True:
            new += 1
        elif got is False:
            updated += 1
    return new, updated


def store_drop_one(db: Db, run_id: int, a) -> bool | None:
    """Insert or refresh one ``drop_index`` recommendation; True when it is new, None when the
    index is gone."""
    ix = db.one("SELECT n.nspname::text AS schema_name, t.relname::text AS table_name, i.relname::text AS index_name"
                " FROM pg_catalog.pg_index x JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid"
                " JOIN pg_catalog.pg_class t ON t.oid = x.indrelid"
                " JOIN pg_catalog.pg_namespace n ON n.oid = i.relnamespace"
                " WHERE x.indexrelid = pg_catalog.to_regclass($1)", [a.index_name])
    if ix is None:
        return None
    definition = f"drop_index {a.reason} {a.index_name}"
    confidence = DROP_CONFIDENCE.get(a.reason, 0.85)
    factors = {"reason": a.reason, "scans": a.scans, "size_bytes": a.size_bytes,
               "covering_index": a.covering_index, "writes_saved_per_day": a.writes_saved_per_day}
    values = [a.rationale, a.ddl, a.rollback, a.size_bytes, confidence, factors]
    row = db.row(
        "INSERT INTO arch.recommendation AS r (fingerprint, definition, kind, index_kind, schema_name, table_name,"
        " index_name, first_audit_run_id, last_audit_run_id, rationale, ddl, rollback_ddl, est_size_bytes,"
        " confidence, confidence_factors, cost_before, cost_after, est_gain_pct)"
        " VALUES (md5($1), $1, 'drop_index', $2, $3, $4, $5, $6, $6, $7, $8, $9, $10, $11, $12::jsonb, 0, 0, 0)"
        " ON CONFLICT (fingerprint) DO UPDATE SET last_audit_run_id = EXCLUDED.last_audit_run_id,"
        " times_seen = r.times_seen + 1, updated_at = now()"
        " RETURNING id, (xmax = 0) AS inserted, status",
        [definition, a.reason, ix["schema_name"], ix["table_name"], ix["index_name"], run_id, *values])
    row = found_again(db, row)
    if not row["inserted"] and row["status"] == "proposed":
        db.execute("UPDATE arch.recommendation SET (rationale, ddl, rollback_ddl, est_size_bytes, confidence,"
                   " confidence_factors) = ($2, $3, $4, $5, $6, $7::jsonb) WHERE id = $1 AND status = 'proposed'",
                   [row["id"], *values])
    return bool(row["inserted"])
