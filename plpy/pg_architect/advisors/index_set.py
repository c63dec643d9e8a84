"""Choose a SET of indexes for the whole workload (issue 10): ``arch.design_indexes()``.

Instead of the best index of each statement proven alone, one search over the candidates of
every statement, costed with the whole chosen set present:

1. **Workload**: this database's statements in ``pg_stat_statements`` (since its last reset)
   above the audit thresholds (``min_calls``, ``min_mean_time_ms``, ``max_statements``), the
   costliest first; utility statements and our own calls left out.
2. **Pool**: for every statement, planned as the role that ran it (``security.PlanAs``), the
   per-statement candidates of :mod:`pg_architect.recommend` plus the join- and
   subquery-aware ones of :mod:`.index_join_candidates`, each costed alone with hypopg; those
   the planner uses and that lower the statement's cost by ``min_gain_pct`` join the pool, one
   entry per definition, remembering a role that proposed it. Merging: two pool candidates on
   the same leading column (same predicate) give a merged candidate (the keys of the first,
   then the other's missing keys, up to ``max_index_columns``).
3. **Search**: lazy greedy (CELF) by marginal net benefit per MB. A move adds a candidate and
   drops the chosen ones it serves (their keys a prefix of its keys, same predicate, their
   INCLUDE columns among its columns): this is how ``(user_id)`` gives way to
   ``(user_id, created_at)``.  Its benefit is the drop of the estimated workload time: every
   statement that touches the candidate's table is re-costed (PREPARE + EXPLAIN of its generic
   plan, as its own role) with every chosen index on its tables present as a hypothetical
   index; planner cost becomes time with each statement's own ratio at the current state
   (``mean_exec_time / cost`` without the set), times its calls. Subtracted: the write cost
   (below) and the storage price (below). A move is taken only when its net benefit is
   at least :data:`MIN_MOVE_SHARE` of the workload time and :data:`MOVE_MARGIN` of the time of
   the statements it serves (the noise margin); ``index_budget_mb`` and
   ``max_indexes_per_table`` are never exceeded. The search stops when no move pays.
4. **Interference**: a final pass removes every chosen index whose removal does not raise the
   estimated workload time by more than its own write and storage cost (with the others
   present the planner may prefer those), until none is removed.

Storage price, relative to the window so that the choice is the same on a millisecond test
workload and on a week of production: an index must save at least

    served_ms × (MIN_INDEX_SHARE + STORAGE_SHARE × index_bytes / table_bytes)

(``served_ms``: the window's time of the statements it serves, i.e. that are cheaper with it
than without it, the rest of the set present; defaults 1 % and 1: an index a tenth of its
table's size must save 11 % of that time, one a hundredth of it 2 %), plus its write cost.
Priced by the statements it serves, not by the whole window, one statement that dominates the
window does not price every other statement's index out.  Sizes are :mod:`.index_size`'s
estimate of the built index.  Moves are ranked by net benefit per MB compared at
:data:`RANK_DIGITS` significant digits; ties go to the smaller index, then to the definition's
text (never to dict or hash order).

Write cost per table: the rows written (``pg_stat_user_tables``: ``n_tup_ins + n_tup_upd -
n_tup_hot_upd + n_tup_del``; a HOT update maintains no index), counted since the database's
statistics were reset (or the server started) and scaled to the pg_stat_statements window
(its length / the counters' period, at most 1), times :data:`INDEX_WRITE_MS_PER_ROW` for each
index.

Hypothetical indexes are created as a role that proposed them and every statement is planned
as its own role; nothing is stored and no statement text is returned (only query ids).

Scale (issue 10): the pool keeps at most :data:`MAX_POOL_PER_TABLE` candidates per table by
benefit costed alone and as many by benefit per MB (then the merges).  A statement is re-costed
only for the indexes it can use, i.e. whose leading key is the leading key of one of its own
candidates (:meth:`Search.uses`): an index it cannot use leaves its plan as it is, so its cached
cost stands (the cache key is the set of chosen indexes it can use).  A move on a table
therefore plans only the statements that could use the candidate or the indexes it replaces
(:meth:`Search.users`), not every statement of the table.
"""

from __future__ import annotations

import heapq
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .. import (
    guard,
    index_ddl,
    pgparse,  # noqa: F401  (libpg_query loaded with RTLD_DEEPBIND first)
)
from ..analyze import SkipStatement, analyze_statement
from ..catalog import PgCatalog, search_path_for
from ..db import QUERY_CANCELED, Db, DbError, UserError
from ..prove import Prover
from ..prove import confidence as prove_confidence
from ..prove import plan_changes as prove_plan_changes
from ..security import PLANNABLE_SQL_RE, PlanAs, references_temp_schema
from ..settings import Settings
from ..settings import load_into as load_settings
from ..sqltext import quote_ident
from . import index_join_candidates, index_size, sampled_candidates
from .base import Proof
from .index import IndexCandidate, fmt_bytes

if TYPE_CHECKING:
    from ..workload import WindowStatement
from .index_candidates import Candidate, generate_candidates, normalize_sql_fragment

