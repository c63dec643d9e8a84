"""Real parameter values (issue 10): query samples with their literals, and pg_stats values.

pg_stat_statements shows a statement normalised (``WHERE status = $1 AND payload->>$2 = $3``):
its constants are gone, and a generic plan with NULL arguments is all the prover can cost.
This module brings the values back:

* :func:`sample_queries` reads ``pg_stat_activity`` now (statements of this database that are
  running, idle in a transaction, or finished within ``query_sample_idle_window``; PG 14+
  shows their ``query_id``; client backends only) and stores the *texts with their literals* in the bounded table
  ``arch.query_sample``.  Only one plannable statement per text (SELECT, INSERT, UPDATE,
  DELETE, MERGE) is stored, read with PostgreSQL's own parser: a utility statement
  (``ALTER ROLE ... PASSWORD '...'``), a text holding several statements, a truncated or
  unreadable text, and calls of ``arch`` itself are never stored.  A text is stored with the
  role that ran it and shown only through ``arch.visible_text(userid, text)``.
* :func:`align` puts a sample next to its normalised text, parse tree against parse tree: the
  constant at the place of each ``$n`` is that parameter's value.
  :func:`parameter_values` (distinct value tuples, most frequent first),
  :func:`constant_parameters` (a parameter that had one value in every one of at least N
  samples: ``status = 'pending'`` becomes a partial-index predicate) and
  :func:`recovered_expressions` (``payload->>$2`` that is always ``'order_id'`` becomes the
  expression ``(payload ->> 'order_id')`` an expression index can have) build on it.
* :func:`pg_stats_values`: most-common values and histogram bounds of a column from
  ``pg_stats`` (which shows only columns the caller may read), for custom plans when no
  sample exists; :func:`parameter_columns` says which column each ``$n`` is compared with.
* :func:`custom_plan` costs a statement with a custom plan for given values (PREPARE with
  types, ``plan_cache_mode = force_custom_plan``, ``EXPLAIN EXECUTE`` with the values quoted
  by the server), planned as the statement's role; :func:`generic_plan` the same statement's
  generic plan, for comparison.
"""

from __future__ import annotations

import copy
import json
import re
from collections import Counter
from dataclasses import dataclass, field

from pglast import ast as _ast
from pglast import parse_sql as _parse_sql
from pglast.enums import A_Expr_Kind as _A_Expr_Kind
from pglast.stream import RawStream as _RawStream

# Everything this module takes from the rest of the package, in one place (the integrator
# re-points these when the package is reshaped).
from . import pgparse
from .analyze import SkipStatement, prepare_text
from .catalog import search_path_for
from .db import QUERY_CANCELED, Db, DbError
from .prove import STMT as PROVER_STMT
from .prove import Plan, Prover, parse_plan
from .security import PlanAs, references_temp_schema
from .settings import load_into as load_settings
from .sqltext import quote_ident

__all__ = [
    "Alignment",
    "SampleSettings",
    "align",
    "constant_parameters",
    "custom_plan",
    "generic_plan",
    "normalised_text",
    "parameter_columns",
    "parameter_values",
    "pg_stats_values",
    "range_parameters",
    "recovered_expressions",
    "sample_queries",
    "samples_of",
]

PLANNABLE_KINDS = {"select", "insert", "update", "delete", "merge"}
# A sample naming the arch schema is pg_architect's own work (or a DBA reading its views).
_OWN = re.compile(r'(?<![\w$"])(?:"arch"|arch)\s*\.', re.I)
# Operators whose right side is a key (a JSON key, an hstore key, a path): with a constant key
# the whole expression is what an expression index indexes.
KEY_OPERATORS = {"->>", "->", "#>>", "#>", "?"}
# Comparisons whose constant side makes a partial-index predicate.
PREDICATE_OPERATORS = {"=", "<>", "!=", "<", "<=", ">", ">="}


@dataclass
class SampleSettings:
    query_sample_max_rows: int
    query_sample_per_query: int
    query_sample_idle_window: str
    constant_parameter_min_samples: int


# ---------------------------------------------------------------------------------------
# sampling pg_stat_activity
# ---------------------------------------------------------------------------------------

def storable(text: str) -> str | None:
    """None if ``text`` may be stored as a sample, else why not (``utility``, ``several``,
    ``unreadable``, ``own``, ``not_plannable``)."""
    try:
        reading = pgparse.read(text)
    except pgparse.PgParseError:
        return "unreadable"  # truncated (track_activity_query_size) or not SQL: may hold anything
    if reading.statements != 1:
        return "several" if reading.statements > 1 else "unreadable"
    if reading.kind in ("utility", "ddl") or reading.select_into:
        return "utility"
    if reading.kind not in PLANNABLE_KINDS:
        return "not_plannable"
    if _OWN.search(text) or any(s == "arch" for s, _ in pgparse.relations(reading)):
        return "own"
    return None


