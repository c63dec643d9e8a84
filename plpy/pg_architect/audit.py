"""The audit: workload → analyse → candidates → prove → store.

Runs in one host-neutral way over :class:`pg_architect.db.Db` (PL/Python inside the server,
or psycopg from the CLI).  Safety rules enforced here:

* one audit at a time (transaction-scoped advisory lock; a second caller gets a clear error);
* each statement is analysed inside its own subtransaction: a bad statement records a skip
  reason and the audit carries on; ``statement_timeout`` (query canceled) is never swallowed;
* user statements are only PREPAREd and EXPLAINed (no ANALYZE): nothing of theirs runs;
* what the planner does run (functions it folds) runs with the rights of the role that ran the
  statement, through a SECURITY DEFINER wrapper owned by that role (security.py), never the
  auditor's; a statement that cannot be planned that way is skipped;
* hypothetical indexes are reset when the audit ends, error or not.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from . import analyze, prove, recommend, workflow, workload
from . import guard, index_ddl, knowledge, outcomes, security
from .analyze import SkipStatement
from .catalog import PgCatalog, _split_search_path, search_path_for
from .db import LOCK_NOT_AVAILABLE, QUERY_CANCELED, Db, DbError, UserError
from .db import load_settings as db_load_settings

AUDIT_LOCK = 7237858263748198400
# Calls of our own functions show up in pg_stat_statements too: never audit them.
_OWN_CALL = re.compile(r"\barch\s*\.\s*(run_audit|analyze_query|schedule|unschedule|_boot|version|approve|reject"
                       r"|ask|answer|train|retry_request)\s*\(", re.I)
# Skip codes that are about us, not the user's workload: not recorded as skipped.
_SILENT = {"own"}
# A simpler candidate wins when its cost is within this factor of the best one.
SIMPLER_WITHIN = 1.10
# A covering (INCLUDE) or partial index must save at least this share of the statement's
# original cost on top of the best plain index to be preferred over it.
EXTRA_MIN_SHARE = 0.01


@dataclass
class Settings:
    min_mean_time_ms: float
    min_calls: int
    confidence_threshold: float
    min_gain_pct: float
    max_statements: int
    statement_budget_ms: int
    max_candidates: int
    max_index_columns: int
    max_statement_length: int
    snapshot_retention: str


def load_settings(db: Db) -> Settings:
    return db_load_settings(db, Settings)


@dataclass
class Proven:
    """A candidate the planner used for a statement, with its numbers."""

    candidate: recommend.Candidate
    cost_before: float
    cost_after: float
    gain_pct: float
    size_bytes: int | None
    changes: dict
    confidence: float
    factors: dict
    rationale: str
    table_bytes: int = 0
    estimate: float | None = None  # the planner-based confidence before calibration and history
    similar_to: list = field(default_factory=list)  # past cases that moved the confidence


@dataclass
class StatementResult:
    cost_before: float
    candidates_tested: int
    proven: list[Proven] = field(default_factory=list)
    note: str | None = None
    info: object = None  # analyze.StatementInfo and the catalog used (for the canonical text)
    catalog: object = None


def _short(sql: str, n: int = 120) -> str:
    s = " ".join(sql.split())
    return s if len(s) <= n else s[: n - 1] + "…"


def _fmt_bytes(n: int | None) -> str:
    if n is None:
        return "unknown size"
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def analyze_one(db: Db, prover: prove.Prover, text: str, settings: Settings, *,
                userid: int | None = None, share: float | None = None, calls: int | None = None,
                total_ms: float | None = None, search_path: list[str] | None = None,
                plan_as: security.PlanAs | None = None) -> StatementResult:
    """Analyse one statement: parse, generate candidates, cost each with hypopg, keep the best.

    With ``plan_as``, every planner call runs as role ``userid`` (the caller when None)."""
    t0 = time.monotonic()
    skip = security.utility_skip(text)
    if skip is not None:
        raise skip
    if plan_as is not None:
        if userid is not None and security.references_temp_schema(text):
            raise SkipStatement("temp_object", "it uses an object of a temporary schema (pg_temp) of the "
                                "session that ran it, which cannot be resolved from the audit's session")
        prover.run_as = plan_as.wrapper_for(userid)
    path = search_path if search_path is not None else search_path_for(db, userid)
    saved_path = db.scalar("SELECT current_setting('search_path')")
    db.execute("SELECT set_config('search_path', $1, true)",
               [", ".join('"%s"' % p.replace('"', '""') for p in path) or "pg_catalog"])
    try:
        cat = PgCatalog(db, path)
        info = analyze.analyze_statement(text, cat, max_length=settings.max_statement_length)
        if info.kind == "insert" and not info.tables:
            raise SkipStatement("not_supported", "INSERT ... VALUES has nothing an index can speed up")
        before = prover.load(info.text, info.param_count, info.free_params)
        metas = {key: cat.table_meta(*key) for key in info.tables}
        cands = recommend.generate_candidates(info, metas, max_columns=settings.max_index_columns)
        cands = cands[: settings.max_candidates]
        result = StatementResult(cost_before=before.cost, candidates_tested=0, info=info, catalog=cat)
        tried: list[tuple[recommend.Candidate, prove.Plan, int | None, str]] = []
        for i, cand in enumerate(cands):
            if (time.monotonic() - t0) * 1000 > settings.statement_budget_ms:
                result.note = (f"time budget of {settings.statement_budget_ms} ms reached after "
                               f"{i} of {len(cands)} candidates")
                break
            try:
                oid, hname = prover.create_hypothetical(cand.hypo_sql())
            except DbError as exc:
                if exc.sqlstate == QUERY_CANCELED:
                    raise
                continue
            try:
                plan = prover.explain(reprepare=True)
                size = prover.hypothetical_size(oid)
            finally:
                prover.drop_hypothetical(oid)
            result.candidates_tested += 1
            if hname in plan.index_names:
                tried.append((cand, plan, size, hname))
        # Re-prepare without hypothetical indexes so nothing cached refers to them.
        prover.explain(reprepare=True)
        result.proven = _choose(db, cat, before, tried, settings, share, calls, total_ms)
        return result
    finally:
        db.execute("SELECT set_config('search_path', $1, true)", [saved_path])


def _width(c: recommend.Candidate) -> int:
    return len(c.keys) + len(c.include) + (1 if c.where else 0)


def _choose(db, cat, before, tried, settings, share, calls, total_ms) -> list[Proven]:
    """Keep one index per table: the cheapest plain index (key columns only), a simpler one
    preferred when its cost is within SIMPLER_WITHIN of the cheapest; a covering or partial
    index replaces it only when it saves a meaningful amount on top (more than SIMPLER_WITHIN
    relative *and* more than EXTRA_MIN_SHARE of the statement's original cost)."""
    by_table: dict[tuple[str, str], list] = {}
    for cand, plan, size, hname in tried:
        if before.cost <= 0:
            continue
        gain = (before.cost - plan.cost) / before.cost * 100.0
        if gain < settings.min_gain_pct:
            continue
        by_table.setdefault((cand.schema, cand.table), []).append((cand, plan, size, hname, gain))
    out = []
    for (schema, table), items in by_table.items():
        def pick(group):
            if not group:
                return None
            best_cost = min(it[1].cost for it in group)
            good = [it for it in group if it[1].cost <= best_cost * SIMPLER_WITHIN + 1e-9]
            good.sort(key=lambda it: (_width(it[0]), it[1].cost, it[2] or 0, it[0].definition()))
            return good[0]

        plain = pick([it for it in items if not it[0].include and not it[0].where])
        extra = pick([it for it in items if it[0].include or it[0].where])
        chosen = plain
        if extra is not None and (plain is None or (
                extra[1].cost * SIMPLER_WITHIN < plain[1].cost
                and plain[1].cost - extra[1].cost > EXTRA_MIN_SHARE * before.cost)):
            chosen = extra
        cand, plan, size, hname, gain = chosen
        act = cat.table_activity(schema, table)
        size_ratio = (size or 0) / act["bytes"] if act["bytes"] else 0.0
        conf, factors = prove.confidence(gain / 100.0, share, act["write_ratio"], size_ratio)
        changes = prove.plan_changes(before, plan, {hname: cand.name()})
        out.append(Proven(candidate=cand, cost_before=before.cost, cost_after=plan.cost, gain_pct=gain,
                          size_bytes=size, changes=changes, confidence=conf, factors=factors,
                          rationale=_rationale(cand, before, plan, gain, size, act, share, calls, total_ms, changes),
                          table_bytes=act["bytes"]))
    return out


def _rationale(cand, before, after, gain, size, act, share, calls, total_ms, changes) -> str:
    parts = []
    removed = ", ".join(changes["removed"][:3]) or "the current plan"
    added = ", ".join(changes["added"][:3]) or "a plan using the index"
    gain_txt = f"{gain:.2f}" if 99.95 <= gain < 100 else f"{gain:.1f}"
    parts.append(f"{removed} (cost {before.cost:,.1f}) becomes {added} (cost {after.cost:,.1f}): "
                 f"estimated {gain_txt} % cheaper.")
    if calls is not None and total_ms is not None:
        parts.append(f"The statement ran {calls:,} time{'' if calls == 1 else 's'} for {total_ms / 1000:,.1f} s in the audit window"
                     + (f" ({share * 100:.1f} % of all statement time)." if share is not None else "."))
    kind = {"single": "A single-column index",
            "multi": "A multi-column index (equality columns first, then range, then ordering)",
            "expression": "An expression index matching the function in the predicate",
            "partial": "A partial index limited to the rows the statement asks for",
            "covering": "A covering index (INCLUDE) that allows an index-only scan"}.get(cand.kind, "An index")
    parts.append(f"{kind}; estimated size {_fmt_bytes(size)} on a table of {_fmt_bytes(act['bytes'])}; "
                 f"writes are {act['write_ratio'] * 100:.0f} % of the table's row activity.")
    return " ".join(parts)


def run_audit(db: Db) -> dict:
    """Run a full audit and return its summary (also stored in arch.audit_run).

    Everything it does runs under ``arch.settings.lock_timeout`` (restored after): it never
    waits long for a lock another session holds."""
    with guard.lock_timeout(db):
        return _audit(db)


def _audit(db: Db) -> dict:
    t_start = time.monotonic()
    settings = load_settings(db)
    if not db.scalar(f"SELECT pg_try_advisory_xact_lock({AUDIT_LOCK})"):
        holder = db.one(
            "SELECT l.pid, a.usename::text AS usename, a.xact_start FROM pg_locks l"
            " LEFT JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted"
            f" AND ((l.classid::bigint << 32) | l.objid::bigint) = {AUDIT_LOCK} LIMIT 1")
        detail = (f"Backend {holder['pid']} ({holder['usename']}) has been running one since {holder['xact_start']}."
                  if holder else "Another session holds the audit lock.")
        raise UserError("an audit is already running", detail=detail,
                        hint="Wait for it to finish (SELECT * FROM arch.audit_runs), or stop it with "
                             "pg_cancel_backend(pid).", sqlstate="55P03")
    run_id = db.scalar("INSERT INTO arch.audit_run (host) VALUES ($1) RETURNING id", [db.host])
    db.execute("SELECT set_config('plan_cache_mode', 'force_generic_plan', true)")
    prover = prove.Prover(db)
    plan_as = security.PlanAs(db)
    try:
        return _run(db, settings, prover, run_id, t_start, plan_as)
    finally:
        prover.close()
        plan_as.close()


def _run(db: Db, settings: Settings, prover: prove.Prover, run_id: int, t_start: float,
         plan_as: security.PlanAs) -> dict:
    timings: dict[str, float] = {}
    t = time.monotonic()
    snap = workload.take_snapshot(db)
    selected, totals = workload.window(
        db, snap, min_calls=settings.min_calls, min_mean_ms=settings.min_mean_time_ms,
        limit=settings.max_statements, exclude=lambda q: bool(_OWN_CALL.search(q or "")))
    timings["workload_ms"] = (time.monotonic() - t) * 1000
    window_desc = ("totals since the statistics were reset" if snap.prev_id is None or snap.reset
                   else f"delta since {snap.prev_taken_at}")
    db.notice(f"pg_architect: audit {run_id}: {totals['statements_seen']} statements in the window "
              f"({window_desc}), {len(selected)} above the thresholds")
    db.execute("UPDATE arch.audit_run SET snapshot_id = $2, prev_snapshot_id = $3::text::bigint, window_start = $4::text::timestamptz,"
               " window_end = $5::text::timestamptz, stats_reset_detected = $6, window_total_time_ms = $7,"
               " statements_seen = $8, statements_selected = $9 WHERE id = $1",
               [run_id, snap.id, snap.prev_id, None if snap.prev_taken_at is None else str(snap.prev_taken_at),
                str(snap.taken_at), bool(snap.reset), totals["window_total_ms"], totals["statements_seen"],
                len(selected)])
    t = time.monotonic()
    notes = guard.Notes()  # per-object failures of the steps below: recorded, the audit carries on
    recall = knowledge.Recall(db, run_id)  # steps 2 and 6: recall and outcomes
    known = outcomes.update(db, snap, prover, recall.ks, plan_as, notes)
    timings["outcomes_ms"] = (time.monotonic() - t) * 1000
    merged: dict[str, dict] = {}
    analyzed = skipped = tested = 0
    t = time.monotonic()
    for i, st in enumerate(selected, 1):
        db.progress(i - 1, len(selected), _short(st.query, 60))
        db.notice(f"pg_architect: [{i}/{len(selected)}] queryid {st.queryid}: {st.calls} calls, "
                  f"mean {st.mean_time_ms:,.1f} ms, {st.share * 100:.1f} % of the window")
        t0 = time.monotonic()
        outcome, code, reason, res = "analyzed", None, None, None
        try:
            with db.subtransaction():
                res = analyze_one(db, prover, st.query, settings, userid=st.userid, share=st.share,
                                  calls=st.calls, total_ms=st.total_time_ms, plan_as=plan_as)
        except SkipStatement as s:
            cause = s.__cause__
            if isinstance(cause, DbError) and cause.sqlstate == QUERY_CANCELED:
                raise cause from None
            outcome, code, reason = "skipped", s.code, s.reason
        except DbError as exc:
            if exc.sqlstate == QUERY_CANCELED:
                raise
            if exc.sqlstate == LOCK_NOT_AVAILABLE:
                outcome, code, reason = "skipped", "locked", ("a table of the statement is locked by another "
                                                              f"session (lock_timeout): {str(exc).splitlines()[0]}")
            else:
                outcome, code, reason = "skipped", "error", f"unexpected error: {str(exc).splitlines()[0]}"
        finally:
            prover.run_as = None
            prover.reset()
        if outcome == "skipped" and code in _SILENT:
            continue
        dur = (time.monotonic() - t0) * 1000
        if res is not None:
            analyzed += 1
            tested += res.candidates_tested
            if res.note:
                reason = res.note
            res.proven = guard.guarded(db, notes, f"knowledge recall for queryid {st.queryid}",
                                       recall.review, st, res, default=[])  # rejected ones skipped, history
            for p in res.proven:
                fp = p.candidate.definition()
                benefit = p.gain_pct / 100.0 * st.total_time_ms
                m = merged.setdefault(fp, {"best": p, "stmt": st, "benefit": 0.0, "links": []})
                m["benefit"] += benefit
                m["links"].append((st, p))
                if p.confidence > m["best"].confidence or (
                        p.confidence == m["best"].confidence and st.total_time_ms > m["stmt"].total_time_ms):
                    m["best"], m["stmt"] = p, st
        else:
            skipped += 1
            db.notice(f"pg_architect:     skipped ({code}): {reason}")
        db.execute(
            "INSERT INTO arch.audit_statement (audit_run_id, dbid, userid, queryid, calls, total_time_ms,"
            " mean_time_ms, time_share, outcome, skip_code, skip_reason, cost_before, candidates,"
            " recommendations, duration_ms) VALUES ($1, $2::bigint::oid, $3::bigint::oid, $4, $5, $6, $7,"
            " $8, $9, $10::text, $11::text, $12::text::float8, $13, $14, $15)",
            [run_id, st.dbid, st.userid, st.queryid, st.calls, st.total_time_ms, st.mean_time_ms, st.share,
             outcome, code, reason, res.cost_before if res else None, res.candidates_tested if res else 0,
             len(res.proven) if res else 0, dur])
    db.progress(len(selected), len(selected), "done")
    timings["analyze_ms"] = (time.monotonic() - t) * 1000
    new, updated = _store(db, run_id, merged, recall, notes)
    known.update(recall.summary())
    # explain / open_pr requests for the sidecar, superseded
    queued = guard.guarded(db, notes, "queueing sidecar requests", workflow.after_audit, db, run_id,
                           default={"superseded": 0, "explain_requests": 0, "pr_requests": 0})
    pruned = guard.guarded(db, notes, "pruning old snapshots", workload.prune, db, settings.snapshot_retention,
                           default=0)
    duration = (time.monotonic() - t_start) * 1000
    timings["total_ms"] = duration
    summary = {"run_id": run_id, "statements_seen": totals["statements_seen"],
               "statements_selected": len(selected), "statements_analyzed": analyzed, "skipped": skipped,
               "candidates_tested": tested, "recommendations_new": new, "recommendations_updated": updated,
               "window": window_desc, "snapshots_pruned": pruned, "duration_ms": round(duration, 1),
               "knowledge": known, "notes": list(notes),
               **queued}
    db.execute("UPDATE arch.audit_run SET status = 'ok', finished_at = clock_timestamp(), statements_analyzed = $2,"
               " statements_skipped = $3, candidates_tested = $4, recommendations_new = $5,"
               " recommendations_updated = $6, duration_ms = $7, timings = $8::jsonb WHERE id = $1",
               [run_id, analyzed, skipped, tested, new, updated, duration, timings])
    db.execute("UPDATE arch.audit_run SET knowledge = $2::jsonb, notes = ARRAY(SELECT jsonb_array_elements_text($3::jsonb))"
               " WHERE id = $1", [run_id, known, list(notes)])
    db.notice(f"pg_architect: audit {run_id} done in {duration / 1000:.1f} s: {analyzed} analysed, "
              f"{skipped} skipped, {new} new and {updated} updated recommendations"
              + (f", {len(notes)} note{'' if len(notes) == 1 else 's'} (arch.audit_runs)" if notes else ""))
    return summary


def _store(db: Db, run_id: int, merged: dict, recall: knowledge.Recall | None = None,
           notes: guard.Notes | None = None) -> tuple[int, int]:
    new = updated = 0
    for fp, m in merged.items():
        c = m["best"].candidate
        try:
            inserted = guard.guarded(db, notes, f"storing the index on {c.schema}.{c.table}",
                                     _store_one, db, run_id, fp, m, recall)
        except index_ddl.NotIndexable as exc:
            if notes is not None:
                notes.add(db, f"no index proposed on {c.schema}.{c.table}", exc)
            continue
        if inserted is True:
            new += 1
        elif inserted is False:
            updated += 1
    return new, updated


def _store_one(db: Db, run_id: int, fp: str, m: dict, recall) -> bool:
    """Insert or update one recommendation; True when it is new."""
    p: Proven = m["best"]
    st = m["stmt"]
    c = p.candidate
    ddl, rollback = index_ddl.for_candidate(db, c)  # the partitioned-table procedure where needed
    row = db.one(
        "INSERT INTO arch.recommendation AS r (fingerprint, kind, index_kind, schema_name, table_name,"
        " index_name, definition, ddl, hypo_ddl, rollback_ddl, columns, rationale, queryid, query, calls,"
        " total_time_ms, time_share, cost_before, cost_after, est_gain_pct, est_size_bytes, benefit_ms,"
        " confidence, confidence_factors, plan_changes, first_audit_run_id, last_audit_run_id, userid)"
        " VALUES (md5($1), 'index', $2, $3, $4, $5, $1, $6, $7, $8, $9::text::text[], $10, $11, $12, $13,"
        " $14, $15, $16, $17, $18, $19::text::bigint, $20, $21, $22::jsonb, $23::jsonb, $24, $24,"
        " $25::bigint::oid)"
        " ON CONFLICT (fingerprint) DO UPDATE SET last_audit_run_id = EXCLUDED.last_audit_run_id,"
        "   times_seen = r.times_seen + 1, updated_at = now(),"
        "   rationale = CASE WHEN r.status = 'proposed' THEN EXCLUDED.rationale ELSE r.rationale END,"
        "   ddl = CASE WHEN r.status = 'proposed' THEN EXCLUDED.ddl ELSE r.ddl END,"
        "   rollback_ddl = CASE WHEN r.status = 'proposed' THEN EXCLUDED.rollback_ddl ELSE r.rollback_ddl END,"
        "   queryid = CASE WHEN r.status = 'proposed' THEN EXCLUDED.queryid ELSE r.queryid END,"
        "   query = CASE WHEN r.status = 'proposed' THEN EXCLUDED.query ELSE r.query END,"
        "   userid = CASE WHEN r.status = 'proposed' THEN EXCLUDED.userid ELSE r.userid END,"
        "   calls = CASE WHEN r.status = 'proposed' THEN EXCLUDED.calls ELSE r.calls END,"
        "   total_time_ms = CASE WHEN r.status = 'proposed' THEN EXCLUDED.total_time_ms ELSE r.total_time_ms END,"
        "   time_share = CASE WHEN r.status = 'proposed' THEN EXCLUDED.time_share ELSE r.time_share END,"
        "   cost_before = CASE WHEN r.status = 'proposed' THEN EXCLUDED.cost_before ELSE r.cost_before END,"
        "   cost_after = CASE WHEN r.status = 'proposed' THEN EXCLUDED.cost_after ELSE r.cost_after END,"
        "   est_gain_pct = CASE WHEN r.status = 'proposed' THEN EXCLUDED.est_gain_pct ELSE r.est_gain_pct END,"
        "   est_size_bytes = CASE WHEN r.status = 'proposed' THEN EXCLUDED.est_size_bytes ELSE r.est_size_bytes END,"
        "   benefit_ms = CASE WHEN r.status = 'proposed' THEN EXCLUDED.benefit_ms ELSE r.benefit_ms END,"
        "   confidence = CASE WHEN r.status = 'proposed' THEN EXCLUDED.confidence ELSE r.confidence END,"
        "   confidence_factors = CASE WHEN r.status = 'proposed' THEN EXCLUDED.confidence_factors"
        "                        ELSE r.confidence_factors END,"
        "   plan_changes = CASE WHEN r.status = 'proposed' THEN EXCLUDED.plan_changes ELSE r.plan_changes END"
        " RETURNING id, (xmax = 0) AS inserted",
        [fp, c.kind, c.schema, c.table, c.name(), ddl, c.hypo_sql(), rollback,
         "{" + ",".join('"%s"' % k.replace("\\", "\\\\").replace('"', '\\"') for k in c.columns()) + "}",
         p.rationale, st.queryid, st.query, st.calls, st.total_time_ms, st.share, p.cost_before,
         p.cost_after, min(p.gain_pct, 100.0), p.size_bytes, m["benefit"], p.confidence, p.factors,
         p.changes, run_id, st.userid])
    if recall is not None:
        recall.remember(row["id"], m)  # embeddings of its statements, confidence history
    for lst, lp in m["links"]:
        db.execute(
            "INSERT INTO arch.recommendation_statement (recommendation_id, audit_run_id, dbid, userid,"
            " queryid, cost_before, cost_after, est_gain_pct) VALUES ($1, $2, $3::bigint::oid,"
            " $4::bigint::oid, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
            [row["id"], run_id, lst.dbid, lst.userid, lst.queryid, lp.cost_before, lp.cost_after,
             min(lp.gain_pct, 100.0)])
    return bool(row["inserted"])


def analyze_query(db: Db, text: str | None, search_path: str | None = None) -> list[dict]:
    """arch.analyze_query(): the audit's analysis for one statement, nothing stored."""
    if text is None or not text.strip():
        raise UserError("arch.analyze_query: the statement is empty",
                        hint="Pass one SQL statement, e.g. SELECT arch.analyze_query('SELECT * FROM t WHERE id = $1').",
                        sqlstate="22023")
    with guard.lock_timeout(db):  # as the audit: never wait long for another session's lock
        return _analyze_query(db, text, search_path)


def _analyze_query(db: Db, text: str, search_path: str | None) -> list[dict]:
    settings = load_settings(db)
    db.execute("SELECT set_config('plan_cache_mode', 'force_generic_plan', true)")
    prover = prove.Prover(db)
    plan_as = security.PlanAs(db)  # the caller's own rights, and no way to change role while planning
    try:
        path = _split_search_path(search_path or db.scalar("SELECT reset_val FROM pg_settings"
                                                           " WHERE name = 'search_path'") or "public",
                                  db.scalar("SELECT current_user::text"))
        try:
            with db.subtransaction():
                res = analyze_one(db, prover, text, settings, search_path=path, plan_as=plan_as)
        except SkipStatement as s:
            cause = s.__cause__
            if isinstance(cause, DbError) and cause.sqlstate == QUERY_CANCELED:
                raise cause from None
            raise UserError("arch.analyze_query: cannot analyse this statement",
                            detail=f"{s.reason} ({s.code})",
                            hint="Pass a single SELECT, UPDATE, DELETE or INSERT ... SELECT on tables you can read.",
                            sqlstate="22023") from None
    finally:
        prover.close()
        plan_as.close()
    if not res.proven:
        db.notice(f"pg_architect: no candidate index lowers the estimated cost ({res.cost_before:,.1f}) by "
                  f"{settings.min_gain_pct:g} % or more ({res.candidates_tested} candidates costed)")
    out = []
    for p in sorted(res.proven, key=lambda p: -p.gain_pct):
        try:
            ddl = index_ddl.for_candidate(db, p.candidate)[0]
        except index_ddl.NotIndexable as exc:
            db.notice(f"pg_architect: no index on {p.candidate.schema}.{p.candidate.table}: {exc}")
            continue
        out.append({"table_name": f"{p.candidate.schema}.{p.candidate.table}", "index_kind": p.candidate.kind,
                    "ddl": ddl, "cost_before": p.cost_before, "cost_after": p.cost_after,
                    "est_gain_pct": round(p.gain_pct, 2), "est_size_bytes": p.size_bytes,
                    "confidence": round(p.confidence, 3), "plan_changes": p.changes, "rationale": p.rationale})
    return out
