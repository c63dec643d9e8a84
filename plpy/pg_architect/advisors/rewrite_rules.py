"""Query rewrite rules: a statement in, rewritten statements (or reasons why not) out.

Statements are read with pglast (libpg_query, PostgreSQL's own parser) in their
pg_stat_statements form (``$n`` parameters); a rule transforms the parse tree and the rewritten
SQL is pglast's deparse of it, never string surgery.  Every rule has a name, a one-line
description and a precondition, checked against the catalog (:mod:`.rewrite_catalog`), that
guarantees the rewritten statement returns the same rows (the same multiset; the same order
where the original has an ORDER BY) for every parameter value.  A rule that finds its pattern
but cannot prove the precondition returns a :class:`Refusal` with the reason.  Whether a
rewrite pays off is :mod:`.rewrite_proof`'s job (the planner, ``min_gain_pct``).

Predicate rules work on the top-level ``AND`` conjuncts of a ``WHERE`` clause only (of any
SELECT, UPDATE or DELETE in the statement, subqueries included): there a NULL result and a
false one both drop the row, which several equivalences below need.  Columns are resolved
against the FROM list of the same query level; a column of the nullable side of an outer join
is never taken as NOT NULL.

Using it::

    from pg_architect.advisors.rewrite_catalog import DbCatalog
    from pg_architect.advisors.rewrite_rules import rewrite
    from pg_architect.advisors.rewrite_proof import propose, prove_rewrite

    rewrite(sql, DbCatalog(db))         # [Rewrite(rule, sql, explanation, changes_code, parameters) | Refusal]
    kept, dropped, refused = propose(db, sql, min_gain_pct=10)   # every rewrite proven by the planner

Each rule works on the original statement (rules are not chained); a Rewrite with
``changes_code`` needs the application to change (keyset pagination, an array parameter).

Rules and their preconditions
-----------------------------
``sargable_date_trunc``
    ``date_trunc('u', col) = X`` (X a parameter or constant) becomes
    ``col >= X AND col < X + interval '1 u' AND date_trunc('u', X) = X``.  ``date_trunc`` is
    monotonic, so the rows with ``date_trunc('u', col) = X`` are exactly the range
    ``[X, next boundary)`` *when X is itself a boundary*, and none otherwise: the last conjunct
    keeps that (it involves no column, the planner evaluates it once as a one-time filter), so
    ``ts >= date_trunc('day', $1) ...`` — which would return a day for a non-boundary $1 — is
    not what we emit.  ``timestamp``: units second..year; the next boundary is
    ``X + interval '1 u'``.  ``timestamptz``: truncation happens in the session TimeZone, so
    only units of a day or more (within a day a DST fall-back repeats an hour and the rows of
    one ``hour`` are two ranges), and the next boundary is ``date_trunc('u', X + interval '1 u')``
    (a DST change at midnight moves the day's first instant).  Other types, ``date_trunc`` with
    a time zone argument: not rewritten.
``sargable_cast``
    ``col::text = X``.  Integer columns (int2/int4/int8): integer output is canonical (``-``
    only for negatives, no ``+``, no leading zeros), so ``col::text = X`` holds exactly when X is
    such a string and ``col = X::bigint``; the rewrite is
    ``col = CASE WHEN X ~ '<canonical integer>' THEN X::bigint END`` (a non-canonical string,
    e.g. ``'007'`` or ``'abc'``, matches nothing, as before, and never raises a cast error; for
    int8 the 19-digit strings are bounded by a C-collated comparison with the int8 limits).
    ``uuid``: output is lowercase hyphenated, so the guard is that pattern.  Other types
    (numeric keeps its scale in text, dates and times depend on DateStyle/TimeZone, floats on
    extra_float_digits, text-like casts are already indexable): not rewritten.
``sargable_coalesce``
    ``coalesce(col, d) = X`` (d a parameter or a constant of the column's kind): when col is
    NOT NULL, coalesce is col itself and the rewrite is ``col = X``; when it is NULLable,
    ``(col = X OR (col IS NULL AND d = X))`` (btree indexes answer ``IS NULL``, so a BitmapOr
    is possible).
``sargable_arithmetic``
    ``col + c = X``, ``c + col = X``, ``col - c = X``, ``c - col = X`` (c an integer or numeric
    literal) become ``col = X - c`` etc.  Safe types: int2/int4/int8 and numeric (exact
    arithmetic).  Integers: the moved arithmetic is guarded so that it can never overflow —
    ``col = CASE WHEN X >= min + c THEN X - c END``: when the guard fails the true value lies
    outside the type's range and no row can match, as in the original (which could only have
    raised "integer out of range" for a row, never returned one).  floats (rounding), dates and
    timestamps (calendar arithmetic): not rewritten.
``not_in_to_not_exists``
    ``x NOT IN (SELECT y FROM t ...)`` becomes ``NOT EXISTS (SELECT 1 FROM t ... AND y = x)``
    only when x is a NOT NULL column (not on the nullable side of an outer join) and y is a NOT
    NULL column of the subquery's table (or the subquery says ``y IS NOT NULL``): a single NULL
    y makes NOT IN return no row at all, a NULL x makes it NULL, while NOT EXISTS ignores both.
    The subquery must be a plain one-column SELECT (no GROUP BY, DISTINCT, LIMIT, set
    operation).  x is qualified with its table so the subquery cannot capture it.
``or_to_union_all``
    ``SELECT ... FROM t WHERE (A OR B) AND C`` (A and B on different columns, one table) becomes
    ``SELECT ... WHERE A AND C UNION ALL SELECT ... WHERE B AND (A) IS NOT TRUE AND C``.  The
    branches are disjoint (``IS NOT TRUE`` also keeps the rows where A is NULL), so every row of
    t appears at most once, as in the original: no key is needed for UNION ALL (a UNION would
    need one).  ``ORDER BY k LIMIT n`` is kept on the union and also put in every branch (each
    branch can then read an index in k order and stop after n rows) only when k includes a NOT
    NULL unique key: the order is total, so the first n of the union of the branches' first n
    are the original's n rows.  Refused with DISTINCT, GROUP BY, HAVING, aggregates, window
    functions, OFFSET, WITH TIES, a LIMIT without such an ORDER BY, FOR UPDATE, volatile functions
    or subqueries in the predicate (evaluated twice), or an ORDER BY on anything but output
    columns.
``offset_to_keyset`` (changes the caller's code)
    ``... ORDER BY k LIMIT n OFFSET m`` becomes ``... WHERE (k) > ($last) ORDER BY k LIMIT n``:
    the caller passes the last row's key of the previous page instead of an offset.  Needs one
    table, ORDER BY columns all in the select list, all NOT NULL, one direction, default NULLS
    order, and containing a unique key (a total order, so pages neither repeat nor skip rows).
``count_to_exists``
    ``SELECT count(*) > 0 FROM ...`` becomes ``SELECT EXISTS (SELECT 1 FROM ...)``, and
    ``(SELECT count(*) FROM ...) > 0`` (also ``>= 1``, ``<> 0``; ``= 0`` gives NOT EXISTS)
    becomes ``EXISTS (SELECT 1 FROM ...)``: count(*) without GROUP BY returns exactly one row,
    never NULL.  Refused with GROUP BY, HAVING, DISTINCT, LIMIT/OFFSET or window clauses.
``scalar_subquery_to_lateral``
    ``SELECT ..., (SELECT e FROM t WHERE t.k = outer.c ...)`` becomes
    ``... LEFT JOIN LATERAL (SELECT e AS v FROM t WHERE ...) AS _sq1 ON TRUE`` with ``_sq1.v``
    in the select list, only when the subquery returns at most one row per outer row: its
    equalities with outer values cover a unique key of t, or it is an aggregate without GROUP
    BY, or it has ``LIMIT 1``.  (A scalar subquery returning two rows raises an error; the join
    would duplicate the row instead.)  No row gives NULL in both forms.  Refused when the outer
    query groups or aggregates, or the subquery is not correlated (then it runs once already).
``distinct_join_to_exists``
    ``SELECT DISTINCT a.* / a.cols FROM a JOIN b ON ... WHERE ...`` becomes
    ``SELECT a.cols FROM a WHERE <a-only conditions> AND EXISTS (SELECT 1 FROM b WHERE <the
    others>)`` when the select list uses only a's columns and contains a NOT NULL unique key of
    a: DISTINCT then only removes the duplicates the join made.  Inner joins of two tables
    only; a's columns moved into the subquery are qualified.
``in_list_to_any`` (changes the parameters)
    ``col IN ($1, ..., $n)`` with n >= ``min_in_list`` becomes ``col = ANY($k::type[])``
    (``NOT IN`` becomes ``<> ALL``): the same ScalarArrayOp the parser builds for the list, but
    one statement in pg_stat_statements whatever the list length (PG 15 records each length).
    The caller passes one array; the other parameters are renumbered.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

# isort: off
# pgparse loads pglast's parser first, with RTLD_DEEPBIND: imported plainly inside a PostgreSQL
# backend, libpg_query binds to the server's own symbols and crashes it.
from .. import pgparse  # noqa: F401  (import order matters)
from pglast import ast, enums, parse_sql
from pglast.parser import ParseError
from pglast.stream import RawStream
# isort: on

from .rewrite_catalog import Catalog, Column, Table


# ----------------------------------------------------------------------------- results
@dataclass(frozen=True)
class Rewrite:
    rule: str
    sql: str
    explanation: str
    changes_code: bool = False          # the caller's code or parameters change
    parameters: str | None = None       # how the parameters change (None: they do not)


@dataclass(frozen=True)
class Refusal:
    rule: str
    reason: str                         # "not rewritten: ..."


Outcome = Rewrite | Refusal


class NotParsable(Exception):
    """The text is not one statement pglast can parse."""


# ----------------------------------------------------------------------------- AST helpers
def deparse(node) -> str:
    return RawStream()(node)


def _parse_one(sql: str):
    try:
        stmts = parse_sql(sql)
    except ParseError as exc:
        raise NotParsable(str(exc)) from None
    if len(stmts) != 1:
        raise NotParsable(f"the text holds {len(stmts)} statements")
    return stmts[0].stmt


def _slots(node):
    return node.__slots__ if isinstance(node.__slots__, dict) else dict.fromkeys(node.__slots__)


def _seq(items: tuple | None) -> tuple[Any, ...]:
    """A node list the grammar always fills (pglast types every list field Optional: None when empty)."""
    assert items is not None
    return items


def _sval(node: ast.String) -> str:
    """The text of a parsed String node (pglast types it Optional; the parser always sets it)."""
    assert node.sval is not None
    return node.sval


def walk(node) -> Iterator[ast.Node]:
    """Every node under ``node`` (pre-order, itself included)."""
    if isinstance(node, ast.Node):
        yield node
        for name in _slots(node):
            yield from walk(getattr(node, name, None))
    elif isinstance(node, (list, tuple)):
        for item in node:
            yield from walk(item)


def transform(node, fn: Callable, stop: Callable | None = None):
    """Replace nodes bottom-up: ``fn(node)`` returns a replacement or None (keep).  Nodes for
    which ``stop(node)`` is true are neither entered nor replaced."""
    if isinstance(node, (list, tuple)):
        return tuple(transform(n, fn, stop) for n in node)
    if not isinstance(node, ast.Node) or (stop is not None and stop(node)):
        return node
    for name in _slots(node):
        value = getattr(node, name, None)
        if isinstance(value, (ast.Node, list, tuple)):
            setattr(node, name, transform(value, fn, stop))
    new = fn(node)
    return node if new is None else new


def _col(*names: str) -> ast.ColumnRef:
    return ast.ColumnRef(fields=tuple(ast.String(sval=n) for n in names))


def template(sql_expr: str, **nodes) -> ast.Node:
    """The expression ``sql_expr`` parsed, with the column references named ``__<key>``
    replaced by (copies of) the given nodes: ``template("__a >= __b", a=col, b=param)``."""
    tree = _parse_one(f"SELECT {sql_expr}").targetList[0].val

    def sub(n):
        if isinstance(n, ast.ColumnRef) and len(_seq(n.fields)) == 1 and isinstance(_seq(n.fields)[0], ast.String):
            name = _sval(_seq(n.fields)[0])
            if name.startswith("__") and name[2:] in nodes:
                return copy.deepcopy(nodes[name[2:]])
        return None
    return transform(tree, sub)


def type_name(col: Column, array: bool = False) -> ast.TypeName:
    """The column's type (without typmod: a cast to char(2) would truncate) as a TypeName."""
    return ast.TypeName(names=(ast.String(sval=col.type_schema), ast.String(sval=col.typname)),
                        typemod=-1, arrayBounds=((ast.Integer(ival=-1),) if array else None))