# Estimated time to maintain one b-tree index entry for one written row (ms): insert of the
# entry, its WAL and the later vacuum of a dead one; 10 µs is on the safe side of what a
# b-tree insert costs on a busy server.
INDEX_WRITE_MS_PER_ROW = 0.01
# The storage price of an index, relative to the window (see the module's docstring): every
# index must save MIN_INDEX_SHARE of the time of the statements it serves, plus STORAGE_SHARE
# times its size over its table's size (an index a tenth of its table's size: 10 % more).
MIN_INDEX_SHARE = 0.01
STORAGE_SHARE = 1.0
# Net benefits per MB are compared at this relative precision (planner and timing noise): a
# closer pair is a tie, which the smaller index wins, then the definition's text.
RANK_DIGITS = 2
# A move must save at least this share of the workload's estimated time (planner noise) ...
MIN_MOVE_SHARE = 0.001
# ... and its net benefit (after its upkeep) must be at least this share of the time of the
# statements it serves: statement times in a short window are noisy, and a move that only just
# pays (a wider index replacing a narrower one for a few ms) would be taken in one audit and not
# in the next.
MOVE_MARGIN = 0.05
# Merged candidates per table at most (pairs on the same leading column).
MAX_MERGES_PER_TABLE = 20
# The search's pool per table at most (scale): the candidates with the largest benefit costed
# alone and those with the largest benefit per MB, this many of each (before merging).  The
# greedy search costs every candidate at least once with all the statements that can use it.
MAX_POOL_PER_TABLE = 24
_OWN = re.compile(r"\barch\s*\.", re.I)


@dataclass
class Statement:
    userid: int
    queryid: int
    text: str
    calls: int
    total_ms: float
    base_cost: float = 0.0
    types: list = field(default_factory=list)
    path: list = field(default_factory=list)
    tables: set = field(default_factory=set)
    cache: dict = field(default_factory=dict)  # frozenset of definitions it can use -> cost
    leads: set = field(default_factory=set)  # (schema, table, leading key) of its own candidates
    # its query samples, when it has enough; with facts.custom it is costed with the custom
    # plans of its sampled values (advisors/sampled_candidates.py), else with its generic plan
    samples: sampled_candidates.SampleFacts | None = None
    generic_cost: float = 0.0  # its generic plan's cost with no candidate (recorded beside a custom basis)

    def ms(self, cost: float) -> float:
        """Estimated time (ms over the window) at planner cost ``cost``."""
        return self.total_ms * cost / self.base_cost


@dataclass
class Entry:
    cand: Candidate
    userid: int  # a role that proposed it: the hypothetical index is created as that role
    size: int | None = None  # bytes (hypopg)
    bound: float = 0.0  # ms saved on its own statements, costed alone (the search's first guess)

    @property
    def table(self) -> tuple[str, str]:
        return (self.cand.schema, self.cand.table)

    @property
    def mb(self) -> float:
        return (self.size or 0) / 1048576.0


def serves(wide: Candidate, narrow: Candidate) -> bool:
    """True when index ``wide`` serves whatever ``narrow`` serves: same table and predicate,
    ``narrow``'s keys a leading prefix of ``wide``'s, its INCLUDE columns among ``wide``'s."""
    if (wide.schema, wide.table) != (narrow.schema, narrow.table) or wide == narrow:
        return False
    if normalize_sql_fragment(wide.where) != normalize_sql_fragment(narrow.where):
        return False
    wk = [normalize_sql_fragment(k) for k in wide.keys]
    nk = [normalize_sql_fragment(k) for k in narrow.keys]
    if wk[: len(nk)] != nk:
        return False
    have = set(wk) | {normalize_sql_fragment(c) for c in wide.include}
    return {normalize_sql_fragment(c) for c in narrow.include} <= have


def merge(a: Candidate, b: Candidate, max_columns: int) -> Candidate | None:
    """One index for two candidates on the same leading column and predicate, or None."""
    if (a.schema, a.table) != (b.schema, b.table) or a.where != b.where or not a.keys or not b.keys:
        return None
    if normalize_sql_fragment(a.keys[0]) != normalize_sql_fragment(b.keys[0]):
        return None
    if serves(a, b) or serves(b, a):
        return None
    have = {normalize_sql_fragment(k) for k in a.keys}
    keys = list(a.keys) + [k for k in b.keys if normalize_sql_fragment(k) not in have]
    keys = keys[:max_columns]
    if len(keys) <= len(a.keys):
        return None
    incl = [c for c in dict.fromkeys(a.include + b.include)
            if normalize_sql_fragment(c) not in {normalize_sql_fragment(k) for k in keys}]
    return Candidate(a.schema, a.table, tuple(keys), tuple(incl), a.where, "multi")


def _round_sig(x: float, digits: int = RANK_DIGITS) -> float:
    """``x`` at ``digits`` significant digits (0 stays 0)."""
    return float(f"{x:.{digits - 1}e}")


