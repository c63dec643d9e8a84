"""Advisor ``partition``: declarative RANGE partitioning of big tables by the column most of their
statement time filters on (a time column or an increasing id), delivered as a migration plan.

Rules (all read from this database's ``pg_stat_statements``, texts read with PostgreSQL's own
parser and sqlglot; nothing is planned, executed or stored):

1. a table is considered when it is an ordinary, unpartitioned table of at least
   ``arch.settings.partition_min_table_mb`` (``pg_total_relation_size``);
2. the statements touching it (top-level, this database) are read; a statement *uses* a column
   when its WHERE / JOIN … ON clauses compare that column of this table (bare, not inside a
   function) with something that is not a column of it (``=``/``IN`` or ``< <= > >= BETWEEN``);
3. a column qualifies when it is ``date`` / ``timestamp`` / ``timestamptz``, or an integer whose
   ``pg_stats.correlation`` is at least :data:`MIN_ID_CORRELATION` (an increasing id), and at
   least one statement filters it by *range* or DELETEs by it;
4. the qualifying column with the most statement time wins, if that time is at least
   ``partition_min_time_share`` of all statement time on the table ("most of the table's time").

**Interval** (:func:`choose_interval`): from the data span (exact ``min``/``max`` when an index
leads with the column, else the extremes of ``pg_stats`` histogram bounds and most common values) the smallest step of
:data:`TIME_STEPS` (or a 1/2/5·10^k id step) that yields at most :data:`MAX_PARTITIONS`
partitions; when the statements' typical span is known (rows per call of the non-aggregate
statements / rows per unit of the key) and wider than that step, the widest step not wider than
that span (a typical statement then reads 1–2 partitions).

**Pruning estimate** (documented model, :func:`scanned_fraction`): with ``n`` partitions and a
predicate selecting a fraction ``s`` of the rows, a statement reads ``p = min(n, ceil(s·n) + 1)``
partitions (an equality predicate: ``p = 1``); ``s`` is rows per call / table rows for
statements that return rows, else one interval (``1/n``).  The time saved is the upper bound
``total_time × (1 − p/n)``: exact for statements that scan the table sequentially, optimistic
for statements an index already serves (their gain is a shallower index).  A DELETE of old rows
by the key becomes ``DROP TABLE`` / ``DETACH PARTITION`` of whole partitions: its time is saved.
Statements without a usable predicate on the key read every partition: they are listed.

**Constraints**: a primary key / unique constraint must include the partition key (PostgreSQL:
"unique constraint on partitioned table must include all partitioning columns"): the plan adds
the key and says so; foreign keys *referencing* the table and views on it keep pointing at the
old table after the swap: listed as what must change.

**Delivery** (:func:`migration_plan`): create the partitioned table (``LIKE`` the old one) and
its partitions (or ``partman.create_parent`` when pg_partman is installed) plus a DEFAULT
partition, copy the cold ranges in batches (one INSERT per partition, each its own
transaction), verify the copied counts, then swap in one short transaction (lock the old
table, copy the hot range, rename both, move sequence ownership, grants); the rollback swaps
back.  Durations assume :data:`COPY_BYTES_PER_S`.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .. import pgparse  # before sqlglot/pglast: loads libpg_query with RTLD_DEEPBIND
from ..catalog import search_path_for
from ..db import QUERY_CANCELED, Db, DbError, UserError

if TYPE_CHECKING:
    from sqlglot import exp as sqlglot_exp

KIND = "partition"
MIN_ID_CORRELATION = 0.9
MAX_PARTITIONS = 60
FUTURE_PARTITIONS = 4
# Throughput assumed for INSERT … SELECT into the new table (heap, indexes, WAL): conservative.
COPY_BYTES_PER_S = 50 * 1024 * 1024
TIME_STEPS = (("1 day", 86400), ("1 week", 7 * 86400), ("1 month", 30 * 86400),
              ("3 months", 91 * 86400), ("1 year", 365 * 86400))
TIME_TYPES = {"date", "timestamp", "timestamptz"}
INT_TYPES = {"int2", "int4", "int8"}
_OWN = re.compile(r"\barch\s*\.", re.I)


# --------------------------------------------------------------------------- the workload
@dataclass
class Pred:
    table: tuple[str, str]
    column: str
    op: str  # 'eq' | 'range'
    params: list[int] = field(default_factory=list)


@dataclass
class Stmt:
    """One pg_stat_statements entry with what its text says."""

    userid: int
    queryid: int
    query: str
    calls: int
    total_ms: float
    rows: int
    kind: str = ""  # select | insert | update | delete | merge | copy | other
    tables: list[tuple[str, str]] = field(default_factory=list)
    writes: list[tuple[str, str]] = field(default_factory=list)
    preds: list[Pred] = field(default_factory=list)
    aggregate: bool = False
    tree: sqlglot_exp.Expression | None = None  # sqlglot tree (SELECTs)
    aliases: dict = field(default_factory=dict)  # alias -> (schema, table)
    error: str | None = None

    @property
    def mean_ms(self) -> float:
        return self.total_ms / max(self.calls, 1)

    def brief(self, **extra) -> dict:
        d = {"queryid": self.queryid, "userid": self.userid, "query": self.query, "calls": self.calls,
             "total_ms": round(self.total_ms, 3), "mean_ms": round(self.mean_ms, 3)}
        d.update(extra)
        return d


def pgss_schema(db: Db) -> str:
    schema = db.scalar("SELECT quote_ident(n.nspname::text) FROM pg_extension e JOIN pg_namespace n"
                       " ON n.oid = e.extnamespace WHERE e.extname = 'pg_stat_statements'")
    if schema is None:
        raise UserError("pg_stat_statements is not installed in this database",
                        hint="CREATE EXTENSION pg_stat_statements; (it must also be in shared_preload_libraries)")
    return schema


class Resolver:
    """(schema or None, name) of a statement → (schema, name) of a table, with the role's search_path."""

    def __init__(self, db: Db):
        self.db = db
        self.paths: dict[int, list[str]] = {}
        self.cache: dict[tuple, tuple[str, str] | None] = {}

    def resolve(self, userid: int, schema: str | None, name: str) -> tuple[str, str] | None:
        if userid not in self.paths:
            self.paths[userid] = search_path_for(self.db, userid)
        path = [schema] if schema else self.paths[userid]
        key = (tuple(path), name)
        if key not in self.cache:
            row = self.db.one("SELECT n.nspname::text AS s, c.relname::text AS t FROM pg_class c"
                              " JOIN pg_namespace n ON n.oid = c.relnamespace"
                              " WHERE c.relname = $1 AND n.nspname = ANY(string_to_array($2, chr(31)))"
                              " AND c.relkind IN ('r', 'p', 'm', 'v', 'f')"
                              " ORDER BY array_position(string_to_array($2, chr(31)), n.nspname::text) LIMIT 1",
                              [name, chr(31).join(path)])
            self.cache[key] = (row["s"], row["t"]) if row else None
        return self.cache[key]


