"""Pipeline step 1, workload (grouping): statements that differ only in normalisation noise are
analysed once, as a group.

pg_stat_statements (PostgreSQL 15) gives ``a IN ($1, $2, $3)`` and ``a IN ($1, ..., $7)``
different query ids, so a workload of IN lists of many lengths shows the same shape hundreds of
times.  :func:`group_key` reads a text with PostgreSQL's own parser (libpg_query through
:mod:`pgparse`) and returns a key of its parse tree with that noise removed:

* parameter numbers (``$3`` vs ``$4``: which a longer IN list before it shifts);
* the length of a list of parameters: an ``IN (...)`` list, an ``ARRAY[...]`` and the rows of
  ``VALUES (...), (...)`` whose items are all alike collapse to one item;
* token positions, whitespace, comments and letter case of keywords (the parser drops them).

Constants that pg_stat_statements kept (``ORDER BY 1``, a type modifier) stay in the key: they
change what the statement means.  :func:`group` makes one group per (role, key): the member with
the most time in the window is the representative, analysed with the summed calls and time of
the group (its weight in the index set); the others are recorded as grouped with it.  Groups
never span roles: each statement is planned with the rights of the role that ran it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from . import pgparse
from .workload import WindowStatement

# Keys of the parse tree that are token positions (not part of what the statement says).
_POSITION_KEYS = frozenset({"location", "rexpr_list_start", "rexpr_list_end", "stmt_location", "stmt_len",
                            "list_start", "list_end"})
_PARAM: dict[str, dict] = {"ParamRef": {}}


@dataclass
class Group:
    """One group: ``rep`` is analysed, with ``weighted`` (the group's summed calls and time)."""

    rep: WindowStatement
    weighted: WindowStatement
    members: list[WindowStatement] = field(default_factory=list)  # without the representative


def _norm(node: Any, collapse: bool = False) -> Any:
    if isinstance(node, dict):
        if "ParamRef" in node:
            return _PARAM
        out = {}
        for k, v in node.items():
            if k in _POSITION_KEYS:
                continue
            if k == "A_Expr" and isinstance(v, dict) and v.get("kind") == "AEXPR_IN":
                out[k] = {kk: _norm(vv, collapse=(kk == "rexpr")) for kk, vv in v.items() if kk not in _POSITION_KEYS}
            elif k in ("A_ArrayExpr",):
                out[k] = {kk: _norm(vv, collapse=(kk == "elements")) for kk, vv in v.items()
                          if kk not in _POSITION_KEYS}
            else:
                out[k] = _norm(v, collapse=(k == "valuesLists"))
        if collapse and set(out) == {"List"}:  # IN (...) as {"List": {"items": [...]}}
            return {"List": _norm_list(node["List"].get("items", []), True)}
        return out
    if isinstance(node, list):
        return _norm_list(node, collapse)
    return node


def _norm_list(items: list, collapse: bool) -> Any:
    got = [_norm(x) for x in items]
    if collapse and got and all(x == got[0] for x in got):
        return {"items": [got[0]], "collapsed": True}
    return got


def group_key(text: str) -> str | None:
    """The key of ``text`` with normalisation noise removed, or None when PostgreSQL's parser
    does not accept it (such a statement is analysed alone)."""
    try:
        tree = json.loads(pgparse._pg.parse_sql_json(text))
    except Exception:
        return None
    stmts = tree.get("stmts") or []
    if len(stmts) != 1:
        return None
    return hashlib.sha1(json.dumps(_norm(stmts[0].get("stmt")), sort_keys=True,
                                   separators=(",", ":")).encode()).hexdigest()


def group(statements: list[WindowStatement]) -> list[Group]:
    """Groups in the order of their costliest member (the window's order: total time, desc)."""
    by_key: dict[tuple[int, int, str], Group] = {}
    out: list[Group] = []
    for st in statements:
        key = group_key(st.query)
        g = None if key is None else by_key.get((st.dbid, st.userid, key))
        if g is None:
            g = Group(rep=st, weighted=st)
            out.append(g)
            if key is not None:
                by_key[(st.dbid, st.userid, key)] = g
        else:
            g.members.append(st)
    for g in out:
        if g.members:
            everyone = [g.rep, *g.members]
            calls = sum(s.calls for s in everyone)
            total = sum(s.total_time_ms for s in everyone)
            g.weighted = dataclasses.replace(g.rep, calls=calls, total_time_ms=total,
                                             mean_time_ms=total / calls if calls else 0.0,
                                             share=sum(s.share for s in everyone))
    return out
