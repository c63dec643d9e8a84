"""Real parameter values in the audit (issue 10): index candidates and custom-plan costing from
the statement's query samples (``arch.query_sample``, :mod:`pg_architect.samples`).

pg_stat_statements shows ``WHERE status = $1`` and ``payload->>$1 = $2``; the generic plan with
NULL arguments cannot match ``status = $1`` to a partial index nor ``payload->>$1`` to an
expression index, and it assumes an average value where the data is skewed.  When a statement
has enough samples -- at least ``constant_parameter_min_samples`` of the *same queryid and role*
(``arch.query_sample.userid``: a role's samples never feed another role's statement) whose
every ``$n`` aligned with a literal -- this module:

* **proposes** what only the literals reveal (:func:`candidates`): a parameter that had one value
  in every sample and is compared with ``=`` to a column gives a partial index ``WHERE col =
  'const'`` (keys: the statement's other equality, range and ORDER BY columns, as
  :func:`.index_candidates.generate_candidates` builds them); a JSON key (``payload->>$1``,
  always ``'order_id'``) gives the expression index ``((payload ->> 'order_id'))``, alone and
  followed by the equality columns;
* **costs with custom plans** (:func:`prove_custom`, :func:`weighted_plan`): PREPARE with the
  statement's parameter types, then ``EXPLAIN EXECUTE`` with the sampled literals under
  ``plan_cache_mode = force_custom_plan`` (``Prover.explain_values``), planned as the
  statement's role through ``security.PlanAs``; re-PREPAREd after each hypopg change.  The cost
  is the mean over the :data:`MAX_VALUE_SETS` most frequent sampled value tuples, weighted by
  their counts.  Used for every index candidate of the statement when it has a sampled candidate
  or a *skewed* compared column (:func:`skew_ratio`: pg_stats' most common value at least
  :data:`SKEW_RATIO` times as frequent as its least frequent one, or as an average value outside
  the list).  The generic plan's cost with and without the candidate is recorded beside it
  (``Proof.costing``, stored in ``confidence_factors->'costing'``);
* **the rule**: on that custom basis a candidate is proven only when a custom plan for the
  sampled values uses it.  An index only the NULL-argument generic plan likes (it assumes
  ``1 / n_distinct`` of the rows where the sampled values are the frequent ones) is not proposed.

**Range parameters** (:func:`range_facts`): a statement whose parameter is compared by range
with a column (``<``, ``<=``, ``>``, ``>=``, BETWEEN, also through a cast: ``o_orderdate >=
CAST($1 AS date)``) is costed with custom plans too.  Its generic plan uses the planner's default
range selectivity (0.5 % of the rows for a pair of bounds), so an index that pays off for a real
span -- an EXISTS probed once per outer row -- never looks worth it.  With enough samples their
values are used (as above); without, the values come from ``pg_stats`` (the rule):

* a column with a low and a high bound parameter gets *one histogram bucket*, two consecutive
  histogram bounds ``[b_j, b_j+1]`` (1 % of the non-most-common rows at the default statistics
  target), at the buckets 1/2, 1/4 and 3/4 of the way through the histogram (:data:`RANGE_POSITIONS`,
  the three value tuples, weighted equally);
* a low bound alone gets the last bucket's lower bound (``created_at > $1``: the newest rows), a
  high bound alone the first bucket's upper bound;
* any other parameter gets pg_stats' most common values (else histogram bounds) of its compared
  column, as ``samples.compare_plans`` does; when a parameter has no value (a column without
  statistics, ``LIMIT $n`` ...) the statement stays on its generic plan.

Statements without enough samples and without range parameters are costed exactly as before
(generic plan only).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import pgparse, samples  # noqa: F401  (pgparse first: libpg_query with RTLD_DEEPBIND)
from ..analyze import StatementInfo, TableUsage
from ..db import Db, DbError
from ..errors import SkipStatement, canceled
from ..prove import Plan, Prover
from ..settings import load_into as load_settings
from ..sqltext import quote_ident
from . import index_size
from .base import NotProvable, Proof
from .index_candidates import Candidate, TableMeta, generate_candidates

if TYPE_CHECKING:
    from .base import StatementContext

# Custom plans are costed for at most this many sampled value tuples (the most frequent).
MAX_VALUE_SETS = 3
# A compared column is skewed when pg_stats' most common value is at least this many times as
# frequent as the least frequent one of the list (or as an average value outside the list).
SKEW_RATIO = 10.0
# Range parameters without samples: the histogram buckets (as a fraction of the way through
# pg_stats' histogram_bounds) whose two bounds give the custom plans' values.
RANGE_POSITIONS = (0.5, 0.25, 0.75)

__all__ = ["MAX_VALUE_SETS", "SKEW_RATIO", "SampleFacts", "candidates", "facts_for", "prepare",
           "prove_custom", "range_facts", "skew_ratio", "weighted_plan"]


@dataclass
class _Min:
    constant_parameter_min_samples: int


@dataclass
class SampleFacts:
    """What the samples of one statement (queryid, role) say."""

    samples: int  # aligned samples with a literal at every $n
    value_sets: list[tuple[list[str | None], int]]  # most frequent first, at most MAX_VALUE_SETS
    constants: list[dict]  # samples.constants_from
    expressions: list[dict]  # samples.expressions_from
    skewed: list[str] = field(default_factory=list)  # "table.column (ratio)" of skewed compared columns
    specs: list[Candidate] = field(default_factory=list)  # candidates only the samples reveal
    custom: bool = False  # every index candidate costed with custom plans
    before: Plan | None = None  # the weighted custom plan without any candidate (cached)
    generic_only: list[str] = field(default_factory=list)  # names the rule left out
    ranges: list[str] = field(default_factory=list)  # "table.column" compared by range with a $n
    source: str = "samples"  # where value_sets come from: "samples" or "pg_stats" (range_facts)

    def describe(self) -> str:
        n = len(self.value_sets)
        if self.source == "pg_stats":
            return (f"custom plans for {n} parameter value tuple{'' if n == 1 else 's'} from pg_stats "
                    f"(range parameters on {', '.join(self.ranges)}: one histogram bucket each)")
        return (f"custom plans for the {n} most frequent sampled parameter value"
                f"{'s' if n == 1 else ' tuples'} ({self.samples} samples)")


def facts_for(db: Db, queryid: int | None, userid: int | None, text: str) -> SampleFacts | None:
    """The samples of statement ``queryid`` run by ``userid`` that the caller may read (None
    when there are fewer than constant_parameter_min_samples whose every ``$n`` had a literal)."""
    if queryid is None or userid is None:
        return None
    al = [a for a in samples.alignments(db, int(queryid), int(userid), text)
          if all(s.known for s in a.slots.values())]
    if not al:
        return None  # (most statements: one query, no settings read)
    need = load_settings(db, _Min).constant_parameter_min_samples
    if len(al) < max(need, 1):
        return None
    sets = samples.count_value_sets(al)[:MAX_VALUE_SETS]
    return SampleFacts(samples=len(al), value_sets=[(list(t), c) for t, c in sets],
                       constants=samples.constants_from(al, need), expressions=samples.expressions_from(al, need))


def safe_facts(db: Db, queryid: int | None, userid: int | None, text: str) -> SampleFacts | None:
    """:func:`facts_for`, None when reading the samples fails (the statement is then costed as
    without samples); a cancel is never swallowed."""
    try:
        with db.subtransaction():
            return facts_for(db, queryid, userid, text)
    except DbError as exc:
        if canceled(exc):
            raise
        return None


# ---------------------------------------------------------------------------------------
# skew (pg_stats)
# ---------------------------------------------------------------------------------------

def skew_ratio(stats: dict | None) -> float | None:
    """Most common value's frequency over the least frequent one's (of the MCV list, or of an
    average value outside it); None without a most-common-values list."""
    if not stats:
        return None
    mcf = [float(f) for f in stats.get("most_common_freqs") or [] if f is not None]
    if not mcf:
        return None
    lo = min(mcf)
    nd = float(stats.get("n_distinct") or 0)
    rest = 1.0 - float(stats.get("null_frac") or 0) - sum(mcf)
    if nd > len(mcf) and rest > 0:
        lo = min(lo, rest / (nd - len(mcf)))
    return max(mcf) / lo if lo > 0 else None


def _key(info: StatementInfo, table) -> tuple[str, str] | None:
    """The key of ``info.tables`` a table named in a sample refers to (``schema.name``,
    ``name``, or None when the statement reads one table), or None when ambiguous."""
    if table is None:
        return next(iter(info.tables)) if len(info.tables) == 1 else None
    if isinstance(table, tuple):
        schema, name = table
    else:
        schema, _, name = table.rpartition(".")
        schema = schema or None
    hits = [k for k in info.tables if k[1] == name and (schema is None or k[0] == schema)]
    return hits[0] if len(hits) == 1 else None


def _skewed(db: Db, info: StatementInfo, text: str) -> list[str]:
    out: list[str] = []
    for c in samples.parameter_columns(text).values():
        key = _key(info, c["table"])
        if key is None:
            continue
        ratio = skew_ratio(samples.pg_stats_values(db, key[0], key[1], c["column"], 100))
        label = f"{key[1]}.{c['column']}"
        if ratio is not None and ratio >= SKEW_RATIO and not any(s.startswith(label + " ") for s in out):
            out.append(f"{label} ({ratio:,.0f}x)")
    return out


# ---------------------------------------------------------------------------------------
# candidates
# ---------------------------------------------------------------------------------------

def _equality(c: dict) -> bool:
    """``col = 'const'`` (the constant compared with ``=`` to the column, written column first)."""
    pred, col = c.get("predicate"), c.get("column")
    if not pred or not col:
        return False
    return re.match(re.escape(quote_ident(str(col))) + r"\s*=\s*(?!=)", str(pred)) is not None


def candidates(info: StatementInfo, metas: dict[tuple[str, str], TableMeta], facts: SampleFacts,
               max_columns: int) -> list[Candidate]:
    """Partial and expression index candidates only the samples reveal."""
    aug = copy.deepcopy(info)
    preds: set[str] = set()
    exprs: set[str] = set()
    for c in facts.constants:
        key = _key(aug, c.get("table")) if c.get("table") else None
        if key is None or not _equality(c):
            continue
        u: TableUsage = aug.tables[key]
        col = c["column"]
        u.eq = [x for x in u.eq if x != col]
        u.range = [x for x in u.range if x != col]
        u.order_by = [x for x in u.order_by if x[0] != col]
        if c["predicate"] not in u.constant_preds:
            u.constant_preds.append(c["predicate"])
        preds.add(c["predicate"])
    for e in facts.expressions:
        key = _key(aug, e.get("table"))
        if key is None:
            continue
        u = aug.tables[key]
        u.expr_eq = [x for x in u.expr_eq if "$" not in x]
        if e["expression"] not in u.expr_eq:
            u.expr_eq.insert(0, e["expression"])
        exprs.add(e["expression"])
    if not preds and not exprs:
        return []
    out = []
    for cand in generate_candidates(aug, metas, max_columns=max_columns, max_candidates=1000):
        where = cand.where or ""
        if any(p in where for p in preds) or any(k in exprs for k in cand.keys):
            out.append(cand)
    return out


def prepare(db: Db, facts: SampleFacts | None, info: StatementInfo, metas: dict[tuple[str, str], TableMeta],
            text: str, max_columns: int, known: set[str]) -> SampleFacts | None:
    """With the parsed statement: the sampled candidates (those not in ``known``, the
    definitions the generator found from the text), the skewed columns, and whether the
    statement is costed with custom plans."""
    if facts is None:
        return None
    facts.specs = [c for c in candidates(info, metas, facts, max_columns) if c.definition() not in known]
    facts.skewed = _skewed(db, info, text)
    facts.ranges = [label for label, _key, _col, _sides in _range_columns(db, info, text).values()]
    facts.custom = bool(facts.specs or facts.skewed or facts.ranges)
    return facts


# ---------------------------------------------------------------------------------------
# range parameters (pg_stats when there are no samples)
# ---------------------------------------------------------------------------------------

def _resolve(db: Db, info: StatementInfo, table, column: str) -> tuple[str, str] | None:
    """The table of ``info.tables`` a compared column belongs to: the one named, else the only
    table whose pg_stats has the column."""
    key = _key(info, table)
    if key is not None or table is not None:
        return key
    hits = [k for k in info.tables if samples.pg_stats_values(db, k[0], k[1], column, 1) is not None]
    return hits[0] if len(hits) == 1 else None


def _range_columns(db: Db, info: StatementInfo, text: str) -> dict[tuple, tuple[str, tuple[str, str], str, dict]]:
    """(table key, column) -> (label, key, column, {side: [$n, ...]}) of the range parameters."""
    out: dict[tuple, tuple[str, tuple[str, str], str, dict]] = {}
    for num, c in sorted(samples.range_parameters(text).items()):
        key = _resolve(db, info, c["table"], c["column"])
        if key is None:
            continue
        entry = out.setdefault((key, c["column"]), (f"{key[1]}.{c['column']}", key, c["column"], {}))
        entry[3].setdefault(c["side"], []).append(num)
    return out


def _range_values(hist: list, sides: dict) -> dict[int, list[str]]:
    """$n -> its value per RANGE_POSITIONS position (the rule in the module docstring)."""
    m = len(hist)
    out: dict[int, list[str]] = {}
    for pos in RANGE_POSITIONS:
        j = min(int(pos * (m - 1)), m - 2)
        low, high = (hist[j], hist[j + 1]) if "low" in sides and "high" in sides else (hist[m - 2], hist[1])
        for side, nums in sides.items():
            for num in nums:
                out.setdefault(num, []).append(low if side == "low" else high)
    return out


def range_facts(db: Db, info: StatementInfo, text: str) -> SampleFacts | None:
    """Custom-plan values from pg_stats for a statement without enough samples whose parameters
    are compared by range (None when it has none, or a parameter gets no value)."""
    try:
        with db.subtransaction():
            return _range_facts(db, info, text)
    except DbError as exc:
        if canceled(exc):
            raise
        return None


def _range_facts(db: Db, info: StatementInfo, text: str) -> SampleFacts | None:
    ranges = _range_columns(db, info, text)
    nparams = int(info.param_count or 0)
    if not ranges or nparams <= 0:
        return None
    per: dict[int, list[str]] = {}
    for _label, key, col, sides in ranges.values():
        st = samples.pg_stats_values(db, key[0], key[1], col, 100000)
        hist = list(st["histogram_bounds"] or []) if st else []
        if len(hist) >= 2:
            per.update(_range_values(hist, sides))
    if not per:
        return None
    for num, c in samples.parameter_columns(text).items():
        if num in per:
            continue
        other = _resolve(db, info, c["table"], c["column"])
        st = samples.pg_stats_values(db, other[0], other[1], c["column"], MAX_VALUE_SETS) if other else None
        vals = [v for v in ((st["most_common_vals"] or st["histogram_bounds"]) if st else []) if v is not None]
        if vals:
            per[num] = vals
    if any(n not in per for n in range(1, nparams + 1)):
        return None  # a parameter without a value: the generic plan stays the basis
    sets: list[tuple[list[str | None], int]] = []
    for i in range(MAX_VALUE_SETS):
        t: list[str | None] = [per[n][min(i, len(per[n]) - 1)] for n in range(1, nparams + 1)]
        if all(t != v for v, _ in sets):
            sets.append((t, 1))
    return SampleFacts(samples=0, value_sets=sets, constants=[], expressions=[], custom=True,
                       ranges=[r[0] for r in ranges.values()], source="pg_stats")


# ---------------------------------------------------------------------------------------
# custom-plan costing
# ---------------------------------------------------------------------------------------

def weighted_plan(prover: Prover, facts: SampleFacts, reprepare: bool = True) -> Plan:
    """The custom plans of the prepared statement for the sampled value tuples as one plan: the
    count-weighted mean cost, the nodes of the most frequent tuple's plan, every index used."""
    if reprepare:
        prover.explain(reprepare=True)  # re-PREPARE (a hypopg change) and check the generic plan
    plans = [prover.explain_values(v) for v, _ in facts.value_sets]
    total = sum(c for _, c in facts.value_sets) or 1
    cost = sum(p.cost * c for p, (_, c) in zip(plans, facts.value_sets)) / total
    names: set[str] = set()
    for p in plans:
        names |= p.index_names
    return Plan(cost=cost, nodes=plans[0].nodes, index_names=names, raw=plans[0].raw)