def _sqlglot():
    import sqlglot
    from sqlglot import exp
    return sqlglot, exp


# At most this many statements are read in full (sqlglot: predicates, GROUP BY), costliest first.
MAX_DETAILED = 200


def read_workload(db: Db, read=lambda row: True, detail=lambda row: True,
                  max_detailed: int = MAX_DETAILED) -> tuple[list[Stmt], float]:
    """This database's top-level pg_stat_statements entries and the window in seconds (since
    ``pg_stat_statements_info.stats_reset``).  Entries for which ``read(row)`` is true are read
    with libpg_query (kind, tables, written table); those for which ``detail(row)`` is also true
    (at most ``max_detailed``) with sqlglot too (predicates, GROUP BY).  Rows are dicts with
    ``query`` and ``calls``; the filters keep an advisor from parsing statements it cannot use."""
    pss = pgss_schema(db)
    window = db.scalar(f"SELECT greatest(extract(epoch FROM now() - stats_reset)::float8, 1)"
                       f" FROM {pss}.pg_stat_statements_info") or 1.0
    rows = db.query(
        f"SELECT s.userid::bigint AS userid, s.queryid, min(s.query) AS query, sum(s.calls)::bigint AS calls,"
        f" sum(s.total_exec_time)::float8 AS total_ms, sum(s.rows)::bigint AS rows"
        f" FROM {pss}.pg_stat_statements(true) s"
        f" WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
        f" AND s.toplevel AND s.queryid IS NOT NULL AND s.query IS NOT NULL"
        f" GROUP BY s.userid, s.queryid ORDER BY sum(s.total_exec_time) DESC")
    resolver = Resolver(db)
    out = []
    detailed = 0
    for r in rows:
        text = r["query"] or ""
        if text.startswith("<insufficient privilege>") or _OWN.search(text):
            continue
        st = Stmt(userid=int(r["userid"]), queryid=int(r["queryid"]), query=text, calls=int(r["calls"] or 0),
                  total_ms=float(r["total_ms"] or 0), rows=int(r["rows"] or 0))
        try:
            if not read(r):
                continue
            want = bool(detail(r)) and detailed < max_detailed
            detailed += want
            read_statement(db, st, resolver, detailed=want)
        except DbError as exc:
            if exc.sqlstate == QUERY_CANCELED:
                raise
            st.error = str(exc).splitlines()[0]
        except Exception as exc:
            st.error = f"{type(exc).__name__}: {exc}"
        out.append(st)
    return out, float(window)


