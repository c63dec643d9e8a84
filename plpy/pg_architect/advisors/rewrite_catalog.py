"""What the rewrite rules need to know about the catalog, behind one tiny protocol.

A rule's precondition asks only these questions: which table does a name in FROM denote, what
are its columns (type, NOT NULL) and unique keys, and is a function name an aggregate or
volatile.  :class:`DbCatalog` answers them with parameterised catalog queries over
:class:`pg_architect.db.Db`; :class:`StaticCatalog` answers them from a dict, for unit tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Column:
    name: str
    typname: str            # pg_type.typname: int8, timestamptz, bpchar, numeric ...
    type_schema: str = "pg_catalog"
    not_null: bool = False
    display: str = ""       # format_type(): 'numeric(10,2)', for messages


@dataclass(frozen=True)
class Table:
    schema: str
    name: str
    columns: dict[str, Column]
    # Unique keys enforced immediately by a non-partial, non-expression unique index
    # (primary key, unique constraint or unique index), as column-name tuples.
    unique_keys: tuple[tuple[str, ...], ...] = ()

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    def not_null_keys(self) -> list[tuple[str, ...]]:
        """Unique keys whose columns are all NOT NULL (two rows never share their values)."""
        return [k for k in self.unique_keys if all(self.columns[c].not_null for c in k)]


@dataclass(frozen=True)
class FunctionFlags:
    exists: bool
    aggregate: bool   # some function of that name is an aggregate (or window function)
    volatile: bool    # some function of that name is VOLATILE


class Catalog(Protocol):
    def table(self, schema: str | None, name: str) -> Table | None:
        """The table (or view, matview, foreign/partitioned table) ``name`` denotes in FROM,
        resolved with the search_path when ``schema`` is None; None if there is none."""

    def function(self, schema: str | None, name: str) -> FunctionFlags:
        """What a function name in the statement may be (every overload counts)."""


_TABLE_SQL = """
SELECT c.oid::bigint AS oid, n.nspname::text AS schema, c.relname::text AS name
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.oid = pg_catalog.to_regclass(CASE WHEN $1::text IS NULL THEN pg_catalog.quote_ident($2::text)
                 ELSE pg_catalog.quote_ident($1::text) || '.' || pg_catalog.quote_ident($2::text) END)
   AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
"""

_COLUMNS_SQL = """
SELECT a.attname::text AS name, t.typname::text AS typname, tn.nspname::text AS type_schema,
       a.attnotnull AS not_null, pg_catalog.format_type(a.atttypid, a.atttypmod) AS display
  FROM pg_catalog.pg_attribute a
  JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
  JOIN pg_catalog.pg_namespace tn ON tn.oid = t.typnamespace
 WHERE a.attrelid = $1::bigint::oid AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attnum
"""

_KEYS_SQL = """
SELECT pg_catalog.array_agg(a.attname::text ORDER BY k.ord) AS cols
  FROM pg_catalog.pg_index i
 CROSS JOIN LATERAL pg_catalog.unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
  JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
 WHERE i.indrelid = $1::bigint::oid AND i.indisunique AND i.indimmediate AND i.indisvalid
   AND i.indpred IS NULL AND i.indexprs IS NULL AND k.ord <= i.indnkeyatts
 GROUP BY i.indexrelid
 ORDER BY pg_catalog.count(*), i.indexrelid
"""

_FUNCTION_SQL = """
SELECT pg_catalog.count(*) > 0 AS exists,
       pg_catalog.bool_or(p.prokind IN ('a', 'w')) AS aggregate,
       pg_catalog.bool_or(p.provolatile = 'v') AS volatile
  FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
 WHERE p.proname = $2::text
   AND (CASE WHEN $1::text IS NULL THEN n.nspname = ANY (pg_catalog.current_schemas(true))
        ELSE n.nspname = $1::text END)
"""


class DbCatalog:
    """The catalog of the database behind ``db`` (answers are cached for the object's life)."""

    def __init__(self, db):
        self.db = db
        self._tables: dict[tuple, Table | None] = {}
        self._functions: dict[tuple, FunctionFlags] = {}

    def table(self, schema, name):
        key = (schema, name)
        if key not in self._tables:
            self._tables[key] = self._load(schema, name)
        return self._tables[key]

    def _load(self, schema, name):
        row = self.db.one(_TABLE_SQL, [schema, name])
        if row is None:
            return None
        cols = {r["name"]: Column(**r) for r in self.db.query(_COLUMNS_SQL, [row["oid"]])}
        keys = tuple(tuple(r["cols"]) for r in self.db.query(_KEYS_SQL, [row["oid"]]))
        return Table(row["schema"], row["name"], cols, keys)

    def function(self, schema, name):
        key = (schema, name)
        if key not in self._functions:
            row = self.db.one(_FUNCTION_SQL, [schema, name])
            self._functions[key] = FunctionFlags(bool(row["exists"]), bool(row["aggregate"]),
                                                 bool(row["volatile"]))
        return self._functions[key]


_AGGREGATES = {"count", "sum", "avg", "min", "max", "array_agg", "string_agg", "bool_and", "bool_or",
               "every", "json_agg", "jsonb_agg", "row_number", "rank", "dense_rank"}
_VOLATILE = {"random", "nextval", "clock_timestamp", "gen_random_uuid", "setval", "timeofday"}


@dataclass
class StaticCatalog:
    """A catalog given as data (unit tests): ``{"public.orders": Table(...)}``; unqualified names
    resolve in ``search_path``.  Functions: the usual aggregates and volatile built-ins."""

    tables: dict[str, Table]
    search_path: tuple[str, ...] = ("public",)
    aggregates: set[str] = field(default_factory=lambda: set(_AGGREGATES))
    volatile: set[str] = field(default_factory=lambda: set(_VOLATILE))

    def table(self, schema, name):
        for s in ([schema] if schema else self.search_path):
            t = self.tables.get(f"{s}.{name}")
            if t is not None:
                return t
        return None

    def function(self, schema, name):
        return FunctionFlags(True, name in self.aggregates, name in self.volatile)


def table(schema: str, name: str, columns: list[tuple[str, str, bool]],
          keys: Sequence[tuple[str, ...]] = ()) -> Table:
    """Shorthand for tests: ``table("public", "t", [("id", "int8", True)], [("id",)])``."""
    return Table(schema, name, {c: Column(c, t, not_null=nn, display=t) for c, t, nn in columns},
                 tuple(tuple(k) for k in keys))