def sample_queries(db: Db) -> dict:
    """Store the plannable statements pg_stat_activity shows now; prune to the caps.

    Runs with the caller's rights: without pg_read_all_stats, other roles' texts read
    ``<insufficient privilege>`` in pg_stat_activity and are not seen."""
    st = load_settings(db, SampleSettings)
    limit = int(db.scalar("SELECT setting::int FROM pg_catalog.pg_settings"
                          " WHERE name = 'track_activity_query_size'") or 1024)
    rows = db.query(
        "SELECT a.pid, a.usesysid::bigint AS userid, a.datid::bigint AS dbid, a.query_id::bigint AS queryid,"
        " a.application_name::text AS application_name, a.query_start::text AS query_start, a.query::text AS query"
        " FROM pg_catalog.pg_stat_activity a"
        " WHERE a.datid = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database())"
        " AND a.pid <> pg_catalog.pg_backend_pid() AND a.query_id IS NOT NULL AND a.query_id <> 0"
        " AND a.usesysid IS NOT NULL AND a.backend_type = 'client backend'"  # not pg_cron's launcher
        " AND (a.state IN ('active', 'idle in transaction', 'idle in transaction (aborted)')"
        "      OR (a.state = 'idle' AND a.state_change >= pg_catalog.clock_timestamp() - $1::text::interval))",
        [st.query_sample_idle_window])
    seen = len(rows)
    skipped: Counter = Counter()
    stored = 0
    for r in rows:
        text = r["query"] or ""
        if text == "<insufficient privilege>":
            skipped["hidden"] += 1
            continue
        if len(text.encode("utf-8")) >= limit - 1:
            skipped["truncated"] += 1  # cut at track_activity_query_size: never stored
            continue
        why = storable(text)
        if why is not None:
            skipped[why] += 1
            continue
        n = db.query(
            "INSERT INTO arch.query_sample (dbid, userid, queryid, application_name, pid, query_start, query)"
            " VALUES ($1::bigint::oid, $2::bigint::oid, $3, $4, $5::int, $6::text::timestamptz, $7)"
            " ON CONFLICT ON CONSTRAINT query_sample_execution DO NOTHING RETURNING id",
            [r["dbid"], r["userid"], r["queryid"], r["application_name"], r["pid"], r["query_start"], text])
        if n:
            stored += 1
        else:
            skipped["already_sampled"] += 1
    dropped = prune(db, st)
    # Sessions of other roles whose statements the caller may not read (no pg_read_all_stats):
    # pg_stat_activity hides their text, state and query_id.
    hidden = int(db.scalar(
        "SELECT count(*) FROM pg_catalog.pg_stat_activity a WHERE a.query = '<insufficient privilege>'"
        " AND a.datid = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database())"))
    return {"seen": seen, "stored": stored, "skipped": dict(sorted(skipped.items())), "dropped": dropped,
            "hidden": hidden}


def prune(db: Db, st: SampleSettings) -> int:
    """Keep at most query_sample_per_query samples per statement and query_sample_max_rows in
    all, the newest; returns how many were dropped."""
    per = db.query(
        "DELETE FROM arch.query_sample q USING (SELECT s.id, pg_catalog.row_number() OVER"
        " (PARTITION BY s.dbid, s.userid, s.queryid ORDER BY s.sampled_at DESC, s.id DESC) AS rn"
        " FROM arch.query_sample s) x WHERE q.id = x.id AND x.rn > $1::int RETURNING q.id",
        [st.query_sample_per_query])
    total = db.query(
        "DELETE FROM arch.query_sample q WHERE q.id IN (SELECT s.id FROM arch.query_sample s"
        " ORDER BY s.sampled_at DESC, s.id DESC OFFSET $1::int) RETURNING q.id",
        [st.query_sample_max_rows])
    return len(per) + len(total)


# ---------------------------------------------------------------------------------------
# aligning a sample with its normalised text
# ---------------------------------------------------------------------------------------

class _Mismatch(Exception):
    pass


@dataclass
class Slot:
    """What a sample had at the place of one ``$n``."""

    value: str | None  # the constant as text; None for NULL or for a parameter in the sample
    known: bool  # False: the sample itself had a parameter there (server-side binding)
    node: object = field(repr=False, default=None)  # the sample's node at that place
    cast: str | None = None  # the type of an explicit cast around it (interval '1 day')


@dataclass
class Alignment:
    """One sample aligned with the normalised text: ``slots[n]`` per parameter number."""

    slots: dict[int, Slot]
    sample_tree: object = field(repr=False, default=None)
    norm_tree: object = field(repr=False, default=None)


def _tree(text: str):
    stmts = _parse_sql(text)
    if len(stmts) != 1:
        raise _Mismatch("not one statement")
    return stmts[0].stmt