def read_statement(db: Db, st: Stmt, resolver: Resolver, detailed: bool = True) -> None:
    """Fill ``st``'s kind, tables, written tables and (``detailed``) predicates from its text."""
    try:
        reading = pgparse.read(st.query)
    except pgparse.PgParseError as exc:
        st.kind, st.error = "other", exc.message
        return
    if reading.statements != 1:
        st.kind = "other"
        return
    if reading.node == "CopyStmt":
        body = reading.tree["CopyStmt"]
        rel = body.get("relation") or {}
        st.kind = "copy"
        if body.get("is_from") and rel.get("relname"):
            t = resolver.resolve(st.userid, rel.get("schemaname"), rel["relname"])
            if t:
                st.tables, st.writes = [t], [t]
        return
    if reading.kind not in ("select", "insert", "update", "delete", "merge"):
        st.kind = "other"
        return
    st.kind = reading.kind
    for schema, name in pgparse.relations(reading):
        t = resolver.resolve(st.userid, schema, name)
        if t and t not in st.tables:
            st.tables.append(t)
    if st.kind != "select":
        target = _target(reading)
        if target:
            t = resolver.resolve(st.userid, *target)
            if t:
                st.writes.append(t)
    if not detailed:
        return
    sqlglot, exp = _sqlglot()
    tree = sqlglot.parse_one(pgparse.sqlglot_text(st.query), read="postgres")
    ctes = {c.alias_or_name for c in tree.find_all(exp.CTE)}
    for tb in tree.find_all(exp.Table):
        if not tb.name or (not tb.db and tb.name in ctes):
            continue
        t = resolver.resolve(st.userid, tb.db or None, tb.name)
        if t:
            st.aliases[tb.alias_or_name] = t
    st.tree = tree
    st.aggregate = bool(tree.find(exp.AggFunc)) or bool(isinstance(tree, exp.Select) and tree.args.get("group"))
    single = st.tables[0] if len(st.tables) == 1 else None
    columns: dict[tuple[str, str], set[str]] = {}

    def owner(col) -> tuple[str, str] | None:
        if col.table:
            return st.aliases.get(col.table)
        if single:
            return single
        # unqualified in a multi-table statement: the one table that has that column
        hits = []
        for t in set(st.aliases.values()):
            if t not in columns:
                columns[t] = set(table_columns(db, *t))
            if col.name in columns[t]:
                hits.append(t)
        return hits[0] if len(hits) == 1 else None

    conds = [w.this for w in tree.find_all(exp.Where)] + [j.args["on"] for j in tree.find_all(exp.Join)
                                                          if j.args.get("on") is not None]
    for cond in conds:
        for node in cond.find_all(exp.EQ, exp.In, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Between):
            col, other = node.this, None
            if isinstance(node, exp.In):
                other = node.args.get("expressions") or ([node.args["query"]] if node.args.get("query") else [])
            elif isinstance(node, exp.Between):
                other = [node.args.get("low"), node.args.get("high")]
            else:
                col, other = node.this, [node.expression]
                if not isinstance(col, exp.Column) and isinstance(node.expression, exp.Column):
                    col, other = node.expression, [node.this]
            if not isinstance(col, exp.Column):
                continue
            if any(o is None or isinstance(o, exp.Column) or o.find(exp.Column) for o in other):
                continue
            t = owner(col)
            if t is None:
                continue
            params = [int(p.this.this) for o in other for p in o.find_all(exp.Parameter)
                      if isinstance(p.this, exp.Literal)]
            op = "eq" if isinstance(node, (exp.EQ, exp.In)) else "range"
            st.preds.append(Pred(t, col.name, op, params))


def _target(reading) -> tuple[str | None, str] | None:
    body = next(iter(reading.tree.values()))
    rel = body.get("relation") or {}
    if "RangeVar" in rel:
        rel = rel["RangeVar"]
    if rel.get("relname"):
        return rel.get("schemaname"), rel["relname"]
    return None


_COLS: dict = {}


def table_columns(db: Db, schema: str, table: str) -> dict[str, str]:
    """column → pg_type.typname."""
    return {r["a"]: r["t"] for r in db.query(
        "SELECT a.attname::text AS a, t.typname::text AS t FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid"
        " WHERE a.attrelid = format('%I.%I', $1::text, $2::text)::regclass AND a.attnum > 0 AND NOT a.attisdropped"
        " ORDER BY a.attnum", [schema, table])}


# --------------------------------------------------------------------------- the model
def scanned_fraction(pred_ops: set[str], rows_per_call: float | None, reltuples: float, n: int) -> float:
    """Fraction of partitions a statement reads (see the module docstring)."""
    if n <= 1:
        return 1.0
    if "eq" in pred_ops:
        return 1.0 / n
    if rows_per_call is not None and reltuples > 0:
        s = min(1.0, max(rows_per_call, 0.0) / reltuples)
        p = min(n, math.ceil(s * n) + 1)
    else:
        p = min(n, 2)
    return p / n


def choose_interval(kind: str, lo: float, hi: float, typical_span: float | None) -> tuple[str, float]:
    """(SQL literal of the step, step in key units: seconds for time, ids for integers)."""
    span = max(hi - lo, 1.0)
    steps: list[tuple[str, float]]
    if kind == "time":
        steps = list(TIME_STEPS)
    else:
        steps = []
        for k in range(0, 19):
            for m in (1, 2, 5):
                steps.append((str(m * 10 ** k), float(m * 10 ** k)))
    chosen = steps[-1]
    for s in steps:
        if span / s[1] <= MAX_PARTITIONS:
            chosen = s
            break
    if typical_span and typical_span > chosen[1]:
        wider = [s for s in steps if chosen[1] <= s[1] <= typical_span]
        if wider:
            chosen = wider[-1]
    return chosen


# --------------------------------------------------------------------------- catalog
def _q(db: Db, name: str) -> str:
    return db.scalar("SELECT quote_ident($1)", [name])


def _big_tables(db: Db, min_bytes: float) -> list[dict]:
    return db.query(
        "SELECT n.nspname::text AS schema, c.relname::text AS name, c.oid::bigint AS oid,"
        " pg_total_relation_size(c.oid)::float8 AS bytes, pg_relation_size(c.oid)::float8 AS heap_bytes,"
        " greatest(c.reltuples, 0)::float8 AS reltuples, pg_get_userbyid(c.relowner)::text AS owner"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind = 'r' AND NOT c.relispartition"
        " AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'arch')"
        " AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'"
        " AND pg_total_relation_size(c.oid) >= $1::float8 ORDER BY 4 DESC", [float(min_bytes)])


