"""What the pipeline needs to know about the user's schema, read from pg_catalog.

Implements the ``catalog`` protocol that :func:`pg_architect.analyze.analyze_statement`
expects (``resolve_table``, ``columns``) and builds the :class:`advisors.index_candidates.TableMeta` the
candidate generator needs (existing indexes, statistics).  Everything is read through
catalog views: no lock is taken on user tables.
"""

from __future__ import annotations

from .advisors.index_candidates import ExistingIndex, TableMeta
from .analyze import SkipStatement
from .db import Db


def _split_search_path(path: str, role: str | None) -> list[str]:
    out = []
    for item in path.split(","):
        item = item.strip()
        if not item:
            continue
        if item in ('"$user"', "$user"):
            if role:
                out.append(role)
            continue
        if item.startswith('"') and item.endswith('"'):
            out.append(item[1:-1].replace('""', '"'))
        else:
            out.append(item.lower())
    return out


class PgCatalog:
    def __init__(self, db: Db, search_path: list[str]):
        self.db = db
        self.search_path = search_path
        self._tables: dict = {}
        self._columns: dict = {}
        self._meta: dict = {}

    # -- protocol for analyze --------------------------------------------------------------
    def resolve_table(self, schema: str | None, name: str):
        key = (schema, name)
        if key in self._tables:
            return self._tables[key]
        schemas = [schema] if schema else ["pg_catalog"] + self.search_path
        found = None
        for sch in schemas:
            row = self.db.one(
                "SELECT c.oid::bigint AS oid, c.relkind::text AS relkind,"
                " has_table_privilege(c.oid, 'SELECT') AS readable"
                " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r','p','m','v','f')",
                [sch, name])
            if row:
                if not row["readable"]:
                    raise SkipStatement(
                        "permission",
                        f"the audit role {self._current_user()} cannot read table {sch}.{name}")
                found = (sch, name)
                break
        self._tables[key] = found
        return found

    def columns(self, schema: str, table: str) -> dict[str, str]:
        key = (schema, table)
        if key not in self._columns:
            rows = self.db.query(
                "SELECT a.attname::text AS name, format_type(a.atttypid, a.atttypmod) AS type"
                " FROM pg_attribute a WHERE a.attrelid = format('%I.%I', $1, $2)::regclass"
                " AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
                [schema, table])
            self._columns[key] = {r["name"]: r["type"] for r in rows}
        return self._columns[key]

    # -- for recommend ------------------------------------------------------------------------
    def table_meta(self, schema: str, table: str) -> TableMeta:
        key = (schema, table)
        if key in self._meta:
            return self._meta[key]
        rel = self.db.one(
            "SELECT c.oid::bigint AS oid, greatest(c.reltuples, 0)::float8 AS reltuples"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = $1 AND c.relname = $2", [schema, table])
        if rel is None:
            raise SkipStatement("unknown_table", f"table {schema}.{table} no longer exists")
        stats = self.db.query(
            "SELECT attname::text AS name, n_distinct::float8 AS n_distinct FROM pg_stats"
            " WHERE schemaname = $1 AND tablename = $2", [schema, table])
        idx_rows = self.db.query(
            "SELECT ic.relname::text AS name, i.indnkeyatts::int AS nkey, i.indnatts::int AS natts,"
            " i.indisunique AS uniq, am.amname::text AS am,"
            " pg_get_expr(i.indpred, i.indrelid, true) AS predicate,"
            " ARRAY(SELECT pg_get_indexdef(i.indexrelid, k, true)"
            "       FROM generate_series(1, i.indnatts) k ORDER BY k) AS cols"
            " FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid"
            " JOIN pg_am am ON am.oid = ic.relam"
            " WHERE i.indrelid = $1::bigint::oid AND i.indisvalid", [rel["oid"]])
        indexes = []
        for r in idx_rows:
            cols = list(r["cols"] or [])
            indexes.append(ExistingIndex(name=r["name"], keys=cols[: r["nkey"]], include=cols[r["nkey"]:],
                                         predicate=r["predicate"], unique=bool(r["uniq"]), am=r["am"]))
        meta = TableMeta(schema=schema, name=table, reltuples=float(rel["reltuples"] or 0),
                         n_distinct={s["name"]: float(s["n_distinct"]) for s in stats
                                     if s["n_distinct"] is not None},
                         indexes=indexes)
        self._meta[key] = meta
        return meta

    def table_activity(self, schema: str, table: str) -> dict:
        """Size and write share of a table (index maintenance cost for the confidence)."""
        row = self.db.one(
            "SELECT pg_table_size(c.oid)::bigint AS bytes,"
            " coalesce(s.n_tup_ins + s.n_tup_upd + s.n_tup_del, 0)::float8 AS writes,"
            " coalesce(s.seq_tup_read + s.idx_tup_fetch, 0)::float8 AS reads"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid"
            " WHERE n.nspname = $1 AND c.relname = $2", [schema, table]) or {}
        writes, reads = row.get("writes") or 0.0, row.get("reads") or 0.0
        return {"bytes": int(row.get("bytes") or 0),
                "write_ratio": writes / (writes + reads) if writes + reads > 0 else 0.0}

    def _current_user(self) -> str:
        return self.db.scalar("SELECT current_user::text")


def search_path_for(db: Db, userid: int | None) -> list[str]:
    """The search_path the statement's role runs with by default (role/database settings)."""
    row = None
    if userid is not None:
        row = db.one(
            "SELECT r.rolname::text AS role,"
            " (SELECT substr(cfg, 13) FROM pg_db_role_setting s, unnest(s.setconfig) cfg"
            "   WHERE cfg LIKE 'search_path=%' AND s.setrole IN (r.oid, 0)"
            "   AND s.setdatabase IN ((SELECT oid FROM pg_database WHERE datname = current_database()), 0)"
            "   ORDER BY (s.setrole = 0), (s.setdatabase = 0) LIMIT 1) AS path"
            " FROM pg_roles r WHERE r.oid = $1::bigint::oid", [int(userid)])
    role = row["role"] if row else db.scalar("SELECT session_user::text")
    path = row["path"] if row and row["path"] else None
    if path is None:
        path = db.scalar("SELECT reset_val FROM pg_settings WHERE name = 'search_path'")
    return _split_search_path(path or '"$user", public', role)
