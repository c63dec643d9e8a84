"""Pipeline steps 2 and 6: recall similar past optimizations, remember new ones.

The knowledge base is ``arch.knowledge``: one *case* per (recommendation, statement), holding
the embedding of the statement's canonical text (:func:`pg_architect.embed.canonical_text`),
searched by cosine distance through an HNSW index.  Status, rejection and outcome are read from
``arch.recommendation``; the measured outcome per statement is also kept on the case (written by
:mod:`pg_architect.outcomes`).

During an audit, :class:`Recall` looks at every proven candidate of a statement before it is
stored:

* an equivalent recommendation (same index definition) that a human **rejected** is not
  proposed again: it is recorded in ``arch.audit_recall`` as ``skipped_rejected`` with the
  date and reason of the rejection, until the statement's estimated cost has grown by
  ``reproposal_cost_factor`` since (then it is ``reproposed``);
* the **confidence** starts from the planner-based estimate (:func:`prove.confidence`); once a
  confidence band has ``calibration_min_cases`` applied recommendations with a measured
  outcome (``arch.calibration``), the band's observed success rate replaces the estimate;
  then similar past cases (cosine similarity ≥ ``similarity_threshold``) with a measured
  outcome move it: an *improved* one raises it, a *slower* or *unused* one lowers it, and
  both are cited in the rationale and in ``recommendation.similar_to``;
* duplicate work is avoided: a canonical text already in the knowledge base is not embedded
  again (its stored vector is reused), a statement is embedded once per audit, a case is
  updated rather than added again, and a recommendation already approved, in a pull request
  or applied is linked to the statement instead of being proposed again.

The embedder is loaded only when a statement has something to remember: an audit that finds
nothing never loads the model.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import embed
from .analyze import SkipStatement
from .db import Db, DbError, UserError, extension_schema

if TYPE_CHECKING:
    from .advise import StatementResult
    from .advisors.base import Proof
    from .store import Merged
    from .workload import WindowStatement
from .settings import load_into as db_load_settings
from .sqltext import quote_ident

#: Confidence bands of arch.calibration: [0, 0.1), [0.1, 0.2) … [0.9, 1].
BANDS = 10
#: How far a similar success raises, and a similar failure lowers, the confidence (at similarity 1).
HISTORY_WEIGHT = 0.5
FAILED = ("slower", "unused")


@dataclass
class KnowledgeSettings:
    embedding_model: str
    similarity_threshold: float
    recall_k: int
    reproposal_cost_factor: float
    outcome_min_gain_pct: float
    outcome_min_calls: int
    outcome_window: str
    calibration_min_cases: int
    max_statement_length: int


def load_settings(db: Db) -> KnowledgeSettings:
    return db_load_settings(db, KnowledgeSettings)


def vector_schema(db: Db) -> str:
    """The quoted schema of pgvector's objects (functions here run with search_path pg_catalog)."""
    name = extension_schema(db, "vector")
    if name is None:
        raise UserError("the vector extension (pgvector) is not installed in this database",
                        hint="CREATE EXTENSION vector; then re-run pg-architect install.")
    return quote_ident(name, always=True)


def lookup_sql(vs: str, measured_only: bool = False) -> str:
    """The nearest cases to ``$1`` (a vector literal) for model ``$2``, ``$3`` of them.

    Ordered by cosine distance with ``LIMIT``: the HNSW index ``knowledge_embedding_idx``
    answers it (``hnsw.iterative_scan`` keeps filtering from returning too few rows)."""
    dist = f"k.embedding OPERATOR({vs}.<=>) $1::text::{vs}.vector"
    extra = " AND k.outcome IS NOT NULL" if measured_only else ""
    return (f"SELECT k.id, k.recommendation_id, k.userid, k.query, k.outcome AS case_outcome,"
            f" k.measured_gain_pct AS case_gain_pct, {dist} AS distance"
            f" FROM arch.knowledge k WHERE k.embedding_model = $2{extra}"
            f" ORDER BY {dist} LIMIT $3")


