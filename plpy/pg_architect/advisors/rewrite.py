"""The rewrite advisor (kind ``rewrite``): the rules of :mod:`.rewrite_rules` behind :mod:`.base`.

* propose: every rule but :data:`NOT_IN_AUDIT` on the statement (:func:`.rewrite_rules.rewrite`,
  each rule on the original text; the catalog questions answered by
  :class:`.rewrite_catalog.DbCatalog` with the statement's search_path); refusals are dropped
  (their reason is the rules' business, not a recommendation);
* prove: *both* forms are planned through the audit's prover, i.e. as the statement's own role
  (``prover.run_as``, security.PlanAs): the rewritten statement is PREPAREd and EXPLAINed (generic
  plan), then the original is PREPAREd and EXPLAINed again and its cost is the "before";
* choose: the rewrites that reach ``min_gain_pct``, best first;
* render: a rewrite changes application code, not the schema: its "DDL" is the rewritten statement
  (shown only to roles that may see the statement, arch.visible_text) and its pull request is a
  markdown note under ``rewrite_docs_dir`` (sidecar/github.py), never an SQL migration.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, ClassVar

from .. import prove
from ..errors import DbError, SkipStatement, canceled
from .base import Advisor, Candidate, NotProvable, Proof, StatementContext
from .rewrite_catalog import DbCatalog
from .rewrite_rules import RULES, RULES_BY_NAME, NotParsable, Rewrite, rewrite

if TYPE_CHECKING:
    from ..db import Db

_PARAM = re.compile(r"\$(\d+)")
# Rules the audit does not run: in_list_to_any replaces n parameters by one array, whose generic
# plan the planner estimates from a default array length, not the list's: the two costs are not
# comparable (its point is one pg_stat_statements entry per statement, not a cheaper plan).
NOT_IN_AUDIT = frozenset({"in_list_to_any"})
AUDIT_RULES = [r.name for r in RULES if r.name not in NOT_IN_AUDIT]


class RewriteCandidate(Candidate):
    """One rule's rewrite of one statement."""

    kind: ClassVar[str] = "rewrite"

    def __init__(self, rw: Rewrite, original: str, schema: str, table: str):
        self.rw = rw
        self.original = original
        self.schema = schema
        self.table = table

    def __repr__(self) -> str:
        return f"RewriteCandidate({self.rw.rule!r})"

    @property
    def subtype(self) -> str:
        return self.rw.rule

    def fingerprint(self) -> str:
        return f"rewrite {self.rw.rule}: {self.rw.sql}"

    def prove(self, prover: prove.Prover, ctx: StatementContext) -> Proof | None:
        saved_text, saved_types = prover.text, list(prover.types)
        nparams = max([int(n) for n in _PARAM.findall(self.rw.sql)] or [0])
        try:
            try:
                after = prover.load(self.rw.sql, nparams)
            except SkipStatement as exc:
                if isinstance(exc.__cause__, DbError) and canceled(exc.__cause__):
                    raise exc.__cause__ from None
                raise NotProvable(f"the rewrite cannot be planned: {exc.reason}") from None
        finally:
            # The original again, as the statement's role: the prover's statement is restored
            # and the "before" of this proof is planned in the same conditions as the "after".
            prover.text, prover.types = saved_text, saved_types
            before = prover.explain(reprepare=True)
        gain = (before.cost - after.cost) / before.cost * 100.0 if before.cost > 0 else 0.0
        return Proof(candidate=self, cost_before=before.cost, cost_after=after.cost, gain_pct=gain, plan=after)

    def ddl(self, db: Db) -> str:
        return self.rw.sql

    def rollback(self, db: Db) -> str:
        return "-- keep (or go back to) the original statement in the application"

    def rationale(self, proof: Proof, ctx: StatementContext) -> str:
        rule = RULES_BY_NAME[self.rw.rule]
        parts = [f"Rewrite rule {self.rw.rule} ({rule.description}): {self.rw.explanation}",
                 f"Both forms planned as the statement's role: cost {proof.cost_before:,.1f} → "
                 f"{proof.cost_after:,.1f}, estimated {proof.gain_pct:.1f} % cheaper."]
        if proof.changes.get("removed") or proof.changes.get("added"):
            parts.append(f"The plan changes: {', '.join(proof.changes['removed'][:3]) or '-'} → "
                         f"{', '.join(proof.changes['added'][:3]) or '-'}.")
        if self.rw.changes_code:
            parts.append("The application's code changes"
                         + (f" (parameters: {self.rw.parameters})." if self.rw.parameters else "."))
        else:
            parts.append("The application sends the rewritten text instead; its parameters do not change.")
        if ctx.calls is not None and ctx.total_ms is not None:
            parts.append(f"The statement ran {ctx.calls:,} time{'' if ctx.calls == 1 else 's'} for "
                         f"{ctx.total_ms / 1000:,.1f} s in the audit window.")
        return " ".join(parts)

    def pr_section(self, proof: Proof) -> str:
        return (f"### rewrite ({self.rw.rule})\n\n{proof.rationale}\n\n"
                f"Estimated cost {proof.cost_before:,.1f} → {proof.cost_after:,.1f} "
                f"({proof.gain_pct:.1f} % cheaper), confidence {proof.confidence:.2f}.\n")


class RewriteAdvisor(Advisor):
    kind: ClassVar[str] = "rewrite"

    def propose(self, ctx: StatementContext) -> list[Candidate]:
        if ctx.info.kind not in ("select", "update", "delete"):
            return []
        try:
            outcomes = rewrite(ctx.info.text, DbCatalog(ctx.db), AUDIT_RULES)
        except NotParsable:
            return []
        schema, table = next(iter(ctx.info.tables), ("", ""))
        return [RewriteCandidate(o, ctx.info.text, schema, table) for o in outcomes if isinstance(o, Rewrite)]

    def after_proving(self, prover: prove.Prover) -> None:
        if prover.text is not None:
            prover.explain(reprepare=True)

    def choose(self, ctx: StatementContext, proofs: list[Proof]) -> list[Proof]:
        out = []
        for p in sorted(proofs, key=lambda p: -p.gain_pct):
            if ctx.before.cost <= 0 or p.gain_pct < ctx.settings.min_gain_pct:
                continue
            assert p.plan is not None
            conf, factors = prove.confidence(p.gain_pct / 100.0, ctx.share, 0.0, 0.0)
            cand = p.candidate
            assert isinstance(cand, RewriteCandidate)
            if cand.rw.changes_code:  # the caller changes more than the text: a little less sure
                conf, factors = conf * 0.9, {**factors, "changes_code": 0.9}
            proof = p.but(changes=prove.plan_changes(ctx.before, p.plan), confidence=conf, factors=factors)
            out.append(proof.but(rationale=cand.rationale(proof, ctx)))
        return out