class Search:
    """The pool, the hypothetical indexes of this backend and the costing of statements."""

    def __init__(self, db: Db, settings: Settings, prover: Prover, plan_as: PlanAs):
        self.db = db
        self.settings = settings
        self.prover = prover
        self.plan_as = plan_as
        self.statements: list[Statement] = []
        self.skipped: list[tuple[int, str, str]] = []
        self.pool: dict[str, Entry] = {}
        self.present: dict[str, int] = {}  # definition -> hypopg oid
        self.write_rows: dict[tuple[str, str], float] = {}
        self.window_factor = 1.0  # share of the table counters' period the workload window covers
        # rows written per table during the window when the caller measured them (the audit)
        self.window_writes: dict[tuple[str, str], float] | None = None
        self.explains = 0
        self.hypo_names: dict[str, str] = {}  # hypopg's index name -> the candidate's name
        self._table_bytes: dict[tuple[str, str], float] = {}
        self._users: dict[str, list[Statement]] = {}  # definition -> statements that can use it

    # -- hypothetical indexes ----------------------------------------------------------
    def _create(self, d: str) -> None:
        e = self.pool[d]
        saved = self.prover.run_as
        self.prover.run_as = self.plan_as.wrapper_for(e.userid)  # as a role that proposed it
        try:
            oid, hname = self.prover.create_hypothetical(e.cand.hypo_sql())
            if e.size is None:
                e.size = index_size.hypothetical_index_bytes(self.prover, e.cand, oid) or 0
        finally:
            self.prover.run_as = saved
        self.present[d] = oid
        self.hypo_names[hname] = e.cand.name()

    def _drop(self, d: str) -> None:
        oid = self.present.pop(d)
        self.prover.drop_hypothetical(oid)

    def _materialize(self, tables: set, defs: frozenset) -> None:
        """Exactly ``defs`` present among the hypothetical indexes on ``tables``."""
        for d in [d for d in self.present if self.pool[d].table in tables and d not in defs]:
            self._drop(d)
        for d in defs:
            if d not in self.present:
                self._create(d)

    def size_of(self, d: str) -> float:
        e = self.pool[d]
        if e.size is None:
            self._create(d)
        return e.mb

    # -- costing ------------------------------------------------------------------------
    def _use(self, st: Statement) -> None:
        self.db.execute("SELECT set_config('search_path', $1, true)",
                        [", ".join(quote_ident(p, always=True) for p in st.path) or "pg_catalog"])
        self.prover.run_as = self.plan_as.wrapper_for(st.userid)
        self.prover.text = st.text
        self.prover.types = list(st.types)

    def _explain(self, st: Statement):
        """The statement's plan with the hypothetical indexes present now (re-PREPAREd): the
        weighted custom plans of its sampled values when it is costed with them, else generic."""
        if st.samples is not None and st.samples.custom:
            return sampled_candidates.weighted_plan(self.prover, st.samples)
        return self.prover.explain(reprepare=True)

    def uses(self, st: Statement, d: str) -> bool:
        """True when ``st`` can use index ``d``: on one of its tables, leading with the leading
        key of one of its own candidates."""
        c = self.pool[d].cand
        return bool(c.keys) and (c.schema, c.table, c.keys[0]) in st.leads

    def cost(self, st: Statement, chosen) -> float:
        """The statement's planner cost with the chosen indexes on its tables present (those it
        cannot use do not change its plan: only those it can use are materialized)."""
        key = frozenset(d for d in chosen if self.uses(st, d))
        if key in st.cache:
            return st.cache[key]
        self._materialize(st.tables, key)
        self._use(st)
        try:
            c = self._explain(st).cost
        except SkipStatement:
            c = st.base_cost
        self.explains += 1
        st.cache[key] = c
        return c

    def plan_changes(self, st: Statement, chosen) -> dict:
        """The plan nodes of ``st`` that the chosen indexes remove and add (for the rationale and
        the pull request)."""
        plans = []
        for defs in (frozenset(), frozenset(d for d in chosen if self.pool[d].table in st.tables)):
            self._materialize(st.tables, defs)
            self._use(st)
            try:
                plans.append(self._explain(st))
            except SkipStatement:
                return {"removed": [], "added": []}
        # only the names of the indexes in the plan: renaming with every hypothetical index of
        # the search is quadratic at scale
        rename = {h: self.hypo_names[h] for h in plans[1].index_names if h in self.hypo_names}
        return prove_plan_changes(plans[0], plans[1], rename)

    def workload_ms(self, chosen, tables: set | None = None) -> float:
        """Estimated time of the statements (those touching ``tables`` when given)."""
        return sum(st.ms(self.cost(st, chosen)) for st in self.statements
                   if tables is None or st.tables & tables)

    def users(self, ds) -> list[Statement]:
        """The statements that can use one of the indexes ``ds`` (:meth:`uses`): the only ones
        whose cost a change of those indexes can move."""
        out: dict[int, Statement] = {}
        for d in ds:
            if d not in self._users:
                table = self.pool[d].table
                self._users[d] = [st for st in self.statements if table in st.tables and self.uses(st, d)]
            out.update((id(st), st) for st in self._users[d])
        return list(out.values())

    def users_ms(self, chosen, ds) -> float:
        """Estimated time of the statements that can use one of ``ds``, with ``chosen``."""
        return sum(st.ms(self.cost(st, chosen)) for st in self.users(ds))

    def write_ms(self, table: tuple[str, str]) -> float:
        """Estimated time (ms) to maintain one more index on ``table`` during the window."""
        if table not in self.write_rows and self.window_writes is not None:
            self.write_rows[table] = self.window_writes.get(table, 0.0)
        if table not in self.write_rows:
            r = self.db.one(
                "SELECT coalesce(s.n_tup_ins + s.n_tup_upd - s.n_tup_hot_upd + s.n_tup_del, 0)::float8 AS w"
                " FROM pg_stat_user_tables s WHERE s.schemaname = $1 AND s.relname = $2", list(table))
            self.write_rows[table] = (float(r["w"]) if r else 0.0) * self.window_factor
        return self.write_rows[table] * INDEX_WRITE_MS_PER_ROW

    def served_ms(self, d: str, with_d: list[str], without_d: list[str]) -> float:
        """The window's time (ms, without any index of the set) of the statements on ``d``'s
        table that are cheaper with ``with_d`` than with ``without_d``: those ``d`` serves."""
        return sum(st.total_ms for st in self.users([d])  # the others cannot use d: same cost
                   if self.cost(st, with_d) < self.cost(st, without_d))

    def table_bytes(self, table: tuple[str, str]) -> float:
        if table not in self._table_bytes:
            self._table_bytes[table] = float(self.db.scalar(
                "SELECT coalesce(CASE WHEN c.relkind = 'p' THEN (SELECT sum(pg_catalog.pg_relation_size(t.relid))"
                " FROM pg_catalog.pg_partition_tree(c.oid) t) ELSE pg_catalog.pg_relation_size(c.oid) END, 0)::float8"
                " FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = $1 AND c.relname = $2", list(table)) or 0.0)
        return self._table_bytes[table]

    def storage_ms(self, d: str, served_ms: float) -> float:
        """The storage price of one index serving statements of ``served_ms`` in the window:
        what it must save besides its write cost."""
        ratio = self.size_of(d) * 1048576.0 / max(self.table_bytes(self.pool[d].table), 8192.0)
        return served_ms * (MIN_INDEX_SHARE + STORAGE_SHARE * ratio)

    def upkeep_ms(self, d: str, served_ms: float) -> float:
        """Write cost plus storage price of one index."""
        return self.write_ms(self.pool[d].table) + self.storage_ms(d, served_ms)

    # -- step 1 and 2: the workload and the pool ------------------------------------------
    def load_workload(self) -> float:
        pgss = self.db.scalar("SELECT n.nspname::text FROM pg_extension e JOIN pg_namespace n"
                              " ON n.oid = e.extnamespace WHERE e.extname = 'pg_stat_statements'")
        if pgss is None:
            raise UserError("pg_stat_statements is not installed in this database",
                            hint="CREATE EXTENSION pg_stat_statements; (it must also be in shared_preload_libraries)")
        s = self.settings
        rows = self.db.query(
            f'SELECT userid::bigint AS userid, queryid, min(query) AS query, sum(calls)::bigint AS calls,'
            f' sum(total_exec_time)::float8 AS total_ms'
            f' FROM "{pgss.replace(chr(34), chr(34) * 2)}".pg_stat_statements(true)'
            f" WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
            f" AND queryid IS NOT NULL AND query ~* $1"
            f" GROUP BY userid, queryid HAVING sum(calls) >= $2 AND sum(calls) > 0"
            f" AND sum(total_exec_time) / sum(calls) >= $3 ORDER BY sum(total_exec_time) DESC",
            [PLANNABLE_SQL_RE, int(s.min_calls), float(s.min_mean_time_ms)])
        self.scale_writes(pgss)
        for r in rows:
            if _OWN.search(r["query"] or ""):
                continue
            if len(self.statements) >= s.max_statements:
                break
            if r["total_ms"] <= 0:
                continue
            self.statements.append(Statement(userid=int(r["userid"]), queryid=int(r["queryid"]), text=r["query"],
                                             calls=int(r["calls"]), total_ms=float(r["total_ms"])))
        return sum(st.total_ms for st in self.statements)

    def scale_writes(self, pgss: str) -> None:
        """Table counters run since the database's statistics were reset (or the server
        started); the workload since pg_stat_statements was reset: scale writes to its window."""
        w = self.db.one(
            f'SELECT extract(epoch FROM now() - (SELECT stats_reset FROM "{pgss.replace(chr(34), chr(34) * 2)}"'
            f'.pg_stat_statements_info))::float8 AS window_s,'
            " extract(epoch FROM now() - coalesce((SELECT stats_reset FROM pg_stat_database"
            " WHERE datname = current_database()), pg_postmaster_start_time()))::float8 AS stats_s")
        if w and w["window_s"] is not None and w["stats_s"] and w["stats_s"] > 0:
            self.window_factor = min(1.0, max(float(w["window_s"]), 0.0) / float(w["stats_s"]))

    def build_pool(self) -> None:
        kept = []
        for i, st in enumerate(self.statements, 1):
            self.db.progress(i - 1, len(self.statements), f"queryid {st.queryid}")
            try:
                with self.db.subtransaction():
                    self._analyse(st)
                kept.append(st)
            except SkipStatement as exc:
                cause = exc.__cause__
                if isinstance(cause, DbError) and cause.sqlstate == QUERY_CANCELED:
                    raise cause from None
                self.skipped.append((st.queryid, exc.code, exc.reason))
            except DbError as exc:
                if exc.sqlstate == QUERY_CANCELED:
                    raise
                self.skipped.append((st.queryid, "error", str(exc).splitlines()[0]))
            finally:
                self.prover.run_as = None
                self.prover.reset()
                self.present.clear()
        self.statements = kept
        self._bound_pool()
        self._merge()

    def _bound_pool(self) -> None:
        """At most :data:`MAX_POOL_PER_TABLE` candidates per table by benefit costed alone and as
        many by benefit per MB; the others leave the pool."""
        by_table: dict[tuple[str, str], list[str]] = {}
        for d, e in self.pool.items():
            by_table.setdefault(e.table, []).append(d)
        for ds in by_table.values():
            if len(ds) <= MAX_POOL_PER_TABLE:
                continue
            best = sorted(ds, key=lambda d: (-self.pool[d].bound, d))[:MAX_POOL_PER_TABLE]
            dense = sorted(ds, key=lambda d: (-self.pool[d].bound / max(self.pool[d].mb, 0.01), d))
            keep = set(best) | set(dense[:MAX_POOL_PER_TABLE])
            for d in ds:
                if d not in keep:
                    del self.pool[d]

    def _analyse(self, st: Statement) -> None:
        t0 = time.monotonic()
        s = self.settings
        if references_temp_schema(st.text):
            raise SkipStatement("temp_object", "it uses an object of a temporary schema (pg_temp)")
        self.prover.run_as = self.plan_as.wrapper_for(st.userid)
        facts = sampled_candidates.safe_facts(self.db, st.queryid, st.userid, st.text)
        st.path = search_path_for(self.db, st.userid)
        self.db.execute("SELECT set_config('search_path', $1, true)",
                        [", ".join(quote_ident(p, always=True) for p in st.path) or "pg_catalog"])
        cat = PgCatalog(self.db, st.path)
        info = analyze_statement(st.text, cat, max_length=s.max_statement_length)
        if not info.tables:
            raise SkipStatement("not_supported", "no table an index could speed up")
        before = self.prover.load(info.text, info.param_count, info.free_params)
        metas = {key: cat.table_meta(*key) for key in info.tables}
        cands = generate_candidates(info, metas, max_columns=s.max_index_columns)[: s.max_candidates]
        st.samples = sampled_candidates.prepare(self.db, facts, info, metas, st.text, s.max_index_columns,
                                                {c.definition() for c in cands})
        if st.samples is None:  # parameters compared by range: custom plans with pg_stats values
            st.samples = sampled_candidates.range_facts(self.db, info, st.text)
        st.samples = sampled_candidates.with_custom_before(self.prover, st.samples)
        st.generic_cost = before.cost
        if st.samples is not None and st.samples.custom and st.samples.before is not None:
            before = st.samples.before
            cands = st.samples.specs + cands  # the candidates only the samples reveal first
        if before.cost <= 0:
            raise SkipStatement("not_supported", "its estimated cost is zero")
        st.text, st.types, st.base_cost = info.text, list(self.prover.types), before.cost
        st.tables = set(info.tables)
        cands += index_join_candidates.join_candidates(self.db, info, cat, metas, s.max_index_columns)
        st.leads = {(c.schema, c.table, c.keys[0]) for c in cands if c.keys}
        seen: set[str] = set()
        for cand in cands:
            d = cand.definition()
            if d in seen:
                continue
            seen.add(d)
            if (time.monotonic() - t0) * 1000 > s.statement_budget_ms:
                break
            try:
                oid, hname = self.prover.create_hypothetical(cand.hypo_sql())
            except DbError as exc:
                if exc.sqlstate == QUERY_CANCELED:
                    raise
                continue
            try:
                plan = self._explain(st)
                size = index_size.hypothetical_index_bytes(self.prover, cand, oid)
            finally:
                self.prover.drop_hypothetical(oid)
            self.explains += 1
            gain = (before.cost - plan.cost) / before.cost * 100.0
            st.cache[frozenset([d])] = plan.cost  # its cost with d alone, used or not (the search's first round)
            if hname not in plan.index_names or gain < s.min_gain_pct:
                continue
            e = self.pool.get(d)
            if e is None:
                e = self.pool[d] = Entry(cand=cand, userid=st.userid, size=size)
            e.bound += st.ms(before.cost) - st.ms(plan.cost)
            st.cache[frozenset([d])] = plan.cost
        st.cache[frozenset()] = before.cost

    def _merge(self) -> None:
        by_table: dict[tuple[str, str], list[Entry]] = {}
        for e in self.pool.values():
            by_table.setdefault(e.table, []).append(e)
        for entries in by_table.values():
            made = 0
            for i, a in enumerate(entries):
                for b in entries[i + 1:]:
                    if made >= MAX_MERGES_PER_TABLE:
                        break
                    for x, y in ((a, b), (b, a)):
                        m = merge(x.cand, y.cand, self.settings.max_index_columns)
                        if m is None or m.definition() in self.pool:
                            continue
                        self.pool[m.definition()] = Entry(cand=m, userid=x.userid, bound=x.bound + y.bound)
                        made += 1

    # -- step 3: the search ------------------------------------------------------------------
    def served_by(self, d: str, chosen: list[str]) -> list[str]:
        return [c for c in chosen if serves(self.pool[d].cand, self.pool[c].cand)]

    def _move(self, d: str, chosen: list[str], current_ms: dict) -> tuple[float, float, list[str], float]:
        """(net benefit ms, size change MB, indexes it replaces, time of the statements it serves)
        of adding ``d``."""
        removed = self.served_by(d, chosen)
        kept = [c for c in chosen if c not in removed]
        new = kept + [d]
        # only the statements that can use d or an index it replaces change (see users())
        affected = self.users([d, *removed])
        before = sum(current_ms[st.queryid, st.userid] for st in affected)
        after = sum(st.ms(self.cost(st, new)) for st in affected)
        served = self.served_ms(d, new, kept)
        upkeep = self.upkeep_ms(d, served) - sum(
            self.upkeep_ms(r, self.served_ms(r, chosen, [c for c in chosen if c != r])) for r in removed)
        size = self.size_of(d) - sum(self.size_of(r) for r in removed)
        return before - after - upkeep, size, removed, served

    def _current(self, chosen: list[str]) -> dict:
        return {(st.queryid, st.userid): st.ms(self.cost(st, chosen)) for st in self.statements}

    def _rank(self, d: str, net: float, size: float) -> tuple[float, float, str]:
        """Heap key of a move: net benefit per MB at RANK_DIGITS significant digits (best
        first), then the smaller index, then the definition's text."""
        return (-_round_sig(net / max(size, 0.01)), self.size_of(d), d)

    def greedy(self, budget_mb: float | None, total_ms: float) -> list[str]:
        chosen: list[str] = []
        current = self._current(chosen)
        floor = MIN_MOVE_SHARE * total_ms
        heap = [(self._rank(d, e.bound, self.size_of(d)), d, -1)
                for d, e in sorted(self.pool.items())]
        heapq.heapify(heap)
        step = 0  # moves taken so far: an entry evaluated at this step is exact
        while heap:
            _, d, at = heapq.heappop(heap)
            if d in chosen or any(serves(self.pool[c].cand, self.pool[d].cand) for c in chosen):
                continue
            net, size, removed, served = self._move(d, chosen, current)
            key = self._rank(d, net, size)
            if at != step and heap and heap[0][0] < key:
                heapq.heappush(heap, (key, d, step))  # stale bound: re-queue
                continue
            if net <= max(floor, MOVE_MARGIN * served):
                continue
            new = [c for c in chosen if c not in removed] + [d]
            if budget_mb is not None and sum(self.size_of(c) for c in new) > budget_mb:
                continue
            if sum(1 for c in new if self.pool[c].table == self.pool[d].table) > self.settings.max_indexes_per_table:
                continue
            chosen = new
            step += 1
            current = self._current(chosen)
        return chosen

    # -- step 4: interference ------------------------------------------------------------
    def prune(self, chosen: list[str]) -> list[str]:
        """Remove every index whose removal does not raise the estimated time by more than its
        upkeep, the least useful first, until none is removed."""
        chosen = list(chosen)
        while chosen:
            worst = None
            for d in chosen:
                rest = [c for c in chosen if c != d]
                loss = self.users_ms(rest, [d]) - self.users_ms(chosen, [d])
                excess = loss - self.upkeep_ms(d, self.served_ms(d, chosen, rest))
                if excess <= 0 and (worst is None or excess < worst[0]):
                    worst = (excess, d)
            if worst is None:
                return chosen
            chosen.remove(worst[1])
        return chosen

    def close(self) -> None:
        self.present.clear()


