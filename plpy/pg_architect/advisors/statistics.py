"""Advisor ``statistics``: extended statistics and statistics targets from measured misestimates.

The planner multiplies the selectivities of the clauses on one table as if the columns were
independent.  For correlated columns (zip → city, city → country) that underestimates the
rows of ``WHERE city = $1 AND zip = $2`` by the number of cities, and the wrong row count
flips joins (a nested loop over "8 rows" that are really 1000).  This module

1. **detects** misestimates of a statement:

   * statement level: the rows per call pg_stat_statements recorded vs the rows the plan
     expects (generic plan: the statement is PREPAREd and EXPLAINed with NULL arguments under
     ``force_generic_plan``, as :mod:`pg_architect.prove` does; or a custom plan with given
     parameter values);
   * node level: for each scan node whose clauses on its own table name 2–3 columns, and each
     GROUP BY of 2–3 columns of one table, the planner's independence estimate vs what the
     columns' *combined* statistics say, measured on a bounded sample of the table
     (``TABLESAMPLE SYSTEM``, about :data:`SAMPLE_ROWS` rows: a reader's ACCESS SHARE lock);
   * (staging / tests only) :func:`measure_on_staging` runs ``EXPLAIN (ANALYZE)`` with literal
     values and returns the actual rows per node.  **It executes the statement**: the audit
     never calls it on production.

2. **proposes** ``CREATE STATISTICS … (dependencies, ndistinct, mcv) ON a, b FROM t`` for the
   correlated column groups (none when an existing statistics object already covers them), and
   ``ALTER TABLE … ALTER COLUMN … SET STATISTICS n`` for skewed columns whose MCV list is full
   while the sample shows frequent values outside it.

3. **proves** a candidate, when ``arch.settings.prove_statistics_in_transaction`` is on, by
   running its DDL and ``ANALYZE table (columns)`` inside a subtransaction that is always rolled
   back (``lock_timeout`` :data:`LOCK_TIMEOUT_MS`: a SHARE UPDATE EXCLUSIVE lock, held only for
   the subtransaction), re-planning, and comparing.  A statistics object is kept only if the
   estimate error shrinks *and* the plan changes shape to one that is cheaper under the
   corrected estimates (the old shape is re-costed with the new statistics by disabling the
   node types the new plan introduced).  With the setting off a candidate is
   ``unproven: validate on staging`` and its confidence is capped (see :func:`confidence`).

Side effect of the proof worth knowing: ``ANALYZE`` updates ``pg_class.reltuples/relpages``
in place (not rolled back) and the table's ``last_analyze`` — what autovacuum's ANALYZE does.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field

from .. import prove, security
from ..analyze import SkipStatement
from ..catalog import search_path_for
from ..db import LOCK_NOT_AVAILABLE, QUERY_CANCELED, Db, DbError, UserError, extension_schema
from ..sqltext import quote_ident

KIND = "statistics"
# Rows read by the sample that measures combined statistics (ANALYZE's default reads 30000).
SAMPLE_ROWS = 30000
# A node or statement estimate off by this factor or more is a misestimate.
MISESTIMATE_FACTOR = 10.0
# lock_timeout of the proof (CREATE STATISTICS / ALTER TABLE and ANALYZE).
LOCK_TIMEOUT_MS = 200
# A proof must shrink the estimate error at least this many times.
MIN_ERROR_SHRINK = 2.0
# Caps of the confidence of an unproven candidate and of the statistics target proposed.
UNPROVEN_CAP = 0.5
MAX_TARGET = 10000
# Statistics kinds of a proposed object (pg_statistic_ext.stxkind letters).
STAT_KINDS = ("dependencies", "ndistinct", "mcv")

# Plan node types and the planner switch that removes them (to re-cost the old plan shape).
_NODE_GUC = {"Hash Join": "enable_hashjoin", "Merge Join": "enable_mergejoin",
             "Nested Loop": "enable_nestloop", "Seq Scan": "enable_seqscan",
             "Index Scan": "enable_indexscan", "Index Only Scan": "enable_indexonlyscan",
             "Bitmap Heap Scan": "enable_bitmapscan", "Sort": "enable_sort",
             "Incremental Sort": "enable_incremental_sort", "Material": "enable_material",
             "Memoize": "enable_memoize", "HashAggregate": "enable_hashagg"}
_SCAN_CONDS = ("Filter", "Index Cond", "Recheck Cond")
_IDENT = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_QUALIFIED = re.compile(r'(?<![\w"$.])(' + _IDENT + r')\.(' + _IDENT + r')(?!\s*\()')


@dataclass
class Settings:
    prove_statistics_in_transaction: bool
    min_gain_pct: float


def load_settings(db: Db) -> Settings:
    from ..settings import load_into as db_load_settings

    return db_load_settings(db, Settings)


# --------------------------------------------------------------------------- plan reading
@dataclass
class ScanNode:
    schema: str
    table: str
    alias: str
    rows: float
    columns: list[str]  # own-table columns of its single-table clauses, in order of appearance
    equality: list[str]  # those compared with = / IN


@dataclass
class GroupNode:
    schema: str
    table: str
    alias: str
    rows: float
    columns: list[str]


@dataclass
class PlanFacts:
    plan: prove.Plan
    rows: float
    scans: list[ScanNode]
    groups: list[GroupNode]


def _unquote(ident: str) -> str:
    return ident[1:-1].replace('""', '"') if ident.startswith('"') else ident


def _split_and(cond: str) -> list[str]:
    """``((a = $1) AND (b = $2))`` -> ['(a = $1)', '(b = $2)'] (top-level AND only)."""
    s = cond.strip()
    while s.startswith("(") and s.endswith(")") and _balanced(s[1:-1]):
        s = s[1:-1].strip()
    parts, depth, start, i, quoted = [], 0, 0, 0, None
    while i < len(s):
        c = s[i]
        if quoted:
            if c == quoted:
                quoted = None
        elif c in "'\"":
            quoted = c
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif depth == 0 and s.startswith(" AND ", i):
            parts.append(s[start:i])
            start = i + 5
            i += 4
        i += 1
    parts.append(s[start:])
    return [p.strip() for p in parts if p.strip()]


def _balanced(s: str) -> bool:
    depth, quoted = 0, None
    for c in s:
        if quoted:
            if c == quoted:
                quoted = None
        elif c in "'\"":
            quoted = c
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth < 0:
                return False
    return depth == 0


def _own_columns(clause: str, alias: str) -> tuple[list[str], bool]:
    """Columns of ``alias`` in one clause, and whether the clause names another relation."""
    own, other = [], False
    for m in _QUALIFIED.finditer(re.sub(r"'(?:[^']|'')*'", "''", clause)):
        if _unquote(m.group(1)) == alias:
            col = _unquote(m.group(2))
            if col not in own:
                own.append(col)
        else:
            other = True
    return own, other


def _is_equality(clause: str) -> bool:
    c = re.sub(r"'(?:[^']|'')*'", "''", clause)
    return bool(re.search(r"[^<>!=]=\s*(?:ANY\b)?", c)) and not re.search(r"<>|!=|<=|>=", c)


def plan_facts(doc) -> PlanFacts:
    """The scans, groupings and row estimates of an ``EXPLAIN (VERBOSE, FORMAT JSON)`` plan."""
    plan = prove.parse_plan(doc)
    scans: list[ScanNode] = []
    groups: list[GroupNode] = []
    aliases: dict[str, tuple[str, str]] = {}

    def walk(node: dict) -> None:
        if node.get("Relation Name"):
            alias = node.get("Alias") or node["Relation Name"]
            schema = node.get("Schema") or "public"
            aliases.setdefault(alias, (schema, node["Relation Name"]))
            cols: list[str] = []
            eq: list[str] = []
            for key in _SCAN_CONDS:
                if not node.get(key):
                    continue
                for clause in _split_and(node[key]):
                    own, other = _own_columns(clause, alias)
                    if other or not own:
                        continue  # a join clause, or no column of this table
                    for col in own:
                        if col not in cols:
                            cols.append(col)
                        if _is_equality(clause) and len(own) == 1 and col not in eq:
                            eq.append(col)
            scans.append(ScanNode(schema, node["Relation Name"], alias, float(node.get("Plan Rows", 0)), cols, eq))
        for child in node.get("Plans", []) or []:
            walk(child)
        if node.get("Group Key"):
            by_alias: dict[str, list[str]] = {}
            for key in node["Group Key"]:
                m = re.fullmatch(r"(" + _IDENT + r")\.(" + _IDENT + r")", key.strip())
                if m:
                    by_alias.setdefault(_unquote(m.group(1)), []).append(_unquote(m.group(2)))
            for alias, cols in by_alias.items():
                if alias in aliases and len(cols) >= 2:
                    schema, table = aliases[alias]
                    groups.append(GroupNode(schema, table, alias, float(node.get("Plan Rows", 0)), cols))

    walk(plan.raw)
    return PlanFacts(plan=plan, rows=float(plan.raw.get("Plan Rows", 0)), scans=scans, groups=groups)


def _ratio(a: float, b: float) -> float:
    """How many times a and b differ (rows below 1 count as 1, as the planner clamps them)."""
    a, b = max(float(a), 1.0), max(float(b), 1.0)
    return max(a, b) / min(a, b)


# --------------------------------------------------------------------------- the statement
class Statement:
    """One statement PREPAREd in this backend (the prover's prepared statement, reused)."""

    def __init__(self, db: Db, text: str, params: list | None = None, run_as: str | None = None):
        self.db = db
        self.params = params
        self.prover = prove.Prover(db)
        # security.PlanAs wrapper: every planner call runs as the role that ran the statement.
        self.prover.run_as = run_as
        try:
            nparams = max([int(n) for n in re.findall(r"\$(\d+)", text)] or [0])
            self.prover.load(text, nparams)
        except BaseException:
            self.prover.close()
            raise

    def _args(self) -> str:
        if self.params is None:
            n = len(self.prover.types) or self.prover._param_count()
            return f"({', '.join(['NULL'] * n)})" if n else ""
        quoted = [self.db.scalar("SELECT quote_nullable($1::text)", [None if p is None else str(p)])
                  for p in self.params]
        return f"({', '.join(quoted)})" if quoted else ""

    def explain(self, reprepare: bool = False, analyze: bool = False):
        """The plan (generic with NULL arguments, or custom with the given values)."""
        if reprepare:
            self.prover.explain(reprepare=True)
        mode = "force_generic_plan" if self.params is None else "force_custom_plan"
        opts = "ANALYZE, VERBOSE, FORMAT JSON" if analyze else "VERBOSE, FORMAT JSON"
        with self.db.subtransaction():
            self.db.execute("SELECT set_config('plan_cache_mode', $1, true)", [mode])
            row = self.prover._planner(f"EXPLAIN ({opts}) EXECUTE {prove.STMT}{self._args()}")[0]
        value = next(iter(row.values()))
        return json.loads(value) if isinstance(value, str) else value

    def facts(self, reprepare: bool = False) -> PlanFacts:
        return plan_facts(self.explain(reprepare=reprepare))

    def close(self) -> None:
        self.prover.close()


# --------------------------------------------------------------------------- measuring
def _qi(db: Db, *names: str) -> list[str]:
    return [db.scalar("SELECT quote_ident($1)", [n]) for n in names]


def _table_sql(db: Db, schema: str, table: str) -> str:
    s, t = _qi(db, schema, table)
    return f"{s}.{t}"


def _reltuples(db: Db, schema: str, table: str) -> float:
    v = db.scalar("SELECT c.reltuples::float8 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                  " WHERE n.nspname = $1 AND c.relname = $2", [schema, table])
    return float(v or 0)


def _sample_clause(reltuples: float) -> str:
    if reltuples <= SAMPLE_ROWS:
        return ""
    pct = min(100.0, max(0.01, 100.0 * SAMPLE_ROWS / reltuples))
    return f" TABLESAMPLE SYSTEM ({pct:.4f}) REPEATABLE (42)"


def _duj1(n: int, d: int, f1: int, total: float) -> float:
    """Haas and Stokes' Duj1 estimate of the distinct values of ``total`` rows from a sample of
    ``n`` rows with ``d`` distinct values, ``f1`` of them seen once (what ANALYZE uses)."""
    if n <= 0:
        return 0.0
    if total <= n or f1 == 0:
        return float(d)
    denom = n - f1 + f1 * n / total
    return min(total, n * d / denom) if denom > 0 else float(total)


@dataclass
class GroupStats:
    """Distinct values of each column and of the group, from one sample of the table."""

    rows: float  # reltuples (or the sample's size for small tables)
    sample_rows: int
    ndistinct: dict[str, float]
    ndistinct_group: float

    @property
    def independent_rows(self) -> float:
        """Rows per combination of values the planner assumes (columns independent)."""
        return max(1.0, self.rows / math.prod(max(v, 1.0) for v in self.ndistinct.values()))

    @property
    def combined_rows(self) -> float:
        """Rows per combination of values the combined statistics show."""
        return max(1.0, self.rows / max(self.ndistinct_group, 1.0))

    @property
    def factor(self) -> float:
        return self.combined_rows / self.independent_rows


def measure_group(db: Db, schema: str, table: str, columns: list[str]) -> GroupStats:
    """Distinct counts of ``columns`` one by one and together, on a sample of about
    SAMPLE_ROWS rows (a plain SELECT: ACCESS SHARE lock, bounded reads)."""
    qcols = _qi(db, *columns)
    reltuples = _reltuples(db, schema, table)
    sample = _sample_clause(reltuples)
    per = ", ".join(
        f"(SELECT array[count(*), count(*) FILTER (WHERE c = 1)]"
        f" FROM (SELECT count(*) AS c FROM s GROUP BY {q}) x) AS c{i}"
        for i, q in enumerate(qcols))
    sql = (f"WITH s AS MATERIALIZED (SELECT {', '.join(qcols)} FROM {_table_sql(db, schema, table)}{sample})"
           f" SELECT (SELECT count(*) FROM s) AS n, {per},"
           f" (SELECT array[count(*), count(*) FILTER (WHERE c = 1)] FROM"
           f"   (SELECT count(*) AS c FROM s GROUP BY {', '.join(qcols)}) x) AS g")
    row = db.row(sql)
    n = int(row["n"])
    total = max(reltuples, float(n)) if sample else float(n)
    nd = {}
    for i, col in enumerate(columns):
        d, f1 = row[f"c{i}"]
        nd[col] = _duj1(n, int(d), int(f1), total)
    d, f1 = row["g"]
    return GroupStats(rows=total, sample_rows=n, ndistinct=nd, ndistinct_group=_duj1(n, int(d), int(f1), total))


def covering_statistics(db: Db, schema: str, table: str, columns: list[str]) -> str | None:
    """Name of an existing statistics object on the table covering all ``columns`` (with
    dependencies, ndistinct or mcv), or None."""
    rows = db.query(
        "SELECT s.stxname::text AS name, s.stxkind::text[] AS kinds,"
        " array(SELECT a.attname::text FROM unnest(s.stxkeys::int2[]) k JOIN pg_attribute a"
        "       ON a.attrelid = s.stxrelid AND a.attnum = k) AS cols"
        " FROM pg_statistic_ext s JOIN pg_class c ON c.oid = s.stxrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2",
        [schema, table])
    for r in rows:
        if set(columns) <= set(r["cols"] or []) and set(r["kinds"] or []) & {"f", "d", "m"}:
            return r["name"]
    return None


def _column_order(db: Db, schema: str, table: str, columns: list[str]) -> list[str]:
    """``columns`` that exist in the table (no system columns), ordered by attnum."""
    rows = db.query(
        "SELECT a.attname::text AS name FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2"
        " AND a.attnum > 0 AND NOT a.attisdropped AND a.attname = ANY (ARRAY(SELECT jsonb_array_elements_text($3)))"
        " ORDER BY a.attnum",
        [schema, table, list(columns)])
    return [r["name"] for r in rows]


# --------------------------------------------------------------------------- candidates
def statistics_name(table: str, columns: list[str]) -> str:
    """``<table>_<col>_<col>_stx``, at most 63 bytes (shortened with a hash when longer)."""
    name = f"{table}_{'_'.join(columns)}_stx"
    if len(name.encode()) <= 63:
        return name
    digest = hashlib.md5(name.encode()).hexdigest()[:8]
    raw = name.encode()[: 63 - 9].decode("utf-8", "ignore")
    return f"{raw}_{digest}"


@dataclass
class Misestimate:
    """A row estimate that is off: where, by how much, and how we know."""

    level: str  # 'statement', 'scan' or 'group'
    estimated: float
    expected: float
    source: str  # 'pg_stat_statements', 'sample', 'explain_analyze'
    table: str | None = None
    columns: list[str] = field(default_factory=list)

    @property
    def factor(self) -> float:
        return _ratio(self.estimated, self.expected)

    def as_dict(self) -> dict:
        return {"level": self.level, "table": self.table, "columns": self.columns,
                "estimated_rows": round(self.estimated, 1), "expected_rows": round(self.expected, 1),
                "factor": round(self.factor, 1), "source": self.source}


@dataclass
class Candidate:
    """A statistics candidate: ``kind`` is 'extended_statistics' or 'statistics_target'."""

    kind: str
    schema: str
    table: str
    columns: list[str]
    qualified_table: str
    quoted_columns: list[str]
    name: str | None = None  # the statistics object (extended_statistics)
    quoted_name: str | None = None
    target: int | None = None  # statistics_target
    probe_value: str | None = field(default=None, repr=False)
    current_target: int | None = None
    evidence: list[Misestimate] = field(default_factory=list)
    group: GroupStats | None = None
    status: str = "unproven"  # 'proven', 'unproven', 'rejected'
    note: str = "unproven: validate on staging"
    confidence: float = 0.0
    factors: dict = field(default_factory=dict)
    error_before: float | None = None
    error_after: float | None = None
    cost_before: float | None = None
    cost_after: float | None = None
    old_shape_cost_after: float | None = None
    gain_pct: float | None = None
    plan_changes: dict = field(default_factory=dict)
    rationale: str = ""

    def ddl(self) -> str:
        if self.kind == "extended_statistics":
            return ";\n".join(self.statements()) + ";"
        return (f"ALTER TABLE {self.qualified_table} ALTER COLUMN {self.quoted_columns[0]}"
                f" SET STATISTICS {self.target};\n"
                f"ANALYZE {self.qualified_table} ({self.quoted_columns[0]});")

    def statements(self) -> list[str]:
        """The DDL of an extended_statistics candidate, one statement per item."""
        out = [f"CREATE STATISTICS IF NOT EXISTS {self.quoted_name} ({', '.join(STAT_KINDS)})"
               f" ON {', '.join(self.quoted_columns)} FROM {self.qualified_table}"]
        if self.target:
            out.append(f"ALTER STATISTICS {self.quoted_name} SET STATISTICS {self.target}")
        out.append(f"ANALYZE {self.qualified_table} ({', '.join(self.quoted_columns)})")
        return out

    def rollback_ddl(self) -> str:
        if self.kind == "extended_statistics":
            return f"DROP STATISTICS IF EXISTS {self.quoted_name};"
        return (f"ALTER TABLE {self.qualified_table} ALTER COLUMN {self.quoted_columns[0]} SET STATISTICS -1;\n"
                f"ANALYZE {self.qualified_table} ({self.quoted_columns[0]});")

    def definition(self) -> str:
        """What identifies the candidate (for fingerprints)."""
        if self.kind == "extended_statistics":
            return f"statistics {self.schema}.{self.table} ({', '.join(self.columns)})"
        return f"statistics_target {self.schema}.{self.table}.{self.columns[0]}"

    def as_dict(self) -> dict:
        return {"kind": self.kind, "table_name": f"{self.schema}.{self.table}", "columns": self.columns,
                "ddl": self.ddl(), "rollback_ddl": self.rollback_ddl(), "status": self.status, "note": self.note,
                "confidence": round(self.confidence, 3), "confidence_factors": self.factors,
                "error_before": self.error_before, "error_after": self.error_after,
                "cost_before": self.cost_before, "cost_after": self.cost_after,
                "old_shape_cost_after": self.old_shape_cost_after, "est_gain_pct": self.gain_pct,
                "plan_changes": self.plan_changes, "evidence": [m.as_dict() for m in self.evidence],
                "rationale": self.rationale}


def confidence(proven: bool, error_before: float, error_after: float | None, gain: float | None,
               statement_confirms: bool | None) -> tuple[float, dict]:
    """Confidence in [0, 1] that the candidate is worth having.

    proven:    c = 0.5 + 0.25 * e + 0.25 * sqrt(g)
    unproven:  c = UNPROVEN_CAP * min(1, log10(error_before) / 2) * s      (never above 0.5)

    e  = min(1, log10(error_before / error_after) / 2): orders of magnitude the estimate error
         shrank in the proof (two or more: full weight)
    g  = estimated cost reduction, 0..1: the plan before re-costed with the corrected
         statistics vs the new plan
    s  = 1 when pg_stat_statements' rows per call confirm the statement is misestimated or
         are unknown, 0.8 when they do not confirm it
    """
    s = 1.0 if statement_confirms in (None, True) else 0.8
    if proven:
        e = min(1.0, max(0.0, math.log10(max(error_before, 1.0) / max(error_after or 1.0, 1.0)) / 2))
        g = min(1.0, max(0.0, gain or 0.0))
        value = 0.5 + 0.25 * e + 0.25 * math.sqrt(g)
        return min(1.0, value), {"proven": True, "error_shrink": round(e, 4), "gain": round(g, 4)}
    m = min(1.0, max(0.0, math.log10(max(error_before, 1.0)) / 2))
    return UNPROVEN_CAP * m * s, {"proven": False, "misestimate": round(m, 4), "statement": s, "cap": UNPROVEN_CAP}


# --------------------------------------------------------------------------- the advisor
@dataclass
class Advice:
    """What the advisor found for one statement."""

    query: str
    rows_per_call: float | None
    estimated_rows: float
    cost: float
    plan_nodes: list[str]
    misestimates: list[Misestimate] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)  # column groups not proposed, with why

    def as_dict(self) -> dict:
        return {"query": self.query, "rows_per_call": self.rows_per_call, "estimated_rows": self.estimated_rows,
                "cost": self.cost, "plan_nodes": self.plan_nodes,
                "misestimates": [m.as_dict() for m in self.misestimates],
                "candidates": [c.as_dict() for c in self.candidates], "skipped": self.skipped}


class _Rollback(Exception):
    pass


def _set_search_path(db: Db, path: list[str]) -> str:
    saved = db.scalar("SELECT current_setting('search_path')")
    db.execute("SELECT set_config('search_path', $1, true)",
               [", ".join(quote_ident(p, always=True) for p in path) or "pg_catalog"])
    return saved


def advise_statement(db: Db, text: str, *, rows_per_call: float | None = None, params: list | None = None,
                     search_path: list[str] | None = None, userid: int | None = None,
                     settings: Settings | None = None, plan_as: security.PlanAs | None = None) -> Advice:
    """Detect misestimates of one statement and propose (and, if allowed, prove) statistics.

    ``rows_per_call``: pg_stat_statements' rows / calls of the statement (None: unknown).
    ``params``: values for $1..$n (custom plan); None: the generic plan.  Nothing of the
    statement runs: it is PREPAREd and EXPLAINed only.
    """
    if text is None or not text.strip():
        raise UserError("statistics advisor: the statement is empty", sqlstate="22023")
    settings = settings or load_settings(db)
    path = search_path if search_path is not None else search_path_for(db, userid)
    # Planning runs code (the planner folds IMMUTABLE/STABLE functions): always as the role that
    # ran the statement (the caller when ``userid`` is None), never with the caller's rights.
    own_plan_as = plan_as is None
    if plan_as is None:
        plan_as = security.PlanAs(db)
    saved = _set_search_path(db, path)
    try:
        stmt = Statement(db, text, params, run_as=plan_as.wrapper_for(userid))
        try:
            return _advise(db, stmt, text, rows_per_call, settings)
        finally:
            stmt.close()
    finally:
        db.execute("SELECT set_config('search_path', $1, true)", [saved])
        if own_plan_as:
            plan_as.close()


def _advise(db: Db, stmt: Statement, text: str, rows_per_call, settings: Settings) -> Advice:
    before = stmt.facts()
    adv = Advice(query=text, rows_per_call=rows_per_call, estimated_rows=before.rows,
                 cost=before.plan.cost, plan_nodes=before.plan.nodes)
    statement_confirms = None
    if rows_per_call is not None:
        m = Misestimate("statement", before.rows, rows_per_call, "pg_stat_statements")
        statement_confirms = m.factor >= MISESTIMATE_FACTOR
        if statement_confirms:
            adv.misestimates.append(m)

    seen: set[tuple] = set()
    targets_seen: set[tuple] = set()
    # Column groups: scans' single-table clauses, then GROUP BY keys.
    groups = [("scan", s.schema, s.table, s.alias, s.rows, s.columns, s.equality) for s in before.scans]
    groups += [("group", g.schema, g.table, g.alias, g.rows, g.columns, []) for g in before.groups]
    for level, schema, table, _alias, node_rows, cols, eq in groups:
        for col in eq:  # skewed columns: compared with = and maybe outside the MCV list
            if (schema, table, col) not in targets_seen:
                targets_seen.add((schema, table, col))
                cand = _target_candidate(db, schema, table, col)
                if cand is not None:
                    adv.candidates.append(cand)
        cols = _column_order(db, schema, table, cols)
        if len(cols) < 2:
            continue
        if len(cols) > 3:  # the equality columns first (what dependencies use), at most three
            ordered = [c for c in cols if c in eq] + [c for c in cols if c not in eq]
            cols = _column_order(db, schema, table, ordered[:3])
        key = (schema, table, tuple(cols))
        if key in seen:
            continue
        seen.add(key)
        existing = covering_statistics(db, schema, table, cols)
        if existing:
            adv.skipped.append({"table": f"{schema}.{table}", "columns": cols,
                                "reason": f"statistics object {existing} already covers these columns"})
            continue
        gs = measure_group(db, schema, table, cols)
        if level == "scan":
            expected = node_rows * gs.factor
        else:  # GROUP BY: the planner multiplies the columns' distinct counts
            independent = min(gs.rows, math.prod(max(v, 1.0) for v in gs.ndistinct.values()))
            expected = node_rows / max(1.0, independent / max(gs.ndistinct_group, 1.0))
        mis = Misestimate(level, node_rows, expected, "sample", f"{schema}.{table}", cols)
        if gs.factor < MISESTIMATE_FACTOR or mis.factor < MISESTIMATE_FACTOR:
            adv.skipped.append({"table": f"{schema}.{table}", "columns": cols,
                                "reason": f"the columns look independent on a sample of {gs.sample_rows} rows "
                                          f"(combined statistics change the estimate {gs.factor:.1f}×)"})
            continue
        adv.misestimates.append(mis)
        qt = _table_sql(db, schema, table)
        name = statistics_name(table, cols)
        cand = Candidate("extended_statistics", schema, table, cols, qt, _qi(db, *cols),
                         name=name, quoted_name=f"{_qi(db, schema)[0]}.{_qi(db, name)[0]}",
                         evidence=[mis] + [m for m in adv.misestimates if m.level == "statement"], group=gs)
        default_target = int(db.scalar("SELECT current_setting('default_statistics_target')::int"))
        if default_target < gs.ndistinct_group <= MAX_TARGET:
            # The MCV list can hold every combination only with a larger target (custom plans
            # with values outside the list keep the independence estimate).
            cand.target = min(MAX_TARGET, math.ceil(gs.ndistinct_group * 1.25 / 100.0) * 100)
        adv.candidates.append(cand)

    for cand in adv.candidates:
        if cand.kind == "extended_statistics":
            _prove_extended(db, stmt, before, cand, settings, statement_confirms, rows_per_call)
        else:
            _prove_target(db, stmt, before, cand, settings, statement_confirms)
        cand.rationale = _rationale(cand, adv)
    return adv


def _node_rows(facts: PlanFacts, mis: Misestimate) -> float | None:
    if mis.level == "scan":
        for s in facts.scans:
            if f"{s.schema}.{s.table}" == mis.table and set(mis.columns) <= set(s.columns):
                return s.rows
    else:
        for g in facts.groups:
            if f"{g.schema}.{g.table}" == mis.table and set(mis.columns) <= set(g.columns):
                return g.rows
    return None


def _node_types(plan: prove.Plan) -> list[str]:
    out = []

    def walk(node):
        t = node.get("Node Type", "")
        if t == "Aggregate" and node.get("Strategy") == "Hashed":
            t = "HashAggregate"
        out.append(t)
        for c in node.get("Plans", []) or []:
            walk(c)

    walk(plan.raw)
    return out


def _in_rolled_back_subtransaction(db: Db, ddl: list[str], body):
    """Run ``ddl`` then ``body()`` in a subtransaction that is always rolled back; returns
    body's result.  lock_timeout bounds the wait for the SHARE UPDATE EXCLUSIVE lock."""
    box = {}
    try:
        with db.subtransaction():
            db.execute("SELECT set_config('lock_timeout', $1, true)", [f"{LOCK_TIMEOUT_MS}ms"])
            for sql in ddl:
                db.execute_single(sql)
            box["result"] = body()
            raise _Rollback
    except _Rollback:
        pass
    return box["result"]


def _proof_error(cand: Candidate, exc: DbError) -> None:
    if exc.sqlstate == QUERY_CANCELED:
        raise exc
    if exc.sqlstate == LOCK_NOT_AVAILABLE:
        cand.note = (f"unproven: the table's SHARE UPDATE EXCLUSIVE lock was not available within "
                     f"{LOCK_TIMEOUT_MS} ms (VACUUM or DDL running?); validate on staging")
    else:
        cand.note = f"unproven: the proof failed ({str(exc).splitlines()[0]}); validate on staging"


def _prove_extended(db: Db, stmt: Statement, before: PlanFacts, cand: Candidate, settings: Settings,
                    statement_confirms, rows_per_call) -> None:
    node = cand.evidence[0]
    cand.error_before = round(node.factor, 2)
    cand.cost_before = before.plan.cost
    if not settings.prove_statistics_in_transaction:
        cand.confidence, cand.factors = confidence(False, node.factor, None, None, statement_confirms)
        return

    def body():
        after = stmt.facts(reprepare=True)
        old_cost = None
        old_types, new_types = _node_types(before.plan), _node_types(after.plan)
        introduced = sorted({t for t in new_types if t not in old_types and t in _NODE_GUC})
        if introduced:
            with db.subtransaction():
                for t in introduced:
                    db.execute("SELECT set_config($1, 'off', true)", [_NODE_GUC[t]])
                forced = stmt.facts(reprepare=True)
            old_cost = forced.plan.cost
        return after, old_cost

    try:
        after, old_cost = _in_rolled_back_subtransaction(db, cand.statements(), body)
    except DbError as exc:
        _proof_error(cand, exc)
        cand.confidence, cand.factors = confidence(False, node.factor, None, None, statement_confirms)
        return
    finally:
        try:
            stmt.prover.explain(reprepare=True)  # nothing cached may refer to the rolled-back object
        except (DbError, SkipStatement):
            pass
    rows_after = _node_rows(after, node)
    cand.error_after = round(_ratio(rows_after, node.expected), 2) if rows_after is not None else None
    cand.cost_after = after.plan.cost
    cand.old_shape_cost_after = old_cost
    cand.plan_changes = prove.plan_changes(before.plan, after.plan)
    stmt_before = _ratio(before.rows, rows_per_call) if rows_per_call is not None else None
    stmt_after = _ratio(after.rows, rows_per_call) if rows_per_call is not None else None
    cand.factors = {"statement_error_before": stmt_before and round(stmt_before, 2),
                    "statement_error_after": stmt_after and round(stmt_after, 2)}
    shrinks = cand.error_after is not None and cand.error_after * MIN_ERROR_SHRINK <= cand.error_before
    if stmt_before is not None and stmt_after is not None:
        shrinks = shrinks and stmt_after < stmt_before
    shape_changed = bool(cand.plan_changes["removed"] or cand.plan_changes["added"])
    gain = None
    if shape_changed and old_cost:
        gain = max(0.0, (old_cost - after.plan.cost) / old_cost)
        cand.gain_pct = round(gain * 100, 2)
    if not shrinks:
        cand.status, cand.note = "rejected", "the proof did not shrink the estimate error"
    elif not shape_changed:
        cand.status, cand.note = "rejected", "estimates improve but the plan keeps its shape"
    elif gain is None or gain * 100 < settings.min_gain_pct:
        cand.status = "rejected"
        cand.note = (f"the plan changes but is not at least {settings.min_gain_pct:g} % cheaper than the old "
                     f"shape under the corrected estimates")
    else:
        cand.status, cand.note = "proven", "proven in a rolled-back transaction"
    conf, f = confidence(cand.status == "proven", cand.error_before, cand.error_after, gain, statement_confirms)
    cand.confidence = conf if cand.status == "proven" else 0.0
    cand.factors.update(f)


# --------------------------------------------------------------------------- statistics target
def _target_candidate(db: Db, schema: str, table: str, col: str) -> Candidate | None:
    """SET STATISTICS for a skewed column: its MCV list is full, its n_distinct is large
    (at least 10 × the target) and the sample shows values outside the MCV list at least
    MISESTIMATE_FACTOR times more frequent than the planner assumes for them."""
    st = db.one(
        "SELECT s.most_common_vals::text::text[] AS mcv, s.most_common_freqs::float8[] AS mcf,"
        " s.n_distinct::float8 AS nd, s.null_frac::float8 AS null_frac,"
        " CASE WHEN a.attstattarget >= 0 THEN a.attstattarget"
        "      ELSE current_setting('default_statistics_target')::int END AS target,"
        " c.reltuples::float8 AS reltuples"
        " FROM pg_stats s JOIN pg_namespace n ON n.nspname = s.schemaname"
        " JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = s.tablename"
        " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = s.attname"
        " WHERE s.schemaname = $1 AND s.tablename = $2 AND s.attname = $3 AND NOT s.inherited",
        [schema, table, col])
    if not st or not st["mcv"] or st["target"] <= 0:
        return None
    reltuples = max(float(st["reltuples"] or 0), 1.0)
    nd = st["nd"] if st["nd"] >= 0 else -st["nd"] * reltuples
    n_mcv, target = len(st["mcv"]), int(st["target"])
    if n_mcv < target or nd < 10 * target or target >= MAX_TARGET:
        return None
    other_freq = max(0.0, 1.0 - sum(st["mcf"]) - st["null_frac"]) / max(1.0, nd - n_mcv)
    qc = _qi(db, col)[0]
    qt = _table_sql(db, schema, table)
    sample = _sample_clause(reltuples)
    rows = db.query(
        f"WITH s AS MATERIALIZED (SELECT {qc}::text AS v FROM {qt}{sample})"
        f" SELECT v, count(*)::float8 / (SELECT count(*) FROM s) AS freq FROM s WHERE v IS NOT NULL"
        f" GROUP BY v ORDER BY count(*) DESC, v LIMIT {MAX_TARGET}")
    mcv = set(st["mcv"])
    missed = [(r["v"], r["freq"]) for r in rows
              if r["v"] not in mcv and r["freq"] >= MISESTIMATE_FACTOR * other_freq]
    if not missed:
        return None
    new_target = min(MAX_TARGET, max(2 * target, math.ceil((n_mcv + len(missed)) * 1.25 / 100.0) * 100))
    value, freq = missed[0]
    mis = Misestimate("scan", other_freq * reltuples, freq * reltuples, "sample", f"{schema}.{table}", [col])
    cand = Candidate("statistics_target", schema, table, [col], qt, [qc], target=new_target,
                     current_target=target, evidence=[mis])
    cand.factors = {"missed_values": len(missed)}
    cand.probe_value = value  # a value of the user's data: used for the proof, never reported
    return cand


def _probe_rows(db: Db, cand: Candidate, value: str) -> float:
    lit = db.scalar("SELECT quote_literal($1::text)", [value])
    with db.subtransaction():
        row = db.execute_single(f"EXPLAIN (FORMAT JSON) SELECT 1 FROM {cand.qualified_table}"
                                f" WHERE {cand.quoted_columns[0]} = {lit}")[0]
    return float(prove.parse_plan(next(iter(row.values()))).raw["Plan Rows"])


def _prove_target(db: Db, stmt: Statement, before: PlanFacts, cand: Candidate, settings: Settings,
                  statement_confirms) -> None:
    """The estimate of the most frequent value the MCV list misses, before and after; with
    parameter values, the statement's custom plan too (its shape change is reported)."""
    mis = cand.evidence[0]
    probe = cand.probe_value
    assert probe is not None  # _target_candidate sets it on every statistics_target candidate
    est_before = _probe_rows(db, cand, probe)
    cand.error_before = round(_ratio(est_before, mis.expected), 2)
    cand.cost_before = before.plan.cost
    if not settings.prove_statistics_in_transaction:
        cand.confidence, f = confidence(False, cand.error_before, None, None, statement_confirms)
        cand.factors.update(f)
        return
    alter = (f"ALTER TABLE {cand.qualified_table} ALTER COLUMN {cand.quoted_columns[0]}"
             f" SET STATISTICS {cand.target}")
    analyze = f"ANALYZE {cand.qualified_table} ({cand.quoted_columns[0]})"

    def body():
        rows = _probe_rows(db, cand, probe)
        after = stmt.facts(reprepare=True) if stmt.params is not None else None
        return rows, after

    try:
        est_after, after = _in_rolled_back_subtransaction(db, [alter, analyze], body)
    except DbError as exc:
        _proof_error(cand, exc)
        cand.confidence, f = confidence(False, cand.error_before, None, None, statement_confirms)
        cand.factors.update(f)
        return
    finally:
        try:
            stmt.prover.explain(reprepare=True)
        except (DbError, SkipStatement):
            pass
    cand.error_after = round(_ratio(est_after, mis.expected), 2)
    if after is not None:
        cand.cost_after = after.plan.cost
        cand.plan_changes = prove.plan_changes(before.plan, after.plan)
    if cand.error_after * MIN_ERROR_SHRINK <= cand.error_before:
        cand.status, cand.note = "proven", "proven in a rolled-back transaction (estimate of the skewed values)"
        cand.confidence, f = confidence(True, cand.error_before, cand.error_after, None, statement_confirms)
    else:
        cand.status, cand.note = "rejected", "a higher statistics target does not shrink the estimate error"
        cand.confidence, f = 0.0, {"proven": False}
    cand.factors.update(f)


# --------------------------------------------------------------------------- text
def _rationale(cand: Candidate, adv: Advice) -> str:
    parts = []
    stmt = [m for m in cand.evidence if m.level == "statement"]
    if stmt:
        parts.append(f"pg_stat_statements: the statement returns {stmt[0].expected:,.0f} rows per call, "
                     f"the plan expects {stmt[0].estimated:,.0f} ({stmt[0].factor:,.0f}× off).")
    if cand.kind == "extended_statistics":
        g, node = cand.group, cand.evidence[0]
        assert g is not None  # every extended_statistics candidate carries its sample's group
        nds = ", ".join(f"{c} {g.ndistinct[c]:,.0f}" for c in cand.columns)
        what = "filter on" if node.level == "scan" else "GROUP BY of"
        parts.append(f"The {what} {', '.join(cand.columns)} of {cand.schema}.{cand.table} is estimated at "
                     f"{node.estimated:,.0f} rows assuming independent columns (distinct values: {nds}); a sample "
                     f"of {g.sample_rows:,} rows shows {g.ndistinct_group:,.0f} distinct combinations, i.e. "
                     f"about {node.expected:,.0f} rows ({node.factor:,.0f}× more).")
    else:
        node = cand.evidence[0]
        parts.append(f"Column {cand.columns[0]} of {cand.schema}.{cand.table} is skewed: its MCV list is full "
                     f"(statistics target {cand.current_target}) and {cand.factors.get('missed_values')} frequent "
                     f"values are missing from it; one is estimated at {node.estimated:,.0f} rows but has about "
                     f"{node.expected:,.0f}.")
    if cand.status == "proven":
        extra = ""
        if cand.plan_changes.get("removed") or cand.plan_changes.get("added"):
            extra = (f" The plan changes: {', '.join(cand.plan_changes['removed'][:3]) or '-'} → "
                     f"{', '.join(cand.plan_changes['added'][:3]) or '-'}")
            if cand.gain_pct is not None:
                extra += (f"; under the corrected estimates the old plan costs {cand.old_shape_cost_after:,.1f}, "
                          f"the new one {cand.cost_after:,.1f} ({cand.gain_pct:.1f} % cheaper)")
            extra += "."
        parts.append(f"Proven in a rolled-back transaction: the estimate error shrinks from {cand.error_before:,.1f}× "
                     f"to {cand.error_after:,.1f}×.{extra}")
    else:
        parts.append(cand.note[0].upper() + cand.note[1:] + ".")
    return " ".join(parts)


# --------------------------------------------------------------------------- the workload
def _stat_statements_schema(db: Db) -> str:
    schema = extension_schema(db, "pg_stat_statements")
    if schema is None:
        raise UserError("pg_stat_statements is not installed in this database",
                        hint="CREATE EXTENSION pg_stat_statements; (and preload it).")
    return _qi(db, schema)[0]


_OWN = re.compile(r"\barch\s*\.", re.I)


def advise_workload(db: Db, *, min_calls: int = 1, limit: int = 20, settings: Settings | None = None) -> list[dict]:
    """The statistics advisor over this database's pg_stat_statements: the costliest SELECTs
    (at least ``min_calls`` calls), each compared with its rows per call.  Returns one dict per
    statement: the advice, or the reason it was skipped.  Plans only; nothing is stored."""
    settings = settings or load_settings(db)
    pss = _stat_statements_schema(db)
    rows = db.query(
        f"SELECT s.userid::bigint AS userid, s.queryid, s.query, s.calls, s.rows,"
        f" s.total_exec_time::float8 AS total_ms FROM {pss}.pg_stat_statements s"
        f" WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
        f" AND s.calls >= $1 AND s.toplevel AND s.query ~* '^\\s*(WITH|SELECT)\\M'"
        f" ORDER BY s.total_exec_time DESC LIMIT $2", [int(min_calls), int(limit)])
    out: list[dict] = []
    plan_as = security.PlanAs(db)
    try:
        return _advise_rows(db, rows, settings, plan_as, out)
    finally:
        plan_as.close()


def _advise_rows(db: Db, rows: list[dict], settings: Settings, plan_as: security.PlanAs, out: list) -> list[dict]:
    for r in rows:
        if _OWN.search(r["query"] or ""):
            continue
        item = {"queryid": r["queryid"], "query": r["query"], "calls": r["calls"]}
        try:
            with db.subtransaction():
                adv = advise_statement(db, r["query"], rows_per_call=r["rows"] / max(r["calls"], 1),
                                       userid=r["userid"], settings=settings, plan_as=plan_as)
            item.update(adv.as_dict())
        except SkipStatement as s:
            cause = s.__cause__
            if isinstance(cause, DbError) and cause.sqlstate == QUERY_CANCELED:
                raise cause from None
            item["skipped"] = f"{s.code}: {s.reason}"
        except DbError as exc:
            if exc.sqlstate == QUERY_CANCELED:
                raise
            item["skipped"] = f"error: {str(exc).splitlines()[0]}"
        out.append(item)
    return out


def advise_statistics_json(db: Db, min_calls, max_statements) -> str:
    """arch.advise_statistics(): :func:`advise_workload` as a JSON array (entry.py calls it)."""
    return json.dumps(advise_workload(db, min_calls=min_calls, limit=max_statements), default=str)


# --------------------------------------------------------------------------- staging only
def measure_on_staging(db: Db, text: str, params: list | None = None,
                       search_path: list[str] | None = None) -> list[dict]:
    """STAGING / TESTS ONLY — this EXECUTES the statement: ``EXPLAIN (ANALYZE)`` with the given
    literal values, read-only (``transaction_read_only``) in a subtransaction that is rolled
    back, and returns the estimated and actual rows of every node.  The audit never calls it on
    production; the sidecar's staging validation and the tests do."""
    path = search_path if search_path is not None else search_path_for(db, None)
    saved = _set_search_path(db, path)
    try:
        stmt = Statement(db, text, params)
        try:
            writes = [n for n in _node_types(stmt.facts().plan) if n in ("ModifyTable", "LockRows")]
            if writes:
                raise UserError("measure_on_staging runs read-only statements only",
                                detail=f"The plan has a {writes[0]} node: the statement writes or locks rows.",
                                sqlstate="25006")
            box = {}
            try:
                with db.subtransaction():
                    # Effective inside the server (plpy); over psycopg every query is its own
                    # savepoint, which restores the read-only flag: the plan check above is the guard.
                    db.execute("SELECT set_config('transaction_read_only', 'on', true)")
                    box["doc"] = stmt.explain(analyze=True)
                    raise _Rollback
            except _Rollback:
                pass
        finally:
            stmt.close()
    finally:
        db.execute("SELECT set_config('search_path', $1, true)", [saved])
    out = []

    def walk(node, depth):
        loops = float(node.get("Actual Loops", 1) or 1)
        label = node.get("Node Type", "?")
        if node.get("Relation Name"):
            label += f" on {node.get('Schema', '')}.{node['Relation Name']}"
        actual = float(node.get("Actual Rows", 0)) * loops
        est = float(node.get("Plan Rows", 0)) * loops
        out.append({"depth": depth, "node": label, "estimated_rows": est, "actual_rows": actual,
                    "factor": round(_ratio(est, actual), 2)})
        for c in node.get("Plans", []) or []:
            walk(c, depth + 1)

    walk(box["doc"][0]["Plan"], 0)
    return out
