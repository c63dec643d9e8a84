"""Prove a rewrite with the planner: plan the original and the rewritten statement side by side.

Both statements are PREPAREd (parameter types inferred by PostgreSQL, or given) and planned
with ``EXPLAIN (FORMAT JSON) EXECUTE name(NULL, ...)`` under ``plan_cache_mode =
force_generic_plan``: the generic plan of a ``$n`` statement on PostgreSQL 15, which has no
``EXPLAIN (GENERIC_PLAN)``.  Nothing is executed.  A rewrite is kept only if the estimated total
cost drops by at least ``min_gain_pct`` percent.

Planning evaluates IMMUTABLE/STABLE functions of the statement: the caller runs this with the
rights of the role that ran the statement (see the security model), as for index proofs.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

# isort: off
from .. import pgparse  # noqa: F401  (loads pglast with RTLD_DEEPBIND first)
from pglast import parse_sql
# isort: on

from ..db import QUERY_CANCELED, Db, DbError
from .rewrite_catalog import DbCatalog
from .rewrite_rules import Options, Outcome, Refusal, Rewrite, rewrite

BEFORE, AFTER = "pga_rewrite_before", "pga_rewrite_after"


@dataclass
class PlanSummary:
    cost: float
    rows: float
    nodes: list[str]


@dataclass
class Proof:
    kept: bool
    reason: str
    cost_before: float | None = None
    cost_after: float | None = None
    gain_pct: float | None = None
    removed: list[str] = field(default_factory=list)   # plan nodes only in the original's plan
    added: list[str] = field(default_factory=list)     # plan nodes only in the rewrite's plan


def _label(node: dict) -> str:
    label = node.get("Node Type", "?")
    if node.get("Strategy") and label in ("Aggregate", "SetOp"):
        label = f"{node['Strategy']} {label}"
    if node.get("Join Type") and ("Join" in label or label == "Nested Loop"):
        label += f" ({node.get('Join Type', '')})"
    if node.get("Index Name"):
        label += f" using {node['Index Name']}"
    if node.get("Relation Name"):
        label += f" on {node['Relation Name']}"
    return label


def summarize(plan_json) -> PlanSummary:
    doc = json.loads(plan_json) if isinstance(plan_json, str) else plan_json
    top = doc[0]["Plan"]
    nodes: list[str] = []

    def walk(n):
        nodes.append(_label(n))
        for c in n.get("Plans", []) or []:
            walk(c)
    walk(top)
    return PlanSummary(float(top["Total Cost"]), float(top.get("Plan Rows", 0)), nodes)


def _one_statement(sql: str) -> None:
    if len(parse_sql(sql)) != 1:
        raise ValueError("not one statement")


class _Planner:
    def __init__(self, db: Db):
        self.db = db

    def deallocate(self, name: str) -> None:
        if self.db.scalar("SELECT count(*) FROM pg_catalog.pg_prepared_statements WHERE name = $1", [name]):
            with self.db.subtransaction():
                self.db.execute_single(f"DEALLOCATE {name}")

    def plan(self, name: str, sql: str, types: list[str] | None) -> PlanSummary:
        _one_statement(sql)
        self.deallocate(name)
        decl = f"({', '.join(types)})" if types else ""
        with self.db.subtransaction():
            self.db.execute_single(f"PREPARE {name}{decl} AS {sql}")
        n = int(self.db.scalar("SELECT coalesce(pg_catalog.array_length(parameter_types, 1), 0)"
                               " FROM pg_catalog.pg_prepared_statements WHERE name = $1", [name]) or 0)
        args = f"({', '.join(['NULL'] * n)})" if n else ""
        with self.db.subtransaction():
            row = self.db.execute_single(f"EXPLAIN (FORMAT JSON) EXECUTE {name}{args}")[0]
        return summarize(next(iter(row.values())))


def prove_rewrite(db: Db, original: str, rewritten: str, min_gain_pct: float = 10.0,
                  original_types: list[str] | None = None,
                  rewritten_types: list[str] | None = None) -> Proof:
    """Plan both forms (generic plans) and keep the rewrite if the cost drops by min_gain_pct."""
    p = _Planner(db)
    old_mode = db.scalar("SELECT pg_catalog.current_setting('plan_cache_mode')")
    try:
        with db.subtransaction():
            db.execute("SELECT pg_catalog.set_config('plan_cache_mode', 'force_generic_plan', false)")
        try:
            before = p.plan(BEFORE, original, original_types)
        except DbError as exc:
            if exc.sqlstate == QUERY_CANCELED:
                raise
            return Proof(False, f"unproven: the original cannot be planned: {str(exc).splitlines()[0]}")
        try:
            after = p.plan(AFTER, rewritten, rewritten_types)
        except DbError as exc:
            if exc.sqlstate == QUERY_CANCELED:
                raise
            return Proof(False, f"unproven: the rewrite cannot be planned: {str(exc).splitlines()[0]}",
                         cost_before=before.cost)
    finally:
        for name in (BEFORE, AFTER):
            try:
                p.deallocate(name)
            except DbError:
                pass
        with db.subtransaction():
            db.execute("SELECT pg_catalog.set_config('plan_cache_mode', $1, false)", [old_mode])
    b, a = Counter(before.nodes), Counter(after.nodes)
    gain = 0.0 if before.cost <= 0 else 100.0 * (before.cost - after.cost) / before.cost
    kept = gain >= min_gain_pct
    reason = (f"estimated cost {before.cost:.2f} -> {after.cost:.2f} ({gain:+.1f} %"
              f" {'>=' if kept else '<'} {min_gain_pct:g} %)")
    return Proof(kept, ("kept: " if kept else "dropped: ") + reason, before.cost, after.cost, round(gain, 2),
                 sorted((b - a).elements()), sorted((a - b).elements()))


@dataclass
class Proposal:
    rewrite: Rewrite
    proof: Proof


def propose(db: Db, sql: str, min_gain_pct: float = 10.0, options: Options | None = None,
            rules: list[str] | None = None) -> tuple[list[Proposal], list[Proposal], list[Refusal]]:
    """Every rule on ``sql`` (each on the original statement), every rewrite proven:
    (kept, dropped, refused).  Kept proposals are sorted by estimated gain, best first."""
    outcomes: list[Outcome] = rewrite(sql, DbCatalog(db), rules, options)
    kept: list[Proposal] = []
    dropped: list[Proposal] = []
    refused: list[Refusal] = []
    for o in outcomes:
        if isinstance(o, Refusal):
            refused.append(o)
            continue
        p = Proposal(o, prove_rewrite(db, sql, o.sql, min_gain_pct))
        (kept if p.proof.kept else dropped).append(p)
    kept.sort(key=lambda p: -(p.proof.gain_pct or 0))
    return kept, dropped, refused