def _column_stats(db: Db, schema: str, table: str, column: str) -> dict:
    row = db.one(
        "SELECT s.correlation::float8 AS correlation, s.histogram_bounds::text AS hist"
        " FROM pg_stats s WHERE s.schemaname = $1 AND s.tablename = $2 AND s.attname = $3", [schema, table, column])
    return row or {}


def _leading_index(db: Db, oid: int, column: str) -> bool:
    return bool(db.scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid"
        " AND a.attnum = i.indkey[0] WHERE i.indrelid = $1::bigint::oid AND a.attname = $2 AND i.indisvalid"
        " AND i.indpred IS NULL)", [oid, column]))


def _bounds(db: Db, t: dict, column: str, typ: str) -> tuple[float, float] | None:
    """(min, max) of the key as epoch seconds (time) or numbers: exact through an index that
    leads with it, else the extremes of pg_stats' histogram bounds and most common values."""
    tq = f"{_q(db, t['schema'])}.{_q(db, t['name'])}"
    cq = _q(db, column)
    conv = (lambda e: f"extract(epoch FROM {e})::float8") if typ in TIME_TYPES else (lambda e: f"{e}::float8")
    if _leading_index(db, t["oid"], column):
        row = db.one(f"SELECT {conv(f'min({cq})')} AS lo, {conv(f'max({cq})')} AS hi FROM {tq}")
    else:
        # timestamp stays local time: epoch as if UTC, like the literals
        typname = typ if typ in TIME_TYPES else "numeric"
        # histogram bounds and most common values: a column with few distinct values has only the latter
        row = db.one(
            f"SELECT {conv('min(v)')} AS lo, {conv('max(v)')} AS hi FROM pg_stats s,"
            f" unnest(coalesce(s.histogram_bounds::text::{typname}[], '{{}}')"
            f" || coalesce(s.most_common_vals::text::{typname}[], '{{}}')) v"
            f" WHERE s.schemaname = $1 AND s.tablename = $2 AND s.attname = $3", [t["schema"], t["name"], column])
    if not row or row["lo"] is None or row["hi"] is None:
        return None
    return float(row["lo"]), float(row["hi"])


def _constraints(db: Db, oid: int) -> list[dict]:
    return db.query(
        "SELECT c.conname::text AS name, c.contype::text AS type, pg_get_constraintdef(c.oid) AS def,"
        " ARRAY(SELECT a.attname::text FROM unnest(c.conkey) k JOIN pg_attribute a ON a.attrelid = c.conrelid"
        "   AND a.attnum = k) AS columns"
        " FROM pg_constraint c WHERE c.conrelid = $1::bigint::oid AND c.contype IN ('p', 'u', 'f', 'x')"
        " ORDER BY c.contype, c.conname", [oid])


def _referencing(db: Db, oid: int) -> list[str]:
    return [r["d"] for r in db.query(
        "SELECT format('%s on %s', c.conname, c.conrelid::regclass) AS d FROM pg_constraint c"
        " WHERE c.confrelid = $1::bigint::oid AND c.contype = 'f' ORDER BY 1", [oid])]


def _views(db: Db, oid: int) -> list[str]:
    return [r["v"] for r in db.query(
        "SELECT DISTINCT v.oid::regclass::text AS v FROM pg_depend d JOIN pg_rewrite w ON w.oid = d.objid"
        " JOIN pg_class v ON v.oid = w.ev_class"
        " WHERE d.refobjid = $1::bigint::oid AND d.classid = 'pg_rewrite'::regclass"
        " AND v.oid <> $1::bigint::oid ORDER BY 1", [oid])]


def _plain_indexes(db: Db, oid: int) -> list[dict]:
    """Indexes that are not a constraint's: (name, definition, unique, columns)."""
    return db.query(
        "SELECT ic.relname::text AS name, pg_get_indexdef(i.indexrelid) AS def, i.indisunique AS uniq,"
        " ARRAY(SELECT a.attname::text FROM unnest(i.indkey) k JOIN pg_attribute a ON a.attrelid = i.indrelid"
        "   AND a.attnum = k) AS columns"
        " FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid WHERE i.indrelid = $1::bigint::oid"
        " AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid AND c.conrelid = i.indrelid)"
        " ORDER BY 1", [oid])


def _sequences(db: Db, oid: int) -> list[dict]:
    """Sequences owned by a column of the table (serial) and identity columns."""
    return db.query(
        "SELECT s.oid::regclass::text AS seq, a.attname::text AS col, a.attidentity::text AS identity"
        " FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'"
        " JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid"
        " WHERE d.refobjid = $1::bigint::oid AND d.deptype IN ('a', 'i') ORDER BY 2", [oid])


def _grants(db: Db, oid: int, target: str) -> list[str]:
    return [r["g"] for r in db.query(
        "SELECT format('GRANT %s ON %s TO %s;', string_agg(x.privilege_type, ', ' ORDER BY x.privilege_type),"
        " $2::text, CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(x.grantee)) END) AS g"
        " FROM pg_class c, aclexplode(c.relacl) x WHERE c.oid = $1::bigint::oid AND x.grantee <> c.relowner"
        " GROUP BY x.grantee ORDER BY 1", [oid, target])]