def rejection_exprs(db: Db, alias: str = "r") -> tuple[str, str]:
    """SQL for the reason and time of a rejection: ``rejected_reason`` / ``rejected_at``
    (migration 0003), else the decision recorded by ``arch.reject()`` (``decision_note`` /
    ``decided_at``, migration 0004) when that workflow is installed."""
    cols = {r["name"] for r in db.query(
        "SELECT attname::text AS name FROM pg_attribute WHERE attrelid = 'arch.recommendation'::regclass"
        " AND attnum > 0 AND NOT attisdropped")}
    reason = f"{alias}.rejected_reason"
    when = f"{alias}.rejected_at"
    if "decision_note" in cols:
        reason = f"coalesce({reason}, CASE WHEN {alias}.status = 'rejected' THEN {alias}.decision_note END)"
    if "decided_at" in cols:
        when = f"coalesce({when}, CASE WHEN {alias}.status = 'rejected' THEN {alias}.decided_at END)"
    return reason, when


def similar_sql(vs: str, measured_only: bool = False, rejection: tuple[str, str] | None = None) -> str:
    """:func:`lookup_sql` joined with the recommendations (status, DDL, outcome)."""
    reason, when = rejection or ("r.rejected_reason", "r.rejected_at")
    return (
        "SELECT c.recommendation_id, c.id AS knowledge_id,"
        " arch.visible_text(c.userid, c.query) AS statement,"  # the rule of pg_stat_statements
        " greatest(-1, least(1, 1 - c.distance))::float8 AS similarity,"
        " r.kind, r.index_kind, format('%I.%I', r.schema_name, r.table_name) AS table_name, r.ddl,"
        f" r.status, {reason} AS rejected_reason, {when} AS rejected_at, r.applied_at,"
        " r.applied_index::text AS applied_index,"
        " coalesce(c.case_gain_pct, r.measured_gain_pct) AS measured_gain_pct,"
        " coalesce(c.case_outcome, r.outcome) AS outcome, r.outcome_detail, r.est_gain_pct, r.confidence,"
        " r.fingerprint, r.created_at"
        f" FROM ({lookup_sql(vs, measured_only)}) c"
        " JOIN arch.recommendation r ON r.id = c.recommendation_id ORDER BY c.distance, c.id")


def _with_iterative_scan(db: Db, fn):
    old = db.scalar("SELECT current_setting('hnsw.iterative_scan', true)")
    db.execute("SELECT set_config('hnsw.iterative_scan', 'strict_order', true)")
    try:
        return fn()
    finally:
        db.execute("SELECT set_config('hnsw.iterative_scan', $1, true)", [old or "off"])


def calibration(db: Db) -> dict[int, tuple[int, int]]:
    """band → (applied recommendations with a measured outcome, how many delivered)."""
    return {int(r["band"]): (int(r["applied_measured"]), int(r["delivered"]))
            for r in db.query("SELECT band, applied_measured, delivered FROM arch.calibration")}


def band_of(confidence: float) -> int:
    return min(BANDS - 1, max(0, int(confidence * BANDS)))


def calibrate(estimate: float, table: dict[int, tuple[int, int]], min_cases: int) -> tuple[float, dict | None]:
    """The estimate, or its band's observed success rate when the band has enough history."""
    b = band_of(estimate)
    n, ok = table.get(b, (0, 0))
    info = {"band": f"{b / BANDS:.1f}-{(b + 1) / BANDS:.1f}", "cases": n, "delivered": ok,
            "min_cases": min_cases, "used": n >= min_cases}
    if n >= min_cases and n > 0:
        info["success_rate"] = round(ok / n, 4)
        return ok / n, info
    return estimate, info