def cast(node, tn: ast.TypeName) -> ast.TypeCast:
    return ast.TypeCast(arg=copy.deepcopy(node), typeName=copy.deepcopy(tn))


TEXT = ast.TypeName(names=(ast.String(sval="pg_catalog"), ast.String(sval="text")), typemod=-1)


def _op(node) -> str | None:
    if isinstance(node, ast.A_Expr) and node.kind == enums.A_Expr_Kind.AEXPR_OP and node.name:
        return node.name[-1].sval
    return None


def _funcname(node) -> tuple[str | None, str]:
    names = [n.sval for n in node.funcname]
    return (names[0] if len(names) > 1 else None), names[-1]


def is_pseudo_constant(node) -> bool:
    """A parameter or constant (possibly cast): constant for the whole execution."""
    if isinstance(node, ast.TypeCast):
        return is_pseudo_constant(node.arg)
    return isinstance(node, (ast.ParamRef, ast.A_Const))


def conjuncts(where) -> list:
    if where is None:
        return []
    if isinstance(where, ast.BoolExpr) and where.boolop == enums.BoolExprType.AND_EXPR:
        out = []
        for a in _seq(where.args):
            out.extend(conjuncts(a))
        return out
    return [where]


def and_(parts: list):
    parts = [p for p in parts if p is not None]
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    return ast.BoolExpr(boolop=enums.BoolExprType.AND_EXPR, args=tuple(parts))


def _number(p: ast.ParamRef) -> int:
    """``n`` of a parsed ``$n`` (pglast types it Optional; the parser always sets it)."""
    assert p.number is not None
    return p.number


def params_in(node) -> set[int]:
    return {_number(n) for n in walk(node) if isinstance(n, ast.ParamRef)}


def renumber_params(stmt) -> dict[int, int]:
    """Number the parameters 1..k in order of their old numbers (no gaps); returns old -> new."""
    old = sorted(params_in(stmt))
    mapping = {o: i + 1 for i, o in enumerate(old)}
    for n in walk(stmt):
        if isinstance(n, ast.ParamRef):
            n.number = mapping[_number(n)]
    return mapping


def _holders(stmt) -> Iterator[Any]:
    """Every query level with a WHERE clause: SELECT (not set operations), UPDATE, DELETE (used
    by the attributes they share: Any, as ast.Node has none of them)."""
    for n in walk(stmt):
        plain_select = (isinstance(n, ast.SelectStmt) and n.op == enums.SetOperation.SETOP_NONE
                        and not n.valuesLists)
        if plain_select or isinstance(n, (ast.UpdateStmt, ast.DeleteStmt)):
            yield n


# ----------------------------------------------------------------------------- scopes
@dataclass
class Entry:
    refname: str
    table: Table | None      # None: a subquery, function or unknown relation
    nullable: bool           # on the nullable side of an outer join


@dataclass
class Resolved:
    entry: Entry
    column: Column

    @property
    def not_null(self) -> bool:
        return self.column.not_null and not self.entry.nullable

    @property
    def table(self) -> Table:
        """The entry's table (a column resolves only against an entry with a known table)."""
        assert self.entry.table is not None
        return self.entry.table

    @property
    def label(self) -> str:
        """table.column, and the alias when the query names the table otherwise: orders.id (o)."""
        t = self.table.name
        alias = f" ({self.entry.refname})" if self.entry.refname != t else ""
        return f"{t}.{self.column.name}{alias}"


