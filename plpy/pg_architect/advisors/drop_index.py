"""Advisor ``drop_index``: housekeeping of the indexes that exist.

Every index is written on every insert and every non-HOT update of its table, takes space,
and is vacuumed; one that nothing reads is pure cost.  This module finds three kinds:

* **unused** — its ``idx_scan`` stayed the same across index usage snapshots
  (``arch.snapshot_index``, taken by :func:`snapshot_indexes`) spanning
  ``arch.settings.unused_index_window``, all taken since the statistics were last reset
  (``pg_stat_database.stats_reset``; in PostgreSQL 15 resetting one table's or index's counters
  moves it too).  A reset inside the window, a counter that went down or no snapshot old enough
  is "not enough evidence": no advice.
* **duplicate** — the same table, access method, columns / expressions, operator classes,
  collations, orderings, predicate and INCLUDE columns as another index.  The one kept is the one
  backing a constraint, else a unique one, else the one whose name is not a numbered copy
  (``..._idx1``), else the older (lower OID).
* **prefix_redundant** — a b-tree whose key columns (with their operator classes, collations
  and orderings) are the leading key columns of another b-tree with the same predicate, whose
  INCLUDE columns the other has too, and which is not unique (the wider one may be).

Never proposed, whatever the evidence: an index backing a constraint (``pg_constraint.conindid``:
primary key, unique, exclusion, and the unique index a foreign key *references*), the replica
identity index (logical replication would lose its key), a clustered index (``CLUSTER`` without
an index name uses it; decided: keep), a unique index that is not an exact duplicate of another
unique one (it enforces something), an index of a partition attached to a partitioned index
(only the parent's can be dropped), an invalid index, an index owned by an extension or in
``arch``, ``pg_catalog``, ``information_schema``, ``pg_toast`` or a temporary schema.  And never
the *only* remaining b-tree whose leading key columns are a foreign key's referencing columns:
without it every delete or key update on the referenced table scans this table (a NOTICE names
each index kept for that reason; a duplicate's rationale says which index keeps the foreign key
covered).

The DDL is ``DROP INDEX CONCURRENTLY IF EXISTS`` (a partitioned index: ``DROP INDEX IF EXISTS``,
which takes an ACCESS EXCLUSIVE lock on the table and its partitions for the moment of the drop).
The rollback is the index's ``pg_get_indexdef`` as ``CREATE INDEX CONCURRENTLY IF NOT EXISTS``
(a partitioned index: ``ON ONLY`` the parent, each partition's index built concurrently under its
old name and attached).  The write cost saved is the index entries written per day on the table
(inserts + updates − HOT updates, from the ``pg_stat_user_tables`` deltas between the oldest
snapshot since the reset and now).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise

# The only place this module reaches into the rest of the package (the integrator may re-point it).
from ..db import LOCK_NOT_AVAILABLE, Db, DbError, UserError
from ..settings import load_into as _db_load_settings

KIND = "drop_index"
REASONS = ("unused", "duplicate", "prefix_redundant")
# Schemas whose indexes are never looked at.
SKIP_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast", "arch")
# A name ending in digits after the usual suffix: a numbered copy PostgreSQL made (t_a_idx1).
_NUMBERED_COPY = re.compile(r"(_idx|_key|_pkey|_excl)\d+$")


@dataclass
class Settings:
    unused_index_window: str
    snapshot_retention: str


def load_settings(db: Db) -> Settings:
    return _db_load_settings(db, Settings)


# --------------------------------------------------------------------------- catalog reading
# Indexes considered: not a partition of a partitioned index, not an extension's, not a
# temporary table's, not in a skipped schema.  A partitioned index sums its leaves.
_INDEXES = """
WITH idx AS (
  SELECT i.indexrelid, i.indrelid, ic.relname AS index_name, tc.relname AS table_name,
         n.nspname AS schema_name, ic.relkind AS index_kind, tc.relkind AS table_kind
  FROM pg_catalog.pg_index i
  JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
  JOIN pg_catalog.pg_class tc ON tc.oid = i.indrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = tc.relnamespace
  WHERE NOT ic.relispartition
    AND tc.relpersistence <> 't'
    AND n.nspname <> ALL (ARRAY(SELECT pg_catalog.jsonb_array_elements_text($1::jsonb)))
    AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
    AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                    WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid IN (i.indexrelid, i.indrelid)
                      AND d.deptype = 'e')
)
SELECT idx.*,
       coalesce(ix.scans, 0)::bigint AS idx_scan, coalesce(ix.size, 0)::bigint AS size_bytes,
       coalesce(tb.ins, 0)::bigint AS n_tup_ins, coalesce(tb.upd, 0)::bigint AS n_tup_upd,
       coalesce(tb.hot, 0)::bigint AS n_tup_hot_upd, coalesce(tb.del, 0)::bigint AS n_tup_del
