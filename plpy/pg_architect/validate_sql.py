"""The parse-tree work of the staging validation (:mod:`pg_architect.validate`), with pglast
(PostgreSQL's own parser) and its deparser, never regular expressions:

* :func:`redirect` — a statement's references to one table pointed at another (the partitioned
  copy in a scratch schema); the original name stays as the alias, so ``t.col`` still resolves;
* :func:`bind` — ``$n`` replaced by typed literals (``'v'::type``), to run a statement inside a
  query (the row-count and hash check of :meth:`validate.Runner.digest`);
* :func:`plan_to_scratch` — step 1 of a partition advice's migration plan (the partitioned table,
  its constraints, indexes and partitions, or pg_partman's ``create_parent``) re-targeted to a
  scratch schema; the ``LIKE`` source stays the original table;
* :func:`matview_script` — the statements of a materialized-view advice validation runs (the view
  and its unique index; the pg_cron schedule is left out).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

# isort: off
# pgparse loads pglast's parser first, with RTLD_DEEPBIND (see pgparse's docstring).
from . import pgparse  # noqa: F401  (import order matters)
from pglast import ast, parse_sql
from pglast.parser import ParseError
from pglast.stream import RawStream
# isort: on

from .sqltext import quote_ident


class NotRunnable(Exception):
    """The text cannot be used as validation needs it (the reason is the message)."""


def deparse(node) -> str:
    return RawStream()(node)


def _slots(node):
    return node.__slots__ if isinstance(node.__slots__, dict) else dict.fromkeys(node.__slots__)


def walk(node, skip=lambda n: False) -> Iterator:
    """Every node under ``node`` (pre-order, itself included); ``skip(n)``: not entered."""
    if isinstance(node, ast.Node):
        if skip(node):
            return
        yield node
        for name in _slots(node):
            yield from walk(getattr(node, name, None), skip)
    elif isinstance(node, (list, tuple)):
        for item in node:
            yield from walk(item, skip)


def _parse(text: str) -> list:
    try:
        return [s.stmt for s in parse_sql(text)]
    except ParseError as exc:
        raise NotRunnable(f"not parsable: {exc}") from None


def _one(text: str):
    stmts = _parse(text)
    if len(stmts) != 1:
        raise NotRunnable(f"the text holds {len(stmts)} statements, not one")
    return stmts[0]


# ---------------------------------------------------------------------------- statements
def redirect(text: str, schema: str, table: str, new_schema: str, new_table: str) -> tuple[str, int]:
    """``text`` with every reference to ``schema.table`` (qualified, or unqualified and not a CTE
    name) pointing at ``new_schema.new_table``; returns (text, references changed)."""
    stmt = _one(text)
    ctes = {n.ctename for n in walk(stmt) if isinstance(n, ast.CommonTableExpr)}
    changed = 0
    for node in walk(stmt):
        if not isinstance(node, ast.RangeVar) or node.relname != table:
            continue
        if node.schemaname == schema or (node.schemaname is None and table not in ctes):
            if node.alias is None:  # t.col and the table's name in the statement still resolve
                node.alias = ast.Alias(aliasname=table)
            node.schemaname, node.relname = new_schema, new_table
            changed += 1
    return deparse(stmt), changed


def _type_name(type_sql: str):
    sel = _one(f"SELECT NULL::{type_sql}")
    return sel.targetList[0].val.typeName


def bind(text: str, values: list, types: list[str]) -> str:
    """``text`` with ``$n`` replaced by ``'values[n-1]'::types[n-1]`` (NULL when the value is None)."""
    stmt = _one(text)
    names = [_type_name(t) for t in types]

    def literal(n: int):
        v = values[n - 1] if n - 1 < len(values) else None
        arg = ast.A_Const(isnull=True) if v is None else ast.A_Const(val=ast.String(sval=str(v)))
        return ast.TypeCast(arg=arg, typeName=names[n - 1]) if n - 1 < len(names) else arg

    def replace(node):
        if isinstance(node, (list, tuple)):
            return tuple(replace(n) for n in node)
        if not isinstance(node, ast.Node):
            return node
        if isinstance(node, ast.ParamRef):
            return literal(int(node.number or 0))
        for name in _slots(node):
            value = getattr(node, name, None)
            if isinstance(value, (ast.Node, list, tuple)):
                setattr(node, name, replace(value))
        return node

    return deparse(replace(stmt))


# ---------------------------------------------------------------------------- partition copy
@dataclass
class ScratchPlan:
    statements: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    partman_parent: str | None = None  # 'scratch.table' when pg_partman's create_parent builds it


def plan_to_scratch(sql: str, schema: str, new_name: str, scratch: str) -> ScratchPlan:
    """Step 1 of the partition plan (create the partitioned table ``schema.new_name`` ...) with
    everything it creates in ``scratch`` instead; foreign keys are left out (they would read and
    lock the referenced tables, and do not change the plans compared)."""
    out = ScratchPlan()

    def like(n) -> bool:
        return isinstance(n, ast.TableLikeClause)

    for stmt in _parse(sql):
        if isinstance(stmt, ast.AlterTableStmt):
            cons = [c.def_ for c in stmt.cmds or () if isinstance(getattr(c, "def_", None), ast.Constraint)]
            if any(getattr(c.contype, "name", str(c.contype)).endswith("FOREIGN") for c in cons):
                out.notes.append("foreign key left out of the copy: " + deparse(stmt)[:200])
                continue
        if isinstance(stmt, (ast.CreateStmt, ast.AlterTableStmt, ast.IndexStmt)):
            for node in walk(stmt, skip=like):
                if isinstance(node, ast.RangeVar) and (node.schemaname in (schema, None)):
                    node.schemaname = scratch
            out.statements.append(deparse(stmt))
            continue
        if isinstance(stmt, ast.SelectStmt):
            calls = [n for n in walk(stmt) if isinstance(n, ast.FuncCall)]
            names = (calls[0].funcname or ()) if len(calls) == 1 else ()
            if names and names[-1].sval == "create_parent":
                for arg in calls[0].args or ():
                    if isinstance(arg, ast.NamedArgExpr) and arg.name == "p_parent_table":
                        out.partman_parent = f"{scratch}.{new_name}"
                        arg.arg = ast.A_Const(val=ast.String(sval=out.partman_parent))
                if out.partman_parent is None:
                    raise NotRunnable("create_parent without a named p_parent_table argument")
                out.statements.append(deparse(stmt))
                continue
        raise NotRunnable(f"step 1 of the plan holds a statement validation does not run: {deparse(stmt)[:160]}")
    return out


# ---------------------------------------------------------------------------- materialized view
@dataclass
class MatviewScript:
    view: str  # the view's qualified name as written
    create: str
    indexes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def matview_script(ddl: str) -> MatviewScript:
    """The ``CREATE MATERIALIZED VIEW`` and its ``CREATE UNIQUE INDEX`` of the advice's script; the
    pg_cron ``schedule`` call is not run on staging (noted)."""
    view = create = None
    indexes, notes = [], []
    for stmt in _parse(ddl):
        if isinstance(stmt, ast.CreateTableAsStmt) and getattr(stmt.objtype, "name", "") == "OBJECT_MATVIEW":
            if create is not None:
                raise NotRunnable("the script creates more than one materialized view")
            rel = stmt.into.rel if stmt.into is not None else None
            if rel is None or not rel.relname:
                raise NotRunnable("CREATE MATERIALIZED VIEW without a name")
            view = (f"{quote(rel.schemaname)}." if rel.schemaname else "") + quote(rel.relname)
            create = deparse(stmt)
        elif isinstance(stmt, ast.IndexStmt):
            indexes.append(deparse(stmt))
        elif isinstance(stmt, ast.SelectStmt) and any(
                isinstance(n, ast.FuncCall) and n.funcname and n.funcname[-1].sval in ("schedule", "unschedule")
                for n in walk(stmt)):
            notes.append("the pg_cron refresh schedule is not created on staging")
        else:
            raise NotRunnable(f"the script holds a statement validation does not run: {deparse(stmt)[:160]}")
    if create is None or view is None:
        raise NotRunnable("the script creates no materialized view")
    return MatviewScript(view=view, create=create, indexes=indexes, notes=notes)


def quote(name: str) -> str:
    return quote_ident(name, always=True)