def adjust_for_history(confidence: float, cases: list[dict]) -> tuple[float, dict | None, dict | None]:
    """Raise the confidence by the most similar improved case, lower it by the most similar
    failed one (slower, or its index never used):

        c ← c + (1 − c) × 0.5 × similarity(best success)
        c ← c × (1 − 0.5 × similarity(closest failure))
    """
    good = [c for c in cases if c["outcome"] == "improved"]
    bad = [c for c in cases if c["outcome"] in FAILED]
    best = max(good, key=lambda c: c["similarity"]) if good else None
    worst = max(bad, key=lambda c: c["similarity"]) if bad else None
    if best is not None:
        confidence = confidence + (1 - confidence) * HISTORY_WEIGHT * best["similarity"]
    if worst is not None:
        confidence = confidence * (1 - HISTORY_WEIGHT * worst["similarity"])
    return max(0.0, min(1.0, confidence)), best, worst


def _date(ts) -> str:
    return ts.strftime("%Y-%m-%d") if hasattr(ts, "strftime") else str(ts)[:10]


def _cite(c: dict) -> dict:
    return {"recommendation_id": c["recommendation_id"], "knowledge_id": c["knowledge_id"],
            "similarity": round(c["similarity"], 4), "outcome": c["outcome"],
            "measured_gain_pct": None if c["measured_gain_pct"] is None else round(c["measured_gain_pct"], 1),
            "ddl": c["ddl"], "applied_at": None if c["applied_at"] is None else str(c["applied_at"])}