FROM idx
LEFT JOIN LATERAL (
  SELECT sum(pg_catalog.pg_stat_get_numscans(l.relid)) AS scans,
         sum(pg_catalog.pg_relation_size(l.relid)) AS size
  FROM (SELECT idx.indexrelid AS relid WHERE idx.index_kind = 'i'
        UNION ALL
        SELECT t.relid FROM pg_catalog.pg_partition_tree(idx.indexrelid) t
        WHERE idx.index_kind = 'I' AND t.isleaf) l) ix ON true
LEFT JOIN LATERAL (
  SELECT sum(pg_catalog.pg_stat_get_tuples_inserted(l.relid)) AS ins,
         sum(pg_catalog.pg_stat_get_tuples_updated(l.relid)) AS upd,
         sum(pg_catalog.pg_stat_get_tuples_hot_updated(l.relid)) AS hot,
         sum(pg_catalog.pg_stat_get_tuples_deleted(l.relid)) AS del
  FROM (SELECT idx.indrelid AS relid WHERE idx.table_kind <> 'p'
        UNION ALL
        SELECT t.relid FROM pg_catalog.pg_partition_tree(idx.indrelid) t
        WHERE idx.table_kind = 'p' AND t.isleaf) l) tb ON true
"""

_STATS_RESET = ("SELECT extract(epoch FROM pg_catalog.pg_stat_get_db_stat_reset_time(oid))::float8 AS stats_reset,"
                " extract(epoch FROM now())::float8 AS now,"
                " extract(epoch FROM now() - $1::text::interval)::float8 AS window_start"
                " FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()")

# Everything the rules compare, per index (arrays cover the key columns only, except the
# column definitions, which cover key and INCLUDE columns).
_DETAILS = """
SELECT i.indexrelid, i.indrelid, pg_catalog.format('%I.%I', n.nspname, ic.relname) AS qindex,
       pg_catalog.format('%I.%I', n.nspname, tc.relname) AS qtable,
       am.amname, i.indisunique, i.indnullsnotdistinct, i.indisprimary, i.indisexclusion,
       i.indisreplident, i.indisclustered, (i.indisvalid AND i.indisready AND i.indislive) AS valid,
       i.indnatts, i.indnkeyatts, i.indkey::int2[] AS indkey,
       i.indclass::oid[]::text[] AS indclass, i.indcollation::oid[]::text[] AS indcollation,
       i.indoption::int2[] AS indoption,
       ARRAY(SELECT pg_catalog.pg_get_indexdef(i.indexrelid, k, false)
             FROM pg_catalog.generate_series(1, i.indnatts) k ORDER BY k) AS columns,
       pg_catalog.pg_get_expr(i.indpred, i.indrelid) AS predicate,
       pg_catalog.pg_get_indexdef(i.indexrelid) AS indexdef,
       pg_catalog.quote_ident(ts.spcname) AS tablespace, ic.relkind = 'I' AS partitioned,
       (SELECT pg_catalog.string_agg(pg_catalog.format('%s %I', CASE c.contype WHEN 'p' THEN 'primary key'
                  WHEN 'u' THEN 'unique constraint' WHEN 'x' THEN 'exclusion constraint'
                  WHEN 'f' THEN 'foreign key' ELSE 'constraint' END, c.conname)
                  || CASE WHEN c.contype = 'f' THEN pg_catalog.format(' of %s (it references this index)',
                          c.conrelid::regclass) ELSE '' END, ', ' ORDER BY c.conname)
        FROM pg_catalog.pg_constraint c WHERE c.conindid = i.indexrelid) AS constraints