class Scope:
    """The FROM list of one query level, for resolving column references."""

    def __init__(self, holder, catalog: Catalog):
        self.entries: list[Entry] = []
        self.catalog = catalog
        if isinstance(holder, ast.SelectStmt):
            for item in holder.fromClause or ():
                self._add(item, False)
        elif isinstance(holder, ast.UpdateStmt):
            self._add(holder.relation, False)
            for item in holder.fromClause or ():
                self._add(item, False)
        elif isinstance(holder, ast.DeleteStmt):
            self._add(holder.relation, False)
            for item in holder.usingClause or ():
                self._add(item, False)

    def _add(self, item, nullable: bool) -> None:
        J = enums.JoinType
        if isinstance(item, ast.RangeVar):
            relname = item.relname
            ref = item.alias.aliasname if item.alias else relname
            assert relname is not None and ref is not None  # pglast's Optional fields, set by the parser
            t = self.catalog.table(item.schemaname, relname)
            self.entries.append(Entry(ref, t, nullable))
        elif isinstance(item, ast.JoinExpr):
            self._add(item.larg, nullable or item.jointype in (J.JOIN_RIGHT, J.JOIN_FULL))
            self._add(item.rarg, nullable or item.jointype in (J.JOIN_LEFT, J.JOIN_FULL))
            if item.usingClause or item.isNatural:
                self.entries.append(Entry("", None, True))  # merged columns: make bare names ambiguous
        else:
            alias = getattr(item, "alias", None)
            self.entries.append(Entry(alias.aliasname if alias else "", None, nullable))

    def resolve(self, ref) -> Resolved | None:
        if not isinstance(ref, ast.ColumnRef) or not all(isinstance(f, ast.String) for f in _seq(ref.fields)):
            return None
        names = [f.sval for f in _seq(ref.fields)]
        if len(names) == 1:
            hits: list[Resolved | None] = []
            for e in self.entries:
                if e.table is None:
                    hits.append(None)  # a subquery or function might have this column: ambiguous
                    continue
                if names[0] in e.table.columns:
                    hits.append(Resolved(e, e.table.columns[names[0]]))
            found = [h for h in hits if h is not None]
            if len(found) == 1 and len(hits) == 1:
                return found[0]
            return None
        if len(names) == 2:
            for e in self.entries:
                if e.refname == names[0]:
                    if e.table is None or names[1] not in e.table.columns:
                        return None
                    return Resolved(e, e.table.columns[names[1]])
            return None
        if len(names) == 3:
            for e in self.entries:
                if e.table and e.refname == names[1] and e.table.schema == names[0] and names[2] in e.table.columns:
                    return Resolved(e, e.table.columns[names[2]])
        return None

    def refnames(self) -> set[str]:
        return {e.refname for e in self.entries}


# ----------------------------------------------------------------------------- rules
@dataclass
class Options:
    min_in_list: int = 10


@dataclass
class Rule:
    name: str
    description: str
    fn: Callable = field(repr=False)
    changes_code: bool = False

    def apply(self, sql: str, catalog: Catalog, options: Options | None = None) -> list[Outcome]:
        """This rule's outcomes for ``sql``: at most one Rewrite (all sites rewritten at once)
        and a Refusal for every site it refused."""
        stmt = _parse_one(sql)
        ctes = {n.ctename for n in walk(stmt) if isinstance(n, ast.CommonTableExpr) and n.ctename is not None}
        ctx = _Ctx(self, _CteShadows(catalog, ctes) if ctes else catalog, options or Options())
        self.fn(stmt, ctx)
        out: list[Outcome] = [Refusal(self.name, r) for r in dict.fromkeys(ctx.refusals)]
        if ctx.notes:
            mapping = renumber_params(stmt) if ctx.renumber else {}
            params = ctx.parameters
            if mapping and any(k != v for k, v in mapping.items()):
                moved = ", ".join(f"${k} -> ${v}" for k, v in mapping.items() if k != v)
                params = f"{params}; renumbered: {moved}" if params else f"renumbered: {moved}"
            out.insert(0, Rewrite(self.name, deparse(stmt), " ".join(dict.fromkeys(ctx.notes)),
                                  self.changes_code or params is not None, params))
        return out


class _CteShadows:
    """A WITH query named like a table hides the table: its columns are unknown (never NOT NULL)."""

    def __init__(self, catalog: Catalog, ctes: set[str]):
        self.catalog, self.ctes = catalog, ctes

    def table(self, schema, name):
        if schema is None and name in self.ctes:
            return None
        return self.catalog.table(schema, name)

    def function(self, schema, name):
        return self.catalog.function(schema, name)


class _Ctx:
    def __init__(self, rule: Rule, catalog: Catalog, options: Options):
        self.rule, self.catalog, self.options = rule, catalog, options
        self.notes: list[str] = []
        self.refusals: list[str] = []
        self.parameters: str | None = None
        self.renumber = False

    def refuse(self, reason: str) -> None:
        self.refusals.append("not rewritten: " + reason)


def _rewrite_conjuncts(holder, fn) -> None:
    """Apply ``fn(conjunct) -> list of conjuncts | None`` to the top-level WHERE conjuncts."""
    parts = conjuncts(holder.whereClause)
    new, changed = [], False
    for c in parts:
        r = fn(c)
        if r is None:
            new.append(c)
        else:
            new.extend(r)
            changed = True
    if changed:
        holder.whereClause = and_(new)


def _eq_sides(c):
    """(a, b) and (b, a) for ``a = b``, else ()."""
    if _op(c) == "=" and c.lexpr is not None and c.rexpr is not None:
        return ((c.lexpr, c.rexpr), (c.rexpr, c.lexpr))
    return ()


# -- sargable_date_trunc ---------------------------------------------------------------------
_UNITS = {"microseconds": "1 microsecond", "milliseconds": "1 millisecond", "second": "1 second",
          "minute": "1 minute", "hour": "1 hour", "day": "1 day", "week": "7 days",
          "month": "1 month", "quarter": "3 months", "year": "1 year"}
_TZ_UNITS = {"day", "week", "month", "quarter", "year"}


def _date_trunc(stmt, ctx: _Ctx) -> None:
    for holder in _holders(stmt):
        scope = Scope(holder, ctx.catalog)

        def fix(c, scope=scope):
            for f, x in _eq_sides(c):
                if not (isinstance(f, ast.FuncCall) and _funcname(f)[1] == "date_trunc"
                        and _funcname(f)[0] in (None, "pg_catalog") and is_pseudo_constant(x)):
                    continue
                args = f.args or ()
                if len(args) != 2 or not (isinstance(args[0], ast.A_Const) and isinstance(args[0].val, ast.String)):
                    ctx.refuse(f"{deparse(c)}: only date_trunc('unit', column) without a time zone argument")
                    return None
                r = scope.resolve(args[1])
                if r is None:
                    return None
                unit = _sval(args[0].val).lower()
                typ = r.column.typname
                if typ not in ("timestamp", "timestamptz"):
                    ctx.refuse(f"{deparse(c)}: {r.label} is {r.column.display or typ}, only timestamp and"
                               " timestamptz columns")
                    return None
                if unit not in _UNITS or (typ == "timestamptz" and unit not in _TZ_UNITS):
                    ctx.refuse(f"{deparse(c)}: unit '{unit}' on a {typ} column is not one range of rows"
                               + (" (a DST fall-back repeats local hours)" if typ == "timestamptz" else ""))
                    return None
                col, tn = args[1], type_name(r.column)
                step = template(f"interval '{_UNITS[unit]}'")
                unit_c = ast.A_Const(val=ast.String(sval=unit))
                if typ == "timestamp":
                    upper = template("__x + __s", x=cast(x, tn), s=step)
                else:
                    upper = template("date_trunc(__u, __x + __s)", u=unit_c, x=cast(x, tn), s=step)
                out = [template("__c >= __x", c=col, x=x), template("__c < __u", c=col, u=upper),
                       template("date_trunc(__u, __x) = __y", u=unit_c, x=cast(x, tn), y=x)]
                ctx.notes.append(
                    f"date_trunc('{unit}', {deparse(col)}) = X holds exactly when X is a '{unit}' boundary"
                    f" (date_trunc('{unit}', X) = X, a one-time check on the parameter) and"
                    f" {deparse(col)} lies in [X, next boundary), a range an index on {r.label} can scan"
                    + ("; timestamptz boundaries are local in the session TimeZone, the next one is"
                       f" date_trunc('{unit}', X + interval '{_UNITS[unit]}')." if typ == "timestamptz" else "."))
                return out
            return None
        _rewrite_conjuncts(holder, fix)


