"""The index advisor (kind ``index``): the first advisor behind :mod:`.base`.

* propose: :func:`.index_candidates.generate_candidates` (single, multi-column, expression,
  partial, covering) from the statement's parsed facts and the tables' catalog facts;
* prove: each candidate becomes a hypopg hypothetical index of this backend, the statement is
  re-PREPAREd and EXPLAINed (as the statement's role), the index dropped again; a candidate the
  planner does not use is not a proof;
* choose: one index per table: the cheapest plain index (key columns only), a simpler one
  preferred when its cost is within SIMPLER_WITHIN of the cheapest; a covering or partial index
  replaces it only when it saves a meaningful amount on top (more than SIMPLER_WITHIN relative
  *and* more than EXTRA_MIN_SHARE of the statement's original cost), or, for a partial index only
  the statement's samples revealed, when it is at most SAMPLED_SIZE_SHARE of the plain one's size
  and about as fast (within SIMPLER_WITHIN, or dearer by at most SAMPLED_MAX_LOSS of the
  statement's cost before);
* samples: with enough query samples of the statement (``ctx.samples``), the candidates only the
  literals reveal come first, and every candidate may be proven with custom plans for the
  sampled values instead of the generic plan (:mod:`.sampled_candidates`);
* render: ``index_ddl.for_candidate`` (``CREATE INDEX CONCURRENTLY``, or the per-partition
  procedure on a partitioned table).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from .. import index_ddl, prove
from ..errors import DbError, canceled
from . import index_candidates, index_size, sampled_candidates
from .base import Advisor, Candidate, NotProvable, Proof, StatementContext

if TYPE_CHECKING:
    from ..db import Db

# A simpler candidate wins when its cost is within this factor of the best one.
SIMPLER_WITHIN = 1.10
# A covering (INCLUDE) or partial index must save at least this share of the statement's
# original cost on top of the best plain index to be preferred over it.
EXTRA_MIN_SHARE = 0.01
# A partial index only the statement's samples revealed replaces an about-as-fast plain index
# when it is at most this share of its size.
SAMPLED_SIZE_SHARE = 0.5
# ... and when it gives up at most this share of the statement's cost before (custom plans).
SAMPLED_MAX_LOSS = 0.05

_KIND_WORDS = {"single": "A single-column index",
               "multi": "A multi-column index (equality columns first, then range, then ordering)",
               "expression": "An expression index matching the function in the predicate",
               "partial": "A partial index limited to the rows the statement asks for",
               "covering": "A covering index (INCLUDE) that allows an index-only scan"}


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "unknown size"
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


class IndexCandidate(Candidate):
    """A btree index (wraps :class:`.index_candidates.Candidate`, the pure description)."""

    kind: ClassVar[str] = "index"

    def __init__(self, spec: index_candidates.Candidate):
        self.spec = spec
        self.schema = spec.schema
        self.table = spec.table
        # True: proven with custom plans for the statement's sampled values (ctx.samples)
        self.custom = False

    def __repr__(self) -> str:
        return f"IndexCandidate({self.spec!r})"

    @property
    def subtype(self) -> str:
        return self.spec.kind

    def fingerprint(self) -> str:
        return self.spec.definition()

    def name(self) -> str:
        return self.spec.name()

    def columns(self) -> list[str]:
        return self.spec.columns()

    def hypo_sql(self) -> str:
        return self.spec.hypo_sql()

    def width(self) -> int:
        return len(self.spec.keys) + len(self.spec.include) + (1 if self.spec.where else 0)

    def extra(self) -> bool:
        """Covering or partial (beyond key columns)."""
        return bool(self.spec.include or self.spec.where)

    def prove(self, prover: prove.Prover, ctx: StatementContext) -> Proof | None:
        if self.custom and ctx.samples is not None:
            return sampled_candidates.prove_custom(self, prover, ctx)
        try:
            oid, hname = prover.create_hypothetical(self.hypo_sql())
        except DbError as exc:
            if canceled(exc):
                raise
            raise NotProvable(str(exc)) from exc
        try:
            plan = prover.explain(reprepare=True)
            size = index_size.hypothetical_index_bytes(prover, self.spec, oid)
        finally:
            prover.drop_hypothetical(oid)
        if hname not in plan.index_names:
            return None
        before = ctx.before.cost
        gain = (before - plan.cost) / before * 100.0 if before > 0 else 0.0
        return Proof(candidate=self, cost_before=before, cost_after=plan.cost, gain_pct=gain, size_bytes=size,
                     plan=plan, label=hname)

    def ddl(self, db: Db) -> str:
        return index_ddl.for_candidate(db, self.spec)[0]

    def rollback(self, db: Db) -> str:
        return index_ddl.for_candidate(db, self.spec)[1]

    def ddl_and_rollback(self, db: Db) -> tuple[str, str]:
        return index_ddl.for_candidate(db, self.spec)

    def rationale(self, proof: Proof, ctx: StatementContext) -> str:
        act = ctx.catalog.table_activity(self.schema, self.table)
        changes = proof.changes
        parts = []
        removed = ", ".join(changes["removed"][:3]) or "the current plan"
        added = ", ".join(changes["added"][:3]) or "a plan using the index"
        gain = proof.gain_pct
        gain_txt = f"{gain:.2f}" if 99.95 <= gain < 100 else f"{gain:.1f}"
        parts.append(f"{removed} (cost {proof.cost_before:,.1f}) becomes {added} (cost {proof.cost_after:,.1f}): "
                     f"estimated {gain_txt} % cheaper.")
        calls, total_ms, share = ctx.calls, ctx.total_ms, ctx.share
        if calls is not None and total_ms is not None:
            parts.append(f"The statement ran {calls:,} time{'' if calls == 1 else 's'} for {total_ms / 1000:,.1f} s "
                         "in the audit window"
                         + (f" ({share * 100:.1f} % of all statement time)." if share is not None else "."))
        kind = _KIND_WORDS.get(self.spec.kind, "An index")
        parts.append(f"{kind}; estimated size {fmt_bytes(proof.size_bytes)} on a table of {fmt_bytes(act['bytes'])}; "
                     f"writes are {act['write_ratio'] * 100:.0f} % of the table's row activity.")
        if proof.costing:
            parts.append(sampled_candidates.rationale(proof.costing))
        return " ".join(parts)


class IndexAdvisor(Advisor):
    kind: ClassVar[str] = "index"

    def propose(self, ctx: StatementContext) -> list[Candidate]:
        metas = {key: ctx.catalog.table_meta(*key) for key in ctx.info.tables}
        specs = index_candidates.generate_candidates(ctx.info, metas, max_columns=ctx.settings.max_index_columns)
        facts = ctx.samples
        if facts is None:
            return [IndexCandidate(s) for s in specs]
        # the candidates only the samples reveal first; with a custom basis every candidate is
        # proven with the sampled values' custom plans (sampled_candidates.py)
        out: list[Candidate] = []
        for s in [*facts.specs, *specs]:
            c = IndexCandidate(s)
            c.custom = facts.custom
            out.append(c)
        return out

    def after_proving(self, prover: prove.Prover) -> None:
        # Re-prepare without hypothetical indexes so nothing cached refers to them.
        prover.explain(reprepare=True)

    def choose(self, ctx: StatementContext, proofs: list[Proof]) -> list[Proof]:
        before = ctx.before
        by_table: dict[tuple[str, str], list[Proof]] = {}
        for p in proofs:
            if before.cost <= 0 or p.gain_pct < ctx.settings.min_gain_pct:
                continue
            by_table.setdefault((p.candidate.schema, p.candidate.table), []).append(p)
        out = []
        for (schema, table), items in by_table.items():
            plain = _pick([p for p in items if not _index(p).extra()])
            extra = _pick([p for p in items if _index(p).extra() and not p.costing.get("sampled_candidate")])
            sampled = _pick([p for p in items if _index(p).extra() and p.costing.get("sampled_candidate")])
            chosen = plain
            if extra is not None and (plain is None or (
                    extra.cost_after * SIMPLER_WITHIN < plain.cost_after
                    and plain.cost_after - extra.cost_after > EXTRA_MIN_SHARE * before.cost)):
                chosen = extra
            if sampled is not None and (chosen is None or _smaller_sampled(sampled, chosen)
                                        or sampled.cost_after * SIMPLER_WITHIN < chosen.cost_after):
                chosen = sampled
            assert chosen is not None and chosen.plan is not None and chosen.label is not None
            cand = _index(chosen)
            act = ctx.catalog.table_activity(schema, table)
            size_ratio = (chosen.size_bytes or 0) / act["bytes"] if act["bytes"] else 0.0
            conf, factors = prove.confidence(chosen.gain_pct / 100.0, ctx.share, act["write_ratio"], size_ratio)
            base = before
            if chosen.costing and ctx.samples is not None and ctx.samples.before is not None:
                base = ctx.samples.before  # the custom plan of the most frequent sampled values
                factors = {**factors, "costing": chosen.costing}
            changes = prove.plan_changes(base, chosen.plan, {chosen.label: cand.name()})
            proof = chosen.but(changes=changes, confidence=conf, factors=factors, table_bytes=act["bytes"])
            out.append(proof.but(rationale=cand.rationale(proof, ctx)))
        return out


def _index(p: Proof) -> IndexCandidate:
    assert isinstance(p.candidate, IndexCandidate)
    return p.candidate


def _smaller_sampled(extra: Proof, plain: Proof) -> bool:
    """A partial index only the samples revealed replaces the plain one when it is at most
    SAMPLED_SIZE_SHARE of its size (the rows the statement always asks for, not the whole table)
    and about as fast: within SIMPLER_WITHIN, or dearer by at most SAMPLED_MAX_LOSS of the
    statement's cost before (both costed with the same custom plans)."""
    if not extra.costing.get("sampled_candidate"):
        return False
    small = (extra.size_bytes or 0) <= SAMPLED_SIZE_SHARE * (plain.size_bytes or 0)
    close = (extra.cost_after <= plain.cost_after * SIMPLER_WITHIN + 1e-9
             or extra.cost_after - plain.cost_after <= SAMPLED_MAX_LOSS * extra.cost_before)
    return small and close


def _pick(group: list[Proof]) -> Proof | None:
    if not group:
        return None
    best_cost = min(p.cost_after for p in group)
    good = [p for p in group if p.cost_after <= best_cost * SIMPLER_WITHIN + 1e-9]
    good.sort(key=lambda p: (_index(p).width(), p.cost_after, p.size_bytes or 0, p.candidate.fingerprint()))
    return good[0]
