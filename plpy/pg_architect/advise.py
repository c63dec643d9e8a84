"""Pipeline steps 4 and 5 for one statement: read it, let every advisor propose, prove, choose.

Safety rules enforced here (the audit and ``arch.analyze_query`` share them):

* utility statements are refused before anything else (their text is never stored);
* with ``plan_as``, every planner call runs as the role that ran the statement (a SECURITY DEFINER
  wrapper owned by that role, security.py), never the auditor's; a statement on another
  session's temporary schema cannot be planned and is skipped;
* the statement is read with its role's search_path (set local, restored after);
* user statements are only PREPAREd and EXPLAINed (no ANALYZE): nothing of theirs runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from . import analyze, security
from .advisors import sampled_candidates
from .advisors.base import Advice, Advisor, Proof, StatementContext, advise
from .advisors.index import IndexAdvisor
from .advisors.index_candidates import generate_candidates
from .advisors.rewrite import RewriteAdvisor
from .advisors.statistics_advisor import StatisticsAdvisor
from .catalog import PgCatalog, search_path_for
from .db import Db, local_setting
from .errors import SkipStatement
from .prove import Prover
from .settings import Settings
from .sqltext import quote_ident

# The advisors the audit runs, in order (each proposes candidates of its kind).
ADVISORS: tuple[type[Advisor], ...] = (IndexAdvisor, RewriteAdvisor, StatisticsAdvisor)


@dataclass
class StatementResult:
    """What steps 4 and 5 made of one statement (``info`` / ``catalog`` give the canonical text)."""

    advice: Advice
    info: analyze.StatementInfo
    catalog: PgCatalog

    @property
    def cost_before(self) -> float:
        return self.advice.cost_before

    @property
    def candidates_tested(self) -> int:
        return self.advice.candidates_tested

    @property
    def proven(self) -> list[Proof]:
        return self.advice.proven

    @property
    def note(self) -> str | None:
        return self.advice.note


def advisors() -> list[Advisor]:
    return [cls() for cls in ADVISORS]


def analyze_one(db: Db, prover: Prover, text: str, settings: Settings, *,
                userid: int | None = None, share: float | None = None, calls: int | None = None,
                total_ms: float | None = None, search_path: list[str] | None = None,
                plan_as: security.PlanAs | None = None, queryid: int | None = None) -> StatementResult:
    """Analyse one statement: parse, let the advisors propose and prove, keep their choice.

    With ``plan_as``, every planner call runs as role ``userid`` (the caller when None).  With
    ``queryid`` (the audit), the statement's query samples of that role feed candidates and
    custom-plan costing (advisors/sampled_candidates.py); without enough samples, parameters compared
    by range are costed with custom plans for pg_stats values (sampled_candidates.range_facts), and
    nothing changes for the other statements."""
    t0 = time.monotonic()
    skip = security.utility_skip(text)
    if skip is not None:
        raise skip
    if plan_as is not None:
        if userid is not None and security.references_temp_schema(text):
            raise SkipStatement("temp_object", "it uses an object of a temporary schema (pg_temp) of the "
                                "session that ran it, which cannot be resolved from the audit's session")
        prover.run_as = plan_as.wrapper_for(userid)
    facts = sampled_candidates.safe_facts(db, queryid, userid, text)
    path = search_path if search_path is not None else search_path_for(db, userid)
    with local_setting(db, "search_path", ", ".join(quote_ident(p, always=True) for p in path) or "pg_catalog"):
        cat = PgCatalog(db, path)
        info = analyze.analyze_statement(text, cat, max_length=settings.max_statement_length)
        if info.kind == "insert" and not info.tables:
            raise SkipStatement("not_supported", "INSERT ... VALUES has nothing an index can speed up")
        before = prover.load(info.text, info.param_count, info.free_params)
        if facts is not None:
            metas = {key: cat.table_meta(*key) for key in info.tables}
            known = {c.definition() for c in generate_candidates(info, metas, max_columns=settings.max_index_columns)}
            facts = sampled_candidates.prepare(db, facts, info, metas, text, settings.max_index_columns, known)
        else:  # parameters compared by range: custom plans with pg_stats values
            facts = sampled_candidates.range_facts(db, info, text)
        facts = sampled_candidates.with_custom_before(prover, facts)
        ctx = StatementContext(db=db, text=text, info=info, catalog=cat, before=before, settings=settings,
                               share=share, calls=calls, total_ms=total_ms, started=t0, prover=prover,
                               samples=facts)
        advice = advise(ctx, prover, advisors())
        if facts is not None and facts.generic_only:
            left = (f"left out {len(facts.generic_only)} index candidate(s) only the generic plan (NULL arguments) "
                    f"uses, not the custom plans of the sampled values: {', '.join(facts.generic_only[:3])}")
            advice.note = f"{advice.note}; {left}" if advice.note else left
        cross_reference(advice.proven)
        return StatementResult(advice=advice, info=info, catalog=cat)


def cross_reference(proven: list[Proof]) -> None:
    """When a rewrite and an index both help the statement, each rationale says so: which one
    saves more, and that they are independent changes (a schema migration vs application code)."""
    idx = [p for p in proven if p.candidate.kind == "index"]
    rws = [p for p in proven if p.candidate.kind == "rewrite"]
    if not idx or not rws:
        return
    best_i = min(idx, key=lambda p: p.cost_after)
    best_r = min(rws, key=lambda p: p.cost_after)
    ic, rc = best_i.candidate, best_r.candidate
    if best_r.cost_after < best_i.cost_after:
        which = (f"the rewrite ({rc.subtype}) saves more ({best_r.gain_pct:.1f} % vs {best_i.gain_pct:.1f} %) "
                 f"but changes the application; the index needs no code change")
    else:
        which = (f"the index saves as much or more ({best_i.gain_pct:.1f} % vs {best_r.gain_pct:.1f} %) and "
                 f"needs no code change; the rewrite ({rc.subtype}) is worth it only with the code change")
    both = (" Both can be applied: each was proven alone against the current plan, so their gains do not add up.")
    for i, p in enumerate(proven):
        if p.candidate.kind == "index":
            note = f" A rewrite ({rc.subtype}) also helps this statement: {which}.{both}"
        elif p.candidate.kind == "rewrite":
            note = f" An index on {ic.schema}.{ic.table} also helps this statement: {which}.{both}"
        else:
            continue
        proven[i] = p.but(rationale=p.rationale + note)
