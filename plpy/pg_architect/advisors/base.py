"""The advisor interface (pipeline steps 4 and 5): every kind of advice is one module behind it.

An :class:`Advisor` (``kind`` names it; ``arch.recommendation.kind`` stores it) looks at one analysed
workload statement (:class:`StatementContext`: the parsed facts, the catalog, the plan before any
change) and proposes :class:`Candidate` objects.  A candidate knows

* how it is proven: :meth:`Candidate.prove` returns a :class:`Proof` (cost before/after, measured
  with the planner through the audit's :class:`~pg_architect.prove.Prover`, which plans as the
  statement's own role) or None when the planner does not use it;
* how it renders itself: :meth:`~Candidate.ddl`, :meth:`~Candidate.rollback`,
  :meth:`~Candidate.migration_files`, :meth:`~Candidate.rationale`, :meth:`~Candidate.pr_section`;
* its :meth:`~Candidate.fingerprint`, the name-free text that deduplicates recommendations
  (stored as its md5).

:meth:`Advisor.choose` keeps the proofs worth proposing (the index advisor keeps one index per
table).  Lifecycle, approval, knowledge, outcomes, pull requests and views are shared by all kinds
(``store.py``, ``knowledge.py``, ``workflow.py``, ``sidecar/``).  How to add an advisor:
docs/HACKING.md.
"""

from __future__ import annotations

import abc
import dataclasses
import datetime as dt
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from ..analyze import StatementInfo
    from ..catalog import PgCatalog
    from ..db import Db
    from ..prove import Plan, Prover
    from ..settings import Settings
    from .sampled_candidates import SampleFacts


@dataclass(frozen=True)
class StatementContext:
    """One workload statement as every advisor sees it (read-only)."""

    db: Db
    text: str
    info: StatementInfo
    catalog: PgCatalog
    before: Plan
    settings: Settings
    share: float | None = None
    calls: int | None = None
    total_ms: float | None = None
    started: float = field(default_factory=time.monotonic)
    # The audit's prover with the statement PREPAREd (as its role): for advisors whose detection
    # itself needs the planner (statistics); an advisor that uses it leaves the statement prepared.
    prover: Prover | None = None
    # What the statement's query samples say (enough of them, same queryid and role): sampled
    # candidates and custom-plan costing (advisors/sampled_candidates.py); None: no samples.
    samples: SampleFacts | None = None

    def over_budget(self) -> bool:
        return (time.monotonic() - self.started) * 1000 > self.settings.statement_budget_ms


class NotProvable(Exception):
    """The candidate could not be set up for proving (e.g. hypopg refused it): not counted."""


@dataclass(frozen=True)
class Proof:
    """A candidate the planner used for a statement, with its numbers."""

    candidate: Candidate
    cost_before: float
    cost_after: float
    gain_pct: float
    size_bytes: int | None = None
    changes: dict = field(default_factory=dict)
    confidence: float = 0.0
    factors: dict = field(default_factory=dict)
    rationale: str = ""
    table_bytes: int = 0
    estimate: float | None = None  # the planner-based confidence before calibration and history
    similar_to: tuple[dict, ...] = ()  # past cases that moved the confidence
    plan: Plan | None = None  # the plan with the candidate (for choose / plan_changes)
    label: str | None = None  # the candidate's name in that plan (e.g. hypopg's index name)
    # how it was costed when not with the generic plan alone: custom plans for sampled values
    # beside the generic plan (advisors/sampled_candidates.py); stored in confidence_factors
    costing: dict = field(default_factory=dict)

    def but(self, **changes: Any) -> Proof:
        """A copy with ``changes`` (proofs are never mutated)."""
        return dataclasses.replace(self, **changes)


class Candidate(abc.ABC):
    """One proposed change, of the kind of the advisor that proposed it."""

    kind: ClassVar[str]
    schema: str
    table: str

    @property
    def subtype(self) -> str | None:
        """A finer kind shown beside ``kind`` (``index_kind`` of an index)."""
        return None

    @abc.abstractmethod
    def fingerprint(self) -> str:
        """Name-free canonical text: two audits proposing the same change give the same text."""

    @abc.abstractmethod
    def prove(self, prover: Prover, ctx: StatementContext) -> Proof | None:
        """Cost the statement with this candidate in place (then undo it); None if not used."""

    @abc.abstractmethod
    def ddl(self, db: Db) -> str:
        """The change, as the migration will run it (on the relation as it is now)."""

    @abc.abstractmethod
    def rollback(self, db: Db) -> str:
        """What undoes :meth:`ddl`."""

    def name(self) -> str | None:
        """The object the change creates, if it creates one."""
        return None

    def columns(self) -> list[str]:
        return []

    def hypo_sql(self) -> str | None:
        """The statement the prover creates hypothetically (hypopg), if any."""
        return None

    @abc.abstractmethod
    def rationale(self, proof: Proof, ctx: StatementContext) -> str:
        """Why, in plain sentences, with the numbers of ``proof``."""

    def pr_section(self, proof: Proof) -> str:
        """The pull request's section for this change (markdown)."""
        return (f"### {self.kind}: {self.schema}.{self.table}\n\n{proof.rationale}\n\n"
                f"Estimated cost {proof.cost_before:,.1f} → {proof.cost_after:,.1f} "
                f"({proof.gain_pct:.1f} % cheaper), confidence {proof.confidence:.2f}.\n")

    def migration_files(self, rec: dict, fmt: str, directory: str,
                        stamp: dt.datetime | None = None) -> list[dict]:
        """The migration file(s) of the stored recommendation ``rec`` in the target repo's format."""
        from ..sidecar.github import render_files

        return render_files(rec, fmt, directory, stamp or dt.datetime.now(dt.UTC))


class Advisor(abc.ABC):
    """Proposes candidates of one kind for one analysed statement; the pipeline proves them."""

    kind: ClassVar[str]

    @abc.abstractmethod
    def propose(self, ctx: StatementContext) -> list[Candidate]:
        """Candidates for the statement, best first (the audit proves at most max_candidates)."""

    def choose(self, ctx: StatementContext, proofs: list[Proof]) -> list[Proof]:
        """The proofs worth proposing (default: all that reach ``min_gain_pct``)."""
        return [p for p in proofs if p.gain_pct >= ctx.settings.min_gain_pct]

    def after_proving(self, prover: Prover) -> None:  # noqa: B027 (optional hook)
        """Undo what proving left behind in the prover (called even after a budget stop)."""


@dataclass
class Advice:
    """What the advisors made of one statement."""

    cost_before: float
    candidates_tested: int = 0
    proven: list[Proof] = field(default_factory=list)
    note: str | None = None


def advise(ctx: StatementContext, prover: Prover, advisors: list[Advisor]) -> Advice:
    """Steps 4 and 5 for one statement: each advisor proposes, each candidate is proven (within
    the statement's time budget), each advisor chooses."""
    out = Advice(cost_before=ctx.before.cost)
    for adv in advisors:
        cands = adv.propose(ctx)[: ctx.settings.max_candidates]
        proofs: list[Proof] = []
        try:
            for i, cand in enumerate(cands):
                if ctx.over_budget():
                    out.note = (f"time budget of {ctx.settings.statement_budget_ms} ms reached after "
                                f"{i} of {len(cands)} candidates")
                    break
                try:
                    proof = cand.prove(prover, ctx)
                except NotProvable:
                    continue
                out.candidates_tested += 1
                if proof is not None:
                    proofs.append(proof)
        finally:
            adv.after_proving(prover)
        out.proven.extend(adv.choose(ctx, proofs))
    return out
