"""The size of a b-tree index before it exists, from the table's statistics (issue 10).

hypopg's ``hypopg_relation_size`` overestimates (on TPC-H sf 0.1 it put a set of indexes at
125 MB that took 55 MB once built): it ignores deduplication and the fill factor of PostgreSQL's
bulk build.  The size here is what ``CREATE INDEX`` builds (PostgreSQL 13+, ``nbtsort.c``):

- **index tuple** = MAXALIGN(8-byte header + the key and INCLUDE columns, each aligned by its
  type), a column's width being its ``pg_stats.avg_width`` (a fixed-width type: its length; a
  short varlena is stored unaligned with a 1-byte header, which ``avg_width`` includes), scaled
  by ``1 - null_frac`` (a NULL stores nothing); a line pointer (4 bytes) per tuple;
- **deduplication**: when every key column's type allows it (not ``numeric``, ``float4/8``,
  ``jsonb``, arrays, ranges or composites) and there is no INCLUDE column, the rows of one key
  value (``n_distinct`` of the keys, their product for several keys, at most the rows) share one
  posting-list tuple of MAXALIGN(tuple + 6 bytes per row), at most :data:`MAX_POSTING_BYTES`;
- **leaf pages**: the tuples fill 8,192-byte pages (24 bytes of page header, 16 of b-tree
  special space) up to the index fill factor (90 %), less one high key per page;
- **internal pages**: one pivot tuple (the key columns) per page below, 70 % full, level by
  level up to the root; plus the metapage;
- **partial indexes**: the rows are the table's ``reltuples`` times the predicate's selectivity
  as the planner estimates it (``EXPLAIN SELECT 1 FROM t WHERE predicate``, planned as the role
  that proposed the index, by the caller's ``predicate_rows``).

Expression keys: ``expr ->> 'key'`` (a JSON value as text) counts :data:`JSON_TEXT_WIDTH`
bytes and no duplicates; another expression over one column (``lower(email)``) counts that
column's width and distinct values; anything else 8 bytes.  ``tests/test_index_size.py``
compares the estimate with built indexes of several shapes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

from ..db import Db
from ..prove import Prover
from .index_candidates import Candidate, _expression_columns, _key_column, _unquote

BLCKSZ = 8192
PAGE_HEADER = 24
BT_SPECIAL = 16
ITEM_ID = 4
TUPLE_HEADER = 8
NULL_BITMAP = 4
TID = 6
MAXALIGN = 8
LEAF_FILLFACTOR = 0.90  # BTREE_DEFAULT_FILLFACTOR
INTERNAL_FILLFACTOR = 0.70  # BTREE_NONLEAF_FILLFACTOR
# nbtsort.c: posting lists built by CREATE INDEX target 10 % of a page
MAX_POSTING_BYTES = (BLCKSZ * 10 // 100) // MAXALIGN * MAXALIGN - ITEM_ID
JSON_TEXT_WIDTH = 12
UNKNOWN_WIDTH = 32
# Types whose default b-tree operator class cannot deduplicate (no "equalimage" support).
NO_DEDUP_TYPES = {"numeric", "float4", "float8", "jsonb", "money", "interval", "tsvector"}
NO_DEDUP_CATEGORIES = {"A", "C", "R", "m"}  # arrays, composites, ranges, multiranges
_ALIGN = {"c": 1, "s": 2, "i": 4, "d": 8}


@dataclass
class Column:
    width: float  # average stored bytes of a non-NULL value
    align: int
    null_frac: float
    n_distinct: float | None  # absolute; None: unknown
    dedup: bool


@dataclass
class Table:
    reltuples: float
    columns: dict[str, Column]


def _align(off: float, a: int) -> float:
    return math.ceil(off / a) * a


def _maxalign(n: float) -> float:
    return math.ceil(n / MAXALIGN) * MAXALIGN


def load_table(db: Db, schema: str, table: str) -> Table | None:
    """reltuples and per-column widths / distinct values; None when the table was never analysed."""
    rel = db.one(
        "SELECT c.oid::bigint AS oid, c.relkind::text AS kind, c.reltuples::float8 AS reltuples,"
        " (SELECT sum(greatest(p.reltuples, 0))::float8 FROM pg_catalog.pg_partition_tree(c.oid) t"
        "   JOIN pg_catalog.pg_class p ON p.oid = t.relid WHERE t.isleaf) AS leaf_tuples"
        " FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = $1 AND c.relname = $2", [schema, table])
    if rel is None:
        return None
    tuples = float(rel["reltuples"])
    if rel["kind"] == "p":
        tuples = float(rel["leaf_tuples"] or -1)
    if tuples < 0:
        return None
    rows = db.query(
        "SELECT a.attname::text AS name, t.typname::text AS type, t.typlen::int AS len,"
        " t.typalign::text AS align, t.typcategory::text AS category,"
        " s.avg_width::float8 AS width, s.null_frac::float8 AS null_frac, s.n_distinct::float8 AS n_distinct"
        " FROM pg_catalog.pg_attribute a"
        " JOIN pg_catalog.pg_type t ON t.oid = CASE WHEN (SELECT typtype FROM pg_catalog.pg_type"
        "   WHERE oid = a.atttypid) = 'd' THEN (SELECT typbasetype FROM pg_catalog.pg_type WHERE oid = a.atttypid)"
        "   ELSE a.atttypid END"
        " LEFT JOIN LATERAL (SELECT st.avg_width, st.null_frac, st.n_distinct FROM pg_catalog.pg_stats st"
        "   WHERE st.schemaname = $1 AND st.tablename = $2 AND st.attname = a.attname"
        "   ORDER BY st.inherited DESC LIMIT 1) s ON true"
        " WHERE a.attrelid = $3::bigint::oid AND a.attnum > 0 AND NOT a.attisdropped",
        [schema, table, rel["oid"]])
    cols = {}
    for r in rows:
        fixed = int(r["len"]) > 0
        width = float(r["len"]) if fixed else float(r["width"] or UNKNOWN_WIDTH)
        # a short varlena (< 127 bytes) has a 1-byte header and is stored unaligned
        align = _ALIGN.get(r["align"], 4) if fixed or width >= 127 else 1
        nd = r["n_distinct"]
        n_distinct = None if nd is None else (float(nd) if nd > 0 else -float(nd) * tuples)
        cols[r["name"]] = Column(width=width, align=align, null_frac=float(r["null_frac"] or 0.0),
                                 n_distinct=n_distinct,
                                 dedup=r["type"] not in NO_DEDUP_TYPES and r["category"] not in NO_DEDUP_CATEGORIES)
    return Table(reltuples=tuples, columns=cols)


def _key(table: Table, key: str) -> Column:
    col = _key_column(key)
    if col is not None:
        c = table.columns.get(_unquote(col))
        if c is not None:
            return dataclasses.replace(c)
    if "->>" in key:
        return Column(width=JSON_TEXT_WIDTH, align=1, null_frac=0.0, n_distinct=None, dedup=True)
    refs = [c for c in _expression_columns(key) if c in table.columns]
    if len(refs) == 1:
        return dataclasses.replace(table.columns[refs[0]])
    return Column(width=8, align=8, null_frac=0.0, n_distinct=None, dedup=False)


def _tuple_bytes(cols: list[Column]) -> float:
    """MAXALIGN(header + data) of one index tuple (no TIDs of a posting list)."""
    off = 0.0
    for c in cols:
        off = _align(off, c.align) + c.width * (1.0 - c.null_frac)
    nulls = NULL_BITMAP if any(c.null_frac > 0 for c in cols) else 0
    return _maxalign(TUPLE_HEADER + nulls + off)


def btree_bytes(table: Table, keys: list[Column], include: list[Column], rows: float,
                fillfactor: float = LEAF_FILLFACTOR) -> int:
    """Bytes of a b-tree of ``rows`` entries with these key and INCLUDE columns."""
    rows = max(rows, 0.0)
    tup = _tuple_bytes(keys + include)
    pivot = _tuple_bytes(keys) + ITEM_ID
    dedup = not include and all(k.dedup for k in keys) and all(k.n_distinct for k in keys)
    groups = rows
    if dedup:
        groups = min(rows, math.prod(float(k.n_distinct or rows) for k in keys))
    per_group = rows / groups if groups > 0 else 1.0
    if dedup and per_group >= 2:
        tids_per_posting = max(int((MAX_POSTING_BYTES - tup) // TID), 2)
        postings = math.ceil(per_group / tids_per_posting)
        tail = per_group - (postings - 1) * tids_per_posting
        group_bytes = (postings - 1) * (_maxalign(tup + TID * tids_per_posting) + ITEM_ID) \
            + _maxalign(tup + TID * tail) + ITEM_ID
        leaf_bytes = groups * group_bytes
    else:
        leaf_bytes = rows * (tup + ITEM_ID)
    usable = BLCKSZ - PAGE_HEADER - BT_SPECIAL - BLCKSZ * (1.0 - fillfactor) - pivot  # less the high key
    pages = max(1, math.ceil(leaf_bytes / usable))
    total = 1 + pages  # the metapage
    per_internal = max(2, int((BLCKSZ - PAGE_HEADER - BT_SPECIAL - BLCKSZ * (1.0 - INTERNAL_FILLFACTOR)) // pivot))
    level = pages
    while level > 1:
        level = math.ceil(level / per_internal)
        total += level
    return int(total * BLCKSZ)


def estimate(db: Db, cand: Candidate, predicate_rows: Callable[[str, str, str], float | None] | None = None,
             cache: dict | None = None) -> int | None:
    """Estimated bytes of ``cand`` once built; None when the table has no statistics (never
    analysed) or a partial index's rows cannot be estimated."""
    cache = {} if cache is None else cache
    key = (cand.schema, cand.table)
    if key not in cache:
        cache[key] = load_table(db, cand.schema, cand.table)
    table = cache[key]
    if table is None:
        return None
    rows = table.reltuples
    if cand.where:
        got = predicate_rows(cand.schema, cand.table, cand.where) if predicate_rows else None
        if got is None:
            return None
        rows = min(rows, got)
    keys = [_key(table, k) for k in cand.keys]
    for k in keys:
        if k.n_distinct is not None:
            k.n_distinct = min(k.n_distinct, rows)
    include = [_key(table, c) for c in cand.include]
    return btree_bytes(table, keys, include, rows)


def hypothetical_index_bytes(prover: Prover, cand: Candidate, oid: int) -> int | None:
    """The estimate above for the hypothetical index ``oid`` of ``cand`` (the prover's planning
    role estimates a partial index's rows); hypopg's own estimate when there is none."""
    got = estimate(prover.db, cand, prover.predicate_rows, prover.size_cache)
    return got if got is not None else prover.hypothetical_size(oid)
