"""Pipeline step 4, advise (reading): a statement through PostgreSQL's own parser (libpg_query, pglast).

pg_stat_statements writes what PostgreSQL accepted, so PostgreSQL's grammar is the one that
must read it.  This module is the *gate* of :mod:`pg_architect.analyze`:

* :func:`read` parses the text with libpg_query.  A text it rejects is a true ``parse_error``
  (or ``truncated``) with PostgreSQL's own message and the token it failed at; a text it
  accepts is classified from the parse tree: one statement or several, query (SELECT, INSERT,
  UPDATE, DELETE, MERGE, VALUES) or utility / DDL, ``SELECT ... INTO``;
* it lists the parameters (``$n``) and the *free* ones: parameters whose type PostgreSQL cannot
  infer from their context (``$1+$2``, ``generate_series($1, $2)``, ``SELECT $1`` in a
  recursive CTE, ``THEN $3 ELSE $4``, ``VALUES ($1)``), which :mod:`pg_architect.prove` types
  from candidates when PREPARE fails;
* :func:`sqlglot_text` re-spaces parameters (``$1+$2`` → ``$1+ $2``; sqlglot 30.30's tokenizer
  reads ``$1+$`` as the start of a dollar-quoted string) using libpg_query's scanner, so only
  whitespace between tokens changes;
* :func:`relations` lists the tables of the tree (CTE names excluded), used when sqlglot still
  cannot read a statement PostgreSQL accepts: the statement is then planned and costed on its
  tables, without the per-column facts only sqlglot extracts.

sqlglot stays the reader of predicates (equality, range, join, order, expressions), where its
typed tree is stronger; pglast decides whether and what there is to read.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field


def _import_pglast():
    """Import pglast's parser with RTLD_DEEPBIND where the platform has it.

    libpg_query is PostgreSQL's parser compiled into pglast's extension module, with the same
    symbol names as the server (palloc, CurrentMemoryContext, raw_parser ...).  Loaded into a
    PostgreSQL backend (PL/Python) with the default flags, its calls bind to the *server's*
    symbols and the backend crashes (signal 11) on the first parse.  RTLD_DEEPBIND makes the
    module use its own copies first; outside the server it changes nothing.
    """
    deepbind = getattr(os, "RTLD_DEEPBIND", 0)
    if not deepbind or "pglast.parser" in sys.modules:
        from pglast import parser
        return parser
    old = sys.getdlopenflags()
    sys.setdlopenflags(os.RTLD_NOW | os.RTLD_LOCAL | deepbind)
    try:
        from pglast import parser
    finally:
        sys.setdlopenflags(old)
    return parser


_pg = _import_pglast()

__all__ = ["PgParseError", "Reading", "read", "relations", "sqlglot_text"]

QUERY_NODES = {"SelectStmt": "select", "InsertStmt": "insert", "UpdateStmt": "update",
               "DeleteStmt": "delete", "MergeStmt": "merge"}
# Parse nodes of schema changes (everything else that is not a query is a utility command).
_DDL_PREFIXES = ("Create", "Alter", "Drop", "Rename", "Comment", "Define", "Index", "View",
                 "CompositeType", "SecLabel", "Rule")


class PgParseError(Exception):
    """libpg_query rejected the text: ``message`` is PostgreSQL's, ``position`` a character offset."""

    def __init__(self, message: str, position: int | None, near: str | None):
        super().__init__(message)
        self.message = message
        self.position = position
        self.near = near


@dataclass
class Reading:
    """What PostgreSQL's parser says about one text."""

    statements: int
    node: str  # parse node type of the (first) statement, e.g. SelectStmt, VariableSetStmt
    kind: str  # select | insert | update | delete | merge | utility | ddl
    select_into: bool = False
    params: list[int] = field(default_factory=list)  # distinct $n, ascending
    free_params: list[int] = field(default_factory=list)
    tree: dict = field(default_factory=dict, repr=False)


def read(text: str) -> Reading:
    """Parse ``text`` with PostgreSQL's grammar; raise :class:`PgParseError` when it rejects it."""
    try:
        doc = json.loads(_pg.parse_sql_json(text))
    except _pg.ParseError as e:
        message = str(e.args[0]) if e.args else str(e)
        loc = e.args[1] if len(e.args) > 1 else None
        pos = near = None
        if isinstance(loc, int) and 0 <= loc <= len(text):  # pglast reports character offsets
            pos = loc
            near = text[pos: pos + 40].split("\n")[0]
        raise PgParseError(message, pos, near) from None
    stmts = [s.get("stmt") or {} for s in doc.get("stmts", [])]
    if not stmts:
        return Reading(statements=0, node="", kind="empty")
    first = stmts[0]
    node = next(iter(first), "")
    body = first.get(node) or {}
    if node in QUERY_NODES:
        kind = QUERY_NODES[node]
    elif node.startswith(_DDL_PREFIXES):
        kind = "ddl"
    else:
        kind = "utility"
    reading = Reading(statements=len(stmts), node=node, kind=kind, tree=first,
                      select_into=bool(node == "SelectStmt" and _has_into(body)))
    params: set[int] = set()
    free: set[int] = set()
    _params(first, None, None, params, free)
    reading.params = sorted(params)
    reading.free_params = sorted(free)
    return reading


