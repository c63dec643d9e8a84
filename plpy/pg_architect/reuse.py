"""Pipeline steps 4-6 (reuse): a statement whose inputs did not change since the audit that
analysed it is not planned again; that analysis is reused.

The *inputs* of one statement's analysis, hashed (:meth:`Reuse.inputs`):

* the statement: its text, the role that ran it (name, superuser, inherit, bypassrls) and that
  role's search_path; the auditor (its name, superuser, member of that role: whether it may plan
  as it); every role membership of the cluster (``pg_auth_members``);
* every table it names (resolved with that search_path): oid and relfilenode (a rewrite or
  TRUNCATE), its privileges (``relacl``, column ``attacl``), row security and its policies, its
  columns (name, type, NOT NULL, statistics target), its indexes (definition, valid), extended
  statistics and constraints, ``reltuples`` and ``relpages`` within a band (:data:`BAND`: a
  change of a fifth or more moves it), and ``last_analyze`` / ``last_autoanalyze`` (a new
  ``pg_statistic``);
* the audit's settings (``arch.settings``), the planner's settings (``pg_settings`` of the
  Query Tuning categories), hypopg's version and this package's version.

Only plain tables and materialized views qualify: a statement on a view, a partitioned or a
foreign table (whose inputs are other relations) or on a name that does not resolve is always
analysed.  Only analysed statements are remembered (``arch.statement_analysis``, written with
the audit's stored recommendations, so a failed audit leaves nothing to reuse); a reused one
gets its earlier recommendations linked to this audit again (``arch.recommendation_statement``;
rejected and superseded ones are not) and an ``arch.audit_statement`` row with outcome
``reused`` that names the audit whose analysis it is.  The analysis is per (queryid, role):
planning rights never carry over to another role.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import __version__, pgparse
from .catalog import search_path_for
from .db import local_setting
from .sqltext import quote_ident

if TYPE_CHECKING:
    from .db import Db
    from .workload import WindowStatement

#: reltuples / relpages are compared in bands of this ratio (log scale).
BAND = 1.2

_COMMON = """
SELECT concat_ws('|', (SELECT s::text FROM arch.settings s WHERE s.id),
       (SELECT string_agg(name || '=' || setting, ',' ORDER BY name) FROM pg_catalog.pg_settings
         WHERE category LIKE 'Query Tuning%'),
       (SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'hypopg'),
       (SELECT string_agg(roleid || ':' || member, ',' ORDER BY roleid, member) FROM pg_catalog.pg_auth_members))
       AS common