FROM pg_catalog.pg_index i
JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
JOIN pg_catalog.pg_class tc ON tc.oid = i.indrelid
JOIN pg_catalog.pg_namespace n ON n.oid = tc.relnamespace
JOIN pg_catalog.pg_am am ON am.oid = ic.relam
LEFT JOIN pg_catalog.pg_tablespace ts ON ts.oid = ic.reltablespace
WHERE i.indrelid = ANY (ARRAY(SELECT pg_catalog.jsonb_array_elements_text($1::jsonb)::oid)) AND NOT ic.relispartition
"""

_FOREIGN_KEYS = """
SELECT c.conrelid, c.conname, c.conkey::int2[] AS conkey, c.confrelid::regclass::text AS referenced
FROM pg_catalog.pg_constraint c
WHERE c.contype = 'f' AND c.conrelid = ANY (ARRAY(SELECT pg_catalog.jsonb_array_elements_text($1::jsonb)::oid))
"""


def _read_indexes(db: Db) -> list[dict]:
    """The indexes with their live counters, under arch.settings.lock_timeout (sizes take an
    ACCESS SHARE lock on each index: never wait long behind a DROP or REINDEX)."""
    old = db.scalar("SELECT pg_catalog.current_setting('lock_timeout')")
    ms = db.scalar("SELECT (extract(epoch FROM lock_timeout) * 1000)::bigint FROM arch.settings WHERE id")
    if ms is not None:
        db.execute("SELECT pg_catalog.set_config('lock_timeout', $1, true)", [f"{int(ms)}ms"])
    try:
        return db.query(_INDEXES, [list(SKIP_SCHEMAS)])
    except DbError as exc:
        if exc.sqlstate == LOCK_NOT_AVAILABLE:
            raise UserError("an index is locked: its size cannot be read now", detail=str(exc).splitlines()[0],
                            hint="Another session holds an ACCESS EXCLUSIVE lock (DROP / REINDEX / ALTER); "
                                 "try again later or raise arch.settings.lock_timeout.",
                            sqlstate=exc.sqlstate) from None
        raise
    finally:
        db.execute("SELECT pg_catalog.set_config('lock_timeout', $1, true)", [old])


# --------------------------------------------------------------------------- snapshots
def snapshot_indexes(db: Db) -> int:
    """Record every user index's idx_scan, size and its table's write counters now; prune
    what no window needs any more (older than ``snapshot_retention`` and older than the newest
    snapshot that already spans ``unused_index_window``)."""
    st = load_settings(db)
    rows = _read_indexes(db)
    if rows:
        db.execute(
            "INSERT INTO arch.snapshot_index AS s (taken_at, indexrelid, tablerelid, schema_name, table_name,"
            "   index_name, idx_scan, size_bytes, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del, stats_reset)"
            " SELECT now(), r.indexrelid, r.indrelid, r.schema_name, r.table_name, r.index_name, r.idx_scan,"
            "   r.size_bytes, r.n_tup_ins, r.n_tup_upd, r.n_tup_hot_upd, r.n_tup_del,"
            "   (SELECT pg_catalog.pg_stat_get_db_stat_reset_time(d.oid) FROM pg_catalog.pg_database d"
            "     WHERE d.datname = pg_catalog.current_database())"
            " FROM pg_catalog.jsonb_to_recordset($1::jsonb) AS r(indexrelid oid, indrelid oid, schema_name text,"
            "   table_name text, index_name text, idx_scan bigint, size_bytes bigint, n_tup_ins bigint,"
            "   n_tup_upd bigint, n_tup_hot_upd bigint, n_tup_del bigint)"
            " ON CONFLICT (taken_at, indexrelid) DO UPDATE SET idx_scan = EXCLUDED.idx_scan,"
            "   size_bytes = EXCLUDED.size_bytes, n_tup_ins = EXCLUDED.n_tup_ins, n_tup_upd = EXCLUDED.n_tup_upd,"
            "   n_tup_hot_upd = EXCLUDED.n_tup_hot_upd, n_tup_del = EXCLUDED.n_tup_del,"
            "   stats_reset = EXCLUDED.stats_reset",
            [[{k: (int(v) if k in ("indexrelid", "indrelid") else v) for k, v in r.items()} for r in rows]])
    db.execute(
        "DELETE FROM arch.snapshot_index WHERE taken_at < now() - $1::text::interval"
        " AND taken_at < coalesce((SELECT max(taken_at) FROM arch.snapshot_index"
        "                          WHERE taken_at <= now() - $2::text::interval), '-infinity')",
        [st.snapshot_retention, st.unused_index_window])
    return len(rows)


# --------------------------------------------------------------------------- the rules
@dataclass
class Index:
    oid: int
    table_oid: int
    name: str  # schema-qualified, quoted
    table: str
    am: str
    unique: bool
    nulls_not_distinct: bool
    valid: bool
    nkey: int
    keys: list[tuple]  # (column or expression, opclass, collation, option) per key column
    include: list[str]
    attnums: list[int]  # per key column, 0 for an expression
    predicate: str | None
    indexdef: str
    tablespace: str | None
    partitioned: bool
    protected: str | None  # why it is never dropped
    scans: int = 0
    size: int = 0
    live: dict = field(default_factory=dict)

    @property
    def short(self) -> str:
        return self.name.split(".", 1)[1] if "." in self.name else self.name

    def signature(self) -> tuple:
        return (self.table_oid, self.am, tuple(self.keys), tuple(self.include), self.predicate)

    def covers_fk(self, conkey: list[int]) -> bool:
        """A b-tree without predicate whose leading key columns are exactly the FK's columns."""
        n = len(conkey)
        return (self.am == "btree" and self.valid and self.predicate is None and self.nkey >= n
                and sorted(self.attnums[:n]) == sorted(conkey) and 0 not in self.attnums[:n])