def _has_into(select: dict) -> bool:
    if select.get("intoClause"):
        return True
    return any(isinstance(select.get(side), dict) and _has_into(select[side]) for side in ("larg", "rarg"))


def _node(value) -> tuple[str, dict] | None:
    """(type, fields) of a JSON parse node {"Type": {...}}, or None."""
    if isinstance(value, dict) and len(value) == 1:
        k, v = next(iter(value.items()))
        if k[:1].isupper() and isinstance(v, dict):
            return k, v
    return None


def _is_param(value) -> bool:
    n = _node(value)
    return n is not None and n[0] == "ParamRef"


def _contextless(value) -> bool:
    """A parameter, a constant, a cast of one, or an operator expression of only those (no column):
    in `$1::date + $2` nothing tells PostgreSQL what `$2` is (integer? interval?)."""
    n = _node(value)
    if n is None:
        return False
    t, f = n
    if t in ("ParamRef", "A_Const"):
        return True
    if t == "TypeCast":
        arg = _node(f.get("arg"))
        return arg is not None and arg[0] in ("ParamRef", "A_Const")
    if t == "A_Expr" and f.get("kind") == "AEXPR_OP":
        return all(_contextless(f[s]) for s in ("lexpr", "rexpr") if s in f)
    return False


def _params(value, parent_type: str | None, parent: dict | None, params: set, free: set) -> None:
    """Collect $n numbers; mark those whose type nothing around them decides."""
    if isinstance(value, list):
        for item in value:
            _params(item, parent_type, parent, params, free)
        return
    n = _node(value)
    if n is None:
        if isinstance(value, dict):
            for v in value.values():
                _params(v, parent_type, parent, params, free)
        return
    t, f = n
    if t == "ParamRef":
        params.add(int(f.get("number", 0)))
        return
    marked: list = []
    if t == "A_Expr" and f.get("kind") == "AEXPR_OP" and _contextless(value):
        marked = [f.get("lexpr"), f.get("rexpr")]
    elif t == "FuncCall" and f.get("args") and all(_contextless(a) for a in f["args"]):
        marked = list(f["args"])
    elif t == "ResTarget" and parent_type == "SelectStmt":
        marked = [f.get("val")]
    elif t == "CaseExpr":
        marked = [(_node(w) or ("", {}))[1].get("result") for w in f.get("args", [])] + [f.get("defresult")]
    elif t in ("CoalesceExpr", "MinMaxExpr"):
        marked = list(f.get("args", []))
    elif t == "A_ArrayExpr" and parent_type != "TypeCast":
        marked = list(f.get("elements", []))
    elif t == "SelectStmt" and f.get("valuesLists"):
        for row in f["valuesLists"]:
            items = (_node(row) or ("", {}))[1].get("items", []) if _node(row) else row
            marked.extend(items if isinstance(items, list) else [])
    for m in marked:
        if _contextless(m):
            _mark(m, free)
    for key, v in f.items():
        if key == "location":
            continue
        _params(v, t, f, params, free)


def _mark(value, free: set) -> None:
    n = _node(value)
    if n is None:
        return
    t, f = n
    if t == "ParamRef":
        free.add(int(f.get("number", 0)))
    elif t == "A_Expr":
        for s in ("lexpr", "rexpr"):
            if s in f:
                _mark(f[s], free)


def sqlglot_text(text: str) -> str:
    """``text`` with a space before every parameter glued to an earlier one (``$1+$2`` →
    ``$1+ $2``, ``ARRAY[$1,$2]`` → ``ARRAY[$1, $2]``): sqlglot 30.30's tokenizer reads
    ``$1+$`` as the start of a dollar-quoted string.  Only whitespace between tokens changes."""
    try:
        tokens = _pg.scan(text)
    except Exception:
        return text
    cuts: list[int] = []
    glued_to_param = False  # no whitespace since the end of the last parameter
    prev_end = None
    for tok in tokens:
        start, end = tok.start, tok.end + 1  # character offsets, end inclusive
        if prev_end is not None and prev_end != start:
            glued_to_param = False
        if tok.name == "PARAM":
            if glued_to_param and prev_end == start:
                cuts.append(start)
            glued_to_param = True
        prev_end = end
    if not cuts:
        return text
    out, last = [], 0
    for c in cuts:
        out.append(text[last:c])
        out.append(" ")
        last = c
    out.append(text[last:])
    return "".join(out)


def relations(reading: Reading) -> list[tuple[str | None, str]]:
    """(schema or None, name) of every table the statement names, CTE names left out."""
    ctes: set[str] = set()
    found: list[tuple[str | None, str]] = []

    def walk(value) -> None:
        if isinstance(value, list):
            for item in value:
                walk(item)
            return
        n = _node(value)
        if n is None:
            if isinstance(value, dict) and "relname" in value and "relpersistence" in value:
                n = ("RangeVar", value)  # fields typed RangeVar (INSERT/UPDATE/DELETE/MERGE target) are unwrapped
            elif isinstance(value, dict):
                for v in value.values():
                    walk(v)
                return
            else:
                return
        t, f = n
        if t == "CommonTableExpr" and f.get("ctename"):
            ctes.add(f["ctename"])
        if t == "RangeVar" and f.get("relname"):
            key = (f.get("schemaname"), f["relname"])
            if key not in found:
                found.append(key)
        for v in f.values():
            walk(v)

    walk(reading.tree)
    return [(s, n) for s, n in found if s is not None or n not in ctes]
