"""Join- and subquery-aware index candidates (issue 10), besides the per-statement ones of
:mod:`pg_architect.recommend`.

Three sources, each a plain b-tree :class:`~pg_architect.recommend.Candidate`:

* **correlation columns** of ``EXISTS (SELECT ... WHERE inner.col = outer.col)`` and of
  ``x IN (SELECT inner.col ...)``, read from PostgreSQL's own parse tree (libpg_query through
  :mod:`pg_architect.pgparse`): the inner table's column is what a (semi-)join probes, e.g.
  TPC-H Q04's ``lineitem(l_orderkey)``; with the inner table's other equality columns of the
  statement appended as a second candidate;
* **foreign-key columns** of large tables (at least :data:`LARGE_TABLE_ROWS` rows) that the
  statement joins on or filters by: the inner side of a parameterized nested loop;
* **ORDER BY ... LIMIT** with the filter columns: the equality columns of the table, then the
  ordering columns, so the index returns the first rows in order.

Pure apart from the catalog reads (``catalog.resolve_table`` / ``columns`` and one
``pg_constraint`` query); the statement text is never executed here.
"""

from __future__ import annotations

from .. import pgparse  # PostgreSQL's parser: loads libpg_query with RTLD_DEEPBIND (never pglast directly)
from ..analyze import StatementInfo, quote_ident
from ..db import Db
from .index_candidates import Candidate, TableMeta, is_covered

# A table with at least this many rows (pg_class.reltuples) is "large": its foreign-key
# columns are candidates when the statement joins on them.
LARGE_TABLE_ROWS = 10_000


def _node(value):
    if isinstance(value, dict) and len(value) == 1:
        k, v = next(iter(value.items()))
        if isinstance(v, dict) and k[:1].isupper():
            return k, v
    return None


def _colref(value) -> tuple[str | None, str] | None:
    """(qualifier or None, column) of a ColumnRef node (casts unwrapped)."""
    n = _node(value)
    if n is None:
        return None
    t, f = n
    if t == "TypeCast":
        return _colref(f.get("arg"))
    if t != "ColumnRef":
        return None
    names = []
    for part in f.get("fields") or []:
        p = _node(part)
        if p is None or p[0] != "String":
            return None
        names.append(p[1].get("sval") or p[1].get("str") or "")
    if not names:
        return None
    return (names[-2] if len(names) >= 2 else None), names[-1]


def _from_tables(from_clause) -> dict[str, tuple[str | None, str]]:
    """alias (or table name) -> (schema, name) of the plain tables of a FROM list."""
    out: dict[str, tuple[str | None, str]] = {}

    def walk(item) -> None:
        n = _node(item)
        if n is None:
            return
        t, f = n
        if t == "RangeVar" and f.get("relname"):
            alias = ((f.get("alias") or {}).get("aliasname")) or f["relname"]
            out[alias] = (f.get("schemaname"), f["relname"])
        elif t == "JoinExpr":
            walk(f.get("larg"))
            walk(f.get("rarg"))

    for item in from_clause or []:
        walk(item)
    return out


def _conjuncts(expr) -> list:
    n = _node(expr)
    if n is None:
        return []
    t, f = n
    if t == "BoolExpr" and f.get("boolop") == "AND_EXPR":
        out = []
        for a in f.get("args") or []:
            out.extend(_conjuncts(a))
        return out
    return [expr]


def _equalities(where) -> list[tuple[tuple[str | None, str], tuple[str | None, str]]]:
    out = []
    for c in _conjuncts(where):
        n = _node(c)
        if n is None or n[0] != "A_Expr" or n[1].get("kind", "AEXPR_OP") != "AEXPR_OP":
            continue
        op = [_node(x)[1].get("sval") for x in n[1].get("name") or [] if _node(x)]
        if op != ["="]:
            continue
        lhs, rhs = _colref(n[1].get("lexpr")), _colref(n[1].get("rexpr"))
        if lhs and rhs:
            out.append((lhs, rhs))
    return out