def with_custom_before(prover: Prover, facts: SampleFacts | None) -> SampleFacts | None:
    """``facts`` with the custom plans of the sampled values costed before any candidate (the
    statement PREPAREd in ``prover``); None when the sampled values cannot be planned (a value
    that does not fit its parameter's type ...): the statement is then costed as without samples."""
    if facts is None or not facts.custom:
        return facts
    try:
        facts.before = weighted_plan(prover, facts)
    except SkipStatement:
        return None
    return facts


def prove_custom(cand: Any, prover: Prover, ctx: StatementContext) -> Proof | None:
    """Prove index candidate ``cand`` (an advisors.index.IndexCandidate) with custom plans for
    the statement's sampled values, the generic plan recorded beside them."""
    facts = ctx.samples
    assert facts is not None
    if facts.before is None:
        facts.before = weighted_plan(prover, facts)
    before = facts.before
    try:
        oid, hname = prover.create_hypothetical(cand.hypo_sql())
    except DbError as exc:
        if canceled(exc):
            raise
        raise NotProvable(str(exc)) from exc
    try:
        generic = prover.explain(reprepare=True)
        plan = weighted_plan(prover, facts, reprepare=False)
        size = index_size.hypothetical_index_bytes(prover, cand.spec, oid)
    finally:
        prover.drop_hypothetical(oid)
    generic_uses = hname in generic.index_names
    if hname not in plan.index_names:
        if generic_uses:
            facts.generic_only.append(cand.name())
        return None
    gain = (before.cost - plan.cost) / before.cost * 100.0 if before.cost > 0 else 0.0
    costing = {"basis": "custom", "samples": facts.samples, "source": facts.source,
               "range_columns": list(facts.ranges),
               "value_sets": [{"values": v, "count": c} for v, c in facts.value_sets],
               "custom_cost_before": round(before.cost, 2), "custom_cost_after": round(plan.cost, 2),
               "generic_cost_before": round(ctx.before.cost, 2),
               "generic_cost_after": round(generic.cost, 2) if generic_uses else None,
               "sampled_candidate": cand.spec in facts.specs, "skewed_columns": list(facts.skewed)}
    return Proof(candidate=cand, cost_before=before.cost, cost_after=plan.cost, gain_pct=gain, size_bytes=size,
                 plan=plan, label=hname, costing=costing)