def _partman(db: Db) -> tuple[str, str] | None:
    row = db.one("SELECT quote_ident(n.nspname::text) AS s, e.extversion::text AS v FROM pg_extension e"
                 " JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_partman'")
    return (row["s"], row["v"]) if row else None


# --------------------------------------------------------------------------- settings
@dataclass
class Settings:
    partition_min_table_mb: float
    partition_min_time_share: float


def load_settings(db: Db) -> Settings:
    from ..settings import load_into as db_load_settings

    return db_load_settings(db, Settings)


# --------------------------------------------------------------------------- the advice
def advise(db: Db, settings: Settings | None = None, workload: tuple[list[Stmt], float] | None = None,
           on_error=None) -> list[dict]:
    """One dict per table to partition (``entry.advise_partitioning`` gives them to SQL).
    With ``on_error(what, exc)`` (the audit), each table is read in its own subtransaction and a
    failure on one table is reported to it instead of raised (a cancel is always raised)."""
    settings = settings or load_settings(db)
    tables = _big_tables(db, float(settings.partition_min_table_mb) * 1024 * 1024)
    if not tables:
        return []
    names = [t["name"].lower() for t in tables]
    stmts, window = workload or read_workload(db, read=lambda r: any(n in (r["query"] or "").lower() for n in names))
    out = []
    for t in tables:
        if on_error is None:
            advice = _table(db, settings, t, stmts, window)
        else:
            try:
                with db.subtransaction():
                    advice = _table(db, settings, t, stmts, window)
            except DbError as exc:
                if exc.sqlstate == QUERY_CANCELED:
                    raise
                on_error(f"partitioning advice for {t['schema']}.{t['name']}", exc)
                continue
            except Exception as exc:  # a bug on one table's data: reported, the others go on
                on_error(f"partitioning advice for {t['schema']}.{t['name']}", exc)
                continue
        if advice:
            out.append(advice)
    return out


def _table(db: Db, settings: Settings, t: dict, stmts: list[Stmt], window: float) -> dict | None:
    """The advice for one table, or None."""
    key = (t["schema"], t["name"])
    touching = [s for s in stmts if key in s.tables]
    # INSERT / COPY are routed to one partition, neither helped nor hurt: not in the share.
    total = sum(s.total_ms for s in touching if s.kind not in ("insert", "copy"))
    if not touching or total <= 0:
        return None
    cols = table_columns(db, *key)
    best = None
    for col, typ in cols.items():
        if typ not in TIME_TYPES and typ not in INT_TYPES:
            continue
        using = [s for s in touching if any(p.table == key and p.column == col for p in s.preds)]
        ranged = [s for s in using if any(p.table == key and p.column == col and p.op == "range" for p in s.preds)]
        if not ranged:
            continue
        if typ in INT_TYPES and abs(_column_stats(db, *key, col).get("correlation") or 0) < MIN_ID_CORRELATION:
            continue
        share = sum(s.total_ms for s in using) / total
        if best is None or share > best[2]:
            best = (col, typ, share, using)
    if best is None or best[2] < float(settings.partition_min_time_share):
        return None
    return _advice(db, t, key, best, touching, total, window)