class Recall:
    """Recall and remember for one audit run (see the module docstring)."""

    def __init__(self, db: Db, run_id: int):
        self.db = db
        self.run_id = run_id
        self.ks = load_settings(db)
        self.vs = vector_schema(db)
        self.counts: Counter = Counter()
        self.vectors: dict[tuple, tuple[str, str]] = {}
        self.pending: dict[tuple, str] = {}  # canonical texts waiting for a batched embedding
        self._embedder: embed.Embedder | None = None
        self._history: bool | None = None
        self._calibration: dict | None = None
        self.load_ms = 0.0
        self.rejection = rejection_exprs(db)

    # -- embeddings -------------------------------------------------------------------------
    def embedder(self) -> embed.Embedder:
        if self._embedder is None:
            t0 = time.monotonic()
            self._embedder = embed.get_embedder(self.ks.embedding_model)
            self.load_ms = (time.monotonic() - t0) * 1000
        return self._embedder

    def vector_for(self, st, res, lazy: bool = False) -> tuple[str, str | None]:
        """(canonical text, vector literal) of a window statement, embedded at most once.

        ``lazy``: when the vector is not needed right away (nothing to look up yet), only the
        canonical text is computed now; :meth:`flush` embeds all pending texts in one batch
        (several times faster than one call per statement)."""
        key = (st.dbid, st.userid, st.queryid)
        if key in self.vectors:
            return self.vectors[key]
        if key in self.pending:
            if lazy:
                return self.pending[key], None
            self.flush()
            return self.vectors[key]
        canon = embed.canonical_text(st.query, getattr(res, "info", None), getattr(res, "catalog", None)).text
        vec = self.db.scalar("SELECT embedding::text FROM arch.knowledge WHERE canonical_md5 = md5($1)"
                             " AND embedding_model = $2 LIMIT 1", [canon, self.ks.embedding_model])
        if vec is None:
            if lazy:
                self.pending[key] = canon
                return canon, None
            vec = embed.vector_literal(self.embedder().embed(canon))
            self.counts["embedded"] += 1
        else:
            self.counts["embeddings_reused"] += 1
        self.vectors[key] = (canon, vec)
        return canon, vec

    def flush(self) -> None:
        """Embed every pending canonical text in one batch."""
        if not self.pending:
            return
        keys = list(self.pending)
        texts = [self.pending[k] for k in keys]
        vecs = self.embedder().embed_many(texts)
        for key, canon, vec in zip(keys, texts, vecs):
            self.vectors[key] = (canon, embed.vector_literal(vec))
        self.counts["embedded"] += len(keys)
        self.pending.clear()

    # -- recall -----------------------------------------------------------------------------
    def has_history(self) -> bool:
        if self._history is None:
            self._history = bool(self.db.scalar(
                "SELECT EXISTS (SELECT 1 FROM arch.knowledge WHERE outcome IS NOT NULL AND embedding_model = $1)",
                [self.ks.embedding_model]))
        return self._history

    def similar_cases(self, vec: str) -> list[dict]:
        rows = _with_iterative_scan(self.db, lambda: self.db.query(
            similar_sql(self.vs, True, self.rejection), [vec, self.ks.embedding_model, self.ks.recall_k]))
        self.counts["lookups"] += 1
        return [r for r in rows if r["similarity"] >= self.ks.similarity_threshold]

    def _record(self, st, action: str, rec_id, reason: str, similar_id=None, similarity=None, cost=None):
        self.db.execute(
            "INSERT INTO arch.audit_recall (audit_run_id, dbid, userid, queryid, action, recommendation_id,"
            " similar_recommendation_id, similarity, cost_before, reason) VALUES ($1, $2::bigint::oid,"
            " $3::bigint::oid, $4, $5, $6::text::bigint, $7::text::bigint, $8::text::float8, $9::text::float8, $10)",
            [self.run_id, st.dbid, st.userid, st.queryid, action, None if rec_id is None else str(rec_id),
             None if similar_id is None else str(similar_id), None if similarity is None else str(similarity),
             None if cost is None else str(cost), reason])
        self.counts[action] += 1

    def review(self, st: WindowStatement, res: StatementResult) -> list[Proof]:
        """The proven candidates of one statement that may be proposed, with their confidence
        calibrated and adjusted by similar past cases (new Proof objects; ``res`` is not changed)."""
        kept: list[Proof] = []
        for p in res.proven:
            fp = p.candidate.fingerprint()
            rec = self.db.one(
                f"SELECT r.id, r.status, {self.rejection[0]} AS rejected_reason, {self.rejection[1]} AS rejected_at,"
                " r.cost_before FROM arch.recommendation r WHERE r.fingerprint = md5($1)", [fp])
            if rec is not None and rec["status"] == "rejected":
                then = self.db.scalar(
                    "SELECT cost_before FROM arch.recommendation_statement WHERE recommendation_id = $1"
                    " AND dbid = $2::bigint::oid AND userid = $3::bigint::oid AND queryid = $4"
                    " ORDER BY audit_run_id DESC LIMIT 1", [rec["id"], st.dbid, st.userid, st.queryid])
                then = float(then if then is not None else rec["cost_before"])
                when = "on " + _date(rec["rejected_at"]) if rec["rejected_at"] else "earlier"
                why = f" ({rec['rejected_reason']})" if rec["rejected_reason"] else " (no reason given)"
                factor = self.ks.reproposal_cost_factor
                if p.cost_before < factor * then:
                    self._record(st, "skipped_rejected", rec["id"],
                                 f"rejected {when}{why}; the statement's estimated cost {p.cost_before:,.1f} has not "
                                 f"grown {factor:g}x since the rejection ({then:,.1f})", cost=p.cost_before)
                    continue
                note = (f"Re-proposed: rejected {when}{why}, but the statement's estimated cost grew from "
                        f"{then:,.1f} to {p.cost_before:,.1f} ({p.cost_before / then if then else float('inf'):.1f}x, "
                        f"threshold {factor:g}x). ")
                self.db.execute("UPDATE arch.recommendation SET status = 'proposed', reproposed_at = now(),"
                                " updated_at = now() WHERE id = $1 AND status = 'rejected'", [rec["id"]])
                p = p.but(rationale=note + p.rationale)
                self._record(st, "reproposed", rec["id"], note.strip(), cost=p.cost_before)
            kept.append(p)
        if not kept:
            return kept
        if self._calibration is None:
            self._calibration = calibration(self.db)
        history = self.has_history()
        _canon, vec = self.vector_for(st, res, lazy=not history)
        cases = self.similar_cases(vec) if history and vec is not None else []
        out: list[Proof] = []
        for p in kept:
            estimate = p.confidence
            conf, cal = calibrate(estimate, self._calibration, self.ks.calibration_min_cases)
            fp_md5 = hashlib.md5(p.candidate.fingerprint().encode("utf-8")).hexdigest()
            mine = [c for c in cases if c["fingerprint"] != fp_md5]
            adjusted, best, worst = adjust_for_history(conf, mine)
            factors = dict(p.factors, estimate=round(estimate, 4), calibration=cal,
                           history={"raised_by": None if best is None else best["recommendation_id"],
                                    "lowered_by": None if worst is None else worst["recommendation_id"]})
            similar_to: list[dict] = []
            notes = []
            if cal and cal["used"]:
                notes.append(f"Calibrated: {cal['delivered']} of {cal['cases']} applied recommendations with an "
                             f"estimated confidence of {cal['band']} delivered at least "
                             f"{self.ks.outcome_min_gain_pct:g} % (estimate {estimate:.2f}, now {conf:.2f}).")
            if best is not None:
                gain = best["measured_gain_pct"]
                notes.append(f"A similar statement (similarity {best['similarity']:.2f}) got "
                             f"{best['applied_index'] or 'its index'} applied on {_date(best['applied_at'])} and ran "
                             f"{gain:.1f} % faster (recommendation #{best['recommendation_id']}).")
                similar_to.append(dict(_cite(best), effect="raised", note=notes[-1]))
            if worst is not None:
                what = ("its index was never used" if worst["outcome"] == "unused"
                        else f"it got {-(worst['measured_gain_pct'] or 0):.1f} % slower")
                notes.append(f"A similar statement (similarity {worst['similarity']:.2f}) had "
                             f"{worst['applied_index'] or 'an index'} applied and {what} "
                             f"(recommendation #{worst['recommendation_id']}): a failed recommendation.")
                similar_to.append(dict(_cite(worst), effect="lowered", note=notes[-1]))
            if best is not None or worst is not None:
                notes.append(f"Confidence {conf:.2f} → {adjusted:.2f}.")
            rationale = p.rationale + " " + " ".join(notes) if notes else p.rationale
            out.append(p.but(factors=factors, estimate=estimate, similar_to=tuple(similar_to), confidence=adjusted,
                             rationale=rationale))
        return out

    # -- remember ---------------------------------------------------------------------------
    def remember(self, rec_id: int, m: Merged) -> None:
        """Store the recommendation's knowledge: its estimate, the cases it was compared with,
        and one case (embedding) per statement it helps."""
        p = m.best
        self.flush()
        self.db.execute(
            "UPDATE arch.recommendation SET confidence_estimate = $2::text::float8, similar_to = $3::jsonb"
            " WHERE id = $1 AND status = 'proposed'",
            [rec_id, None if p.estimate is None else str(min(1.0, max(0.0, p.estimate))), list(p.similar_to)])
        for lst, lp in m.links:
            for cite in lp.similar_to:
                self._record(lst, cite["effect"], rec_id, cite["note"], cite["recommendation_id"],
                             cite["similarity"], lp.cost_before)
            got = self.vectors.get((lst.dbid, lst.userid, lst.queryid))
            if got is None:
                continue
            self._store_case(rec_id, lst, got, lp.cost_before, lp.cost_after, lp.gain_pct)

    def remember_statement(self, rec_id: int, st, cost_before: float, cost_after: float, gain_pct: float) -> None:
        """One case (embedding) for a statement a workload-level advice serves (partition,
        materialized_view, cache: ``st`` has dbid, userid, queryid, query): the audit's vector of
        the statement when it analysed it, else the one ``arch.similar_optimizations()`` computes."""
        key = (st.dbid, st.userid, st.queryid)
        if key in self.pending:
            self.flush()
        if key not in self.vectors:
            try:
                with self.db.subtransaction():
                    canon = canonical_statement(self.db, st.query)
            except (DbError, UserError):
                canon = embed.canonical_text(st.query, None, None).text
            vec = self.db.scalar("SELECT embedding::text FROM arch.knowledge WHERE canonical_md5 = md5($1)"
                                 " AND embedding_model = $2 LIMIT 1", [canon, self.ks.embedding_model])
            if vec is None:
                vec = embed.vector_literal(self.embedder().embed(canon))
                self.counts["embedded"] += 1
            self.vectors[key] = (canon, vec)
        self._store_case(rec_id, st, self.vectors[key], cost_before, cost_after, gain_pct)

    def _store_case(self, rec_id: int, lst, got: tuple[str, str], cost_before: float, cost_after: float,
                    gain_pct: float) -> None:
        canon, vec = got
        self.db.execute(
            f"INSERT INTO arch.knowledge AS k (recommendation_id, dbid, userid, queryid, query, canonical,"
            f" embedding_model, embedding, cost_before, cost_after, est_gain_pct, first_audit_run_id,"
            f" last_audit_run_id) VALUES ($1, $2::bigint::oid, $3::bigint::oid, $4, $5, $6, $7,"
            f" $8::text::{self.vs}.vector, $9, $10, $11, $12, $12)"
            f" ON CONFLICT (recommendation_id, dbid, userid, queryid) DO UPDATE SET query = EXCLUDED.query,"
            f" canonical = EXCLUDED.canonical, embedding_model = EXCLUDED.embedding_model,"
            f" embedding = EXCLUDED.embedding, cost_before = EXCLUDED.cost_before,"
            f" cost_after = EXCLUDED.cost_after, est_gain_pct = EXCLUDED.est_gain_pct,"
            f" last_audit_run_id = EXCLUDED.last_audit_run_id, updated_at = now()",
            [rec_id, lst.dbid, lst.userid, lst.queryid, lst.query, canon, self.ks.embedding_model, vec,
             cost_before, cost_after, min(gain_pct, 100.0), self.run_id])
        self.counts["cases_stored"] += 1

    def summary(self) -> dict:
        out = dict(self.counts)
        out["model"] = self.ks.embedding_model
        out["model_loaded"] = self._embedder is not None
        if self._embedder is not None:
            out["model_load_ms"] = round(self.load_ms, 1)
        return out