def design(db: Db, budget_mb: float | None = None) -> dict:
    """The chosen set for the current pg_stat_statements window; nothing stored."""
    with guard.lock_timeout(db):
        settings = load_settings(db, Settings)
        if budget_mb is None and settings.index_budget_mb is not None:
            budget_mb = float(settings.index_budget_mb)
        if budget_mb is not None and budget_mb <= 0:
            raise UserError("arch.design_indexes: budget_mb must be positive", sqlstate="22023",
                            hint="Pass NULL for no cap (every MB must still pay for itself).")
        t0 = time.monotonic()
        saved_path = db.scalar("SELECT current_setting('search_path')")
        db.execute("SELECT set_config('plan_cache_mode', 'force_generic_plan', true)")
        prover = Prover(db)
        plan_as = PlanAs(db)
        search = Search(db, settings, prover, plan_as)
        try:
            total = search.load_workload()
            search.build_pool()
            total = sum(st.total_ms for st in search.statements)
            chosen = search.greedy(budget_mb, total)
            chosen = search.prune(chosen)
            after = search.workload_ms(chosen)
            rows = _rows(search, chosen, total, after)
        finally:
            prover.run_as = None
            prover.close()
            plan_as.close()
            search.close()
            db.execute("SELECT set_config('search_path', $1, true)", [saved_path])
        size = sum(r["size_mb"] for r in rows)
        db.notice(f"pg_architect: {len(rows)} index{'es' if len(rows) != 1 else ''} ({size:,.1f} MB) for "
                  f"{len(search.statements)} statements: estimated workload time {total:,.1f} ms -> "
                  f"{after:,.1f} ms; {len(search.pool)} candidates, {search.explains} plans, "
                  f"{len(search.skipped)} skipped, {time.monotonic() - t0:.1f} s")
        for qid, code, reason in search.skipped:
            db.notice(f"pg_architect: queryid {qid} skipped ({code}): {reason}")
        return {"rows": rows, "before_ms": total, "after_ms": after, "skipped": search.skipped,
                "statements": len(search.statements), "candidates": len(search.pool),
                "explains": search.explains}