def _covers(b: Index, a: Index) -> bool:
    """True if b-tree ``b`` serves every scan b-tree ``a`` serves (``a`` prefix-redundant)."""
    if a.oid == b.oid or a.am != "btree" or b.am != "btree" or a.table_oid != b.table_oid:
        return False
    if not b.valid or a.predicate != b.predicate or a.nkey > b.nkey or b.keys[:a.nkey] != a.keys:
        return False
    b_columns = {k[0] for k in b.keys} | set(b.include)
    if not set(a.include) <= b_columns:
        return False
    return a.nkey < b.nkey or len(set(a.include)) < len(set(b.include))


def _keep_order(ix: Index) -> tuple:
    """Sort key of duplicates: the first is kept."""
    return (ix.protected is None, not ix.unique, bool(_NUMBERED_COPY.search(ix.short)), ix.oid)


def _protection(r: dict) -> str | None:
    if r["constraints"]:
        return f"it backs {r['constraints']}"
    if r["indisprimary"]:
        return "it is the primary key"
    if r["indisexclusion"]:
        return "it enforces an exclusion constraint"
    if r["indisreplident"]:
        return "it is the table's replica identity (logical replication identifies rows by it)"
    if r["indisclustered"]:
        return "the table is clustered on it (CLUSTER without an index name uses it)"
    return None


def _load(db: Db, rows: list[dict]) -> tuple[dict[int, Index], dict[int, list[dict]]]:
    tables = sorted({int(r["indrelid"]) for r in rows})
    live = {int(r["indexrelid"]): r for r in rows}
    out: dict[int, Index] = {}
    for r in db.query(_DETAILS, [tables]):
        oid = int(r["indexrelid"])
        nkey = int(r["indnkeyatts"])
        cols = list(r["columns"])
        indkey = [int(x) for x in r["indkey"]]
        opts = [int(x) for x in (r["indoption"] or [])] + [0] * nkey
        keys = [(cols[k], r["indclass"][k], r["indcollation"][k], opts[k]) for k in range(nkey)]
        ix = Index(oid=oid, table_oid=int(r["indrelid"]), name=r["qindex"], table=r["qtable"], am=r["amname"],
                   unique=bool(r["indisunique"]), nulls_not_distinct=bool(r["indnullsnotdistinct"]),
                   valid=bool(r["valid"]), nkey=nkey, keys=keys, include=cols[nkey:], attnums=indkey[:nkey],
                   predicate=r["predicate"], indexdef=r["indexdef"], tablespace=r["tablespace"],
                   partitioned=bool(r["partitioned"]), protected=_protection(r))
        if oid in live:
            ix.live = live[oid]
            ix.scans = int(live[oid]["idx_scan"])
            ix.size = int(live[oid]["size_bytes"])
        elif ix.protected is None:  # an extension's index on a user table, or one created a moment ago
            ix.protected = "it was not in the statistics read a moment ago (an extension's, or just created)"
        out[oid] = ix
    fks: dict[int, list[dict]] = {}
    for f in db.query(_FOREIGN_KEYS, [tables]):
        fks.setdefault(int(f["conrelid"]), []).append(f)
    return out, fks


# --------------------------------------------------------------------------- evidence
@dataclass
class Usage:
    unused: bool
    since: float | None = None  # taken_at of the baseline snapshot (epoch seconds), when unused
    snapshots: int = 0
    why_not: str | None = None