def _const_value(node) -> tuple[str | None, bool]:
    if isinstance(node, _ast.A_Const):
        if node.isnull or node.val is None:
            return None, True
        v = node.val
        if isinstance(v, _ast.Integer):
            return str(v.ival), True
        if isinstance(v, _ast.Float):
            return str(v.fval), True
        if isinstance(v, _ast.Boolean):
            return ("true" if v.boolval else "false"), True
        if isinstance(v, _ast.String):
            return v.sval, True
        if isinstance(v, _ast.BitString):
            return v.bsval, True
    return None, False


def _slots(node) -> list[str]:
    return [k for k in type(node).__slots__ if k != "location" and not k.endswith(("_start", "_end"))]


def _number(p: _ast.ParamRef) -> int:
    """``n`` of a parsed ``$n`` (pglast types every node field Optional; the parser always sets this one)."""
    assert p.number is not None
    return p.number


def _walk_pair(norm, samp, out: dict[int, Slot], cast: str | None = None) -> None:
    if isinstance(norm, _ast.ParamRef):
        value, known = _const_value(samp)
        if not known and not isinstance(samp, (_ast.ParamRef, _ast.A_Const)):
            raise _Mismatch(f"${norm.number} is a {type(samp).__name__} in the sample")
        out.setdefault(_number(norm), Slot(value=value, known=known, node=samp, cast=cast))
        return
    if isinstance(norm, (list, tuple)):
        if not isinstance(samp, (list, tuple)) or len(norm) != len(samp):
            raise _Mismatch("lists of different lengths")
        for a, b in zip(norm, samp):
            _walk_pair(a, b, out)
        return
    if isinstance(norm, _ast.Node):
        if type(norm) is not type(samp):
            raise _Mismatch(f"{type(norm).__name__} against {type(samp).__name__}")
        inner_cast = None
        if isinstance(norm, _ast.TypeCast) and norm.typeName is not None:
            inner_cast = _render(norm.typeName)
        for k in _slots(norm):
            _walk_pair(getattr(norm, k), getattr(samp, k), out, inner_cast if k == "arg" else None)
        return
    if (norm is None) != (samp is None):
        raise _Mismatch("a part is missing")


def align(normalised: str, sample: str) -> Alignment | None:
    """Align ``sample`` (literals) with ``normalised`` (``$n``); None when they do not have the
    same shape (another statement with a colliding queryid, a truncated text ...)."""
    try:
        norm_tree = _tree(prepare_text(normalised))
        samp_tree = _tree(sample)
        slots: dict[int, Slot] = {}
        _walk_pair(norm_tree, samp_tree, slots)
    except (_Mismatch, Exception) as exc:
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        return None
    return Alignment(slots=slots, sample_tree=samp_tree, norm_tree=norm_tree)


def _render(node) -> str:
    return _RawStream()(node)


def _unqualified(node):
    """A copy of ``node`` whose column references lost their table qualifier (index expressions
    and predicates name the table's columns only)."""
    node = copy.deepcopy(node)

    def fix(n):
        if isinstance(n, (list, tuple)):
            for x in n:
                fix(x)
        elif isinstance(n, _ast.ColumnRef):
            if n.fields and len(n.fields) > 1:
                n.fields = n.fields[-1:]
        elif isinstance(n, _ast.Node):
            for k in _slots(n):
                fix(getattr(n, k))
    fix(node)
    return node


# ---------------------------------------------------------------------------------------
# reading the samples of one statement
# ---------------------------------------------------------------------------------------

def _pgss(db: Db) -> str | None:
    """The schema of pg_stat_statements, quoted, or None when it is not installed here."""
    schema = db.scalar("SELECT n.nspname::text FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n"
                       " ON n.oid = e.extnamespace WHERE e.extname = 'pg_stat_statements'")
    return None if schema is None else quote_ident(schema, always=True)


def normalised_text(db: Db, queryid: int, userid: int | None) -> str | None:
    """The statement's normalised text: pg_stat_statements now (what the caller may see), else
    what an audit stored in arch.statement."""
    args = [int(queryid), None if userid is None else int(userid)]
    pgss = _pgss(db)
    text = None if pgss is None else db.scalar(
        f"SELECT s.query FROM {pgss}.pg_stat_statements s WHERE s.queryid = $1"
        " AND s.dbid = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database())"
        " AND ($2::text IS NULL OR s.userid = $2::text::oid)"
        " AND s.query IS NOT NULL AND s.query <> '<insufficient privilege>' ORDER BY s.calls DESC LIMIT 1", args)
    if text is None:
        text = db.scalar(
            "SELECT s.query FROM arch.statement s WHERE s.queryid = $1"
            " AND ($2::text IS NULL OR s.userid = $2::text::oid)"
            " AND s.dbid = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database())"
            " LIMIT 1", args)
    return text


def samples_of(db: Db, queryid: int, userid: int | None) -> list[str]:
    """Sample texts of a statement (newest first) that the current role may read."""
    rows = db.query(
        "SELECT q.query FROM arch.query_sample q WHERE q.queryid = $1"
        " AND ($2::text IS NULL OR q.userid = $2::text::oid) AND arch.statement_visible(q.userid)"
        " AND q.dbid = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database())"
        " ORDER BY q.sampled_at DESC, q.id DESC",
        [int(queryid), None if userid is None else int(userid)])
    return [r["query"] for r in rows]