def sublink_columns(tree: dict) -> list[tuple[tuple[str | None, str], str]]:
    """((schema, table) as written, column) probed by EXISTS / IN subqueries of the tree.

    For ``EXISTS (SELECT .. FROM t WHERE t.a = o.b)``: t.a (one side names an inner table of
    the subquery, the other none of them). For ``x IN (SELECT t.a FROM t ...)``: t.a."""
    found: list[tuple[tuple[str | None, str], str]] = []

    def inner_column(ref, inner: dict[str, tuple[str | None, str]]):
        qual, col = ref
        if qual is not None:
            return (inner[qual], col) if qual in inner else None
        if len(inner) == 1:  # unqualified: the only inner table (checked against its columns later)
            return next(iter(inner.values())), col
        return None

    def add(item) -> None:
        if item is not None and item not in found:
            found.append(item)

    def walk(value) -> None:
        if isinstance(value, list):
            for v in value:
                walk(v)
            return
        if not isinstance(value, dict):
            return
        n = _node(value)
        if n is None:
            for v in value.values():
                walk(v)
            return
        t, f = n
        if t == "SubLink" and f.get("subLinkType") in ("EXISTS_SUBLINK", "ANY_SUBLINK"):
            sub = _node(f.get("subselect"))
            if sub is not None and sub[0] == "SelectStmt":
                inner = _from_tables(sub[1].get("fromClause"))
                if inner:
                    for a, b in _equalities(sub[1].get("whereClause")):
                        ia, ib = a[0] in inner, b[0] in inner
                        if ia and not ib and b[0] is not None:
                            add(inner_column(a, inner))
                        elif ib and not ia and a[0] is not None:
                            add(inner_column(b, inner))
                        elif a[0] is None and b[0] is not None and b[0] not in inner:
                            add(inner_column(a, inner))
                        elif b[0] is None and a[0] is not None and a[0] not in inner:
                            add(inner_column(b, inner))
                    if f.get("subLinkType") == "ANY_SUBLINK":
                        targets = sub[1].get("targetList") or []
                        if len(targets) == 1:
                            rt = _node(targets[0])
                            ref = _colref(rt[1].get("val")) if rt else None
                            if ref:
                                add(inner_column(ref, inner))
        for v in f.values():
            walk(v)

    walk(tree)
    return found


def _foreign_keys(db: Db, schema: str, table: str) -> list[list[str]]:
    rows = db.query(
        "SELECT ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(attnum, ord)"
        "   JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum ORDER BY k.ord) AS cols"
        " FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid"
        " JOIN pg_namespace n ON n.oid = t.relnamespace"
        " WHERE c.contype = 'f' AND n.nspname = $1 AND t.relname = $2 AND t.reltuples >= $3",
        [schema, table, float(LARGE_TABLE_ROWS)])
    return [list(r["cols"]) for r in rows if r["cols"]]


def _order_keys(order_by: list[tuple[str, str]]) -> list[str]:
    """Plain keys when every item goes the same way (a backward scan serves DESC)."""
    descs = [d.upper().startswith("DESC") for _, d in order_by]
    same = all(descs) or not any(descs)
    return [quote_ident(c) + (" DESC" if d and not same else "") for (c, _), d in zip(order_by, descs)]


def join_candidates(db: Db, info: StatementInfo, catalog, metas: dict[tuple[str, str], TableMeta],
                    max_columns: int = 3) -> list[Candidate]:
    """Extra candidates for one analysed statement, those an existing index serves left out."""
    out: list[Candidate] = []
    seen: set[str] = set()

    def add(schema: str, table: str, keys: list[str], kind: str) -> None:
        keys = list(dict.fromkeys(keys))[:max_columns]
        if not keys:
            return
        cand = Candidate(schema, table, tuple(keys), kind=kind if len(keys) == 1 else "multi")
        d = cand.definition()
        if d in seen:
            return
        seen.add(d)
        meta = metas.get((schema, table))
        if meta is not None and is_covered(cand, meta.indexes) is not None:
            return
        out.append(cand)

    # EXISTS / IN (subquery) correlation columns, from PostgreSQL's parse tree.
    try:
        reading = pgparse.read(info.text)
    except pgparse.PgParseError:
        reading = None
    if reading is not None:
        for (schema, name), col in sublink_columns(reading.tree):
            key = catalog.resolve_table(schema, name)
            if key is None or col not in catalog.columns(*key):
                continue
            add(key[0], key[1], [quote_ident(col)], "single")
            u = info.tables.get(key)
            if u is not None:
                add(key[0], key[1], [quote_ident(col)] + [quote_ident(c) for c in u.eq if c != col], "multi")

    for key, u in info.tables.items():
        schema, table = key
        # Foreign-key columns of large tables the statement joins on or filters by.
        touched = set(u.join) | set(u.eq)
        for cols in _foreign_keys(db, schema, table):
            if cols[0] in touched:
                add(schema, table, [quote_ident(c) for c in cols], "single")
        # ORDER BY ... LIMIT: the filter (equality) columns, then the ordering columns.
        if info.has_limit and u.order_by:
            eq = [quote_ident(c) for c in dict.fromkeys(u.eq) if c not in {c2 for c2, _ in u.order_by}]
            add(schema, table, eq + _order_keys(u.order_by), "multi")
    return out