def _rows(search: Search, chosen: list[str], total: float, after: float) -> list[dict]:
    contrib = {}
    served = {}
    for d in chosen:
        rest = [c for c in chosen if c != d]
        contrib[d] = max(search.users_ms(rest, [d]) - search.users_ms(chosen, [d]), 0.0)
        served[d] = sorted({st.queryid for st in search.users([d])
                            if search.cost(st, chosen) < search.cost(st, rest)})
    whole = sum(contrib.values()) or 1.0
    out = []
    for d in sorted(chosen, key=lambda d: -contrib[d]):
        e = search.pool[d]
        try:
            ddl = index_ddl.for_candidate(search.db, e.cand)[0]
        except index_ddl.NotIndexable:
            ddl = e.cand.ddl()
        out.append({"table_name": f"{e.cand.schema}.{e.cand.table}", "index_name": e.cand.name(), "ddl": ddl,
                    "size_mb": round(e.mb, 3), "queryids": served[d], "gain_share": round(contrib[d] / whole, 4),
                    "workload_ms_before": round(total, 3), "workload_ms_after": round(after, 3)})
    return out



# --------------------------------------------------------------------------- the audit's set
@dataclass
class AuditSet:
    """What :func:`for_audit` chose: per chosen index, the statements it serves (their cost
    without any index of the set and with the whole set) and its share of the workload gain."""

    before_ms: float
    after_ms: float
    chosen: list[tuple[Entry, float, list[tuple[Statement, float, float, dict]]]]  # entry, share, served
    skipped: list[tuple[int, str, str]]
    candidates: int
    explains: int
    timings: dict = field(default_factory=dict)  # ms of each phase of the search, and plan counts