def rationale(costing: dict) -> str:
    """The sentence of a rationale on how a proof was costed."""
    if costing.get("basis") != "custom":
        return ""
    n = len(costing.get("value_sets") or [])
    what = ("An index only the statement's samples reveal (the literals behind its parameters). "
            if costing.get("sampled_candidate") else "")
    skew = (f" Skewed compared column{'s' if len(costing['skewed_columns']) > 1 else ''}: "
            f"{', '.join(costing['skewed_columns'])}." if costing.get("skewed_columns") else "")
    gen = (f"the generic plan (NULL arguments) costs {costing['generic_cost_before']:,.1f} -> "
           f"{costing['generic_cost_after']:,.1f}" if costing.get("generic_cost_after") is not None
           else f"the generic plan (NULL arguments, cost {costing['generic_cost_before']:,.1f}) cannot use it")
    if costing.get("source") == "pg_stats":
        return (f"Costed with custom plans for {n} parameter value tuple{'' if n == 1 else 's'} from pg_stats "
                f"(range parameters on {', '.join(costing.get('range_columns') or [])}: one histogram bucket "
                f"each, weighted equally): {costing['custom_cost_before']:,.1f} -> "
                f"{costing['custom_cost_after']:,.1f}; {gen}.")
    rng = (f" Range parameters on {', '.join(costing['range_columns'])}."
           if costing.get("range_columns") else "")
    return (f"{what}Costed with custom plans for the {n} most frequent sampled parameter value "
            f"tuple{'' if n == 1 else 's'} ({costing['samples']} samples, weighted by count): "
            f"{costing['custom_cost_before']:,.1f} -> {costing['custom_cost_after']:,.1f}; {gen}.{skew}{rng}")