def _usage(history: list[dict], ix: Index, stats_reset, now, window_start) -> Usage:
    """Was ``ix`` unscanned across snapshots spanning the window, all since the stats reset?
    Any counter that went down (idx_scan, or its table's inserts / updates: statistics lost in a
    crash restart, or a reset the timestamp missed) is a reset too."""
    base = [h for h in history if h["taken_at"] <= window_start]
    if not base:
        return Usage(False, why_not="no snapshot old enough")
    b = base[-1]
    later = ([h for h in history if h["taken_at"] >= b["taken_at"]]
             + [dict(ix.live, taken_at=now, stats_reset=stats_reset)])
    if any(h["stats_reset"] != b["stats_reset"] for h in later):
        return Usage(False, why_not="the statistics were reset inside the window")
    for col in ("n_tup_ins", "n_tup_upd"):
        values = [int(h[col]) for h in later]
        if any(x > y for x, y in pairwise(values)):
            return Usage(False, why_not="the statistics were reset inside the window")
    if any(int(h["idx_scan"]) != int(b["idx_scan"]) for h in later):
        return Usage(False, why_not="scanned in the window")
    return Usage(True, since=b["taken_at"], snapshots=len(later) - 2)  # between the baseline and now


def _writes_per_day(history: list[dict], ix: Index, stats_reset, now) -> tuple[float | None, str]:
    """Index entries written per day on the table (inserts + non-HOT updates) and how it was
    measured: from the oldest snapshot of any index of the table since the last reset."""
    live = ix.live
    if not live:
        return None, "unknown"
    same = [h for h in history if h["stats_reset"] == stats_reset and h["taken_at"] < now - 60
            and int(h["n_tup_ins"]) <= int(live["n_tup_ins"]) and int(h["n_tup_upd"]) <= int(live["n_tup_upd"])]
    if same:
        h = same[0]
        start, label = h["taken_at"], f"since the snapshot of {_day(h['taken_at'])}"
        written = ((int(live["n_tup_ins"]) - int(h["n_tup_ins"])) + (int(live["n_tup_upd"]) - int(h["n_tup_upd"]))
                   - (int(live["n_tup_hot_upd"]) - int(h["n_tup_hot_upd"])))
    elif stats_reset is not None:
        start, label = stats_reset, f"since the statistics reset of {_day(stats_reset)}"
        written = int(live["n_tup_ins"]) + int(live["n_tup_upd"]) - int(live["n_tup_hot_upd"])
    else:
        return None, "unknown: no snapshot of the table yet and the statistics were never reset"
    days = (now - start) / 86400.0
    if days <= 0 or written < 0:
        return None, "unknown"
    return written / max(days, 1.0 / 24), label


