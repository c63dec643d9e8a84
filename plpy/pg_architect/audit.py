"""The audit pipeline, one call per step (docs/HACKING.md, DESIGN.md):

1. workload  — :mod:`workload`: snapshot pg_stat_statements, the delta window, the slow statements;
2. recall    — :mod:`knowledge` (``Recall``): rejected ones, calibration, similar past cases (the
   confidence of each proof is reviewed with them);
3. context   — :mod:`workflow`: an ``explain`` request per statement for the sidecar (Vanna), queued;
4. advise    — :mod:`advise` + :mod:`advisors`: each advisor proposes candidates for a statement;
5. prove     — :mod:`advisors.base` / :mod:`prove`: each candidate costed with the planner, as the
   statement's role (:mod:`security`), hypothetical changes undone;
6. remember  — :mod:`store`: recommendations of every kind, their statements, knowledge cases
   (the workload-level advice — drop_index, partition, materialized_view, cache — through
   :mod:`store`'s housekeeping and :mod:`store_advice`);
   :mod:`outcomes` writes the measured outcome of applied ones back (first, before the window's
   statements are analysed: the knowledge the recall then uses is current);
7. hand over — :mod:`workflow`: superseded ones, ``open_pr`` requests under the auto policy.

Runs in one host-neutral way over :class:`pg_architect.db.Db` (PL/Python inside the server, or
psycopg from the CLI).  One audit at a time (:mod:`runs`); each statement in its own
subtransaction: a bad statement records a skip reason and the audit carries on;
``statement_timeout`` (query canceled) is never swallowed; per-object failures become notes
(:mod:`guard`); everything runs under ``arch.settings.lock_timeout``.
"""

from __future__ import annotations

import dataclasses
import time

from . import (
    advise,
    grouping,
    guard,
    knowledge,
    outcomes,
    reuse,
    runs,
    security,
    settings,
    store,
    store_advice,
    workflow,
    workload,
)
from .advisors import drop_index, index_set
from .catalog import _split_search_path
from .db import Db, local_setting
from .errors import LOCK_NOT_AVAILABLE, DbError, NotApplicable, SkipStatement, UserError, canceled
from .prove import Prover
from .sqltext import OWN_CALL
from .workload import WindowStatement

# Skip codes that are about us, not the user's workload: not recorded as skipped.
_SILENT = {"own"}


def _short(sql: str, n: int = 120) -> str:
    s = " ".join(sql.split())
    return s if len(s) <= n else s[: n - 1] + "…"


def run_audit(db: Db) -> dict:
    """Run a full audit in the caller's transaction and return its summary (also stored in
    arch.audit_run): ``SELECT arch.run_audit()``."""
    with guard.lock_timeout(db):
        t_start = time.monotonic()
        cfg = settings.load(db)
        runs.acquire_lock(db)
        run_id = runs.start(db)
        return _pipeline(db, cfg, run_id, t_start, runs.OneTransaction(db, run_id))


