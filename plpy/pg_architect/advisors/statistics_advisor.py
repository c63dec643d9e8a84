"""The statistics advisor (kind ``statistics``): :mod:`.statistics` behind :mod:`.base`.

* propose: :func:`.statistics._advise` on the audit's prepared statement (the prover's, so every
  planner call runs as the statement's role): misestimates measured per node against a bounded
  sample of the table, ``CREATE STATISTICS`` (``extended_statistics``) and ``ALTER TABLE … SET
  STATISTICS`` (``statistics_target``) candidates; with ``arch.settings.prove_statistics_in_transaction``
  each one is proven there, in a subtransaction that is always rolled back;
* prove: a candidate is a proof only when that proof succeeded (status ``proven``): the old plan
  shape re-costed under the corrected statistics (``cost_before``) vs the new plan
  (``cost_after``).  With the setting off nothing is proposed (unproven statistics stay in
  ``arch.advise_statistics()``, which stores nothing);
* render: the candidate's DDL (``CREATE STATISTICS …; ANALYZE …``) and rollback
  (``DROP STATISTICS IF EXISTS …``, or ``SET STATISTICS -1``), a migration in every format.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from . import statistics
from .base import Advisor, Candidate, Proof, StatementContext

if TYPE_CHECKING:
    from ..db import Db
    from ..prove import Prover


class _SharedStatement(statistics.Statement):
    """The audit's prepared statement seen as a :class:`.statistics.Statement` (not closed here:
    the prover belongs to the audit)."""

    def __init__(self, db: Db, prover: Prover):  # noqa: super().__init__ would PREPARE again
        self.db = db
        self.params = None
        self.prover = prover

    def close(self) -> None:
        pass


class StatisticsCandidate(Candidate):
    """A proven (or not) statistics candidate of :mod:`.statistics`."""

    kind: ClassVar[str] = "statistics"

    def __init__(self, spec: statistics.Candidate):
        self.spec = spec
        self.schema = spec.schema
        self.table = spec.table

    def __repr__(self) -> str:
        return f"StatisticsCandidate({self.spec.definition()!r}, {self.spec.status})"

    @property
    def subtype(self) -> str:
        return self.spec.kind

    def fingerprint(self) -> str:
        return self.spec.definition()

    def name(self) -> str | None:
        return self.spec.name

    def columns(self) -> list[str]:
        return list(self.spec.columns)

    def prove(self, prover: Prover, ctx: StatementContext) -> Proof | None:
        s = self.spec
        if s.status != "proven":
            return None
        before = s.old_shape_cost_after if s.old_shape_cost_after is not None else (s.cost_before or 0.0)
        after = s.cost_after if s.cost_after is not None else before
        return Proof(candidate=self, cost_before=before, cost_after=after, gain_pct=s.gain_pct or 0.0,
                     changes=s.plan_changes, confidence=s.confidence, factors=s.factors, rationale=s.rationale)

    def ddl(self, db: Db) -> str:
        return self.spec.ddl()

    def rollback(self, db: Db) -> str:
        return self.spec.rollback_ddl()

    def rationale(self, proof: Proof, ctx: StatementContext) -> str:
        return self.spec.rationale


class StatisticsAdvisor(Advisor):
    kind: ClassVar[str] = "statistics"

    def propose(self, ctx: StatementContext) -> list[Candidate]:
        if ctx.info.kind != "select" or ctx.prover is None:
            return []
        settings = statistics.load_settings(ctx.db)
        if not settings.prove_statistics_in_transaction:
            return []
        adv = statistics._advise(ctx.db, _SharedStatement(ctx.db, ctx.prover), ctx.info.text, None, settings)
        return [StatisticsCandidate(c) for c in adv.candidates if c.status == "proven"]

    def choose(self, ctx: StatementContext, proofs: list[Proof]) -> list[Proof]:
        # statistics._advise already applied min_gain_pct to the plan-changing proofs; a larger
        # statistics target is proven by the estimate error alone.
        return proofs