# -- sargable_cast -----------------------------------------------------------------------------
_INT_RE = "^(0|-?[1-9][0-9]{0,17})$"
_UUID_RE = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
_INT_TYPES = {"int2": (-2**15, 2**15 - 1), "int4": (-2**31, 2**31 - 1), "int8": (-2**63, 2**63 - 1)}


def _is_text_cast(node) -> bool:
    if not (isinstance(node, ast.TypeCast) and isinstance(node.arg, ast.ColumnRef)):
        return False
    tn = node.typeName
    assert tn is not None  # a parsed cast always names its type
    return [n.sval for n in _seq(tn.names)][-1] in ("text",) and not tn.arrayBounds


def _sargable_cast(stmt, ctx: _Ctx) -> None:
    for holder in _holders(stmt):
        scope = Scope(holder, ctx.catalog)

        def fix(c, scope=scope):
            for f, x in _eq_sides(c):
                if not (_is_text_cast(f) and is_pseudo_constant(x)):
                    continue
                r = scope.resolve(f.arg)
                if r is None:
                    return None
                typ, col, xt = r.column.typname, f.arg, cast(x, TEXT)
                big = ast.TypeName(names=(ast.String(sval="pg_catalog"), ast.String(sval="int8")), typemod=-1)
                if typ in _INT_TYPES:
                    guard = template(f"__x ~ '{_INT_RE}'", x=xt)
                    if typ == "int8":
                        guard = template(
                            "__g OR (__x ~ '^[1-9][0-9]{18}$' AND __x COLLATE \"C\" <= '9223372036854775807')"
                            " OR (__x ~ '^-[1-9][0-9]{18}$' AND __x COLLATE \"C\" <= '-9223372036854775808')",
                            g=guard, x=xt)
                    value = template("CASE WHEN __g THEN __v END", g=guard, v=cast(xt, big))
                    why = ("integer text output is canonical (a sign only for negatives, no leading zeros), so"
                           f" {deparse(c)} holds exactly when the string is a canonical integer equal to"
                           f" {r.label}; other strings match no row and are never cast (no error)")
                elif typ == "uuid":
                    value = template(f"CASE WHEN __x ~ '{_UUID_RE}' THEN __v END", x=xt,
                                     v=cast(xt, type_name(r.column)))
                    why = ("uuid text output is lowercase and hyphenated, so"
                           f" {deparse(c)} holds exactly when the string has that form and equals {r.label}")
                else:
                    ctx.refuse(f"{deparse(c)}: the text form of {r.column.display or typ} is not provably"
                               " canonical (scale, DateStyle, TimeZone or float digits decide it)")
                    return None
                ctx.notes.append(why + "; compared as the column's own type, an index on it applies.")
                return [template("__c = __v", c=col, v=value)]
            return None
        _rewrite_conjuncts(holder, fix)


# -- sargable_coalesce -------------------------------------------------------------------------
_NUMERIC_TYPES = {"int2", "int4", "int8", "numeric"}


def _sargable_coalesce(stmt, ctx: _Ctx) -> None:
    for holder in _holders(stmt):
        scope = Scope(holder, ctx.catalog)

        def fix(c, scope=scope):
            for f, x in _eq_sides(c):
                if not (isinstance(f, ast.CoalesceExpr) and is_pseudo_constant(x)):
                    continue
                args = f.args or ()
                if len(args) != 2:
                    return None
                r = scope.resolve(args[0])
                if r is None:
                    return None
                d = args[1]
                ok = isinstance(d, ast.ParamRef) or (
                    isinstance(d, ast.A_Const) and not d.isnull and (
                        isinstance(d.val, ast.String)
                        or (isinstance(d.val, ast.Integer) and r.column.typname in _NUMERIC_TYPES)
                        or (isinstance(d.val, ast.Float) and r.column.typname == "numeric")))
                if not ok:
                    ctx.refuse(f"{deparse(c)}: the default {deparse(d)} could change the comparison's type")
                    return None
                col = args[0]
                if r.not_null:
                    ctx.notes.append(f"{r.label} is NOT NULL, so coalesce({deparse(col)}, ...) is"
                                     f" {deparse(col)} itself.")
                    return [template("__c = __x", c=col, x=x)]
                ctx.notes.append(f"coalesce({deparse(col)}, d) = X is ({deparse(col)} = X) OR"
                                 f" ({deparse(col)} IS NULL AND d = X); both arms can use an index on {r.label}.")
                # no casts: X and d take the types PostgreSQL infers for them, as in the original
                return [template("(__c = __x OR (__c IS NULL AND __d = __x))", c=col, x=x, d=d)]
            return None
        _rewrite_conjuncts(holder, fix)


# -- sargable_arithmetic -----------------------------------------------------------------------
def _int_literal(node) -> int | None:
    if isinstance(node, ast.A_Const) and isinstance(node.val, ast.Integer):
        return node.val.ival
    if isinstance(node, ast.A_Const) and isinstance(node.val, ast.Float):
        return None
    return None


def _numeric_literal(node) -> bool:
    return isinstance(node, ast.A_Const) and isinstance(node.val, (ast.Integer, ast.Float))


def _sargable_arithmetic(stmt, ctx: _Ctx) -> None:
    for holder in _holders(stmt):
        scope = Scope(holder, ctx.catalog)

        def fix(c, scope=scope):
            for f, x in _eq_sides(c):
                op = _op(f)
                if op not in ("+", "-") or not is_pseudo_constant(x):
                    continue
                if isinstance(f.lexpr, ast.ColumnRef) and is_pseudo_constant(f.rexpr):
                    colref, k, col_first = f.lexpr, f.rexpr, True
                elif isinstance(f.rexpr, ast.ColumnRef) and is_pseudo_constant(f.lexpr):
                    colref, k, col_first = f.rexpr, f.lexpr, False
                else:
                    continue
                r = scope.resolve(colref)
                if r is None:
                    return None
                typ = r.column.typname
                if typ not in _NUMERIC_TYPES:
                    ctx.refuse(f"{deparse(c)}: {r.label} is {r.column.display or typ}; only integer and numeric"
                               " arithmetic is exact (floats round, dates and timestamps follow the calendar)")
                    return None
                kv = _int_literal(k)
                if not _numeric_literal(k) or (typ != "numeric" and kv is None):
                    kind = "numeric" if typ == "numeric" else "an integer for " + typ
                    ctx.refuse(f"{deparse(c)}: only a numeric literal ({kind}) is moved; a parameter's type and"
                               " range are unknown")
                    return None
                # col + k = X, k + col = X -> col = X - k;  col - k = X -> col = X + k;  k - col = X -> col = k - X
                if op == "+":
                    expr, sign = "__x - __k", "-"
                elif col_first:
                    expr, sign = "__x + __k", "+"
                else:
                    expr, sign = "__k - __x", "r"
                # X is not cast: PostgreSQL infers its type from the column and the literal, as in
                # the original (a cast would change what a client-typed parameter is compared as)
                if typ == "numeric":
                    value = template(expr, x=x, k=k)
                    ctx.notes.append("numeric arithmetic is exact: the constant side moves to the parameter,"
                                     f" leaving {r.label} bare for an index.")
                    return [template("__c = __v", c=colref, v=value)]
                # integers: result type of `col op k` is the wider of the column and the literal
                assert kv is not None  # an integer type with a non-integer literal was refused above
                lit = "int4" if -2**31 <= kv < 2**31 else "int8"
                wide = max(typ, lit, key=lambda t: _INT_TYPES[t][1]) if typ != "int2" else lit
                lo, hi = _INT_TYPES[wide]
                v = kv
                if sign == "-":      # X - v in range  <=>  lo + v <= X <= hi + v
                    bounds = (lo + v, hi + v)
                elif sign == "+":    # X + v in range  <=>  lo - v <= X <= hi - v
                    bounds = (lo - v, hi - v)
                else:                # v - X in range  <=>  v - hi <= X <= v - lo
                    bounds = (v - hi, v - lo)
                conds = []
                if bounds[0] > lo:
                    conds.append(f"__x >= {bounds[0]}")
                if bounds[1] < hi:
                    conds.append(f"__x <= {bounds[1]}")
                value = template(expr, x=x, k=k)
                if conds:
                    value = template(f"CASE WHEN {' AND '.join(conds)} THEN __v END", x=x, v=value)
                ctx.notes.append(f"integer arithmetic moved to the parameter side leaves {r.label} bare for an"
                                 f" index; it is guarded so that it never overflows {wide} (out of range, no row"
                                 " can match, as in the original).")
                return [template("__c = __v", c=colref, v=value)]
            return None
        _rewrite_conjuncts(holder, fix)