def alignments(db: Db, queryid: int, userid: int | None, normalised: str | None = None) -> list[Alignment]:
    text = normalised if normalised is not None else normalised_text(db, queryid, userid)
    if text is None:
        return []
    out = []
    for s in samples_of(db, queryid, userid):
        a = align(text, s)
        if a is not None:
            out.append(a)
    return out


def _param_numbers(al: list[Alignment]) -> list[int]:
    return sorted({n for a in al for n in a.slots})


def parameter_values(db: Db, queryid: int, userid: int | None, *,
                     normalised: str | None = None) -> list[list[str | None]]:
    """Distinct value tuples ($1, $2, ...) of the statement's samples, most frequent first
    (ties: the newest first).  None: a NULL, or a parameter the sample had bound server-side."""
    return [list(t) for t, _ in value_counts(db, queryid, userid, normalised=normalised)]


def value_counts(db: Db, queryid: int, userid: int | None, *,
                 normalised: str | None = None) -> list[tuple[tuple, int]]:
    return count_value_sets(alignments(db, queryid, userid, normalised))


def count_value_sets(al: list[Alignment]) -> list[tuple[tuple, int]]:
    """The distinct value tuples ($1, $2, ...) of aligned samples with their counts, most frequent
    first (ties: the first seen first)."""
    nums = list(range(1, max(_param_numbers(al), default=0) + 1))
    counts: Counter = Counter()
    order: dict[tuple, int] = {}
    for i, a in enumerate(al):
        t = tuple(a.slots[n].value if n in a.slots else None for n in nums)
        counts[t] += 1
        order.setdefault(t, i)
    return sorted(counts.items(), key=lambda kv: (-kv[1], order[kv[0]]))


def _constant_slots(al: list[Alignment], min_samples: int) -> dict[int, list[Slot]]:
    """$n -> its slots, for parameters that had one known value in every sample (at least
    ``min_samples``)."""
    out: dict[int, list[Slot]] = {}
    if len(al) < max(1, min_samples):
        return out
    for n in _param_numbers(al):
        slots = [s for s in (a.slots.get(n) for a in al) if s is not None and s.known and s.value is not None]
        if len(slots) != len(al):
            continue
        if len({s.value for s in slots}) == 1:
            out[n] = slots
    return out


def _literal(slot: Slot) -> str:
    return _render(slot.node)


def _relations(tree) -> dict[str, tuple[str | None, str]]:
    """alias or table name -> (schema, table) of every table the statement reads."""
    found: dict[str, tuple[str | None, str]] = {}

    def walk(n):
        if isinstance(n, (list, tuple)):
            for x in n:
                walk(x)
        elif isinstance(n, _ast.RangeVar):
            relname = n.relname
            key = n.alias.aliasname if n.alias is not None else relname
            assert key is not None and relname is not None  # pglast's Optional fields, set by the parser
            found[key] = (n.schemaname, relname)
        elif isinstance(n, _ast.Node):
            for k in _slots(n):
                walk(getattr(n, k))
    walk(tree)
    return found


def _column_of(node, rels: dict) -> tuple[tuple[str | None, str] | None, str] | None:
    """(table, column) of a plain column reference, the table None when it cannot be told."""
    if not isinstance(node, _ast.ColumnRef) or not node.fields:
        return None
    names = [f.sval for f in node.fields if isinstance(f, _ast.String) and f.sval is not None]
    if len(names) != len(node.fields):
        return None  # t.*
    col = names[-1]
    if len(names) >= 2:
        return rels.get(names[-2]), col
    tables = set(rels.values())
    return (next(iter(tables)) if len(tables) == 1 else None), col


def _parents(tree) -> dict[int, object]:
    """id(node) -> its parent node, for the nodes of ``tree``."""
    out: dict[int, object] = {}

    def walk(n, parent):
        if isinstance(n, (list, tuple)):
            for x in n:
                walk(x, parent)
        elif isinstance(n, _ast.Node):
            if parent is not None:
                out[id(n)] = parent
            for k in _slots(n):
                walk(getattr(n, k), n)
    walk(tree, None)
    return out


def _op(node) -> str | None:
    if isinstance(node, _ast.A_Expr) and node.name:
        last = node.name[-1]
        return getattr(last, "sval", None)
    return None


def _up(node, parents):
    """The node above ``node``, through casts."""
    p = parents.get(id(node))
    while isinstance(p, _ast.TypeCast):
        node, p = p, parents.get(id(p))
    return node, p