def _advice(db: Db, t: dict, key, best, touching: list[Stmt], total: float, window: float) -> dict | None:
    col, typ, share, using = best
    kind = "time" if typ in TIME_TYPES else "id"
    bounds = _bounds(db, t, col, typ)
    if bounds is None:
        return None
    lo, hi = bounds
    rows = max(t["reltuples"], 1.0)
    per_unit = rows / max(hi - lo, 1.0)
    spans = [s.rows / max(s.calls, 1) / per_unit for s in using if s.kind == "select" and not s.aggregate and s.rows]
    typical = sorted(spans)[len(spans) // 2] if spans else None
    step_sql, step = choose_interval(kind, lo, hi, typical)
    plan = migration_plan(db, t, col, typ, step_sql, step, lo, hi)
    n = plan["partitions"]
    served, not_pruned, saved = [], [], 0.0
    for s in touching:
        ops = {p.op for p in s.preds if p.table == key and p.column == col}
        if s.kind in ("insert", "copy") and not ops:
            continue  # routed to one partition: no pruning needed
        if not ops:
            not_pruned.append(s.brief(reason=f"no predicate on {col} of this table: reads all {n} partitions"))
            continue
        if s.kind == "delete" and "range" in ops:
            saved += s.total_ms
            served.append(s.brief(scanned_fraction=1.0 / n,
                                  effect="DELETE of old rows: drop or detach whole partitions instead"))
            continue
        rpc = s.rows / max(s.calls, 1) if (s.kind == "select" and not s.aggregate) else None
        f = scanned_fraction(ops, rpc, rows, n)
        saved += s.total_ms * (1 - f)
        served.append(s.brief(scanned_fraction=round(f, 4)))
    checks = plan["checks"]
    estimate = {"partitions": n, "interval": step_sql, "column": col, "key_time_share": round(share, 4),
                "statement_time_ms": round(total, 3), "est_time_saved_ms": round(saved, 3),
                "est_gain_pct": round(100 * saved / total, 2) if total else 0.0,
                "window_s": round(window, 1), "table_bytes": int(t["bytes"]),
                "copy_s": plan["copy_s"], "swap_lock_s": plan["swap_lock_s"],
                "typical_span": None if typical is None else round(typical, 3),
                "model": "see arch.advise_partitioning() comment"}
    span_txt = (f"{(hi - lo) / 86400:,.0f} days" if kind == "time" else f"ids {lo:,.0f}..{hi:,.0f}")
    rationale = (f"{t['schema']}.{t['name']} is {_mb(t['bytes'])}; {share * 100:.0f} % of the {total:,.0f} ms its "
                 f"statements spent filter on {col} ({typ}). Its data spans {span_txt}: RANGE partitions of "
                 f"{step_sql} give {n} partitions (at most {MAX_PARTITIONS} over the data,"
                 f" plus {FUTURE_PARTITIONS} ahead and a DEFAULT one). "
                 f"Estimated pruning saves {saved:,.0f} ms ({estimate['est_gain_pct']:.1f} %) of that time "
                 f"(upper bound: statements scanning sequentially). "
                 f"{len(not_pruned)} statement(s) would not prune.")
    if checks:
        rationale += " Must change: " + "; ".join(checks) + "."
    return {"kind": KIND, "schema_name": t["schema"], "table_name": t["name"], "column_name": col,
            "ddl": plan["migration"], "rollback_ddl": plan["rollback"], "steps": plan["steps"],
            "estimate": estimate, "rationale": rationale, "runbook": plan["runbook"],
            "constraint_changes": checks, "statements": served, "not_pruned": not_pruned,
            # what migration_plan() was given (the sidecar rebuilds the plan from it and the catalog)
            "bounds": {"type": typ, "step": step, "lo": lo, "hi": hi}}


def _mb(b: float) -> str:
    return f"{b / 1024 / 1024:,.1f} MB" if b < 1024 ** 3 else f"{b / 1024 ** 3:,.1f} GB"


# --------------------------------------------------------------------------- the plan
def _lit_time(x: float, typ: str) -> str:
    d = dt.datetime.fromtimestamp(x, dt.UTC)
    if typ == "date":
        return f"'{d.date().isoformat()}'"
    if typ == "timestamp":
        return f"'{d.replace(tzinfo=None).isoformat(sep=' ')}'"
    return f"'{d.isoformat(sep=' ')}'"


def _floor_time(x: float, step_sql: str) -> float:
    d = dt.datetime.fromtimestamp(x, dt.UTC)
    if step_sql == "1 day":
        d = d.replace(hour=0, minute=0, second=0, microsecond=0)
    elif step_sql == "1 week":
        d = d.replace(hour=0, minute=0, second=0, microsecond=0) - dt.timedelta(days=d.weekday())
    elif step_sql in ("1 month", "3 months"):
        m = d.month if step_sql == "1 month" else 1 + 3 * ((d.month - 1) // 3)
        d = d.replace(month=m, day=1, hour=0, minute=0, second=0, microsecond=0)
    else:
        d = d.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
    return d.timestamp()


def _add_time(x: float, step_sql: str) -> float:
    d = dt.datetime.fromtimestamp(x, dt.UTC)
    if step_sql == "1 day":
        return (d + dt.timedelta(days=1)).timestamp()
    if step_sql == "1 week":
        return (d + dt.timedelta(days=7)).timestamp()
    months = {"1 month": 1, "3 months": 3, "1 year": 12}[step_sql]
    m = d.month - 1 + months
    return d.replace(year=d.year + m // 12, month=m % 12 + 1).timestamp()


def _ranges(typ: str, step_sql: str, step: float, lo: float, hi: float) -> list[tuple[float, float]]:
    out = []
    if typ in TIME_TYPES:
        a = _floor_time(lo, step_sql)
        while True:
            b = _add_time(a, step_sql)
            out.append((a, b))
            if a > hi and len(out) >= 1 and sum(1 for r in out if r[0] > hi) >= FUTURE_PARTITIONS:
                break
            a = b
    else:
        a = math.floor(lo / step) * step
        while True:
            out.append((a, a + step))
            if a > hi and sum(1 for r in out if r[0] > hi) >= FUTURE_PARTITIONS:
                break
            a += step
    return out


def _suffix(typ: str, step_sql: str, a: float) -> str:
    if typ not in TIME_TYPES:
        return f"p{int(a)}"
    d = dt.datetime.fromtimestamp(a, dt.UTC)
    return "p" + d.strftime({"1 day": "%Y%m%d", "1 week": "%Y%m%d", "1 month": "%Y%m",
                             "3 months": "%Y%m", "1 year": "%Y"}[step_sql])


def _ident_max(name: str) -> str:
    return name[:63]


def migration_plan(db: Db, t: dict, col: str, typ: str, step_sql: str, step: float, lo: float, hi: float) -> dict:
    """The migration plan (steps with SQL, lock and duration), its rollback and the constraint checks."""
    s, name = t["schema"], t["name"]
    qs, qn, qc = _q(db, s), _q(db, name), _q(db, col)
    old = f"{qs}.{qn}"
    new_name = _ident_max(f"{name}_partitioned")
    keep_name = _ident_max(f"{name}_unpartitioned")
    new = f"{qs}.{_q(db, new_name)}"
    keep = f"{qs}.{_q(db, keep_name)}"
    lit = (lambda x: _lit_time(x, typ)) if typ in TIME_TYPES else (lambda x: str(int(x)))
    ranges = _ranges(typ, step_sql, step, lo, hi)
    hot_i = max(i for i, r in enumerate(ranges) if r[0] <= hi)
    first, hot = ranges[0][0], ranges[hot_i][0]
    seqs = _sequences(db, t["oid"])
    identity = any(q["identity"] for q in seqs)
    overriding = " OVERRIDING SYSTEM VALUE" if any(q["identity"] == "a" for q in seqs) else ""
    checks: list[str] = []
    create = [f"CREATE TABLE {new} (LIKE {old} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED"
              f" INCLUDING STORAGE INCLUDING COMMENTS INCLUDING STATISTICS{' INCLUDING IDENTITY' if identity else ''})"
              f" PARTITION BY RANGE ({qc});"]
    for c in _constraints(db, t["oid"]):
        cols = list(c["columns"] or [])
        if c["type"] in ("p", "u"):
            kw = "PRIMARY KEY" if c["type"] == "p" else "UNIQUE"
            if col not in cols:
                checks.append(f"{kw} {c['name']} ({', '.join(cols)}) must include the partition key: it becomes "
                              f"({', '.join(cols + [col])}), unique per ({', '.join(cols)}, {col}) only")
                cols = cols + [col]
            create.append(f"ALTER TABLE {new} ADD CONSTRAINT {_q(db, _ident_max(c['name'] + '_p'))} {kw} "
                          f"({', '.join(_q(db, x) for x in cols)});")
        elif c["type"] == "f":
            create.append(f"ALTER TABLE {new} ADD CONSTRAINT {_q(db, _ident_max(c['name'] + '_p'))} {c['def']};")
        else:
            checks.append(f"exclusion constraint {c['name']} is not copied (must include the partition key with =)")
    for ix in _plain_indexes(db, t["oid"]):
        cols = list(ix["columns"] or [])
        if ix["uniq"] and col not in cols:
            checks.append(f"unique index {ix['name']} does not include {col}: not possible on the partitioned table, "
                          f"it is created without UNIQUE")
        d = re.sub(r"^CREATE (UNIQUE )?INDEX \S+ ON (ONLY )?\S+", "", ix["def"])
        uniq = "UNIQUE " if ix["uniq"] and col in cols else ""
        create.append(f"CREATE {uniq}INDEX {_q(db, _ident_max(ix['name'] + '_p'))} ON {new}{d};")
    for r in _referencing(db, t["oid"]):
        checks.append(f"foreign key {r} references the old table: re-create it against the partitioned one "
                      f"(referencing ({col}) too, as the referenced key must include it) or drop it")
    for v in _views(db, t["oid"]):
        checks.append(f"view {v} keeps reading the old table after the swap: re-create it (CREATE OR REPLACE VIEW)")
    partman = _partman(db)
    parts = []
    if partman:
        ptype = "range" if int(partman[1].split(".")[0]) >= 5 else "native"
        interval = step_sql if typ in TIME_TYPES else str(int(step))
        parts.append(f"SELECT {partman[0]}.create_parent(p_parent_table => '{s}.{new_name}', p_control => '{col}', "
                     f"p_type => '{ptype}', p_interval => '{interval}', p_premake => {FUTURE_PARTITIONS}, "
                     f"p_start_partition => '{lit(first).strip(chr(39))}');")
    else:
        for a, b in ranges:
            pn = _q(db, _ident_max(f"{name}_{_suffix(typ, step_sql, a)}"))
            parts.append(f"CREATE TABLE {qs}.{pn} PARTITION OF {new} FOR VALUES FROM ({lit(a)}) TO ({lit(b)});")
        parts.append(f"CREATE TABLE {qs}.{_q(db, _ident_max(name + '_default'))} PARTITION OF {new} DEFAULT;")
    copies = [f"INSERT INTO {new}{overriding} SELECT * FROM {old} WHERE {qc} >= {lit(a)} AND {qc} < {lit(b)};"
              for a, b in ranges[:hot_i]]
    cold = f"{qc} >= {lit(first)} AND {qc} < {lit(hot)}"
    rest = f"{qc} IS NULL OR {qc} < {lit(first)} OR {qc} >= {lit(hot)}"
    verify = (f"DO $verify$ BEGIN IF (SELECT count(*) FROM {old} WHERE {cold})"
              f" <> (SELECT count(*) FROM {new} WHERE {cold})"
              f" THEN RAISE EXCEPTION 'partitioning {s}.{name}: the copied ranges differ from the table (rows changed"
              f" during the copy): truncate {s}.{new_name} and copy again'; END IF; END $verify$;")
    owner = _q(db, t["owner"])
    swap = ["BEGIN;", "SET LOCAL lock_timeout = '5s';", f"LOCK TABLE {old} IN ACCESS EXCLUSIVE MODE;",
            f"INSERT INTO {new}{overriding} SELECT * FROM {old} WHERE {rest};",
            f"ALTER TABLE {old} RENAME TO {_q(db, keep_name)};", f"ALTER TABLE {new} RENAME TO {qn};",
            f"ALTER TABLE {old} OWNER TO {owner};"]
    back = ["BEGIN;", "SET LOCAL lock_timeout = '5s';", f"LOCK TABLE {old}, {keep} IN ACCESS EXCLUSIVE MODE;",
            f"DELETE FROM {keep} WHERE {rest};",
            f"INSERT INTO {keep}{overriding} SELECT * FROM {old} WHERE {rest};",
            f"ALTER TABLE {old} RENAME TO {_q(db, new_name)};", f"ALTER TABLE {keep} RENAME TO {qn};"]
    for q in seqs:
        qcol = _q(db, q["col"])
        if q["identity"]:
            swap.append(f"SELECT setval(pg_get_serial_sequence('{old}', '{q['col']}'),"
                        f" (SELECT last_value FROM {q['seq']}));")
            back.append(f"SELECT setval('{q['seq']}', greatest((SELECT last_value FROM {q['seq']}),"
                        f" (SELECT coalesce(max({qcol}), 1) FROM {old})));")
        else:
            swap.append(f"ALTER SEQUENCE {q['seq']} OWNED BY {old}.{qcol};")
            back.append(f"ALTER SEQUENCE {q['seq']} OWNED BY {old}.{qcol};")
    if partman:  # pg_partman's configuration names the parent: follow the renames
        swap.append(f"UPDATE {partman[0]}.part_config SET parent_table = '{s}.{name}'"
                    f" WHERE parent_table = '{s}.{new_name}';")
        back.append(f"UPDATE {partman[0]}.part_config SET parent_table = '{s}.{new_name}'"
                    f" WHERE parent_table = '{s}.{name}';")
    swap += _grants(db, t["oid"], old)
    swap.append("COMMIT;")
    back.append("COMMIT;")
    if partman:  # pg_partman's configuration and template table of the partitioned table go with it
        back.append(f"DO $rollback$ DECLARE t text; BEGIN"
                    f" SELECT template_table INTO t FROM {partman[0]}.part_config"
                    f" WHERE parent_table = '{s}.{new_name}';"
                    f" DELETE FROM {partman[0]}.part_config WHERE parent_table = '{s}.{new_name}';"
                    f" IF t IS NOT NULL THEN EXECUTE format('DROP TABLE IF EXISTS %s', t); END IF;"
                    f" END $rollback$;")
    back.append(f"DROP TABLE {new};")
    size = float(t["bytes"])
    n_data = hot_i + 1
    copy_s = round(size / COPY_BYTES_PER_S, 1)
    hot_s = round(size / n_data / COPY_BYTES_PER_S + 0.1, 2)
    steps = [
        {"step": 1, "title": "create the partitioned table and its partitions", "sql": "\n".join(create + parts),
         "lock": f"ACCESS SHARE on {s}.{name} (LIKE); the new table is not used yet", "est_duration_s": 1.0,
         "transaction": "its own"},
        {"step": 2, "title": f"copy the {len(copies)} cold range(s) in batches, one per partition",
         "sql": "\n".join(copies),
         "lock": f"ACCESS SHARE on {s}.{name}: reads and writes go on", "est_duration_s": copy_s,
         "transaction": "one per statement (psql autocommit)"},
        {"step": 3, "title": "verify the copied ranges", "sql": verify, "lock": "ACCESS SHARE",
         "est_duration_s": round(2 * size / (4 * COPY_BYTES_PER_S), 1), "transaction": "its own"},
        {"step": 4, "title": "swap in one short transaction (copies the hot range)", "sql": "\n".join(swap),
         "lock": f"ACCESS EXCLUSIVE on {s}.{name} for about {hot_s} s (waits at most 5 s for it)",
         "est_duration_s": hot_s, "transaction": "one"},
    ]
    header = (f"-- pg_architect: RANGE-partition {s}.{name} by {col} ({step_sql} partitions).\n"
              "-- Run with psql (autocommit, no -1): each step commits on its own;"
              " the swap is one short transaction.\n"
              f"-- Assumes rows in ranges below {lit(hot)} are not changed during the copy (step 3 checks it).\n")
    migration = header + "\n".join(f"-- step {x['step']}: {x['title']}"
                                   f" (lock: {x['lock']}; ~{x['est_duration_s']} s)\n{x['sql']}"
                                   for x in steps) + "\n"
    rollback = (f"-- pg_architect: undo the partitioning of {s}.{name}:"
                " the rows of the partitioned table outside the copied\n"
                f"-- ranges (written since the swap) go back to the old table, the names are swapped back.\n"
                + "\n".join(back) + "\n")
    runbook = "\n".join(
        [f"### Runbook: partition {s}.{name} by {col}", "",
         "| step | what | lock | estimated duration |", "|---|---|---|---|"]
        + [f"| {x['step']} | {x['title']} | {x['lock']} | {x['est_duration_s']} s |" for x in steps]
        + ["", f"Durations assume {COPY_BYTES_PER_S // 1024 // 1024} MB/s for INSERT … SELECT"
               f" on a table of {_mb(size)}.",
           "Partitions ahead of the data: " + str(FUTURE_PARTITIONS) + "; later ones must be created in time "
           "(pg_partman run_maintenance, or a pg_cron job), else rows land in the DEFAULT partition.",
           f"The old table stays as {s}.{keep_name} until you drop it; the rollback uses it."]
        + ([""] + [f"- must change: {c}" for c in checks] if checks else []))
    return {"migration": migration, "rollback": rollback, "steps": steps, "checks": checks,
            "partitions": len(ranges) + 1, "copy_s": copy_s, "swap_lock_s": hot_s, "runbook": runbook}