# -- not_in_to_not_exists ------------------------------------------------------------------------
def _not_in_sublink(c):
    if isinstance(c, ast.BoolExpr) and c.boolop == enums.BoolExprType.NOT_EXPR and len(_seq(c.args)) == 1:
        s = _seq(c.args)[0]
        if (isinstance(s, ast.SubLink) and s.subLinkType == enums.SubLinkType.ANY_SUBLINK
                and (not s.operName or s.operName[-1].sval == "=")):
            return s
    return None


def _plain_select(s) -> str | None:
    """Why the SELECT is not a plain single-level query (None if it is)."""
    if not isinstance(s, ast.SelectStmt) or s.op != enums.SetOperation.SETOP_NONE:
        return "a set operation"
    for attr, what in (("groupClause", "GROUP BY"), ("havingClause", "HAVING"), ("distinctClause", "DISTINCT"),
                       ("limitCount", "LIMIT"), ("limitOffset", "OFFSET"), ("windowClause", "WINDOW"),
                       ("withClause", "WITH"), ("lockingClause", "FOR UPDATE"), ("valuesLists", "VALUES")):
        if getattr(s, attr, None):
            return what
    return None


def _not_in(stmt, ctx: _Ctx) -> None:
    for holder in _holders(stmt):
        scope = Scope(holder, ctx.catalog)

        def fix(c, scope=scope):
            s = _not_in_sublink(c)
            if s is None:
                return None
            sub = s.subselect
            why = _plain_select(sub)
            if why or len(sub.targetList or ()) != 1 or not isinstance(sub.targetList[0].val, ast.ColumnRef):
                ctx.refuse(f"{deparse(c)}: the subquery is not a plain one-column SELECT"
                           + (f" ({why})" if why else ""))
                return None
            x = scope.resolve(s.testexpr)
            if x is None:
                ctx.refuse(f"{deparse(c)}: {deparse(s.testexpr)} is not a column of the outer FROM list,"
                           " its NULLs cannot be ruled out")
                return None
            inner = Scope(sub, ctx.catalog)
            yref = sub.targetList[0].val
            y = inner.resolve(yref)
            if y is None:
                ctx.refuse(f"{deparse(c)}: the subquery column {deparse(yref)} cannot be resolved")
                return None
            facts = []
            for r in (x, y):
                if r.not_null:
                    facts.append(f"{r.label} is NOT NULL")
                    continue
                filtered = r is y and any(
                    isinstance(p, ast.NullTest) and p.nulltesttype == enums.NullTestType.IS_NOT_NULL
                    and (pr := inner.resolve(p.arg)) is not None and pr.column == y.column and pr.entry is y.entry
                    for p in conjuncts(sub.whereClause))
                if filtered:
                    facts.append(f"the subquery keeps only {r.label} IS NOT NULL")
                    continue
                side = "on the nullable side of an outer join" if r.entry.nullable else "NULLable"
                ctx.refuse(f"{r.label} is {side}, NOT IN and NOT EXISTS differ when it holds NULL")
                return None
            if x.entry.refname in inner.refnames():
                ctx.refuse(f"{deparse(c)}: the subquery reuses the name {x.entry.refname}; give it an alias first")
                return None
            outer = _col(x.entry.refname, x.column.name)
            new = copy.deepcopy(sub)
            new.targetList = (ast.ResTarget(val=ast.A_Const(val=ast.Integer(ival=1))),)
            new.whereClause = and_(conjuncts(new.whereClause) + [template("__y = __x", y=yref, x=outer)])
            ctx.notes.append(f"{' and '.join(facts)}, so NOT IN equals NOT EXISTS, which the planner runs"
                             " as an anti-join.")
            return [ast.BoolExpr(boolop=enums.BoolExprType.NOT_EXPR, args=(
                ast.SubLink(subLinkType=enums.SubLinkType.EXISTS_SUBLINK, subselect=new),))]
        _rewrite_conjuncts(holder, fix)


# -- or_to_union_all -----------------------------------------------------------------------------
def _func_problem(node, catalog: Catalog, aggregates: bool) -> str | None:
    for n in walk(node):
        if isinstance(n, ast.FuncCall):
            schema, name = _funcname(n)
            flags = catalog.function(schema, name)
            if n.over is not None or (aggregates and flags.aggregate):
                return f"the aggregate or window function {name}()"
            if flags.volatile:
                return f"the volatile function {name}()"
        if isinstance(n, ast.SubLink):
            return "a subquery"
    return None


def _or_union(stmt, ctx: _Ctx) -> None:
    root = stmt
    if not isinstance(root, ast.SelectStmt):
        return
    for c in conjuncts(root.whereClause):
        if not (isinstance(c, ast.BoolExpr) and c.boolop == enums.BoolExprType.OR_EXPR):
            continue
        # ORDER BY ... LIMIT n (no OFFSET, no WITH TIES) is allowed when the order is total (a NOT
        # NULL unique key among the sort columns): each branch keeps its own first n rows, and the
        # first n of the union of those is the first n of the whole, ties cannot choose otherwise.
        limited = root.limitCount is not None and root.limitOffset is None \
            and root.limitOption == enums.LimitOption.LIMIT_OPTION_COUNT
        why = "a set operation" if root.op != enums.SetOperation.SETOP_NONE else _plain_select(
            _without_limit(root) if limited else root)
        if limited and why is None and not _total_order(root, ctx):
            why = "a LIMIT whose ORDER BY is not a unique NOT NULL key of the table"
        if root.sortClause and why is None:
            outs = set()
            for t in _seq(root.targetList):
                if t.name:
                    outs.add(t.name)
                elif isinstance(t.val, ast.ColumnRef) and isinstance(_seq(t.val.fields)[-1], ast.String):
                    outs.add(_seq(t.val.fields)[-1].sval)
            for sb in root.sortClause:
                n = sb.node
                fields = _seq(n.fields) if isinstance(n, ast.ColumnRef) else ()
                if not (len(fields) == 1 and isinstance(fields[0], ast.String) and fields[0].sval in outs):
                    why = "an ORDER BY on something other than an output column name"
        if why is None and (len(root.fromClause or ()) != 1 or not isinstance(_seq(root.fromClause)[0], ast.RangeVar)):
            why = "more than one table in FROM"
        if why is None:
            why = _func_problem(root.targetList, ctx.catalog, True)
            if why is None:
                why = _func_problem(c, ctx.catalog, False)
        if why:
            ctx.refuse(f"{deparse(c)}: the query has {why}")
            return
        scope = Scope(root, ctx.catalog)
        colsets = []
        for arm in _seq(c.args):
            cols = set()
            for n in walk(arm):
                if isinstance(n, ast.ColumnRef):
                    r = scope.resolve(n)
                    cols.add(r.column.name if r else deparse(n))
            colsets.append(frozenset(cols))
        if len(set(colsets)) == 1 and len(colsets[0]) == 1:
            ctx.refuse(f"{deparse(c)}: every arm is on the same column; the planner already turns that"
                       " into one index scan (= ANY or BitmapOr)")
            return
        if len(_seq(c.args)) > 4:
            ctx.refuse(f"{deparse(c)}: more than 4 arms")
            return
        others = [o for o in conjuncts(root.whereClause) if o is not c]
        branches = []
        for i, arm in enumerate(_seq(c.args)):
            b = copy.deepcopy(root)
            if not limited:
                b.sortClause = None
            prior = [ast.BooleanTest(arg=copy.deepcopy(p), booltesttype=enums.BoolTestType.IS_NOT_TRUE)
                     for p in _seq(c.args)[:i]]
            b.whereClause = and_([copy.deepcopy(arm)] + prior + [copy.deepcopy(o) for o in others])
            branches.append(b)
        u = branches[0]
        for b in branches[1:]:
            u = ast.SelectStmt(op=enums.SetOperation.SETOP_UNION, all=True, larg=u, rarg=b,
                               limitOption=enums.LimitOption.LIMIT_OPTION_DEFAULT)
        u.sortClause = root.sortClause
        if limited:
            u.limitCount, u.limitOption = copy.deepcopy(root.limitCount), root.limitOption
        # replace root's contents in place (the statement node is the root)
        for name in _slots(root):
            setattr(root, name, getattr(u, name, None))
        ctx.notes.append("each arm of the OR becomes one branch of a UNION ALL that can use its own index;"
                         " a later branch excludes the rows of the earlier ones with IS NOT TRUE (which also"
                         " keeps rows where they are NULL), so no row appears twice and none is lost.")
        if limited:
            ctx.notes.append("ORDER BY is unique, so each branch stops after LIMIT rows (an index in that"
                             " order reads only those) and the outer ORDER BY ... LIMIT picks the same rows.")
        return