def window_writes(db: Db) -> dict[tuple[str, str], float]:
    """Rows written per table (inserts, non-HOT updates, deletes) since the previous index usage
    snapshot (``arch.snapshot_index``; the audit takes one in its workload step), scaled to the
    pg_stat_statements window when the snapshots span more.  A table without an earlier snapshot
    (the first audit, or a table that had no index) counts no writes: not measured yet."""
    rows = db.query(
        "WITH cur AS (SELECT max(taken_at) AS t FROM arch.snapshot_index),"
        " prev AS (SELECT max(taken_at) AS t FROM arch.snapshot_index, cur WHERE taken_at < cur.t),"
        " tab AS (SELECT DISTINCT ON (s.taken_at, s.tablerelid) s.taken_at, s.tablerelid, s.schema_name, s.table_name,"
        "   s.n_tup_ins + s.n_tup_upd - s.n_tup_hot_upd + s.n_tup_del AS w, s.stats_reset"
        "   FROM arch.snapshot_index s, cur, prev WHERE s.taken_at IN (cur.t, prev.t))"
        " SELECT c.schema_name, c.table_name, greatest(c.w - p.w, 0)::float8 AS w,"
        "   extract(epoch FROM c.taken_at - p.taken_at)::float8 AS period_s"
        " FROM tab c JOIN tab p ON p.tablerelid = c.tablerelid AND p.taken_at < c.taken_at"
        " WHERE c.taken_at = (SELECT t FROM cur)"
        "   AND c.stats_reset IS NOT DISTINCT FROM p.stats_reset")
    if not rows:
        return {}
    pgss = db.scalar("SELECT n.nspname::text FROM pg_extension e JOIN pg_namespace n"
                     " ON n.oid = e.extnamespace WHERE e.extname = 'pg_stat_statements'")
    window_s = None if pgss is None else db.scalar(
        "SELECT extract(epoch FROM now() - stats_reset)::float8 FROM "
        + quote_ident(pgss, always=True) + ".pg_stat_statements_info")
    out = {}
    for r in rows:
        period = float(r["period_s"] or 0)
        factor = 1.0 if not window_s or period <= 0 else min(1.0, float(window_s) / period)
        out[(r["schema_name"], r["table_name"])] = float(r["w"]) * factor
    return out


