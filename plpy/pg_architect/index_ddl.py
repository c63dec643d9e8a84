"""The DDL of an index recommendation, as it must run on the table it is for.

* A plain table (or a materialized view): one ``CREATE INDEX CONCURRENTLY IF NOT EXISTS``; its
  rollback one ``DROP INDEX CONCURRENTLY IF EXISTS``.
* A partitioned table: ``CREATE INDEX CONCURRENTLY`` is refused there ("cannot create index on
  partitioned table concurrently"), so the DDL is the procedure the PostgreSQL manual documents
  (CREATE INDEX, "Building Indexes Concurrently" / ALTER INDEX ... ATTACH PARTITION), one
  statement per line, each run on its own (never in one transaction block):

  1. ``CREATE INDEX IF NOT EXISTS parent_idx ON ONLY parent ...`` — an invalid index on the
     parent only (no data to read: instant);
  2. for every partition: ``CREATE INDEX CONCURRENTLY IF NOT EXISTS part_idx ON partition ...``
     (a sub-partitioned partition gets steps 1-3 itself, recursively), then
  3. ``ALTER INDEX parent_idx ATTACH PARTITION part_idx``; once every partition's index is
     attached, the parent's index becomes valid.

  The rollback drops the parent's index (``DROP INDEX`` on a partitioned index drops every
  attached one with it; it cannot be CONCURRENTLY), then every partition's index
  ``IF EXISTS`` — nothing left after a procedure that stopped half-way.

A partition's index is named after the partition and a digest of the parent index's name and
the partition (at most 63 bytes, unique per parent index and partition), so the procedure can be
rebuilt from the recommendation alone and compared (``sidecar.github.validate_ddl``).
Foreign-table partitions cannot have indexes: a table with one gets no partitioned procedure
(:class:`NotIndexable`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from .analyze import quote_ident
from .db import Db
from .errors import NotApplicable

MAX_NAME_BYTES = 63


class NotIndexable(NotApplicable):
    """The table cannot get this index (e.g. a foreign-table partition)."""


@dataclass
class Partition:
    schema: str
    name: str
    partitioned: bool
    children: list[Partition] = field(default_factory=list)


def _qualified(schema: str, name: str) -> str:
    return f"{quote_ident(schema)}.{quote_ident(name)}"


def child_index_name(parent_index: str, schema: str, table: str) -> str:
    """The name of partition ``schema.table``'s index under ``parent_index`` (≤ 63 bytes)."""
    from .advisors.index_candidates import _ascii_words

    word, _ = _ascii_words(table)
    digest = hashlib.sha1(f"{parent_index}\x00{schema}\x00{table}".encode()).hexdigest()[:8]
    room = MAX_NAME_BYTES - len("_idx") - 1 - len(digest)
    return f"{(word[:room].rstrip('_') or 'part')}_{digest}_idx"


def _relation(db: Db, schema: str, table: str) -> dict | None:
    # By name in pg_class: no privilege on the schema needed (to_regclass() would need USAGE).
    return db.one("SELECT c.oid::bigint AS oid, c.relkind::text AS kind FROM pg_class c"
                  " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2",
                  [schema, table])


def _children(db: Db, oid: int) -> list[Partition]:
    out = []
    for r in db.query("SELECT n.nspname::text AS schema, c.relname::text AS name, c.relkind::text AS kind,"
                      " c.oid::bigint AS oid FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                      " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE i.inhparent = $1::bigint::oid"
                      " ORDER BY n.nspname, c.relname", [oid]):
        if r["kind"] == "f":
            raise NotIndexable(f"partition {_qualified(r['schema'], r['name'])} is a foreign table")
        p = Partition(r["schema"], r["name"], r["kind"] == "p")
        if p.partitioned:
            p.children = _children(db, r["oid"])
        out.append(p)
    return out


def partitions(db: Db, schema: str, table: str) -> list[Partition] | None:
    """The partition tree under ``schema.table``, or None when it is not a partitioned table."""
    rel = _relation(db, schema, table)
    if rel is None or rel["kind"] != "p":
        return None
    return _children(db, rel["oid"])


def _tail(definition: str, schema: str, table: str) -> str:
    head = f"ON {_qualified(schema, table)} "
    if not definition.startswith(head):
        raise ValueError(f"definition {definition!r} is not for {schema}.{table}")
    return definition[len(head):]


@dataclass
class Procedure:
    ddl: list[str]            # statements, each run on its own
    rollback: list[str]
    index_names: list[tuple[str, str]]  # (schema, index) of every index it creates, parent first


def procedure(schema: str, table: str, index: str, definition: str, tree: list[Partition]) -> Procedure:
    """The documented procedure for an index ``definition`` (``ON schema.table USING ...``)
    named ``index`` on partitioned table ``schema.table`` whose partitions are ``tree``."""
    tail = _tail(definition, schema, table)
    ddl: list[str] = []
    names: list[tuple[str, str, bool]] = []

    def build(s: str, t: str, name: str, children: list[Partition]) -> None:
        ddl.append(f"CREATE INDEX IF NOT EXISTS {quote_ident(name)} ON ONLY {_qualified(s, t)} {tail};")
        names.append((s, name, True))
        for ch in children:
            cname = child_index_name(index, ch.schema, ch.name)
            if ch.partitioned:
                build(ch.schema, ch.name, cname, ch.children)
            else:
                ddl.append(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {quote_ident(cname)} "
                           f"ON {_qualified(ch.schema, ch.name)} {tail};")
                names.append((ch.schema, cname, False))
            ddl.append(f"ALTER INDEX {_qualified(s, name)} ATTACH PARTITION {_qualified(ch.schema, cname)};")

    build(schema, table, index, tree)
    rollback = [f"DROP INDEX {'IF EXISTS' if partitioned else 'CONCURRENTLY IF EXISTS'} {_qualified(s, n)};"
                for s, n, partitioned in names]
    return Procedure(ddl=ddl, rollback=rollback, index_names=[(s, n) for s, n, _p in names])


def for_candidate(db: Db, cand) -> tuple[str, str]:
    """(ddl, rollback) of candidate index ``cand`` (an advisors.index_candidates.Candidate) on its
    table as it is now."""
    tree = partitions(db, cand.schema, cand.table)
    if tree is None:
        return cand.ddl(), cand.rollback_ddl()
    proc = procedure(cand.schema, cand.table, cand.name(), cand.definition(), tree)
    return "\n".join(proc.ddl), "\n".join(proc.rollback)


def statements(text: str) -> list[str]:
    """The statements of a stored DDL / rollback: one per line (as :func:`procedure` writes
    them), comment lines (``--``) and blank lines aside."""
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("--")]