def constant_parameters(db: Db, queryid: int, userid: int | None, *, min_samples: int | None = None,
                        normalised: str | None = None) -> list[dict]:
    """Parameters that had the same value in every sample (at least ``min_samples``, default
    the setting constant_parameter_min_samples).  Where the parameter is compared with a
    column, ``predicate`` is the comparison with the value (``status = 'pending'``): a partial
    index's WHERE clause; else None (``LIMIT $3`` always 50)."""
    if min_samples is None:
        min_samples = load_settings(db, SampleSettings).constant_parameter_min_samples
    return constants_from(alignments(db, queryid, userid, normalised), min_samples)


def constants_from(al: list[Alignment], min_samples: int) -> list[dict]:
    """:func:`constant_parameters` of aligned samples."""
    const = _constant_slots(al, min_samples)
    out = []
    for n, slots in sorted(const.items()):
        first = al[0]
        slot = first.slots[n]
        parents = _parents(first.sample_tree)
        rels = _relations(first.sample_tree)
        me, parent = _up(slot.node, parents)
        predicate, table, column = None, None, None
        if isinstance(parent, _ast.A_Expr) and _op(parent) in PREDICATE_OPERATORS \
                and parent.kind == _A_Expr_Kind.AEXPR_OP:
            other = parent.lexpr if parent.rexpr is me else parent.rexpr
            col = _column_of(other, rels)
            if col is not None:
                table, column = col
                predicate = _render(_unqualified(parent))
        out.append({"param": n, "value": slot.value, "literal": _literal(slot), "samples": len(slots),
                    "column": column, "table": None if table is None else _qualified(table),
                    "predicate": predicate})
    return out


def _qualified(table: tuple[str | None, str]) -> str:
    schema, name = table
    return f"{schema}.{name}" if schema else name


def recovered_expressions(db: Db, queryid: int, userid: int | None, *, min_samples: int | None = None,
                          normalised: str | None = None) -> list[dict]:
    """Expressions normalisation hid: a key operator (``->>``, ``->``, ``#>>``, ``#>``) or a
    function applied to a column with a parameter that was always the same constant
    (``payload->>$2`` always ``'order_id'``, ``date_trunc($1, created_at)`` always ``'day'``)
    becomes the expression with that constant, e.g. ``(payload ->> 'order_id')``, which an
    expression index can have."""
    if min_samples is None:
        min_samples = load_settings(db, SampleSettings).constant_parameter_min_samples
    return expressions_from(alignments(db, queryid, userid, normalised), min_samples)


def expressions_from(al: list[Alignment], min_samples: int) -> list[dict]:
    """:func:`recovered_expressions` of aligned samples."""
    const = _constant_slots(al, min_samples)
    if not const:
        return []
    first = al[0]
    parents = _parents(first.sample_tree)
    rels = _relations(first.sample_tree)
    out: list[dict] = []
    seen: set[str] = set()
    for n in sorted(const):
        me, parent = _up(first.slots[n].node, parents)
        expr = None
        if (isinstance(parent, _ast.A_Expr) and _op(parent) in KEY_OPERATORS and parent.rexpr is me) \
                or isinstance(parent, _ast.FuncCall):
            expr = parent
        if expr is None:
            continue
        cols = _columns_in(expr)
        if not cols:
            continue
        # every other parameter inside the expression must be constant too
        inner = _params_in(first, expr)
        if any(m not in const for m in inner):
            continue
        col = _column_of(cols[0], rels)
        text = "(" + _render(_unqualified(expr)) + ")"
        if text in seen:
            continue
        seen.add(text)
        out.append({"params": sorted(inner), "expression": text,
                    "table": None if col is None or col[0] is None else _qualified(col[0]),
                    "column": None if col is None else col[1],
                    "samples": len(al)})
    return out


def _columns_in(node) -> list:
    found = []

    def walk(n):
        if isinstance(n, (list, tuple)):
            for x in n:
                walk(x)
        elif isinstance(n, _ast.ColumnRef):
            found.append(n)
        elif isinstance(n, (_ast.SubLink, _ast.SelectStmt)):
            return
        elif isinstance(n, _ast.Node):
            for k in _slots(n):
                walk(getattr(n, k))
    walk(node)
    return found


def _params_in(al: Alignment, expr) -> set[int]:
    ids = set()

    def walk(n):
        if isinstance(n, (list, tuple)):
            for x in n:
                walk(x)
        elif isinstance(n, _ast.Node):
            ids.add(id(n))
            for k in _slots(n):
                walk(getattr(n, k))
    walk(expr)
    return {num for num, s in al.slots.items() if id(s.node) in ids}


def _parsed_for_parameters(text: str) -> tuple[object, dict[int, object], dict[str, tuple[str | None, str]]] | None:
    """The parse tree of a normalised text with its parent links and relations, or None when
    PostgreSQL's parser refuses it (then no parameter is matched with a column)."""
    try:
        tree = _tree(prepare_text(text))
    except Exception:
        return None
    return tree, _parents(tree), _relations(tree)