def for_audit(db: Db, prover: Prover, plan_as: PlanAs, statements: list) -> AuditSet:
    """The audit's step 4 for indexes: one set for the audit's analysed statements
    (``workload.WindowStatement``: the window's calls and time), found by the same search as
    ``arch.design_indexes()``.  Hypothetical indexes are gone afterwards."""
    settings = load_settings(db, Settings)
    budget = None if settings.index_budget_mb is None else float(settings.index_budget_mb)
    search = Search(db, settings, prover, plan_as)
    saved_path = db.scalar("SELECT current_setting('search_path')")
    try:
        search.window_writes = window_writes(db)
        search.statements = [Statement(userid=int(st.userid), queryid=int(st.queryid), text=st.query,
                                       calls=int(st.calls), total_ms=float(st.total_time_ms))
                             for st in statements if st.total_time_ms > 0]
        t0 = time.monotonic()
        search.build_pool()
        t1, n1 = time.monotonic(), search.explains
        total = sum(st.total_ms for st in search.statements)
        chosen = search.greedy(budget, total)
        t2, n2 = time.monotonic(), search.explains
        chosen = search.prune(chosen)
        t3, n3 = time.monotonic(), search.explains
        after = search.workload_ms(chosen)
        contrib: dict[str, float] = {}
        served: dict[str, list[tuple[Statement, float, float, dict]]] = {}
        for d in chosen:
            rest = [c for c in chosen if c != d]
            contrib[d] = max(search.users_ms(rest, [d]) - search.users_ms(chosen, [d]), 0.0)
            served[d] = [(st, st.base_cost, search.cost(st, chosen), search.plan_changes(st, chosen))
                         for st in search.users([d]) if search.cost(st, chosen) < search.cost(st, rest)]
        whole = sum(contrib.values()) or 1.0
        out = [(search.pool[d], contrib[d] / whole, served[d]) for d in sorted(chosen, key=lambda d: -contrib[d])]
        t4 = time.monotonic()
        timings = {"set_pool_ms": (t1 - t0) * 1000, "set_pool_plans": n1, "set_greedy_ms": (t2 - t1) * 1000,
                   "set_greedy_plans": n2 - n1, "set_prune_ms": (t3 - t2) * 1000, "set_prune_plans": n3 - n2,
                   "set_served_ms": (t4 - t3) * 1000, "set_served_plans": search.explains - n3,
                   "set_candidates": len(search.pool), "set_statements": len(search.statements)}
        return AuditSet(before_ms=total, after_ms=after, chosen=out, skipped=search.skipped,
                        candidates=len(search.pool), explains=search.explains, timings=timings)
    finally:
        prover.run_as = None
        search.close()
        prover.reset()
        db.execute("SELECT set_config('search_path', $1, true)", [saved_path])