# ------------------------------------------------------------------------------------------
# SQL functions
# ------------------------------------------------------------------------------------------


def _default_search_path(db: Db) -> list[str]:
    from .catalog import _split_search_path

    return _split_search_path(db.scalar("SELECT reset_val FROM pg_settings WHERE name = 'search_path'") or "public",
                              db.scalar("SELECT current_user::text"))


def canonical_statement(db: Db, sql: str | None) -> str:
    """arch.canonical_statement(): the text the knowledge base embeds for a statement."""
    from . import analyze
    from .catalog import PgCatalog

    if sql is None or not sql.strip():
        raise UserError("the statement is empty", hint="Pass one SQL statement.", sqlstate="22023")
    ks = load_settings(db)
    cat = PgCatalog(db, _default_search_path(db))
    info = None
    try:
        with db.subtransaction():
            info = analyze.analyze_statement(sql, cat, max_length=ks.max_statement_length)
    except SkipStatement:
        info = None
    except DbError:
        info = None
    return embed.canonical_text(sql, info, cat).text


def similar_optimizations(db: Db, sql: str | None, k: int | None) -> list[dict]:
    """arch.similar_optimizations(): past cases nearest to a statement."""
    if k is None or k < 1 or k > 1000:
        raise UserError("arch.similar_optimizations: k must be between 1 and 1000", sqlstate="22023")
    text = canonical_statement(db, sql)
    ks = load_settings(db)
    vs = vector_schema(db)
    vec = embed.vector_literal(embed.get_embedder(ks.embedding_model).embed(text))
    sql_text = similar_sql(vs, False, rejection_exprs(db))
    rows = _with_iterative_scan(db, lambda: db.query(sql_text, [vec, ks.embedding_model, int(k)]))
    for r in rows:
        r.pop("fingerprint", None)
        r.pop("knowledge_id", None)
    return rows


def embed_text(db: Db, content: str) -> str:
    """arch.embed(): the configured model's embedding of a text, as a vector literal."""
    ks = load_settings(db)
    return embed.vector_literal(embed.get_embedder(ks.embedding_model).embed(content))


def check_embedding_model(db: Db) -> dict:
    """arch._check_embedding_model(): the configured model exists and has 384 dimensions
    (configuration files only: the model is not loaded)."""
    return embed.check_model(load_settings(db).embedding_model)