def _without_limit(s):
    c = copy.copy(s)
    c.limitCount, c.limitOption = None, enums.LimitOption.LIMIT_OPTION_DEFAULT
    return c


def _total_order(s, ctx: _Ctx) -> bool:
    """ORDER BY of plain columns of the one table in FROM that include a NOT NULL unique key."""
    if not s.sortClause or len(s.fromClause or ()) != 1 or not isinstance(s.fromClause[0], ast.RangeVar):
        return False
    scope = Scope(s, ctx.catalog)
    cols = set()
    for sb in s.sortClause:
        r = scope.resolve(sb.node)
        if r is None or sb.useOp:
            return False
        cols.add(r.column.name)
    table = scope.entries[0].table
    return table is not None and any(set(k) <= cols for k in table.not_null_keys())


# -- offset_to_keyset ----------------------------------------------------------------------------
def _keyset(stmt, ctx: _Ctx) -> None:
    s = stmt
    if not isinstance(s, ast.SelectStmt) or s.limitOffset is None:
        return
    label = f"OFFSET {deparse(s.limitOffset)}"
    if s.op != enums.SetOperation.SETOP_NONE or not s.sortClause or s.limitCount is None:
        ctx.refuse(f"{label}: keyset pagination needs ORDER BY and LIMIT on a plain SELECT")
        return
    if s.groupClause or s.distinctClause or s.havingClause:
        ctx.refuse(f"{label}: the query groups or removes duplicates")
        return
    if len(s.fromClause or ()) != 1 or not isinstance(_seq(s.fromClause)[0], ast.RangeVar):
        ctx.refuse(f"{label}: keyset pagination is offered for one table in FROM")
        return
    scope = Scope(s, ctx.catalog)
    keys, dirs = [], set()
    for sb in s.sortClause:
        r = scope.resolve(sb.node)
        if r is None:
            ctx.refuse(f"{label}: ORDER BY {deparse(sb.node)} is not a column of the table")
            return
        if sb.sortby_nulls != enums.SortByNulls.SORTBY_NULLS_DEFAULT or sb.useOp:
            ctx.refuse(f"{label}: ORDER BY with NULLS FIRST/LAST or USING")
            return
        if not r.not_null:
            ctx.refuse(f"{label}: ORDER BY column {r.label} is NULLable")
            return
        dirs.add(sb.sortby_dir == enums.SortByDir.SORTBY_DESC)
        keys.append((sb.node, r))
    if len(dirs) != 1:
        ctx.refuse(f"{label}: ORDER BY mixes ASC and DESC (a row comparison needs one direction)")
        return
    names = {r.column.name for _, r in keys}
    table = keys[0][1].table
    if not any(set(k) <= names for k in table.not_null_keys()):
        ctx.refuse(f"{label}: ORDER BY {', '.join(r.column.name for _, r in keys)} is not unique in"
                   f" {table.name} (no unique key among them), pages could repeat or skip rows")
        return
    visible = set()
    for t in _seq(s.targetList):
        if isinstance(t.val, ast.ColumnRef) and isinstance(_seq(t.val.fields)[-1], ast.A_Star):
            visible |= set(table.columns)
        else:
            r = scope.resolve(t.val)
            if r is not None and (t.name is None or t.name == r.column.name):
                visible.add(r.column.name)
    missing = names - visible
    if missing:
        ctx.refuse(f"{label}: the select list lacks {', '.join(sorted(missing))}, the caller could not"
                   " pass the last row's key")
        return
    base = max(params_in(s) - params_in(s.limitOffset), default=0)
    new = [ast.ParamRef(number=base + i + 1) for i in range(len(keys))]
    op = "<" if True in dirs else ">"
    cols = [copy.deepcopy(n) for n, _ in keys]
    if len(keys) == 1:
        cond = ast.A_Expr(kind=enums.A_Expr_Kind.AEXPR_OP, name=(ast.String(sval=op),), lexpr=cols[0], rexpr=new[0])
    else:
        cond = ast.A_Expr(kind=enums.A_Expr_Kind.AEXPR_OP, name=(ast.String(sval=op),),
                          lexpr=ast.RowExpr(args=tuple(cols), row_format=enums.CoercionForm.COERCE_IMPLICIT_CAST),
                          rexpr=ast.RowExpr(args=tuple(new), row_format=enums.CoercionForm.COERCE_IMPLICIT_CAST))
    s.limitOffset = None
    s.whereClause = and_(conjuncts(s.whereClause) + [cond])
    ctx.renumber = True
    keylist = ", ".join(deparse(n) for n, _ in keys)
    ctx.parameters = (f"instead of {label}, pass the last row's ({keylist}) of the previous page as"
                      f" {', '.join(f'${p.number}' for p in new)}; the first page runs without that condition")
    ctx.notes.append(f"OFFSET reads and throws away every earlier row; ORDER BY ({keylist}) is unique and"
                     " NOT NULL, so the next page is exactly the rows after the last one seen, and an index"
                     " on it starts there.")


# -- count_to_exists -----------------------------------------------------------------------------
def _count_star(node) -> bool:
    return (isinstance(node, ast.FuncCall) and _funcname(node)[1] == "count" and bool(node.agg_star)
            and not node.agg_distinct and node.agg_filter is None and node.over is None)


def _existence_test(e):
    """(count side, True for EXISTS / False for NOT EXISTS) for `count > 0`, `>= 1`, `<> 0`, `= 0` ..."""
    op = _op(e)
    if op is None:
        return None
    flips = {">": "<", "<": ">", ">=": "<=", "<=": ">=", "=": "=", "<>": "<>", "!=": "!="}
    for a, b, o in ((e.lexpr, e.rexpr, op), (e.rexpr, e.lexpr, flips.get(op))):
        k = _int_literal(b)
        if k is None:
            continue
        if (o, k) in ((">", 0), (">=", 1), ("<>", 0), ("!=", 0)):
            return a, True
        if (o, k) in (("=", 0), ("<", 1), ("<=", 0)):
            return a, False
    return None