"""

_TABLE = """
SELECT c.relkind IN ('r', 'm') AS plain,
       concat_ws('|', c.oid, c.relfilenode, c.relkind, c.relacl, c.relrowsecurity, c.relforcerowsecurity,
         (SELECT string_agg(concat_ws(':', a.attnum, a.attname, a.atttypid, a.atttypmod, a.attnotnull,
                                      a.attstattarget, a.attacl), ',' ORDER BY a.attnum)
            FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
         (SELECT string_agg(concat_ws(':', i.indexrelid, pg_catalog.pg_get_indexdef(i.indexrelid), i.indisvalid,
                                      i.indisready), ',' ORDER BY i.indexrelid)
            FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid),
         (SELECT string_agg(x.oid::text, ',' ORDER BY x.oid) FROM pg_catalog.pg_statistic_ext x
           WHERE x.stxrelid = c.oid),
         (SELECT string_agg(k.oid::text, ',' ORDER BY k.oid) FROM pg_catalog.pg_constraint k
           WHERE k.conrelid = c.oid),
         (SELECT string_agg(p.oid::text, ',' ORDER BY p.oid) FROM pg_catalog.pg_policy p
           WHERE p.polrelid = c.oid),
         s.last_analyze, s.last_autoanalyze) AS state,
       c.reltuples::float8 AS reltuples, c.relpages::float8 AS relpages
FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_stat_all_tables s ON s.relid = c.oid
WHERE c.oid = $1::bigint::oid
"""


def _band(x: float) -> int:
    return -1 if x < 0 else round(math.log(x + 1.0) / math.log(BAND))


@dataclass
class Earlier:
    """The analysis an unchanged statement reuses."""

    analysed_in: int  # the audit that planned it
    linked_in: int  # the latest audit that linked its recommendations
    cost_before: float | None
    candidates: int


class Reuse:
    """The remembered analyses of this database and the inputs of statements, for one audit."""

    def __init__(self, db: Db):
        self.db = db
        self.common = f"{__version__}|" + str(db.scalar(_COMMON))
        self.paths: dict[int, list[str]] = {}
        self.roles: dict[int, str | None] = {}
        self.tables: dict[tuple, str | None] = {}
        self.known: dict[tuple[int, int, int], dict] = {
            (int(r["dbid"]), int(r["userid"]), int(r["queryid"])): r for r in db.query(
                "SELECT dbid::bigint AS dbid, userid::bigint AS userid, queryid, inputs, analysed_in, linked_in,"
                " cost_before, candidates FROM arch.statement_analysis"
                " WHERE dbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())")}

    def _path(self, userid: int) -> list[str]:
        if userid not in self.paths:
            self.paths[userid] = search_path_for(self.db, userid)
        return self.paths[userid]

    def _role(self, userid: int) -> str | None:
        """The role's name and attributes (a dropped role, or one made superuser, is planned again
        and skipped as the rules say, never reused)."""
        if userid not in self.roles:
            # the auditor too: whether it may plan as that role (security.PlanAs) is part of the inputs
            r = self.db.one("SELECT concat_ws(':', r.rolname, r.rolsuper, r.rolinherit, r.rolbypassrls, current_user,"
                            " (SELECT a.rolsuper FROM pg_catalog.pg_roles a WHERE a.rolname = current_user),"
                            " pg_catalog.pg_has_role(current_user, r.oid, 'MEMBER')) AS r"
                            " FROM pg_catalog.pg_roles r WHERE r.oid = $1::bigint::oid", [userid])
            self.roles[userid] = None if r is None else str(r["r"])
        return self.roles[userid]

    def _table(self, path: list[str], schema: str | None, name: str) -> str | None:
        """The state of one table (None: not a plain table, or it does not resolve)."""
        key = (tuple(path) if schema is None else (), schema, name)
        if key not in self.tables:
            qname = (quote_ident(schema, always=True) + "." if schema else "") + quote_ident(name, always=True)
            with local_setting(self.db, "search_path",
                               ", ".join(quote_ident(p, always=True) for p in path if p != "pg_temp")
                               or "pg_catalog"):
                oid = self.db.scalar("SELECT pg_catalog.to_regclass($1)::oid::bigint", [qname])
            row = None if oid is None else self.db.one(_TABLE, [int(oid)])
            self.tables[key] = (None if row is None or not row["plain"] else
                                f"{row['state']}|{_band(float(row['reltuples']))}|{_band(float(row['relpages']))}")
        return self.tables[key]

    def inputs(self, st: WindowStatement) -> str | None:
        """The hash of the statement's analysis inputs, or None when it cannot be reused."""
        try:
            reading = pgparse.read(st.query)
        except pgparse.PgParseError:
            return None
        if reading.statements != 1 or reading.kind not in ("select", "insert", "update", "delete", "merge"):
            return None
        rels = pgparse.relations(reading)
        if not rels:
            return None
        role = self._role(int(st.userid))
        if role is None:
            return None
        path = self._path(int(st.userid))
        parts = [self.common, str(st.userid), role, ",".join(path), st.query]
        for schema, name in sorted(rels, key=lambda r: (r[0] or "", r[1])):
            if schema == "pg_temp" or (schema is None and name.startswith("pg_temp")):
                return None
            state = self._table(path, schema, name)
            if state is None:
                return None
            parts.append(state)
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()

    def earlier(self, st: WindowStatement, inputs: str | None) -> Earlier | None:
        """The earlier analysis of ``st`` when its inputs are unchanged."""
        if inputs is None:
            return None
        r = self.known.get((int(st.dbid), int(st.userid), int(st.queryid)))
        if r is None or r["inputs"] != inputs:
            return None
        return Earlier(analysed_in=int(r["analysed_in"]), linked_in=int(r["linked_in"]),
                       cost_before=r["cost_before"], candidates=int(r["candidates"] or 0))

    def remember(self, run_id: int, st: WindowStatement, inputs: str, cost_before: float | None,
                 candidates: int) -> None:
        """A statement this audit analysed (call with the audit's stored recommendations)."""
        self.db.execute(
            "INSERT INTO arch.statement_analysis AS a (dbid, userid, queryid, inputs, analysed_in, linked_in,"
            " cost_before, candidates) VALUES ($1::bigint::oid, $2::bigint::oid, $3, $4, $5, $5, $6::text::float8, $7)"
            " ON CONFLICT (dbid, userid, queryid) DO UPDATE SET inputs = EXCLUDED.inputs,"
            " analysed_in = EXCLUDED.analysed_in, linked_in = EXCLUDED.linked_in,"
            " cost_before = EXCLUDED.cost_before, candidates = EXCLUDED.candidates, updated_at = now()",
            [st.dbid, st.userid, st.queryid, inputs, run_id, None if cost_before is None else str(cost_before),
             candidates])

    def relink(self, run_id: int, st: WindowStatement, members: list[WindowStatement], earlier: Earlier,
               skip_index: bool) -> tuple[int, int]:
        """Link the recommendations of the earlier analysis to this audit (the statement and the
        members of its group); ``skip_index``: not the index ones (the workload's index set
        decides those).  Returns (recommendations linked, of them counted as seen by this audit
        for the first time: recommendations_updated)."""
        qids = [int(st.queryid)] + [int(m.queryid) for m in members]
        row = self.db.row(
            "WITH prev AS (SELECT rs.recommendation_id, rs.cost_before, rs.cost_after, rs.est_gain_pct"
            "   FROM arch.recommendation_statement rs JOIN arch.recommendation r ON r.id = rs.recommendation_id"
            "   WHERE rs.audit_run_id = $1 AND rs.dbid = $2::bigint::oid AND rs.userid = $3::bigint::oid"
            "     AND rs.queryid = $4 AND r.status NOT IN ('rejected', 'superseded')"
            "     AND NOT ($6 AND r.kind = 'index')),"
            " ins AS (INSERT INTO arch.recommendation_statement (recommendation_id, audit_run_id, dbid, userid,"
            "   queryid, cost_before, cost_after, est_gain_pct)"
            "   SELECT p.recommendation_id, $5, $2::bigint::oid, $3::bigint::oid, q.v::bigint, p.cost_before,"
            "     p.cost_after, p.est_gain_pct FROM prev p, jsonb_array_elements_text($7::jsonb) q(v)"
            "   ON CONFLICT DO NOTHING RETURNING 1),"
            " upd AS (UPDATE arch.recommendation r SET last_audit_run_id = $5, times_seen = r.times_seen + 1,"
            "   updated_at = now() WHERE r.id IN (SELECT recommendation_id FROM prev)"
            "   AND r.last_audit_run_id IS DISTINCT FROM $5 RETURNING 1)"
            " SELECT (SELECT count(*) FROM prev) + 0 * (SELECT count(*) FROM ins) AS linked,"
            " (SELECT count(*) FROM upd) AS updated",
            [earlier.linked_in, st.dbid, st.userid, st.queryid, run_id, skip_index, qids])
        self.db.execute("UPDATE arch.statement_analysis SET linked_in = $4, updated_at = now()"
                        " WHERE dbid = $1::bigint::oid AND userid = $2::bigint::oid AND queryid = $3",
                        [st.dbid, st.userid, st.queryid, run_id])
        return int(row["linked"] or 0), int(row["updated"] or 0)