def _day(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _mb(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / 1048576:,.1f} MB"
    return f"{n / 1024:,.0f} kB"


# --------------------------------------------------------------------------- DDL
def drop_ddl(ix: Index) -> str:
    if ix.partitioned:
        return f"DROP INDEX IF EXISTS {ix.name};"
    return f"DROP INDEX CONCURRENTLY IF EXISTS {ix.name};"


_CREATE = re.compile(r"^CREATE (UNIQUE )?INDEX ")


def _with_tablespace(indexdef: str, tablespace: str | None, predicate: str | None) -> str:
    if not tablespace:
        return indexdef
    clause = f" TABLESPACE {tablespace}"
    if predicate and indexdef.endswith(f" WHERE {predicate}"):
        return indexdef[: -len(f" WHERE {predicate}")] + clause + f" WHERE {predicate}"
    if not predicate:
        return indexdef + clause
    return indexdef


def rollback_ddl(db: Db, ix: Index) -> str:
    """The index again, as it was: concurrently where PostgreSQL allows it."""
    if not ix.partitioned:
        d = _with_tablespace(ix.indexdef, ix.tablespace, ix.predicate)
        return _CREATE.sub(lambda m: f"CREATE {m.group(1) or ''}INDEX CONCURRENTLY IF NOT EXISTS ", d, count=1) + ";"
    tree = db.query(
        "SELECT t.relid::oid AS relid, t.parentrelid::oid AS parentrelid, t.isleaf, t.level,"
        "  pg_catalog.pg_get_indexdef(t.relid) AS def,"
        "  pg_catalog.format('%I.%I', n.nspname, c.relname) AS qname"
        " FROM pg_catalog.pg_partition_tree($1::oid) t JOIN pg_catalog.pg_class c ON c.oid = t.relid"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace ORDER BY t.level, c.relname", [ix.oid])
    foreign = db.scalar(
        "SELECT count(*) FROM pg_catalog.pg_partition_tree($1::oid) t JOIN pg_catalog.pg_class c ON c.oid = t.relid"
        " WHERE c.relkind = 'f'", [ix.table_oid])
    if foreign:
        # A foreign partition has no index: the parent's ON ONLY index would never become valid.
        return _CREATE.sub(lambda m: f"CREATE {m.group(1) or ''}INDEX IF NOT EXISTS ",
                           ix.indexdef.replace(" ON ONLY ", " ON ", 1), count=1) + ";"
    children: dict[int, list[dict]] = {}
    for t in tree:
        if t["parentrelid"] is not None:
            children.setdefault(int(t["parentrelid"]), []).append(t)
    lines: list[str] = []

    def build(node: dict) -> None:
        if node["isleaf"]:
            lines.append(_CREATE.sub(lambda m: f"CREATE {m.group(1) or ''}INDEX CONCURRENTLY IF NOT EXISTS ",
                                     node["def"], count=1) + ";")
            return
        lines.append(_CREATE.sub(lambda m: f"CREATE {m.group(1) or ''}INDEX IF NOT EXISTS ", node["def"], count=1)
                     + ";")
        for c in children.get(int(node["relid"]), []):
            build(c)
            lines.append(f"ALTER INDEX {node['qname']} ATTACH PARTITION {c['qname']};")

    build(next(t for t in tree if t["parentrelid"] is None))
    return "\n".join(lines)


# --------------------------------------------------------------------------- the advice
@dataclass
class Advice:
    table_name: str
    index_name: str
    reason: str
    ddl: str
    rollback: str
    size_bytes: int
    scans: int
    covering_index: str | None
    writes_saved_per_day: float | None
    rationale: str
    kind: str = KIND

    def pr_section(self) -> str:
        """The pull request's section for this advice (markdown): what, why, how to undo."""
        saved = ("unknown" if self.writes_saved_per_day is None
                 else f"about {self.writes_saved_per_day:,.0f} index entries per day")
        return "\n".join([
            f"### Drop `{self.index_name}` ({self.reason.replace('_', ' ')})",
            "",
            self.rationale,
            "",
            f"- size: {_mb(self.size_bytes)}; scans since the statistics reset: {self.scans:,}",
            f"- covering index: `{self.covering_index}`" if self.covering_index else "- covering index: none (unused)",
            f"- write cost saved: {saved}",
            "",
            "```sql", self.ddl, "```",
            "",
            "Rollback:",
            "",
            "```sql", self.rollback, "```",
        ])


def advise(db: Db) -> list[Advice]:
    st = load_settings(db)
    rows = _read_indexes(db)
    if not rows:
        return []
    clock = db.one(_STATS_RESET, [st.unused_index_window])
    assert clock is not None  # the current database's own row of pg_database
    stats_reset, now, window_start = clock["stats_reset"], clock["now"], clock["window_start"]
    indexes, fks = _load(db, rows)
    history: dict[int, list[dict]] = {}
    tables: dict[int, dict[float, dict]] = {}  # table -> taken_at -> its counters (one row per snapshot)
    for h in db.query("SELECT indexrelid, tablerelid, extract(epoch FROM taken_at)::float8 AS taken_at, idx_scan,"
                      " extract(epoch FROM stats_reset)::float8 AS stats_reset, n_tup_ins, n_tup_upd, n_tup_hot_upd"
                      " FROM arch.snapshot_index"
                      " WHERE tablerelid = ANY (ARRAY(SELECT pg_catalog.jsonb_array_elements_text($1::jsonb)::oid))"
                      " ORDER BY indexrelid, taken_at",
                      [sorted({ix.table_oid for ix in indexes.values()})]):
        history.setdefault(int(h["indexrelid"]), []).append(h)
        tables.setdefault(int(h["tablerelid"]), {}).setdefault(h["taken_at"], h)

    remaining = {oid for oid, ix in indexes.items() if ix.valid}
    dropped: dict[int, tuple[str, Index | None, str]] = {}  # oid -> (reason, covering index, evidence)
    notes: list[str] = []

    def fk_blocks(ix: Index) -> dict | None:
        """The foreign key ``ix`` is the last remaining cover of, if any."""
        for f in fks.get(ix.table_oid, []):
            conkey = [int(k) for k in f["conkey"]]
            if ix.covers_fk(conkey) and not any(
                    indexes[o].covers_fk(conkey) for o in remaining
                    if o != ix.oid and indexes[o].table_oid == ix.table_oid):
                return f
        return None

    def fk_still_covered(ix: Index, keeper: Index) -> str:
        kept = [f["conname"] for f in fks.get(ix.table_oid, []) if ix.covers_fk([int(k) for k in f["conkey"]])]
        if not kept:
            return ""
        return (f" Foreign key {', '.join(kept)} stays covered by {keeper.name} (checks on deletes and key updates"
                f" of the referenced table keep an index)." if all(
                    keeper.covers_fk([int(k) for k in f["conkey"]]) for f in fks.get(ix.table_oid, [])
                    if f["conname"] in kept) else f" Foreign key {', '.join(kept)} stays covered by another index.")

    def try_drop(ix: Index, reason: str, cover: Index | None, evidence: str) -> bool:
        f = fk_blocks(ix)
        if f is not None:
            notes.append(f"index {ix.name} would be dropped as {reason} but is kept: it is the only index covering "
                         f"foreign key {f['conname']} ({ix.table} → {f['referenced']}); deletes and key updates on "
                         f"{f['referenced']} need it")
            return False
        remaining.discard(ix.oid)
        dropped[ix.oid] = (reason, cover, evidence)
        return True

    # 1. unused: the largest first (when two cover the same foreign key, the smaller one stays).
    no_evidence: dict[str, int] = {}
    for ix in sorted(indexes.values(), key=lambda i: (-i.size, i.oid)):
        if not ix.valid or ix.protected or ix.unique or ix.oid not in remaining:
            continue
        u = _usage(history.get(ix.oid, []), ix, stats_reset, now, window_start)
        if not u.unused:
            assert u.why_not is not None  # _usage says why whenever the index is not unused
            if u.why_not != "scanned in the window":
                no_evidence[u.why_not] = no_evidence.get(u.why_not, 0) + 1
            continue
        since = u.since
        assert since is not None  # _usage gives the baseline of every unused index
        days = (now - since) / 86400.0
        evidence = (f"idx_scan stayed {ix.scans:,} from the snapshot of {_day(since)} ({days:,.1f} days ago;"
                    f" unused_index_window {st.unused_index_window}) until now"
                    + (f" ({u.snapshots} snapshot{'s' if u.snapshots != 1 else ''} in between agree)"
                       if u.snapshots else "")
                    + ", and the statistics were not reset in between"
                    + (f" (last reset {_day(stats_reset)})" if stats_reset is not None else " (never reset)"))
        try_drop(ix, "unused", None, evidence)

    # 2. exact duplicates.
    groups: dict[tuple, list[Index]] = {}
    for oid in sorted(remaining):
        groups.setdefault(indexes[oid].signature(), []).append(indexes[oid])
    for group in groups.values():
        if len(group) < 2:
            continue
        group.sort(key=_keep_order)
        keeper = group[0]
        for ix in group[1:]:
            if ix.protected:
                continue
            if ix.unique and not (keeper.unique and keeper.nulls_not_distinct == ix.nulls_not_distinct):
                continue
            if keeper.protected:
                why = f"{keeper.name} is kept because {keeper.protected}"
            elif keeper.unique and not ix.unique:
                why = f"{keeper.name} is kept because it is unique"
            elif _NUMBERED_COPY.search(ix.short) and not _NUMBERED_COPY.search(keeper.short):
                why = f"{keeper.name} is kept ({ix.short} is a numbered copy of its name)"
            else:
                why = f"{keeper.name} is kept (the older one)"
            try_drop(ix, "duplicate", keeper, why + "." + fk_still_covered(ix, keeper))

    # 3. prefix-redundant b-trees: the widest cover (never dropped itself: anything covering it covers more).
    for ix in sorted((indexes[o] for o in remaining), key=lambda i: (i.nkey, len(i.include), i.oid)):
        if ix.protected or ix.unique or ix.am != "btree" or ix.oid not in remaining:
            continue
        covers = [indexes[o] for o in remaining if _covers(indexes[o], ix)]
        if not covers:
            continue
        cover = max(covers, key=lambda b: (b.nkey, len(b.include), -b.oid))
        try_drop(ix, "prefix_redundant", cover, fk_still_covered(ix, cover).strip())

    for line in notes:
        db.notice(line)
    if no_evidence:
        db.notice("not enough evidence to call an index unused: " + "; ".join(
            f"{n} index{'es' if n > 1 else ''}: {why}" for why, n in sorted(no_evidence.items()))
            + f" (arch.snapshot_indexes() records usage; unused_index_window is {st.unused_index_window})")

    out = []
    for oid, (reason, covering, evidence) in dropped.items():
        ix = indexes[oid]
        table_history = sorted(tables.get(ix.table_oid, {}).values(), key=lambda h: h["taken_at"])
        per_day, measured = _writes_per_day(table_history, ix, stats_reset, now)
        out.append(Advice(table_name=ix.table, index_name=ix.name, reason=reason, ddl=drop_ddl(ix),
                          rollback=rollback_ddl(db, ix), size_bytes=ix.size, scans=ix.scans,
                          covering_index=covering.name if covering else None,
                          writes_saved_per_day=None if per_day is None else round(per_day, 1),
                          rationale=_rationale(ix, reason, covering, evidence, per_day, measured)))
    out.sort(key=lambda a: (-a.size_bytes, a.index_name))
    return out


def _columns(ix: Index) -> str:
    text = ", ".join(k[0] for k in ix.keys)
    if ix.include:
        text += f") INCLUDE ({', '.join(ix.include)}"
    return f"{ix.am} ({text})" + (f" WHERE {ix.predicate}" if ix.predicate else "")


def _rationale(ix: Index, reason: str, cover: Index | None, evidence: str, per_day: float | None,
               measured: str) -> str:
    parts = []
    if reason == "unused":
        parts.append(f"{ix.name} {_columns(ix)} on {ix.table}, {_mb(ix.size)}, was never scanned in the window:"
                     f" {evidence}."
                     " Scans on hot standbys are not in these statistics: check the replicas before dropping it.")
    elif reason == "duplicate":
        assert cover is not None  # a duplicate is dropped for the index that keeps its scans
        parts.append(f"{ix.name} is an exact duplicate of {cover.name} ({_columns(ix)}: same table, access method,"
                     f" columns, operator classes, collations, orderings, predicate and INCLUDE columns); {evidence}"
                     f" {ix.name} is {_mb(ix.size)} and was scanned {ix.scans:,} times since its creation"
                     " or the last statistics reset;"
                     f" those scans can use {cover.name} ({_mb(cover.size)}).")
    else:
        assert cover is not None  # a prefix-redundant index is dropped for the index that covers it
        parts.append(f"The key columns of {ix.name} {_columns(ix)} are the leading key columns of {cover.name}"
                     f" {_columns(cover)}, with the same operator classes, collations, orderings and predicate,"
                     f" and {cover.name} has its INCLUDE columns too: every scan of {ix.name} can use {cover.name}"
                     f" ({_mb(cover.size)}; a wider index, so such scans read somewhat more pages)."
                     f" {ix.name} is {_mb(ix.size)} and was scanned {ix.scans:,} times since its creation"
                     " or the last statistics reset."
                     + (f" {evidence}" if evidence else ""))
    if per_day is None:
        parts.append(f"Index entries written per day on {ix.table}: {measured}.")
    elif per_day == 0:
        parts.append(f"Nothing was inserted or updated (non-HOT) in {ix.table} {measured}: no write cost saved"
                     " today, only its space.")
    else:
        parts.append(f"Dropping it saves about {per_day:,.0f} index entries written per day (inserts and non-HOT"
                     f" updates of {ix.table}, {measured}), their WAL and their vacuuming.")
    if ix.partitioned:
        parts.append("A partitioned index cannot be dropped CONCURRENTLY: DROP INDEX takes an ACCESS EXCLUSIVE lock"
                     " on the table and all its partitions for the moment of the drop (run it at a quiet moment"
                     " with a short lock_timeout). The rollback rebuilds each partition's index concurrently and"
                     " attaches it.")
    return " ".join(parts)


def advise_rows(db: Db) -> list[tuple]:
    """arch.advise_index_housekeeping()'s rows (entry.advise_index_housekeeping)."""
    return [(a.table_name, a.index_name, a.reason, a.ddl, a.rollback, a.size_bytes, a.scans,
             a.covering_index, a.writes_saved_per_day, a.rationale) for a in advise(db)]