def run_audit_batched(db: Db, batch_size: int | None) -> dict:
    """``CALL arch.run_audit_batched()``: the same audit, committed between batches of
    ``batch_size`` statements (the scheduled audit never holds one transaction open for minutes:
    that would hold back vacuum's xmin horizon).  One audit at a time across the commits: a
    session-level advisory lock, released on success and on error; progress in arch.audit_run
    (statements_done, batches) is visible to other sessions while it runs.  A failed batched audit
    keeps the batches it committed and its run row says ``failed`` with the error."""
    if batch_size is not None and batch_size < 1:
        raise UserError("arch.run_audit_batched: batch_size must be at least 1", sqlstate="22023",
                        hint="CALL arch.run_audit_batched(100);")
    t_start = time.monotonic()
    runs.acquire_session_lock(db)
    run_id = None
    try:
        batches = runs.Batches(db, batch_size or runs.DEFAULT_BATCH)
        cfg = settings.load(db)
        run_id = runs.start(db)
        batches.run_id = run_id
        batches.commit()  # the run is visible as 'running' from here on
        return _pipeline(db, cfg, run_id, t_start, batches)
    except BaseException as exc:
        try:  # the failed batch goes; the committed ones stay, and the run says it failed
            db.rollback()
            if run_id is not None:
                runs.mark_failed(db, run_id, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        except Exception:
            pass
        raise
    finally:
        runs.release_session_lock(db)


def _pipeline(db: Db, cfg: settings.Settings, run_id: int, t_start: float, tx: runs.OneTransaction) -> dict:
    tx.settings()
    prover, plan_as = Prover(db), security.PlanAs(db)
    try:
        return _run(db, cfg, prover, run_id, t_start, plan_as, tx)
    finally:
        prover.close()
        plan_as.close()


def _run(db: Db, cfg: settings.Settings, prover: Prover, run_id: int, t_start: float,
         plan_as: security.PlanAs, tx: runs.OneTransaction) -> dict:
    timings: dict[str, float] = {}
    t = time.monotonic()
    # 1. workload
    snap = workload.take_snapshot(db)
    selected, totals = workload.window(db, snap, min_calls=cfg.min_calls, min_mean_ms=cfg.min_mean_time_ms,
                                       limit=cfg.max_statements, exclude=lambda q: bool(OWN_CALL.search(q or "")))
    notes = guard.Notes()  # per-object failures of the steps below: recorded, the audit carries on
    # index usage snapshot (the drop_index advisor's evidence of unused indexes)
    guard.guarded(db, notes, "snapshotting index usage", drop_index.snapshot_indexes, db, default=0)
    # statements that differ only in normalisation noise (IN-list length ...): one analysis per group
    groups = grouping.group(selected)
    n_grouped = sum(len(g.members) for g in groups)
    timings["workload_ms"] = (time.monotonic() - t) * 1000
    window_desc = ("totals since the statistics were reset" if snap.prev_id is None or snap.reset
                   else f"delta since {snap.prev_taken_at}")
    db.notice(f"pg_architect: audit {run_id}: {totals['statements_seen']} statements in the window "
              f"({window_desc}), {len(selected)} above the thresholds"
              + (f", {len(groups)} groups after grouping ({n_grouped} analysed with their group)" if n_grouped else ""))
    runs.record_window(db, run_id, snap, totals, len(selected))
    tx.commit()
    # 6. remember the outcomes of applied recommendations first (2. recall uses them below)
    t = time.monotonic()
    recall = knowledge.Recall(db, run_id)
    known = outcomes.update(db, snap, prover, recall.ks, plan_as, notes)
    timings["outcomes_ms"] = (time.monotonic() - t) * 1000
    # 4. advise and 5. prove, per group (its representative, weighted with the group's time); then
    # 2. recall reviews the proofs (the index proofs after the workload's index set is chosen, below)
    merged: dict[str, store.Merged] = {}
    analyzed = skipped = tested = 0
    analysed: list[tuple[WindowStatement, advise.StatementResult, list, list[WindowStatement], str | None]] = []
    # statements whose text, tables and statistics did not change since the audit that analysed
    # them reuse that analysis (reuse.py)
    earlier = (guard.guarded(db, notes, "reading the earlier analyses", reuse.Reuse, db, default=None)
               if cfg.reuse_analyses else None)
    reused: list[tuple[WindowStatement, WindowStatement, list[WindowStatement], reuse.Earlier]] = []
    records: list[tuple] = []
    t = time.monotonic()
    done = 0
    for i, g in enumerate(groups, 1):
        st = g.weighted
        db.progress(i - 1, len(groups), _short(st.query, 60))
        db.notice(f"pg_architect: [{i}/{len(groups)}] queryid {st.queryid}: {st.calls} calls, "
                  f"mean {st.mean_time_ms:,.1f} ms, {st.share * 100:.1f} % of the window"
                  + (f" (a group of {len(g.members) + 1} statements)" if g.members else ""))
        t0 = time.monotonic()
        inputs = None if earlier is None else guard.guarded(
            db, notes, f"hashing the inputs of queryid {st.queryid}", earlier.inputs, g.rep, default=None)
        before = None if earlier is None else earlier.earlier(g.rep, inputs)
        if before is not None:
            done += 1 + len(g.members)
            reused.append((st, g.rep, g.members, before))
            db.notice(f"pg_architect:     reused the analysis of audit {before.analysed_in} (text, tables and "
                      f"statistics unchanged)")
            tx.tick(done)
            continue
        res, code, reason = _analyze(db, prover, st, cfg, plan_as)
        done += 1 + len(g.members)
        if res is None and code in _SILENT:
            continue
        proofs: list = []
        if res is not None:
            analyzed += 1
            tested += res.candidates_tested
            reason = res.note or reason
            proofs = guard.guarded(db, notes, f"knowledge recall for queryid {st.queryid}",
                                   recall.review, st, _only(res, lambda p: p.candidate.kind != "index"),
                                   default=[])  # rejected ones skipped, history
            store.merge(merged, st, proofs)
            store.link(merged, g.members, proofs)
            analysed.append((st, res, proofs, g.members, inputs))
        else:
            skipped += 1
            db.notice(f"pg_architect:     skipped ({code}): {reason}")
        records.append((g.rep, "analyzed" if res is not None else "skipped", code, reason,
                        res.cost_before if res else None, res.candidates_tested if res else 0,
                        proofs, (time.monotonic() - t0) * 1000, g.members))
        tx.tick(done)
    db.progress(len(groups), len(groups), "done")
    timings["analyze_ms"] = (time.monotonic() - t) * 1000
    tx.commit(done)
    # 4. advise and 5. prove at the workload level: one index set for every analysed statement
    # replaces the per-statement indexes (the fewest indexes that serve the whole window); when
    # the search fails (a note), the per-statement indexes are kept
    t = time.monotonic()
    use_set = cfg.audit_index_set
    got = guard.guarded(db, notes, "choosing the workload's index set", index_set.audit_proofs, db, prover,
                        plan_as, run_id,
                        [a[0] for a in analysed] + [r[0] for r in reused]) if use_set and (analysed or reused) else None
    iset, by_statement = got if got is not None else (None, None)
    if iset is not None:
        timings.update({k: round(v, 1) for k, v in iset.timings.items()})
    set_links: dict[tuple[int, int], int] = {}  # reused statement -> index set recommendations serving it
    if by_statement is not None:  # reused statements: the index set's proofs, rejected ones left out
        for st, _rep, members, _before in reused:
            set_proofs = _not_rejected(db, by_statement.get((int(st.queryid), int(st.userid)), []))
            set_links[int(st.queryid), int(st.userid)] = len(set_proofs)
            store.merge(merged, st, set_proofs)
            store.link(merged, members, set_proofs)
    for st, res, proofs, members, _inputs in analysed:
        index_proofs = ([p for p in res.proven if p.candidate.kind == "index"] if by_statement is None
                        else by_statement.get((int(st.queryid), int(st.userid)), []))
        reviewed = guard.guarded(db, notes, f"knowledge recall for queryid {st.queryid}",
                                 recall.review, st, _only(res, lambda p, keep=index_proofs: False, extra=index_proofs),
                                 default=[])
        store.merge(merged, st, reviewed)
        store.link(merged, members, reviewed)
        proofs.extend(reviewed)
    timings["index_set_ms"] = (time.monotonic() - t) * 1000
    tx.commit(done)
    t = time.monotonic()
    for rep, outcome, code, reason, cost, n_tested, proofs, ms, members in records:
        runs.record_statement(db, run_id, rep, outcome, code, reason, cost, n_tested, len(proofs), ms)
        for m in members:
            runs.record_grouped(db, run_id, m, rep, outcome, len(proofs))
    # 6. remember
    new, updated = store.store(db, run_id, merged, recall, notes)
    for st, rep, members, before in reused:
        n, seen = guard.guarded(db, notes, f"linking the reused analysis of queryid {rep.queryid}", earlier.relink,
                                run_id, st, members, before, by_statement is not None,
                                default=(0, 0)) if earlier else (0, 0)
        updated += seen
        n += set_links.get((int(st.queryid), int(st.userid)), 0)
        runs.record_reused(db, run_id, rep, before.analysed_in, before.cost_before, n)
        for m in members:
            runs.record_grouped(db, run_id, m, rep, "reused", n)
    if earlier is not None:
        for st, res, _proofs, _members, inputs in analysed:
            if inputs is not None:
                guard.guarded(db, notes, f"remembering the analysis of queryid {st.queryid}", earlier.remember,
                              run_id, st, inputs, res.cost_before, res.candidates_tested)
    timings["store_ms"] = (time.monotonic() - t) * 1000
    # 4-6. housekeeping of the indexes that exist (kind drop_index), stored with the same lifecycle
    housekeeping = guard.guarded(db, notes, "index housekeeping (drop_index)", drop_index.advise, db, default=[])
    h_new, h_updated = store.store_housekeeping(db, run_id, housekeeping, notes)
    new, updated = new + h_new, updated + h_updated
    # 4-6. workload-level advice (partition, materialized_view, cache), stored with the same lifecycle
    t = time.monotonic()
    advice = store_advice.advise(db, notes)
    k_new, k_updated = store_advice.store(db, run_id, advice, notes, recall)
    new, updated = new + k_new, updated + k_updated
    timings["advice_ms"] = (time.monotonic() - t) * 1000
    known.update(recall.summary())
    # 3. context (explain requests) and 7. hand over (superseded, open_pr requests)
    queued = guard.guarded(db, notes, "queueing sidecar requests", workflow.after_audit, db, run_id,
                           default={"superseded": 0, "explain_requests": 0, "pr_requests": 0})
    pruned = guard.guarded(db, notes, "pruning old snapshots", workload.prune, db, cfg.snapshot_retention,
                           default=0)
    duration = (time.monotonic() - t_start) * 1000
    timings["total_ms"] = duration
    summary = {"run_id": run_id, "statements_seen": totals["statements_seen"],
               "statements_selected": len(selected), "statements_analyzed": analyzed, "skipped": skipped,
               "statements_grouped": n_grouped, "statements_reused": len(reused), "batches": tx.batches + 1,
               "candidates_tested": tested, "drop_index_advice": len(housekeeping),
               **{f"{k}_advice": sum(1 for a in advice if a["kind"] == k) for k in store_advice.KINDS},
               "index_set": None if iset is None else {"indexes": len(iset.chosen),
                                                       "workload_ms_before": round(iset.before_ms, 3),
                                                       "workload_ms_after": round(iset.after_ms, 3)},
               "recommendations_new": new, "recommendations_updated": updated,
               "window": window_desc, "snapshots_pruned": pruned, "duration_ms": round(duration, 1),
               "knowledge": known, "notes": list(notes), **queued}
    runs.finish(db, run_id, summary, duration, timings, known, list(notes))
    tx.done()
    db.notice(f"pg_architect: audit {run_id} done in {duration / 1000:.1f} s: {analyzed} analysed, "
              + (f"{n_grouped} grouped, " if n_grouped else "") + (f"{len(reused)} reused, " if reused else "")
              + f"{skipped} skipped, {new} new and {updated} updated recommendations"
              + (f", {len(notes)} note{'' if len(notes) == 1 else 's'} (arch.audit_runs)" if notes else ""))
    return summary


def _not_rejected(db: Db, proofs: list) -> list:
    """The proofs whose recommendation was not rejected (a reused statement is not reviewed
    again: its statistics did not change, so a rejected index is not re-proposed)."""
    return [p for p in proofs if db.scalar("SELECT status FROM arch.recommendation WHERE fingerprint = md5($1)",
                                           [p.candidate.fingerprint()]) != "rejected"]


def _only(res: advise.StatementResult, keep, extra: list | None = None) -> advise.StatementResult:
    """``res`` with only the proofs ``keep`` accepts, plus ``extra`` (for the knowledge review)."""
    advice = dataclasses.replace(res.advice, proven=[p for p in res.proven if keep(p)] + list(extra or []))
    return dataclasses.replace(res, advice=advice)


def _analyze(db: Db, prover: Prover, st: WindowStatement, cfg: settings.Settings, plan_as: security.PlanAs
             ) -> tuple[advise.StatementResult | None, str | None, str | None]:
    """Steps 4 and 5 for one statement in its own subtransaction: (result, None, None) or
    (None, skip code, reason)."""
    try:
        with db.subtransaction():
            return advise.analyze_one(db, prover, st.query, cfg, userid=st.userid, share=st.share,
                                      calls=st.calls, total_ms=st.total_time_ms, plan_as=plan_as,
                                      queryid=st.queryid), None, None
    except SkipStatement as s:
        if isinstance(s.__cause__, DbError) and canceled(s.__cause__):
            raise s.__cause__ from None
        return None, s.code, s.reason
    except DbError as exc:
        if canceled(exc):
            raise
        if exc.sqlstate == LOCK_NOT_AVAILABLE:
            return None, "locked", ("a table of the statement is locked by another "
                                    f"session (lock_timeout): {str(exc).splitlines()[0]}")
        return None, "error", f"unexpected error: {str(exc).splitlines()[0]}"
    finally:
        prover.run_as = None
        prover.reset()


def analyze_query(db: Db, text: str | None, search_path: str | None = None) -> list[dict]:
    """arch.analyze_query(): the audit's steps 4 and 5 for one statement, nothing stored."""
    if text is None or not text.strip():
        raise UserError("arch.analyze_query: the statement is empty",
                        hint="Pass one SQL statement, e.g. SELECT arch.analyze_query('SELECT * FROM t WHERE id = $1').",
                        sqlstate="22023")
    with guard.lock_timeout(db), local_setting(db, "plan_cache_mode", "force_generic_plan"):
        cfg = settings.load(db)
        prover = Prover(db)
        plan_as = security.PlanAs(db)  # the caller's own rights, and no way to change role while planning
        try:
            path = _split_search_path(search_path or db.scalar("SELECT reset_val FROM pg_catalog.pg_settings"
                                                               " WHERE name = 'search_path'") or "public",
                                      db.scalar("SELECT current_user::text"))
            try:
                with db.subtransaction():
                    res = advise.analyze_one(db, prover, text, cfg, search_path=path, plan_as=plan_as)
            except SkipStatement as s:
                if isinstance(s.__cause__, DbError) and canceled(s.__cause__):
                    raise s.__cause__ from None
                raise UserError("arch.analyze_query: cannot analyse this statement", detail=f"{s.reason} ({s.code})",
                                hint="Pass a single SELECT, UPDATE, DELETE or INSERT ... SELECT on tables you "
                                     "can read.",
                                sqlstate="22023") from None
        finally:
            prover.close()
            plan_as.close()
        return _rows(db, res, cfg)


def _rows(db: Db, res: advise.StatementResult, cfg: settings.Settings) -> list[dict]:
    if not res.proven:
        db.notice(f"pg_architect: no candidate index lowers the estimated cost ({res.cost_before:,.1f}) by "
                  f"{cfg.min_gain_pct:g} % or more ({res.candidates_tested} candidates costed)")
    out = []
    for p in sorted(res.proven, key=lambda p: -p.gain_pct):
        c = p.candidate
        try:
            ddl = c.ddl(db)
        except NotApplicable as exc:  # e.g. a foreign-table partition
            db.notice(f"pg_architect: no {c.kind} on {c.schema}.{c.table}: {exc}")
            continue
        out.append({"kind": c.kind, "table_name": f"{c.schema}.{c.table}", "index_kind": c.subtype, "ddl": ddl,
                    "cost_before": p.cost_before, "cost_after": p.cost_after,
                    "est_gain_pct": round(p.gain_pct, 2), "est_size_bytes": p.size_bytes,
                    "confidence": round(p.confidence, 3), "plan_changes": p.changes, "rationale": p.rationale})
    return out