def audit_proofs(db: Db, prover: Prover, plan_as: PlanAs, run_id: int, analysed: list[WindowStatement]
                 ) -> tuple[AuditSet, dict[tuple[int, int], list[Proof]]]:
    """The workload's index set (:func:`advisors.index_set.for_audit`) as index proofs per
    statement: each chosen index is proven on every statement it serves (cost without any index
    of the set and with the whole set), with its share of the workload gain; the workload's
    estimated time before and after the set is recorded with the run."""
    got = for_audit(db, prover, plan_as, analysed)
    by_key = {(int(st.queryid), int(st.userid)): st for st in analysed}
    out: dict[tuple[int, int], list[Proof]] = {}
    for e, share, served in got.chosen:
        cand = IndexCandidate(e.cand)
        act = PgCatalog(db, [e.cand.schema]).table_activity(e.cand.schema, e.cand.table)
        size_ratio = (e.size or 0) / act["bytes"] if act["bytes"] else 0.0
        for s, before, after, changes in served:
            wst = by_key.get((s.queryid, s.userid))
            if wst is None or before <= 0:
                continue
            gain = (before - after) / before * 100.0
            conf, factors = prove_confidence(gain / 100.0, wst.share, act["write_ratio"], size_ratio)
            factors = {**factors, "workload_gain_share": round(share, 4), "statements_served": len(served)}
            rationale = (f"Chosen as part of the index set for the whole workload ({len(got.chosen)} "
                         f"index{'es' if len(got.chosen) != 1 else ''}; estimated workload time "
                         f"{got.before_ms:,.1f} ms -> {got.after_ms:,.1f} ms): it serves {len(served)} "
                         f"statement{'s' if len(served) != 1 else ''}, {share * 100:.1f} % of the set's estimated "
                         f"gain. For this statement the cost {before:,.1f} becomes {after:,.1f} with the set: "
                         f"estimated {gain:.1f} % cheaper. The statement ran {wst.calls:,} time"
                         f"{'' if wst.calls == 1 else 's'} for {wst.total_time_ms / 1000:,.1f} s in the audit window "
                         f"({wst.share * 100:.1f} % of all statement time). Estimated size "
                         f"{fmt_bytes(e.size)} on a table of {fmt_bytes(act['bytes'])}; writes are "
                         f"{act['write_ratio'] * 100:.0f} % of the table's row activity.")
            if s.samples is not None and s.samples.custom:
                factors["costing"] = {"basis": "custom", "samples": s.samples.samples,
                                      "value_sets": [{"values": v, "count": c} for v, c in s.samples.value_sets],
                                      "sampled_candidate": e.cand in s.samples.specs,
                                      "skewed_columns": list(s.samples.skewed),
                                      "source": s.samples.source, "range_columns": list(s.samples.ranges),
                                      "custom_cost_before": round(before, 2),
                                      "generic_cost_before": round(s.generic_cost, 2)}
                rationale += (f" This statement was costed with {s.samples.describe()}, not its generic plan"
                              + (" (an index only its samples reveal)." if e.cand in s.samples.specs else "."))
            out.setdefault((s.queryid, s.userid), []).append(Proof(
                candidate=cand, cost_before=before, cost_after=after, gain_pct=gain, size_bytes=e.size,
                changes=changes, confidence=conf, factors=factors, rationale=rationale,
                table_bytes=act["bytes"]))
    db.execute("UPDATE arch.audit_run SET workload_cost_before_ms = $2, workload_cost_after_ms = $3 WHERE id = $1",
               [run_id, got.before_ms, got.after_ms])
    db.notice(f"pg_architect: index set for {len(analysed)} statements: {len(got.chosen)} "
              f"index{'es' if len(got.chosen) != 1 else ''} from {got.candidates} candidates, estimated workload "
              f"time {got.before_ms:,.1f} ms -> {got.after_ms:,.1f} ms")
    return got, out