def _counts(stmt, ctx: _Ctx) -> None:
    def exists(sel, positive):
        sub = copy.deepcopy(sel)
        sub.targetList = (ast.ResTarget(val=ast.A_Const(val=ast.Integer(ival=1))),)
        link = ast.SubLink(subLinkType=enums.SubLinkType.EXISTS_SUBLINK, subselect=sub)
        return link if positive else ast.BoolExpr(boolop=enums.BoolExprType.NOT_EXPR, args=(link,))

    # a) SELECT count(*) > 0 FROM ... (the whole statement)
    s = stmt
    if (isinstance(s, ast.SelectStmt) and s.op == enums.SetOperation.SETOP_NONE and s.fromClause
            and len(s.targetList or ()) == 1):
        t = _seq(s.targetList)[0]
        test = _existence_test(t.val)
        if test and _count_star(test[0]):
            why = _plain_select(s) or ("ORDER BY" if s.sortClause else None)
            if why:
                ctx.refuse(f"{deparse(t.val)}: the query has {why}")
            else:
                inner = ast.SelectStmt(targetList=s.targetList, fromClause=s.fromClause, whereClause=s.whereClause,
                                       limitOption=enums.LimitOption.LIMIT_OPTION_DEFAULT,
                                       op=enums.SetOperation.SETOP_NONE)
                # an unnamed comparison is called ?column?, EXISTS would be called exists: keep the name
                s.targetList = (ast.ResTarget(name=t.name or "?column?", val=exists(inner, test[1])),)
                s.fromClause, s.whereClause = None, None
                ctx.notes.append("count(*) without GROUP BY is one row, never NULL: comparing it with 0 asks"
                                 " whether a row exists, and EXISTS stops at the first one.")
                return

    # b) (SELECT count(*) FROM ...) > 0 anywhere
    def count_subquery(n):
        test = _existence_test(n) if isinstance(n, ast.A_Expr) else None
        if not test or not (isinstance(test[0], ast.SubLink) and test[0].subLinkType == enums.SubLinkType.EXPR_SUBLINK):
            return None
        sel = test[0].subselect
        if not (isinstance(sel, ast.SelectStmt) and len(sel.targetList or ()) == 1
                and _count_star(_seq(sel.targetList)[0].val)):
            return None
        return test, sel

    # an unnamed select-list item keeps its name (?column?, EXISTS would be called exists)
    for t in walk(stmt):
        if isinstance(t, ast.ResTarget) and t.name is None and isinstance(t.val, ast.A_Expr):
            found = count_subquery(t.val)
            if found and _plain_select(found[1]) is None:
                t.name = "?column?"

    def fix(n):
        found = count_subquery(n)
        if found is None:
            return None
        test, sel = found
        why = _plain_select(sel)
        if why:
            ctx.refuse(f"{deparse(n)}: the count has {why}")
            return None
        ctx.notes.append("a count(*) subquery without GROUP BY is one row, never NULL: comparing it with 0 asks"
                         " whether a row exists, and EXISTS stops at the first one.")
        return exists(sel, test[1])
    transform(stmt, fix)


# -- scalar_subquery_to_lateral ----------------------------------------------------------------------
def _lateral(stmt, ctx: _Ctx) -> None:
    counter = [0]
    for holder in list(_holders(stmt)):
        if not isinstance(holder, ast.SelectStmt) or not holder.targetList:
            continue
        subs = [t for t in holder.targetList if isinstance(t.val, ast.SubLink)
                and t.val.subLinkType == enums.SubLinkType.EXPR_SUBLINK]
        if not subs:
            continue
        if holder.groupClause or holder.havingClause or holder.windowClause or len(holder.fromClause or ()) != 1:
            ctx.refuse("a scalar subquery in the select list: the outer query groups, has a window clause"
                       " or several FROM items")
            continue
        if any(isinstance(t.val, ast.ColumnRef) and len(_seq(t.val.fields)) == 1
               and isinstance(_seq(t.val.fields)[0], ast.A_Star) for t in holder.targetList):
            ctx.refuse("a scalar subquery in the select list: the select list has a bare * (it would also"
                       " list the joined subquery's column)")
            continue
        outer_scope = Scope(holder, ctx.catalog)
        others = [t for t in holder.targetList if t not in subs]
        prob = _func_problem([t.val for t in others], ctx.catalog, True)
        if prob and "aggregate" in prob:
            ctx.refuse(f"a scalar subquery in the select list: the outer query has {prob}")
            continue
        for t in subs:
            sel = t.val.subselect
            label = deparse(t.val)
            if not isinstance(sel, ast.SelectStmt) or len(sel.targetList or ()) != 1:
                continue
            limit1 = (_int_literal(sel.limitCount) == 1 and sel.limitOffset is None) if sel.limitCount else False
            why = None
            if sel.op != enums.SetOperation.SETOP_NONE or sel.groupClause or sel.havingClause or sel.distinctClause \
                    or sel.withClause or (sel.limitCount and not limit1) or sel.limitOffset:
                why = "the subquery is not a plain SELECT"
            elif len(sel.fromClause or ()) != 1 or not isinstance(_seq(sel.fromClause)[0], ast.RangeVar):
                why = "the subquery reads more than one table"
            if why:
                ctx.refuse(f"{label}: {why}")
                continue
            inner = Scope(sel, ctx.catalog)
            entry = inner.entries[0]
            if entry.table is None:
                continue
            correlated, equated = False, set()
            for n in walk(sel):
                if isinstance(n, ast.ColumnRef) and inner.resolve(n) is None:
                    correlated = True
            for p in conjuncts(sel.whereClause):
                for a, b in _eq_sides(p):
                    r = inner.resolve(a)
                    if r is None:
                        continue
                    other_inner = any(isinstance(m, ast.ColumnRef) and inner.resolve(m) is not None for m in walk(b))
                    if not other_inner and not any(isinstance(m, ast.SubLink) for m in walk(b)):
                        equated.add(r.column.name)
            single = _func_problem(sel.targetList, ctx.catalog, True)
            aggregate = bool(single and "aggregate" in single and _seq(sel.targetList)[0].val.__class__ is ast.FuncCall)
            unique = any(set(k) <= equated for k in entry.table.unique_keys)
            if not correlated:
                ctx.refuse(f"{label}: not correlated, PostgreSQL already runs it once (InitPlan)")
                continue
            if not (unique or aggregate or limit1):
                ctx.refuse(f"{label}: its equalities do not cover a unique key of {entry.table.name}, it could"
                           " return several rows (an error) where a join would repeat the outer row")
                continue
            counter[0] += 1
            alias = f"_sq{counter[0]}"
            while alias in outer_scope.refnames():
                counter[0] += 1
                alias = f"_sq{counter[0]}"
            name = t.name
            inner_t = _seq(sel.targetList)[0]
            if name is None:
                if inner_t.name:
                    name = inner_t.name
                elif isinstance(inner_t.val, ast.ColumnRef) and isinstance(_seq(inner_t.val.fields)[-1], ast.String):
                    name = _seq(inner_t.val.fields)[-1].sval
                elif isinstance(inner_t.val, ast.FuncCall):
                    name = _funcname(inner_t.val)[1]
            lat = copy.deepcopy(sel)
            lat.targetList = (ast.ResTarget(name="v", val=copy.deepcopy(inner_t.val)),)
            rsub = ast.RangeSubselect(lateral=True, subquery=lat, alias=ast.Alias(aliasname=alias))
            holder.fromClause = (ast.JoinExpr(jointype=enums.JoinType.JOIN_LEFT, larg=_seq(holder.fromClause)[0],
                                              rarg=rsub, quals=ast.A_Const(val=ast.Boolean(boolval=True))),)
            t.val = _col(alias, "v")
            t.name = name
            why = ("its equalities cover a unique key of " + entry.table.name if unique else
                   "it is an aggregate without GROUP BY" if aggregate else "it has LIMIT 1")
            ctx.notes.append(f"the scalar subquery returns at most one row ({why}), so a LEFT JOIN LATERAL"
                             " gives the same value, NULL when there is no row, and the planner can turn it"
                             " into a join instead of running a subplan per row.")