def parameter_columns(text: str) -> dict[int, dict]:
    """$n -> {"table": (schema, table) or None, "column": name, "operator": op} for each
    parameter compared with a plain column in ``text`` (normalised): where pg_stats values
    stand in for missing samples."""
    parsed = _parsed_for_parameters(text)
    if parsed is None:
        return {}
    tree, parents, rels = parsed
    out: dict[int, dict] = {}

    def walk(n):
        if isinstance(n, (list, tuple)):
            for x in n:
                walk(x)
        elif isinstance(n, _ast.ParamRef):
            me, parent = _up(n, parents)
            if isinstance(parent, _ast.A_Expr) and parent.kind == _A_Expr_Kind.AEXPR_OP \
                    and _op(parent) in PREDICATE_OPERATORS:
                other = parent.lexpr if parent.rexpr is me else parent.rexpr
                col = _column_of(other, rels)
                if col is not None and _number(n) not in out:
                    out[_number(n)] = {"table": col[0], "column": col[1], "operator": _op(parent)}
        elif isinstance(n, _ast.Node):
            for k in _slots(n):
                walk(getattr(n, k))
    walk(tree)
    # IN lists: the list is the parent of its elements; their A_Expr is one level up
    for parent in list(parents.values()):
        if isinstance(parent, _ast.A_Expr) and parent.kind == _A_Expr_Kind.AEXPR_IN \
                and isinstance(parent.rexpr, (list, tuple)):
            col = _column_of(parent.lexpr, rels)
            for item in parent.rexpr:
                if isinstance(item, _ast.ParamRef) and col is not None and _number(item) not in out:
                    out[_number(item)] = {"table": col[0], "column": col[1], "operator": "IN"}
    return out


_LOW = {">": "low", ">=": "low", "<": "high", "<=": "high"}
_FLIP = {"low": "high", "high": "low"}


def range_parameters(text: str) -> dict[int, dict]:
    """$n -> {"table": (schema, table) or None, "column": name, "side": "low" | "high"} for each
    parameter compared by range with a plain column in ``text`` (normalised), also through casts
    (``col >= CAST($1 AS date)``): ``col > $n`` / ``col >= $n`` / ``$n < col`` and BETWEEN's first
    bound are a low bound, ``col < $n`` / ``col <= $n`` / ``$n > col`` and BETWEEN's second a high one."""
    parsed = _parsed_for_parameters(text)
    if parsed is None:
        return {}
    _, parents, rels = parsed
    out: dict[int, dict] = {}

    def param(node):
        while isinstance(node, _ast.TypeCast):
            node = node.arg
        return node if isinstance(node, _ast.ParamRef) else None

    for node in list(parents.values()):
        if not isinstance(node, _ast.A_Expr):
            continue
        if node.kind == _A_Expr_Kind.AEXPR_OP and _op(node) in _LOW:
            side = _LOW[str(_op(node))]
            for p, other, s in ((param(node.rexpr), node.lexpr, side), (param(node.lexpr), node.rexpr, _FLIP[side])):
                col = _column_of(other, rels) if p is not None else None
                if p is not None and col is not None and _number(p) not in out:
                    out[_number(p)] = {"table": col[0], "column": col[1], "side": s}
        elif node.kind == _A_Expr_Kind.AEXPR_BETWEEN and isinstance(node.rexpr, (list, tuple)) \
                and len(node.rexpr) == 2:
            col = _column_of(node.lexpr, rels)
            for item, s in zip(node.rexpr, ("low", "high")):
                p = param(item)
                if p is not None and col is not None and _number(p) not in out:
                    out[_number(p)] = {"table": col[0], "column": col[1], "side": s}
    return out


# ---------------------------------------------------------------------------------------
# pg_stats
# ---------------------------------------------------------------------------------------

def pg_stats_values(db: Db, schema: str, table: str, column: str, n: int = 10) -> dict | None:
    """Most-common values (with their frequencies) and ``n`` evenly spaced histogram bounds of
    a column, from pg_stats as the current role sees it: pg_stats shows only columns the role
    may SELECT, so an unreadable (or never analysed) column gives None."""
    row = db.one(
        "SELECT s.null_frac::float8 AS null_frac, s.n_distinct::float8 AS n_distinct,"
        " s.most_common_vals::text::text[] AS mcv, s.most_common_freqs::float8[] AS mcf,"
        " s.histogram_bounds::text::text[] AS hist"
        " FROM pg_catalog.pg_stats s WHERE s.schemaname = $1 AND s.tablename = $2 AND s.attname = $3"
        " ORDER BY s.inherited LIMIT 1", [schema, table, column])
    if row is None:
        return None
    n = max(int(n), 1)
    mcv = list(row["mcv"] or [])[:n]
    mcf = [float(f) for f in (row["mcf"] or [])][:n]
    hist = list(row["hist"] or [])
    if len(hist) > n:
        step = (len(hist) - 1) / (n - 1) if n > 1 else 0
        hist = [hist[round(i * step)] for i in range(n)]
    return {"most_common_vals": mcv, "most_common_freqs": mcf, "histogram_bounds": hist,
            "null_frac": row["null_frac"], "n_distinct": row["n_distinct"]}