# -- distinct_join_to_exists ---------------------------------------------------------------------
def _distinct_join(stmt, ctx: _Ctx) -> None:
    for s in list(_holders(stmt)):
        if not isinstance(s, ast.SelectStmt) or s.distinctClause is None:
            continue
        if s.distinctClause != (None,):
            ctx.refuse("DISTINCT ON: not handled")
            continue
        fr = s.fromClause or ()
        if len(fr) == 1 and isinstance(fr[0], ast.JoinExpr) and fr[0].jointype == enums.JoinType.JOIN_INNER \
                and isinstance(fr[0].larg, ast.RangeVar) and isinstance(fr[0].rarg, ast.RangeVar) \
                and not fr[0].usingClause and not fr[0].isNatural:
            rels, quals = [fr[0].larg, fr[0].rarg], conjuncts(fr[0].quals)
        elif len(fr) == 2 and all(isinstance(f, ast.RangeVar) for f in fr):
            rels, quals = list(fr), []
        else:
            continue
        label = "SELECT DISTINCT over a join"
        if s.groupClause or s.havingClause or s.windowClause or s.lockingClause:
            ctx.refuse(f"{label}: the query groups or locks rows")
            continue
        scope = Scope(s, ctx.catalog)
        if any(e.table is None for e in scope.entries):
            continue
        sides: set[str | None] = set()
        star = False
        for t in _seq(s.targetList):
            v = t.val
            if isinstance(v, ast.ColumnRef) and isinstance(_seq(v.fields)[-1], ast.A_Star):
                if len(_seq(v.fields)) == 1:
                    sides.add(None)
                else:
                    sides.add(_seq(v.fields)[0].sval)
                    star = True
                continue
            refs = [n for n in walk(v) if isinstance(n, ast.ColumnRef)]
            for n in refs:
                r = scope.resolve(n)
                sides.add(r.entry.refname if r else None)
            if any(isinstance(n, (ast.FuncCall, ast.SubLink)) for n in walk(v)):
                prob = _func_problem(v, ctx.catalog, True)
                if prob:
                    sides.add(None)
        if None in sides or len(sides) != 1:
            ctx.refuse(f"{label}: the select list uses columns of both tables (or unresolvable ones)")
            continue
        keep_ref = sides.pop()
        keep = next(e for e in scope.entries if e.refname == keep_ref)
        keep_table = keep.table
        assert keep_table is not None  # statements with an entry without a table were skipped above
        listed = set()
        for t in _seq(s.targetList):
            r = scope.resolve(t.val)
            if r is not None and r.entry is keep:
                listed.add(r.column.name)
        if star:
            listed |= set(keep_table.columns)
        if not any(set(k) <= listed for k in keep_table.not_null_keys()):
            ctx.refuse(f"{label}: the select list has no NOT NULL unique key of {keep_table.name}, DISTINCT may"
                       " also remove duplicates of its own rows")
            continue
        semi_rv = next(rv for rv in rels if (rv.alias.aliasname if rv.alias else rv.relname) != keep_ref)
        keep_rv = next(rv for rv in rels if rv is not semi_rv)
        outer: list = []
        inner: list = []
        for p in quals + conjuncts(s.whereClause):
            touches_semi = False
            for m in walk(p):
                if isinstance(m, ast.ColumnRef):
                    r = scope.resolve(m)
                    if r is None or r.entry is not keep:
                        touches_semi = True
                if isinstance(m, ast.SubLink):
                    touches_semi = True
            (inner if touches_semi else outer).append(p)

        def qualify(n, scope=scope, keep=keep, keep_ref=keep_ref):
            if isinstance(n, ast.ColumnRef) and len(_seq(n.fields)) == 1:
                r = scope.resolve(n)
                if r is not None and r.entry is keep:
                    return _col(keep_ref, r.column.name)
            return None
        inner = [transform(copy.deepcopy(p), qualify) for p in inner]
        sub = ast.SelectStmt(targetList=(ast.ResTarget(val=ast.A_Const(val=ast.Integer(ival=1))),),
                             fromClause=(semi_rv,), whereClause=and_(inner),
                             limitOption=enums.LimitOption.LIMIT_OPTION_DEFAULT, op=enums.SetOperation.SETOP_NONE)
        s.distinctClause = None
        s.fromClause = (keep_rv,)
        s.whereClause = and_(outer + [ast.SubLink(subLinkType=enums.SubLinkType.EXISTS_SUBLINK, subselect=sub)])
        ctx.notes.append(f"the select list uses only {keep_table.name} and includes its unique key, so DISTINCT"
                         " only removed the copies the join made: a semi-join (EXISTS) gives each row once"
                         " without joining every match and sorting or hashing them away.")


# -- in_list_to_any ------------------------------------------------------------------------------
def _in_list(stmt, ctx: _Ctx) -> None:
    uses = Counter(n.number for n in walk(stmt) if isinstance(n, ast.ParamRef))
    for holder in _holders(stmt):
        scope = Scope(holder, ctx.catalog)

        def fix(n, scope=scope):
            if not (isinstance(n, ast.A_Expr) and n.kind == enums.A_Expr_Kind.AEXPR_IN):
                return None
            items = n.rexpr if isinstance(n.rexpr, (list, tuple)) else ()
            if len(items) < ctx.options.min_in_list or not all(isinstance(i, ast.ParamRef) for i in items):
                return None
            r = scope.resolve(n.lexpr)
            if r is None:
                ctx.refuse(f"{deparse(n.lexpr)} IN (... {len(items)} parameters): the left side is not a"
                           " column of this query level, its type is unknown")
                return None
            if any(uses[i.number] > 1 for i in items):
                ctx.refuse(f"{deparse(n.lexpr)} IN (... {len(items)} parameters): a parameter of the list is"
                           " also used elsewhere in the statement")
                return None
            first = min(i.number for i in items)
            p = ast.ParamRef(number=first)
            op = _seq(n.name)[-1].sval
            neg = op == "<>"
            ctx.renumber = True
            listed = ", ".join(f"${i.number}" for i in items)
            msg = (f"{deparse(n.lexpr)} {'NOT IN' if neg else 'IN'} ({listed}) takes one array ${first} of"
                   f" {r.column.display or r.column.typname}")
            ctx.parameters = msg if ctx.parameters is None else f"{ctx.parameters}; {msg}"
            ctx.notes.append("an IN list is planned as = ANY(array) anyway; one array parameter makes it one"
                             " statement whatever the list length (PostgreSQL 15's pg_stat_statements records"
                             " each length apart) and one cached plan.")
            return ast.A_Expr(kind=enums.A_Expr_Kind.AEXPR_OP_ALL if neg else enums.A_Expr_Kind.AEXPR_OP_ANY,
                              name=(ast.String(sval=op),), lexpr=n.lexpr, rexpr=cast(p, type_name(r.column, True)))
        # subqueries are query levels of their own (their own FROM list): _holders visits them
        def own_level(n):
            return isinstance(n, (ast.SelectStmt, ast.UpdateStmt, ast.DeleteStmt))
        holder.whereClause = transform(holder.whereClause, fix, own_level)
        if getattr(holder, "havingClause", None) is not None:
            holder.havingClause = transform(holder.havingClause, fix, own_level)


RULES: list[Rule] = [
    Rule("sargable_date_trunc", "date_trunc('unit', ts) = X as a range on ts", _date_trunc),
    Rule("sargable_cast", "col::text = X as col = X in the column's type, when the text form is canonical",
         _sargable_cast),
    Rule("sargable_coalesce", "coalesce(col, d) = X as predicates on col itself", _sargable_coalesce),
    Rule("sargable_arithmetic", "col + c = X as col = X - c (integers, numeric)", _sargable_arithmetic),
    Rule("not_in_to_not_exists", "NOT IN (subquery) as NOT EXISTS, when both columns are NOT NULL", _not_in),
    Rule("or_to_union_all", "an OR across columns as disjoint UNION ALL branches", _or_union),
    Rule("offset_to_keyset", "OFFSET pagination as keyset pagination on a unique ORDER BY", _keyset,
         changes_code=True),
    Rule("count_to_exists", "count(*) compared with 0 as EXISTS", _counts),
    Rule("scalar_subquery_to_lateral", "a correlated scalar subquery in the select list as LEFT JOIN LATERAL",
         _lateral),
    Rule("distinct_join_to_exists", "SELECT DISTINCT over a join as EXISTS when one table's key is listed",
         _distinct_join),
    Rule("in_list_to_any", "a long IN ($1, ..., $n) as = ANY($1) with an array parameter", _in_list,
         changes_code=True),
]
RULES_BY_NAME = {r.name: r for r in RULES}


def rewrite(sql: str, catalog: Catalog, rules: list[str] | None = None,
            options: Options | None = None) -> list[Outcome]:
    """Every rule's outcomes for ``sql`` (rewrites first, then refusals), each rule on the
    original statement."""
    out: list[Outcome] = []
    for rule in RULES if rules is None else [RULES_BY_NAME[n] for n in rules]:
        out.extend(rule.apply(sql, catalog, options))
    return sorted(out, key=lambda o: isinstance(o, Refusal))