# ---------------------------------------------------------------------------------------
# custom plans
# ---------------------------------------------------------------------------------------

class _Planner:
    """PREPAREs one statement as its role (security.PlanAs + Prover.run_as) and EXPLAINs it."""

    def __init__(self, db: Db, text: str, userid: int | None, plan_as: PlanAs,
                 search_path: list[str] | None = None):
        if references_temp_schema(text):
            raise SkipStatement("temp_object", "it uses an object of a temporary schema (pg_temp)")
        self.db = db
        self.text = prepare_text(text)
        reading = pgparse.read(self.text)
        if reading.kind not in PLANNABLE_KINDS or reading.statements != 1 or reading.select_into:
            raise SkipStatement("utility", "only one query (SELECT, INSERT, UPDATE, DELETE, MERGE) is planned")
        self.reading = reading
        self.userid = userid
        self.plan_as = plan_as
        self.path = search_path if search_path is not None else search_path_for(db, userid)
        self.prover: Prover | None = None

    def __enter__(self):
        saved = self.db.one("SELECT pg_catalog.current_setting('search_path') AS path,"
                            " pg_catalog.current_setting('plan_cache_mode') AS mode")
        assert saved is not None  # a SELECT without FROM returns its one row
        self.saved = saved
        self.db.execute("SELECT pg_catalog.set_config('search_path', $1, true)",
                        [", ".join(quote_ident(p, always=True) for p in self.path) or "pg_catalog"])
        try:
            self.prover = Prover(self.db)
            self.prover.run_as = self.plan_as.wrapper_for(self.userid)
            self._mode("force_generic_plan")
            self.generic = self.prover.load(self.text, len(self.reading.params), self.reading.free_params)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _mode(self, mode: str) -> None:
        self.db.execute("SELECT pg_catalog.set_config('plan_cache_mode', $1, true)", [mode])

    def explain(self, values: list | None) -> Plan:
        """The custom plan for ``values`` (one per parameter, None = NULL); the generic plan
        for None."""
        if values is None:
            return self.generic
        prover = self.prover
        assert prover is not None  # __enter__ made it
        n = len(prover.types) or int(self.db.scalar(
            "SELECT coalesce(pg_catalog.array_length(parameter_types, 1), 0)"
            " FROM pg_catalog.pg_prepared_statements WHERE name = $1", [PROVER_STMT]) or 0)
        vals = [None if v is None else str(v) for v in list(values)[:n]]
        vals += [None] * (n - len(vals))
        # The server quotes each value (quote_nullable): nothing of a value reaches SQL unquoted.
        args = self.db.scalar("SELECT pg_catalog.string_agg(pg_catalog.quote_nullable(v #>> '{}'), ', ' ORDER BY o)"
                              " FROM pg_catalog.jsonb_array_elements($1) WITH ORDINALITY AS u(v, o)",
                              [vals]) if n else ""
        sql = f"EXPLAIN (FORMAT JSON) EXECUTE {PROVER_STMT}" + (f"({args})" if n else "")
        self._mode("force_custom_plan")
        try:
            with self.db.subtransaction():
                rows = self.db.query(f"SELECT w FROM {prover.run_as}($1, true) w", [sql])
        except DbError as exc:
            if exc.sqlstate == QUERY_CANCELED:
                raise
            raise SkipStatement("plan_error", f"EXPLAIN EXECUTE with these values failed: "
                                f"{str(exc).splitlines()[0]}") from None
        finally:
            self._mode("force_generic_plan")
        row = json.loads(rows[0]["w"])
        return parse_plan(next(iter(row.values())))

    def __exit__(self, *exc):
        try:
            if self.prover is not None:
                self.prover.run_as = None
                self.prover.close()
        finally:
            self.db.execute("SELECT pg_catalog.set_config('search_path', $1, true),"
                            " pg_catalog.set_config('plan_cache_mode', $2, true)",
                            [self.saved["path"], self.saved["mode"]])
        return False


def custom_plan(db: Db, text: str, values: list, *, userid: int | None = None,
                plan_as: PlanAs | None = None, search_path: list[str] | None = None) -> Plan:
    """The custom plan of ``text`` (normalised, ``$n``) for ``values``, planned with the rights
    of role ``userid`` (the caller when None)."""
    return plans(db, text, [values], userid=userid, plan_as=plan_as, search_path=search_path)[1][0]


def generic_plan(db: Db, text: str, *, userid: int | None = None, plan_as: PlanAs | None = None,
                 search_path: list[str] | None = None) -> Plan:
    return plans(db, text, [], userid=userid, plan_as=plan_as, search_path=search_path)[0]


def plans(db: Db, text: str, value_sets: list[list], *, userid: int | None = None,
          plan_as: PlanAs | None = None, search_path: list[str] | None = None) -> tuple[Plan, list[Plan]]:
    """(generic plan, [custom plan per value set]) of one statement, prepared once."""
    own = plan_as is None
    pa = plan_as if plan_as is not None else PlanAs(db)
    try:
        with _Planner(db, text, userid, pa, search_path) as p:
            return p.generic, [p.explain(v) for v in value_sets]
    finally:
        if own:
            pa.close()


# ---------------------------------------------------------------------------------------
# what the SQL functions call (through entry.py: PL/Python bodies are import + one call)
# ---------------------------------------------------------------------------------------

def _userids(db: Db, queryid: int) -> list[int]:
    rows = db.query("SELECT DISTINCT q.userid::bigint AS userid FROM arch.query_sample q"
                    " WHERE q.queryid = $1 AND arch.statement_visible(q.userid)"
                    " AND q.dbid = (SELECT d.oid FROM pg_catalog.pg_database d"
                    "               WHERE d.datname = pg_catalog.current_database()) ORDER BY 1", [int(queryid)])
    return [int(r["userid"]) for r in rows]


def sampled_parameters(db: Db, queryid: int, min_samples: int | None) -> list[dict]:
    """Per role that ran the statement (and whose texts the caller may read): samples, aligned
    samples, value tuples with counts, constant parameters, recovered expressions."""
    out = []
    for uid in _userids(db, queryid):
        text = normalised_text(db, queryid, uid)
        n_samples = len(samples_of(db, queryid, uid))
        if text is None:
            out.append({"userid": uid, "normalised": None, "samples": n_samples, "aligned": 0,
                        "value_tuples": "[]", "constants": "[]", "expressions": "[]"})
            continue
        counts = value_counts(db, queryid, uid, normalised=text)
        out.append({
            "userid": uid, "normalised": text, "samples": n_samples,
            "aligned": sum(c for _, c in counts),
            "value_tuples": json.dumps([{"values": list(t), "count": c} for t, c in counts]),
            "constants": json.dumps(constant_parameters(db, queryid, uid, min_samples=min_samples,
                                                        normalised=text)),
            "expressions": json.dumps(recovered_expressions(db, queryid, uid, min_samples=min_samples,
                                                            normalised=text)),
        })
    return out


def compare_plans(db: Db, queryid: int, max_values: int) -> list[dict]:
    """Generic plan against the custom plans of the most frequent sampled value tuples (or,
    without samples, pg_stats' most common values of the compared columns), per role."""
    out: list[dict] = []
    plan_as = PlanAs(db)
    try:
        pgss = _pgss(db)
        uids = _userids(db, queryid) or [int(u) for u in [pgss and db.scalar(
            f"SELECT s.userid::bigint FROM {pgss}.pg_stat_statements s WHERE s.queryid = $1"
            " AND s.dbid = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database())"
            " AND arch.statement_visible(s.userid) ORDER BY s.calls DESC LIMIT 1", [int(queryid)])] if u is not None]
        for uid in uids:
            text = normalised_text(db, queryid, uid)
            if text is None:
                continue
            sets: list[tuple[list, str, int | None]] = [
                (list(t), "sample", c) for t, c in value_counts(db, queryid, uid, normalised=text)[:max_values]]
            if not sets:
                sets = [(v, "pg_stats", None) for v in _pg_stats_sets(db, text, uid, max_values)]
            try:
                with db.subtransaction():
                    generic, customs = plans(db, text, [s[0] for s in sets], userid=uid, plan_as=plan_as)
            except SkipStatement as s:
                out.append({"userid": uid, "source": None, "param_values": None, "samples": None,
                            "generic_cost": None, "custom_cost": None, "generic_plan": None,
                            "custom_plan": None, "skipped": f"{s.code}: {s.reason}"})
                continue
            for (vals, source, count), plan in zip(sets, customs):
                out.append({"userid": uid, "source": source, "param_values": vals, "samples": count,
                            "generic_cost": generic.cost, "custom_cost": plan.cost,
                            "generic_plan": generic.nodes, "custom_plan": plan.nodes, "skipped": None})
    finally:
        plan_as.close()
    return out


def _pg_stats_sets(db: Db, text: str, userid: int | None, n: int) -> list[list]:
    """Value tuples from pg_stats: the i-th most common value of each compared column."""
    cols = parameter_columns(text)
    if not cols:
        return []
    path = search_path_for(db, userid)
    nmax = max(cols)
    per: dict[int, list] = {}
    for num, c in cols.items():
        schema, table = c["table"] if c["table"] else (None, None)
        if table is None:
            continue
        schemas = [schema] if schema else path
        for sch in schemas:
            st = pg_stats_values(db, sch, table, c["column"], n)
            if st is not None:
                per[num] = st["most_common_vals"] or st["histogram_bounds"]
                break
    if not per:
        return []
    depth = max(len(v) for v in per.values())
    return [[(per[k][i] if k in per and i < len(per[k]) else None) for k in range(1, nmax + 1)]
            for i in range(min(depth, n))]

