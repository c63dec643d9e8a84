"""Validation on staging (issue 12): real ``EXPLAIN (ANALYZE, BUFFERS)`` before and after.

Runs in the sidecar / CLI over psycopg, never inside the server: it needs a second connection,
to a *staging* database whose DSN lives only in the sidecar's environment
(``PGA_STAGING_DSN``) or on the command line (``--staging-dsn``), never in ``arch``.

For one recommendation:

1. **Not production.** Refused when both connections reach the same system identifier
   (``pg_control_system()``) *and* the same database.
2. **Staging looks alike.** Each table of the recommendation exists on staging with the same
   columns (name and type) and a row count (``pg_class.reltuples``, else a count capped at
   1,000,000 rows) within ``validate_size_factor`` of production's; otherwise every statement is
   recorded as ``mismatch`` and nothing is applied.
3. **Before.** Each statement the recommendation serves (``arch.recommendation_statement`` →
   ``arch.statement``) is run with real parameter values — rows of ``arch.query_sample``
   (same dbid/userid/queryid, literals in the text) when that table exists, else values drawn
   from ``pg_stats`` on staging for the column each ``$n`` is compared with (most common values,
   then histogram bounds; ``LIMIT $n`` → 100, ``OFFSET $n`` → 0), ``PREPARE``d with the types
   PostgreSQL infers and ``EXECUTE``d — one untimed warm-up run, then ``validate_runs`` times
   ``EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)``.
4. **Apply** the recommendation's DDL for real on staging, one statement per line, each on its own
   (``CREATE INDEX CONCURRENTLY``; the partitioned-table procedure; ``CREATE STATISTICS`` +
   ``ANALYZE``). Only those statement shapes are accepted. An index that already exists on
   staging is not created (and not dropped): the statements are ``skipped``.
5. **After.** The same runs with the same parameter values.
6. **Undo**, always (``finally``): the rollback DDL, line by line; statistics: ``ANALYZE`` again.

Rewrite, materialized-view and partition recommendations (their ``details`` hold the advice)
are measured differently: the original statement before and the rewritten statement (rewrite,
materialized view: the view and its unique index created, REFRESHed and REFRESHed CONCURRENTLY,
timed) or the statement redirected to a partitioned copy in a scratch schema (partition) after,
with the same parameter values, and both forms' rows compared (count + order-insensitive hash);
see the README (*Validation on staging*). Parameters compared with no column take a value from
their context (:func:`parameter_contexts`, :func:`context_value`, :func:`typed_value`).

Safety of each run: ``statement_timeout`` (``validate_statement_timeout_ms``) and
``lock_timeout`` (``validate_lock_timeout_ms``) on the staging session; every run is inside a
transaction that is rolled back, so a writing statement (INSERT/UPDATE/DELETE/MERGE) leaves the
staging data as it was; a statement calling a function that reaches outside the database
(:data:`OUTSIDE_FUNCTIONS`: ``dblink*``, ``lo_export``, ``pg_notify``, ``set_config`` ...), or any
VOLATILE function outside ``pg_catalog`` (its body may do the same), is skipped naming the function;
and it runs with the rights of the role that ran it on production:
the role of the same name on staging, through :class:`~pg_architect.security.PlanAs` (a
SECURITY DEFINER wrapper owned by that role, which ``RESET ROLE`` cannot escape). A role that
does not exist on staging, or that the staging login cannot act as, is ``untrusted_code``.

The measured gain replaces the estimate in the confidence::

    measured_gain    = 1 − Σ median_after / Σ median_before     (over the measured statements)
    confidence_valid = clamp(confidence × sqrt(max(0, measured_gain)) / sqrt(est_gain), 0, 1)

(the confidence's gain factor is ``sqrt(gain)``: see :func:`pg_architect.prove.confidence`).  It
is stored on every validation row (``confidence_measured``) and becomes the recommendation's
confidence only while it is ``proposed`` (``arch._adopt_validation``): approved recommendations
are frozen, their confidence is what the human approved.
"""

from __future__ import annotations

import json
import re
import statistics
import time
import uuid
from dataclasses import dataclass, field
from functools import partial

# The only places this module touches the rest of the package (re-pointed by the integrator).
from . import pgparse  # before anything imports pglast (RTLD_DEEPBIND)
from .analyze import SkipStatement
from .db import DbError, PsycopgDb, UserError
from .prove import parse_plan, plan_changes
from .security import PlanAs
from .sqltext import quote_ident

STMT = "pga_validate_stmt"
SAMPLE_ROWS = 1_000_000  # cap of count(*) when reltuples is unknown
# Volatile functions that reach outside the database (files, network, other sessions, settings).
OUTSIDE_FUNCTIONS = re.compile(
    r"^(dblink\w*|lo_export|lo_import|lo_from_bytea|lo_unlink|pg_notify|pg_file_write|pg_file_rename|"
    r"pg_file_unlink|pg_file_sync|pg_logdir_ls|pg_read_file|pg_read_binary_file|pg_ls_\w+|pg_stat_file|"
    r"pg_terminate_backend|pg_cancel_backend|pg_reload_conf|pg_rotate_logfile|pg_promote|pg_switch_wal|"
    r"pg_create_restore_point|pg_create\w*_replication_slot|pg_drop_replication_slot|pg_logical_emit_message|"
    r"pg_advisory\w*|pg_try_advisory\w*|set_config|nextval|setval|txid_current|pg_current_xact_id|"
    r"pg_sleep\w*|http\w*|pg_background\w*|cron_\w+|schedule|unschedule)$", re.I)
# The DDL shapes a recommendation may run on staging (one statement per line).
_APPLY_OK = re.compile(
    r"^\s*(CREATE\s+(UNIQUE\s+)?INDEX\s+(CONCURRENTLY\s+)?|ALTER\s+INDEX\s+\S+\s+ATTACH\s+PARTITION\s+|"
    r"CREATE\s+STATISTICS\s+|ALTER\s+STATISTICS\s+\S+\s+SET\s+STATISTICS\s+|"
    r"ALTER\s+TABLE\s+\S+\s+ALTER\s+COLUMN\s+\S+\s+SET\s+STATISTICS\s+|ANALYZE\s+)", re.I)
_ROLLBACK_OK = re.compile(
    r"^\s*(DROP\s+INDEX\s+(CONCURRENTLY\s+)?IF\s+EXISTS\s+|DROP\s+STATISTICS\s+IF\s+EXISTS\s+|"
    r"ALTER\s+TABLE\s+\S+\s+ALTER\s+COLUMN\s+\S+\s+SET\s+STATISTICS\s+-1\s*;?\s*$|ANALYZE\s+)", re.I)
_WRITE_KINDS = {"insert", "update", "delete", "merge"}
SUPPORTED_KINDS = ("index", "statistics", "rewrite", "materialized_view", "partition")


class ValidationRefused(Exception):
    """A safety check said no (the staging DSN reaches production, unknown recommendation)."""


@dataclass
class Settings:
    runs: int = 5
    statement_timeout_ms: int = 30000
    lock_timeout_ms: int = 2000
    size_factor: float = 10.0
    policy: str = "none"
    partition_max_rows: int = 10_000_000


@dataclass
class StatementResult:
    dbid: int | None
    userid: int | None
    queryid: int | None
    status: str = "measured"
    skip_code: str | None = None
    error: str | None = None
    parameters: list = field(default_factory=list)
    parameter_source: str | None = None
    times_before: list[float] = field(default_factory=list)
    times_after: list[float] = field(default_factory=list)
    buffers_before: int | None = None
    buffers_after: int | None = None
    plans_before: list[dict] = field(default_factory=list)
    plans_after: list[dict] = field(default_factory=list)
    est_gain_pct: float | None = None
    # how to run it: [(sql text, [literal params] or None)] one per run
    runs: list = field(default_factory=list, repr=False)
    text: str | None = field(default=None, repr=False)
    role: str | None = None
    # the runs after the change when the text differs (rewrite, materialized view, partitioned copy)
    runs_after: list = field(default_factory=list, repr=False)
    # what the kind measured beyond the times (arch.validation.details)
    details: dict = field(default_factory=dict)
    # time per call the change adds after (a materialized view's refresh, spread over its calls)
    extra_after_ms: float = 0.0
    kind: str | None = None  # select | insert | update | delete | merge

    @property
    def median_before(self) -> float | None:
        return statistics.median(self.times_before) if self.times_before else None

    @property
    def median_after(self) -> float | None:
        return statistics.median(self.times_after) if self.times_after else None

    @property
    def noise_pct(self) -> float | None:
        """Spread of the runs before, (max − min) / median, in %: what timing alone cannot tell apart."""
        t = self.times_before
        if len(t) < 2 or not statistics.median(t):
            return None
        return 100.0 * (max(t) - min(t)) / statistics.median(t)

    def within_noise(self, changes: dict) -> bool:
        """Same plan nodes and a gain no larger than the spread of the runs: no real change."""
        g, n = self.gain_pct, self.noise_pct
        return (g is not None and n is not None and not changes.get("removed") and not changes.get("added")
                and abs(g) <= n)

    @property
    def gain_pct(self) -> float | None:
        b, a = self.median_before, self.median_after
        if b is None or a is None or b <= 0:
            return None
        return 100.0 * (1 - a / b)


def load_settings(db) -> Settings:
    row = db.one("SELECT validate_runs, validate_statement_timeout_ms, validate_lock_timeout_ms,"
                 " validate_size_factor, validate_policy, validate_partition_max_rows FROM arch.settings WHERE id")
    if row is None:
        raise UserError("arch.settings has no row", hint="Re-run pg-architect install.")
    return Settings(runs=int(row["validate_runs"]), statement_timeout_ms=int(row["validate_statement_timeout_ms"]),
                    lock_timeout_ms=int(row["validate_lock_timeout_ms"]),
                    size_factor=float(row["validate_size_factor"]), policy=row["validate_policy"],
                    partition_max_rows=int(row["validate_partition_max_rows"]))


# ---------------------------------------------------------------------------- connections
def connect_staging(staging_dsn: str):
    import psycopg

    if not staging_dsn:
        raise ValidationRefused("no staging database: pass --staging-dsn or set PGA_STAGING_DSN in the "
                                "sidecar's environment (never stored in the database)")
    try:
        return psycopg.connect(staging_dsn, autocommit=True, application_name="pg_architect validate")
    except psycopg.Error as exc:
        raise ValidationRefused(f"cannot connect to the staging database: {str(exc).strip().splitlines()[0]}") from None


def _identity(conn, which: str) -> tuple[int, str]:
    import psycopg

    try:
        row = conn.execute("SELECT (SELECT system_identifier FROM pg_catalog.pg_control_system()),"
                           " pg_catalog.current_database()").fetchone()
    except psycopg.Error as exc:
        if not conn.autocommit:
            conn.rollback()
        raise ValidationRefused(
            f"cannot read the system identifier of the {which} database ({str(exc).strip().splitlines()[0]}); "
            "GRANT EXECUTE ON FUNCTION pg_catalog.pg_control_system() TO the login role") from None
    if not conn.autocommit:
        conn.rollback()
    return int(row[0]), row[1]


def check_not_production(prod_conn, staging_conn) -> dict:
    """Refuse when both connections reach the same cluster and the same database."""
    prod, staging = _identity(prod_conn, "production"), _identity(staging_conn, "staging")
    if prod == staging:
        raise ValidationRefused(
            f"the staging DSN reaches the production database itself (system identifier {prod[0]}, database "
            f"{prod[1]}): validation applies changes for real and never runs on production")
    return {"system_identifier": str(staging[0]), "database": staging[1],
            "same_cluster": prod[0] == staging[0]}


# ---------------------------------------------------------------------------- what to validate
def recommendation(prod: PsycopgDb, rec_id: int) -> dict:
    rec = prod.one("SELECT id, kind, status, schema_name::text AS schema_name, table_name::text AS table_name,"
                   " index_name::text AS index_name, ddl, rollback_ddl, columns, est_gain_pct, confidence,"
                   " confidence_estimate, confidence_factors, details FROM arch.recommendation WHERE id = $1",
                   [rec_id])
    if rec is None:
        raise ValidationRefused(f"recommendation {rec_id} does not exist")
    return rec


def served_statements(prod: PsycopgDb, rec_id: int) -> list[dict]:
    """The statements of the recommendation (latest audit's estimate each), with the role name."""
    return prod.query(
        "SELECT DISTINCT ON (rs.dbid, rs.userid, rs.queryid) rs.dbid::bigint AS dbid, rs.userid::bigint AS userid,"
        "  rs.queryid, rs.est_gain_pct, s.query,"
        "  (SELECT rolname::text FROM pg_catalog.pg_roles WHERE oid = rs.userid) AS role"
        " FROM arch.recommendation_statement rs"
        " LEFT JOIN arch.statement s ON s.dbid = rs.dbid AND s.userid = rs.userid AND s.queryid = rs.queryid"
        " WHERE rs.recommendation_id = $1 ORDER BY rs.dbid, rs.userid, rs.queryid, rs.audit_run_id DESC", [rec_id])


def chosen_by_policy(prod: PsycopgDb, policy: str) -> list[int]:
    """Recommendations the policy asks to validate and that have no validation since they last changed."""
    if policy == "none":
        return []
    status = "proposed" if policy == "before_approval" else "approved"
    rows = prod.query(
        "SELECT r.id FROM arch.recommendation r WHERE r.status = $1 AND r.kind = ANY($2::text[])"
        " AND NOT EXISTS (SELECT 1 FROM arch.validation v WHERE v.recommendation_id = r.id"
        "                 AND v.started_at >= greatest(r.updated_at, coalesce(r.decided_at, r.updated_at)))"
        " ORDER BY r.benefit_ms DESC, r.id", [status, "{" + ",".join(SUPPORTED_KINDS) + "}"])
    return [int(r["id"]) for r in rows]


# ---------------------------------------------------------------------------- parse tree helpers
def _s(node) -> str | None:
    if isinstance(node, dict):
        inner = node.get("String") or node
        return inner.get("sval") or inner.get("str")
    return None


def _walk(value, visit) -> None:
    if isinstance(value, list):
        for v in value:
            _walk(v, visit)
    elif isinstance(value, dict):
        visit(value)
        for v in value.values():
            _walk(v, visit)


def called_functions(tree: dict) -> list[str]:
    """Names of the functions the statement calls (unqualified), in order of appearance."""
    found: list[str] = []

    def visit(d: dict) -> None:
        fc = d.get("FuncCall")
        if isinstance(fc, dict):
            name = _s((fc.get("funcname") or [None])[-1])
            if name and name not in found:
                found.append(name)
    _walk(tree, visit)
    return found


def outside_functions(tree: dict) -> list[str]:
    """Names of functions of the statement that reach outside the database."""
    return [n for n in called_functions(tree) if OUTSIDE_FUNCTIONS.match(n)]


def volatile_user_functions(staging: PsycopgDb, tree: dict) -> list[str]:
    """Functions of the statement that are VOLATILE and not PostgreSQL's own (pg_catalog): their
    bodies may reach outside (dblink, files, NOTIFY), which a rolled-back transaction cannot undo."""
    names = called_functions(tree)
    if not names:
        return []
    rows = staging.query("SELECT DISTINCT format('%I.%I', n.nspname, p.proname) AS f FROM pg_catalog.pg_proc p"
                         " JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace"
                         " WHERE p.proname::text IN (SELECT jsonb_array_elements_text($1::jsonb))"
                         " AND p.provolatile = 'v'"
                         " AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
                         [names])
    return [r["f"] for r in rows]


def parameter_columns(tree: dict) -> dict[int, str]:
    """$n → the column it is compared with (``col = $1``, ``$2 < t.col``, ``col IN ($1, $2)``,
    ``col BETWEEN $1 AND $2``); ``limit`` / ``offset`` for LIMIT / OFFSET parameters."""
    out: dict[int, str] = {}

    def column(node) -> str | None:
        if isinstance(node, dict) and "TypeCast" in node:
            node = node["TypeCast"].get("arg")
        if isinstance(node, dict) and "ColumnRef" in node:
            fields = node["ColumnRef"].get("fields") or []
            return _s(fields[-1]) if fields else None
        return None

    def params(node) -> list[int]:
        if isinstance(node, dict) and "TypeCast" in node:
            node = node["TypeCast"].get("arg")
        if isinstance(node, dict) and "ParamRef" in node:
            return [int(node["ParamRef"].get("number", 0))]
        if isinstance(node, dict) and "List" in node:
            return [n for item in node["List"].get("items") or [] for n in params(item)]
        if isinstance(node, list):
            return [n for item in node for n in params(item)]
        return []

    def visit(d: dict) -> None:
        e = d.get("A_Expr")
        if isinstance(e, dict):
            left, right = e.get("lexpr"), e.get("rexpr")
            for col_side, par_side in ((left, right), (right, left)):
                col = column(col_side)
                if col:
                    for n in params(par_side):
                        out.setdefault(n, col)
        for key, name in (("limitCount", "limit"), ("limitOffset", "offset")):
            for n in params(d.get(key)):
                out.setdefault(n, name)
    _walk(tree, visit)
    return out


_UNIT_FUNCTIONS = {"date_trunc", "date_part", "extract", "date_bin"}
_ARITHMETIC = {"+", "-", "*", "/", "%", "^"}


def parameter_contexts(tree: dict) -> dict[int, str]:
    """$n compared with no column → what its place says about it: ``unit`` (first argument of
    date_trunc / date_part / extract), ``interval`` (``$n::interval``), ``cast:<type>`` (another
    ``$n::type``), ``number`` (an operand of + - * / % ^). See :func:`context_value`."""
    out: dict[int, str] = {}

    def param(node) -> int | None:
        if isinstance(node, dict) and "ParamRef" in node:
            return int(node["ParamRef"].get("number", 0))
        return None

    def visit(d: dict) -> None:
        fc = d.get("FuncCall")
        if isinstance(fc, dict) and _s((fc.get("funcname") or [None])[-1]) in _UNIT_FUNCTIONS:
            n = param((fc.get("args") or [None])[0])
            if n:
                out.setdefault(n, "unit")
        tc = d.get("TypeCast")
        if isinstance(tc, dict):
            n = param(tc.get("arg"))
            names = (tc.get("typeName") or {}).get("names") or []
            typ = _s(names[-1]) if names else None
            if n and typ:
                out.setdefault(n, "interval" if typ == "interval" else f"cast:{typ}")
        e = d.get("A_Expr")
        if isinstance(e, dict) and e.get("kind") == "AEXPR_OP" and _s((e.get("name") or [None])[-1]) in _ARITHMETIC:
            for side in (e.get("lexpr"), e.get("rexpr")):
                n = param(side)
                if n:
                    out.setdefault(n, "number")
    _walk(tree, visit)
    return out


_NUMBER_TYPES = {"int2", "int4", "int8", "smallint", "integer", "bigint", "int", "numeric", "decimal", "float4",
                 "float8", "real", "double precision", "oid", "money"}


def typed_value(typ: str) -> str | None:
    """A sensible value of type ``typ`` when nothing else says which: numbers 1, booleans true,
    dates today, timestamps now, intervals 1 day, text 'a', json {}, arrays {} (None: unknown)."""
    import datetime as dt

    t = typ.lower().strip()
    if t.endswith("[]"):
        return "{}"
    if t in _NUMBER_TYPES:
        return "1"
    if t in ("bool", "boolean"):
        return "true"
    if t == "date":
        return dt.date.today().isoformat()
    if t.startswith(("timestamp", "timestamptz")):
        return dt.datetime.now(dt.UTC).isoformat(sep=" ")
    if t.startswith(("time", "timetz")):
        return "12:00"
    if t == "interval":
        return "1 day"
    if t in ("text", "varchar", "character varying", "bpchar", "character", "name", "citext") \
            or t.startswith(("character", "varchar")):
        return "a"
    if t in ("json", "jsonb"):
        return "{}"
    if t == "uuid":
        return "00000000-0000-0000-0000-000000000000"
    return None


def context_value(context: str) -> str | None:
    """The value of a parameter from its context (:func:`parameter_contexts`): LIMIT 100, OFFSET 0,
    a unit 'day', an interval '1 day', an arithmetic operand 1, a cast: :func:`typed_value`."""
    if context == "limit":
        return "100"
    if context == "offset":
        return "0"
    if context == "unit":
        return "day"
    if context == "interval":
        return "1 day"
    if context == "number":
        return "1"
    if context.startswith("cast:"):
        return typed_value(context[5:])
    return None


# ---------------------------------------------------------------------------- staging checks
def _table_shape(db: PsycopgDb, schema: str, table: str) -> dict | None:
    row = db.one("SELECT c.oid::bigint AS oid, c.reltuples::float8 AS reltuples, c.relkind::text AS relkind"
                 " FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
                 " WHERE n.nspname = $1 AND c.relname = $2", [schema, table])
    if row is None:
        return None
    cols = db.query("SELECT a.attname::text AS name, pg_catalog.format_type(a.atttypid, a.atttypmod) AS type"
                    " FROM pg_catalog.pg_attribute a WHERE a.attrelid = $1::bigint::oid AND a.attnum > 0"
                    " AND NOT a.attisdropped ORDER BY a.attnum", [row["oid"]])
    rows = row["reltuples"]
    if rows is None or rows < 0:  # never vacuumed or analysed: count, capped
        q = f"{_qi(schema)}.{_qi(table)}"
        try:
            rows = float(db.scalar(f"SELECT count(*) FROM (SELECT 1 FROM {q} LIMIT {SAMPLE_ROWS}) s"))
        except DbError:
            rows = None
    return {"columns": {c["name"]: c["type"] for c in cols}, "rows": rows}


def size_check(prod: PsycopgDb, staging: PsycopgDb, tables: list[tuple[str, str]], factor: float) -> dict:
    """Per table: exists on staging, same columns, row counts within ``factor``; 'ok' overall."""
    out: dict = {"ok": True, "factor": factor, "tables": {}}
    for schema, table in tables:
        key = f"{schema}.{table}"
        p, s = _table_shape(prod, schema, table), _table_shape(staging, schema, table)
        entry: dict = {"exists": s is not None}
        if p is None:
            entry["problem"] = "not on production any more"
        elif s is None:
            entry["problem"] = "missing on staging"
        else:
            entry.update(rows_production=p["rows"] and round(p["rows"]), rows_staging=s["rows"] and round(s["rows"]))
            diff = sorted(set(p["columns"].items()) ^ set(s["columns"].items()))
            if diff:
                entry["problem"] = "columns differ: " + ", ".join(sorted({c for c, _ in diff}))
            elif p["rows"] is None or s["rows"] is None:
                entry["rows_unknown"] = True
            else:
                lo, hi = sorted((max(p["rows"], 1.0), max(s["rows"], 1.0)))
                entry["ratio"] = round(hi / lo, 2)
                if hi / lo > factor:
                    entry["problem"] = (f"row counts differ by {hi / lo:.1f}× (production {round(p['rows'])}, "
                                        f"staging {round(s['rows'])}; allowed {factor:g}×)")
        if "problem" in entry:
            out["ok"] = False
        out["tables"][key] = entry
    return out


# ---------------------------------------------------------------------------- parameter values
def _qi(name: str) -> str:
    return quote_ident(name, always=True)


def _literal(value) -> str:
    return "NULL" if value is None else "'" + str(value).replace("'", "''") + "'"


def _stats_values(staging: PsycopgDb, tables: list[tuple[str, str]], column: str) -> list[str]:
    """Most common values, then histogram bounds, of ``column`` in the statement's tables."""
    rows = staging.query(
        "SELECT v FROM pg_catalog.pg_stats s,"
        " LATERAL unnest(coalesce(s.most_common_vals::text::text[], '{}')"
        "                || coalesce(s.histogram_bounds::text::text[], '{}'))"
        "   WITH ORDINALITY AS u(v, i)"
        " WHERE (s.schemaname::text, s.tablename::text) IN (SELECT x->>0, x->>1 FROM jsonb_array_elements($1::jsonb) x)"
        "   AND s.attname = $2 ORDER BY s.tablename, s.inherited, i LIMIT 1000",  # inherited: a partitioned parent
        [[list(t) for t in tables], column])
    return [r["v"] for r in rows]


def sample_texts(prod: PsycopgDb, st: dict, n: int) -> list[str]:
    """Texts with literals from arch.query_sample (another helper's table), when it exists."""
    if not prod.scalar("SELECT to_regclass('arch.query_sample') IS NOT NULL"):
        return []
    rows = prod.query("SELECT query FROM arch.query_sample WHERE dbid = $1::bigint::oid AND userid = $2::bigint::oid"
                      " AND queryid = $3 LIMIT $4::bigint", [st["dbid"], st["userid"], st["queryid"], n])
    return [r["query"] for r in rows]


def _same_shape(text: str, reading) -> bool:
    """A sample is used only if it is one statement of the same kind calling nothing outside."""
    try:
        r = pgparse.read(text)
    except pgparse.PgParseError:
        return False
    return (r.statements == 1 and r.kind == reading.kind and not r.select_into and not r.params
            and not outside_functions(r.tree))


def _histogram(staging: PsycopgDb, tables: list[tuple[str, str]], column: str) -> list[str]:
    """The histogram bounds of ``column`` (in the column's order), of the first table that has them."""
    row = staging.one(
        "SELECT s.histogram_bounds::text::text[] AS h FROM pg_catalog.pg_stats s"
        " WHERE (s.schemaname::text, s.tablename::text) IN (SELECT x->>0, x->>1 FROM jsonb_array_elements($1::jsonb) x)"
        "   AND s.attname = $2 AND s.histogram_bounds IS NOT NULL ORDER BY s.tablename, s.inherited LIMIT 1",
        [[list(t) for t in tables], column])
    return list(row["h"]) if row else []


def parameter_sets(staging: PsycopgDb, reading, tables: list[tuple[str, str]], runs: int,
                   types=None) -> list[list[str | None]]:
    """``runs`` lists of parameter values (text): drawn from pg_stats on staging for a parameter
    compared with a column (several parameters on one column, e.g. a range: consecutive histogram
    bounds, in order), else from the parameter's context (:func:`context_value`), else from the
    type PostgreSQL infers for it (``types()``, called when needed: :func:`typed_value`)."""
    cols = parameter_columns(reading.tree)
    contexts = parameter_contexts(reading.tree)
    values: dict[int, list] = {}
    by_column: dict[str, list[int]] = {}
    inferred: list[str] | None = None
    for n in reading.params:
        col = cols.get(n)
        if col in ("limit", "offset"):
            values[n] = [context_value(col)]
        elif col:
            by_column.setdefault(col, []).append(n)
        elif context_value(contexts.get(n, "")) is not None:
            values[n] = [context_value(contexts[n])]
        else:
            if inferred is None:
                inferred = list(types()) if types else []
            v = typed_value(inferred[n - 1]) if n - 1 < len(inferred) else None
            if v is None:
                raise SkipStatement("parameter_values", f"${n} is compared with no column and its type "
                                    f"({inferred[n - 1] if n - 1 < len(inferred) else 'unknown'}) has no default "
                                    "value (and arch.query_sample has no sample)")
            values[n] = [v]
    ranges: dict[int, tuple[list[str], int, int]] = {}  # $n → (histogram, position, params on the column)
    for col, ns in by_column.items():
        hist = _histogram(staging, tables, col) if len(ns) > 1 else []
        if len(hist) > len(ns):
            for i, n in enumerate(sorted(ns)):
                ranges[n] = (hist, i, len(ns))
            continue
        vals = _stats_values(staging, tables, col)
        if not vals:
            raise SkipStatement("parameter_values", f"no statistics on staging for column {col} (${ns[0]}): "
                                "ANALYZE the table on staging")
        for n in ns:
            values[n] = vals
    out = []
    for k in range(runs):
        row: list[str | None] = []
        for n in range(1, (max(reading.params) if reading.params else 0) + 1):
            if n in ranges:
                hist, i, m = ranges[n]
                row.append(hist[(k * 7) % (len(hist) - m + 1) + i])
            else:
                row.append(values[n][(k * 7) % len(values[n])] if n in values else None)
        out.append(row)
    return out


# ---------------------------------------------------------------------------- runs
class Runner:
    """EXPLAIN ANALYZE of one statement on staging, as its role, in rolled-back transactions."""

    def __init__(self, conn, db: PsycopgDb, settings: Settings):
        self.conn, self.db, self.settings = conn, db, settings
        self.plan_as = PlanAs(db)

    def role_oid(self, role: str | None) -> int:
        if role is None:
            raise SkipStatement("untrusted_code", "the role that ran it on production no longer exists")
        oid = self.db.scalar("SELECT oid::bigint FROM pg_catalog.pg_roles WHERE rolname = $1", [role])
        if oid is None:
            raise SkipStatement("untrusted_code", f"role {role} that ran it on production does not exist on staging; "
                                "it is never run with the validator's rights instead")
        return int(oid)

    def explain(self, role_oid: int, text: str, params: list | None) -> dict:
        """One EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) run inside a transaction rolled back."""
        import psycopg

        try:
            with self.conn.transaction(force_rollback=True):
                fn = self.plan_as.wrapper_for(role_oid)
                if params is None:  # a sample text with literals
                    self.db.check_one_statement(text)
                    sql = f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {text}"
                else:
                    self.db.check_one_statement(text)
                    self._planner(fn, f"PREPARE {STMT} AS {text}", rows=False)
                    types = self.db.scalar("SELECT parameter_types::text[] FROM pg_catalog.pg_prepared_statements"
                                           " WHERE name = $1", [STMT]) or []
                    args = ", ".join(f"{_literal(v)}::{t}" for v, t in zip(params, types))
                    sql = f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE {STMT}" + (f"({args})" if args else "")
                rows = self._planner(fn, sql)
        except psycopg.Error as exc:
            raise DbError(str(exc).strip(), exc.sqlstate) from None
        finally:
            self._deallocate()
        doc = next(iter(rows[0].values()))
        return json.loads(doc) if isinstance(doc, str) else doc

    def param_types(self, role_oid: int, text: str) -> list[str]:
        """The types PostgreSQL infers for the statement's parameters (PREPAREd as its role, rolled back)."""
        import psycopg

        try:
            with self.conn.transaction(force_rollback=True):
                fn = self.plan_as.wrapper_for(role_oid)
                self.db.check_one_statement(text)
                self._planner(fn, f"PREPARE {STMT} AS {text}", rows=False)
                return list(self.db.scalar("SELECT parameter_types::text[] FROM pg_catalog.pg_prepared_statements"
                                           " WHERE name = $1", [STMT]) or [])
        except psycopg.Error as exc:
            raise DbError(str(exc).strip(), exc.sqlstate) from None
        finally:
            self._deallocate()

    def digest(self, role_oid: int, text: str, params: list | None) -> dict:
        """Row count and an order-insensitive hash (md5 of the sorted md5 of each row's values) of
        what the statement returns, run as its role in a rolled-back transaction."""
        import psycopg

        from . import validate_sql

        try:
            with self.conn.transaction(force_rollback=True):
                fn = self.plan_as.wrapper_for(role_oid)
                self.db.check_one_statement(text)
                if params:
                    self._planner(fn, f"PREPARE {STMT} AS {text}", rows=False)
                    types = self.db.scalar("SELECT parameter_types::text[] FROM pg_catalog.pg_prepared_statements"
                                           " WHERE name = $1", [STMT]) or []
                    self._deallocate()
                    text = validate_sql.bind(text, params, list(types))
                sql = ("SELECT count(*)::bigint AS n, md5(coalesce(string_agg(h, ',' ORDER BY h), '')) AS hash"
                       f" FROM (SELECT md5(x::text) AS h FROM ({text}) x) y")
                self.db.check_one_statement(sql)
                row = self._planner(fn, sql)[0]
        except psycopg.Error as exc:
            raise DbError(str(exc).strip(), exc.sqlstate) from None
        finally:
            self._deallocate()
        return {"rows": int(row["n"]), "hash": row["hash"]}

    def _planner(self, fn: str, sql: str, rows: bool = True) -> list[dict]:
        out = self.db.query(f"SELECT w FROM {fn}($1, $2) w", [sql, rows])
        return [json.loads(r["w"]) for r in out]

    def _deallocate(self) -> None:
        try:
            self.conn.execute(f"DEALLOCATE {STMT}")
        except Exception:
            pass

    def measure(self, st: StatementResult, phase: str) -> None:
        role_oid = self.role_oid(st.role)
        times, plans, buffers = [], [], []
        runs = st.runs_after if phase == "after" and st.runs_after else st.runs
        for i, (text, params) in enumerate([runs[0]] + runs):  # first: warm-up, not counted
            doc = self.explain(role_oid, text, params)
            if i == 0:
                continue
            top = doc[0]
            times.append(float(top.get("Execution Time", 0.0)))
            plans.append(doc)
            p = top["Plan"]
            buffers.append(int(p.get("Shared Hit Blocks", 0)) + int(p.get("Shared Read Blocks", 0)))
        med = statistics.median(times)
        # the plan of the run closest to the median
        idx = min(range(len(times)), key=lambda k: abs(times[k] - med))
        if phase == "before":
            st.times_before, st.plans_before, st.buffers_before = times, [plans[idx]], int(statistics.median(buffers))
        else:
            st.times_after, st.plans_after, st.buffers_after = times, [plans[idx]], int(statistics.median(buffers))


# ---------------------------------------------------------------------------- DDL on staging
def ddl_statements(text: str | None, allowed: re.Pattern, what: str) -> list[str]:
    """One statement per line (the recommendation's format); each must have an accepted shape."""
    from .prove import several_statements

    out = []
    for line in (text or "").splitlines():
        s = line.strip().rstrip(";").strip()
        if not s or s.startswith("--"):
            continue
        if several_statements(s) or not allowed.match(s):
            raise ValidationRefused(f"the {what} holds a statement validation does not run: {s[:120]}")
        out.append(s)
    return out


def _run_ddl(conn, statements: list[str]) -> None:
    for s in statements:
        conn.execute(s)


_CREATES = re.compile(r"^\s*CREATE\s+(?:UNIQUE\s+)?(INDEX|STATISTICS)\s+(?:CONCURRENTLY\s+)?(?:IF\s+NOT\s+EXISTS\s+)?"
                      r"(\S+?)\s+(?:ON|\()\s*(?:ONLY\s+)?(\S+)?", re.I)


def _unquote(name: str) -> str:
    return name[1:-1].replace('""', '"') if name.startswith('"') and name.endswith('"') else name


def existing_objects(staging: PsycopgDb, ddl: list[str]) -> list[str]:
    """Indexes and statistics objects the DDL creates that staging already has."""
    out = []
    for s in ddl:
        m = _CREATES.match(s)
        if not m:
            continue
        what, name, table = m.group(1).upper(), m.group(2), m.group(3) or ""
        if what == "INDEX":
            schema = _unquote(table.split(".")[0]) if "." in table else None
            rel = f"{_qi(schema)}.{_qi(_unquote(name))}" if schema else _qi(_unquote(name))
            if staging.scalar("SELECT to_regclass($1) IS NOT NULL", [rel]):
                out.append(f"index {_unquote(name)}")
        else:
            parts = [_unquote(p) for p in re.findall(r'"(?:[^"]|"")*"|[^.]+', name)]
            schema, obj = (parts[0], parts[-1]) if len(parts) > 1 else (None, parts[-1])
            if staging.scalar("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_statistic_ext s"
                              " JOIN pg_catalog.pg_namespace n ON n.oid = s.stxnamespace"
                              " WHERE s.stxname = $1 AND ($2::text IS NULL OR n.nspname = $2))",
                              [obj, schema]):
                out.append(f"statistics {obj}")
    return out


# ---------------------------------------------------------------------------- one recommendation
def validate_recommendation(prod: PsycopgDb, staging_conn, rec_id: int, settings: Settings | None = None,
                            request_id: int | None = None, say=lambda m: None) -> dict:
    """Validate one recommendation on staging; rows go to arch.validation. Returns a summary."""
    settings = settings or load_settings(prod)
    rec = recommendation(prod, rec_id)
    staging = PsycopgDb(staging_conn)
    staging_conn.execute(f"SET statement_timeout = {int(settings.statement_timeout_ms)}")
    staging_conn.execute(f"SET lock_timeout = {int(settings.lock_timeout_ms)}")
    kind = rec["kind"]
    details = rec.get("details") or {}
    after_text = {"rewrite": rec["ddl"], "materialized_view": details.get("rewritten_query")}.get(kind)
    if kind == "materialized_view" and not after_text:
        raise ValidationRefused(f"materialized_view recommendation {rec_id} has no rewritten_query in its details")
    scratch = f"pga_validate_{uuid.uuid4().hex[:12]}" if kind == "partition" else ""
    copy_name = f"{rec['table_name']}_partitioned"[:63]
    results: list[StatementResult] = []
    tables = [(rec["schema_name"], rec["table_name"])]
    stmts = served_statements(prod, rec_id)
    for st in stmts:
        r = StatementResult(dbid=st["dbid"], userid=st["userid"], queryid=st["queryid"], text=st["query"],
                            role=st["role"], est_gain_pct=st["est_gain_pct"])
        results.append(r)
        try:
            if not st["query"]:
                raise SkipStatement("unknown_statement", "its text is no longer in arch.statement")
            try:
                reading = pgparse.read(st["query"])
            except pgparse.PgParseError as exc:
                raise SkipStatement("parse_error", exc.message) from None
            if reading.statements != 1 or reading.kind in ("utility", "ddl") or reading.select_into:
                raise SkipStatement("utility", "only single queries (SELECT, INSERT, UPDATE, DELETE, MERGE) are run")
            r.kind = reading.kind
            outside = outside_functions(reading.tree)
            if outside:
                raise SkipStatement("outside_effects", f"it calls {', '.join(outside)}, which reaches outside the "
                                    "database (a rolled-back transaction cannot undo it): not run on staging")
            volatile = volatile_user_functions(staging, reading.tree)
            if volatile:
                raise SkipStatement("outside_effects", f"it calls {', '.join(volatile)}, a VOLATILE function that is "
                                    "not PostgreSQL's own: its body may reach outside the database, which a "
                                    "rolled-back transaction cannot undo; not run on staging")
            for t in pgparse.relations(reading):
                key = (t[0] or rec["schema_name"], t[1])
                if key not in tables:
                    tables.append(key)
            # a rewritten text takes the same parameter values: samples (literal texts) cannot be used
            samples = ([] if after_text else
                       [t for t in sample_texts(prod, st, settings.runs) if _same_shape(t, reading)])
            if samples:
                r.parameter_source = "query_sample"
                r.runs = [(samples[k % len(samples)], None) for k in range(settings.runs)]
                r.parameters = [samples[k % len(samples)] for k in range(settings.runs)]
            else:
                r.parameter_source = _parameter_source(reading)
                runner = Runner(staging_conn, staging, settings)
                sets = parameter_sets(staging, reading, tables, settings.runs,
                                      types=partial(_inferred_types, runner, r.role, st["query"]))
                r.runs = [(st["query"], p) for p in sets]
                r.parameters = sets
            if after_text:
                _rewritten_runs(r, reading, after_text, kind)
            elif kind == "partition":
                r.runs_after = [(_redirected(t, rec, scratch, copy_name), p) for t, p in r.runs]
            if reading.kind in _WRITE_KINDS:
                r.parameter_source = (r.parameter_source or "") + " (writes rolled back)"
        except SkipStatement as exc:
            r.status, r.skip_code, r.error = "skipped", exc.code, exc.reason
    check = size_check(prod, staging, tables, settings.size_factor)
    todo = [r for r in results if r.status == "measured"]
    applied = False
    problem: str | None = None
    if kind not in SUPPORTED_KINDS:
        problem = f"validation of {kind} recommendations is not supported ({', '.join(SUPPORTED_KINDS)})"
        for r in todo:
            r.status, r.skip_code, r.error = "skipped", "not_supported", problem
    elif not check["ok"]:
        why = "; ".join(f"{t}: {e['problem']}" for t, e in check["tables"].items() if "problem" in e)
        for r in todo:
            r.status, r.error = "mismatch", f"staging does not look like production: {why}"
    elif todo and kind == "rewrite":
        _validate_rewrite(rec, todo, staging_conn, staging, settings, say)
    elif todo and kind == "materialized_view":
        applied, problem = _validate_matview(rec, todo, staging_conn, staging, settings, say)
    elif todo and kind == "partition":
        applied, problem = _validate_partition(rec, todo, check, scratch, copy_name, staging_conn, staging,
                                               settings, say)
    elif todo:
        apply = ddl_statements(rec["ddl"], _APPLY_OK, "DDL")
        undo = ddl_statements(rec["rollback_ddl"], _ROLLBACK_OK, "rollback DDL")
        existing = existing_objects(staging, apply)
        if existing:
            problem = f"{', '.join(existing)} already exists on staging: nothing to compare (and it is not dropped)"
            for r in todo:
                r.status, r.skip_code, r.error = "skipped", "already_applied", problem
            todo = []
        for r in list(todo):
            try:
                say(f"recommendation {rec_id}: queryid {r.queryid}: {settings.runs} runs before")
                runner = Runner(staging_conn, staging, settings)
                runner.measure(r, "before")
            except SkipStatement as exc:
                r.status, r.skip_code, r.error = "skipped", exc.code, exc.reason
            except DbError as exc:
                r.status, r.error = "failed", f"before: {str(exc).splitlines()[0]}"
        todo = [r for r in todo if r.status == "measured"]
        if todo:
            try:
                say(f"recommendation {rec_id}: applying on staging: {len(apply)} statement(s)")
                applied = True
                _run_ddl(staging_conn, apply)
                for r in todo:
                    try:
                        say(f"recommendation {rec_id}: queryid {r.queryid}: {settings.runs} runs after")
                        Runner(staging_conn, staging, settings).measure(r, "after")
                    except (SkipStatement, DbError) as exc:
                        r.status, r.error = "failed", f"after: {str(exc).splitlines()[0]}"
            except Exception as exc:
                problem = f"applying the DDL on staging failed: {str(exc).strip().splitlines()[0]}"
                for r in todo:
                    if not r.times_after:
                        r.status, r.error = "failed", problem
            finally:
                undo_error = _undo(staging_conn, undo, rec, say)
                if undo_error:
                    problem = (problem + "; " if problem else "") + undo_error
                    for r in todo:
                        r.error = (r.error + "; " if r.error else "") + undo_error
    return _record(prod, rec, results, check, request_id, applied, problem,
                   {"database": staging_conn.info.dbname, "host": staging_conn.info.host})


# ---------------------------------------------------------------------------- rewrite, view, copy
def _inferred_types(runner: Runner, role: str | None, text: str) -> list[str]:
    return runner.param_types(runner.role_oid(role), text)


def _parameter_source(reading) -> str:
    if not reading.params:
        return "none"
    cols = parameter_columns(reading.tree)
    if any(c not in ("limit", "offset") for c in cols.values()):
        return "pg_stats"
    return "context"


def _rewritten_runs(r: StatementResult, reading, text: str, kind: str) -> None:
    """The runs after: the rewritten text (rewrite, materialized view) with the same parameter values."""
    what = "the rewritten statement" if kind == "rewrite" else "the statement rewritten to read the view"
    try:
        after = pgparse.read(text)
    except pgparse.PgParseError as exc:
        raise SkipStatement("parse_error", f"{what}: {exc.message}") from None
    if after.statements != 1 or after.kind != reading.kind or after.select_into:
        raise SkipStatement("not_comparable", f"{what} is not one {reading.kind} statement")
    if not set(after.params) <= set(reading.params):
        raise SkipStatement("parameters_changed", f"{what} takes other parameters "
                            f"({', '.join(f'${n}' for n in after.params)}) than the original: the application's "
                            "values cannot be carried over")
    bad = outside_functions(after.tree)
    if bad:
        raise SkipStatement("outside_effects", f"{what} calls {', '.join(bad)}, which reaches outside the database")
    r.runs_after = [(text, p) for _, p in r.runs]


def _redirected(text: str, rec: dict, scratch: str, copy_name: str) -> str:
    from .validate_sql import NotRunnable, redirect

    try:
        out, n = redirect(text, rec["schema_name"], rec["table_name"], scratch, copy_name)
    except NotRunnable as exc:
        raise SkipStatement("parse_error", str(exc)) from None
    if not n:
        raise SkipStatement("not_comparable", f"it does not name {rec['schema_name']}.{rec['table_name']}: "
                            "nothing to run against the partitioned copy")
    return out


def _measure(rec: dict, todo: list[StatementResult], phase: str, conn, db: PsycopgDb, settings: Settings,
             say) -> list[StatementResult]:
    """``phase`` runs of each statement still measured; returns those."""
    for r in todo:
        if r.status != "measured":
            continue
        try:
            say(f"recommendation {rec['id']}: queryid {r.queryid}: {settings.runs} runs {phase}")
            Runner(conn, db, settings).measure(r, phase)
        except SkipStatement as exc:
            if phase == "before":
                r.status, r.skip_code, r.error = "skipped", exc.code, exc.reason
            else:
                r.status, r.error = "failed", f"{phase}: {exc.reason}"
        except DbError as exc:
            r.status, r.error = "failed", f"{phase}: {str(exc).splitlines()[0]}"
    return [r for r in todo if r.status == "measured"]


def _same_rows(rec: dict, todo: list[StatementResult], conn, db: PsycopgDb, settings: Settings, what: str,
               say) -> None:
    """Each statement's rows before (original) and after (rewritten / on the copy), for each distinct
    parameter set (at most 3): the same row count and order-insensitive hash, else failed."""
    for r in todo:
        if r.status != "measured":
            continue
        if r.kind != "select":
            r.details.update(same_rows=None, rows_note="a writing statement: its rows are not compared "
                             "(each run is rolled back)")
            continue
        runner = Runner(conn, db, settings)
        seen: list = []
        try:
            role = runner.role_oid(r.role)
            for (text, params), (text_after, params_after) in zip(r.runs, r.runs_after):
                key = (text, params)
                if key in seen or len(seen) >= 3:
                    continue
                seen.append(key)
                say(f"recommendation {rec['id']}: queryid {r.queryid}: comparing rows")
                b = runner.digest(role, text, params)
                a = runner.digest(role, text_after, params_after)
                r.details.update(rows_before=b["rows"], rows_after=a["rows"], same_rows=b == a)
                if b != a:
                    r.status = "failed"
                    # no values in the error: parameters are shown only to who may see the statement
                    r.error = (f"{what} returns different rows than the original: {b['rows']} row(s) before, "
                               f"{a['rows']} after (hash {b['hash'][:8]} vs {a['hash'][:8]}) with the parameters "
                               f"of run {r.runs.index((text, params)) + 1}")
                    break
            r.details["rows_compared_sets"] = len(seen)
        except (SkipStatement, DbError) as exc:
            r.status, r.error = "failed", f"comparing rows: {str(exc).splitlines()[0] if str(exc) else exc}"


def _validate_rewrite(rec: dict, todo: list[StatementResult], conn, db: PsycopgDb, settings: Settings,
                      say) -> None:
    """The original statement before, the rewritten one after (nothing to apply), then their rows."""
    todo = _measure(rec, todo, "before", conn, db, settings, say)
    todo = _measure(rec, todo, "after", conn, db, settings, say)
    _same_rows(rec, todo, conn, db, settings, "the rewritten statement", say)


def _timed(conn, sql: str) -> float:
    t0 = time.perf_counter()
    conn.execute(sql)
    return round(1000.0 * (time.perf_counter() - t0), 3)


def _staging_roles(db: PsycopgDb, todo: list[StatementResult]) -> list[str]:
    """The statements' roles that exist on staging, other than the validator's login."""
    names = sorted({r.role for r in todo if r.role})
    return [r["rolname"] for r in db.query(
        "SELECT rolname::text AS rolname FROM pg_catalog.pg_roles"
        " WHERE rolname::text IN (SELECT jsonb_array_elements_text($1::jsonb))"
        " AND rolname <> current_user ORDER BY 1", [names])] if names else []


def _error_line(exc: Exception) -> str:
    import psycopg

    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, psycopg.errors.QueryCanceled):
        text += " (validate_statement_timeout_ms)"
    return text


def _validate_matview(rec: dict, todo: list[StatementResult], conn, db: PsycopgDb, settings: Settings,
                      say) -> tuple[bool, str | None]:
    """The original statement before; the view and its unique index created, REFRESHed (timed), the
    rewritten statement after and its rows compared, one REFRESH CONCURRENTLY (timed); the view
    dropped, always."""
    from .validate_sql import NotRunnable, matview_script

    try:
        ms = matview_script(rec["ddl"] or "")
    except NotRunnable as exc:
        raise ValidationRefused(f"the materialized view's script: {exc}") from None
    problem: str | None
    if db.scalar("SELECT to_regclass($1) IS NOT NULL", [ms.view]):
        problem = f"{ms.view} already exists on staging: nothing to compare (and it is not dropped)"
        for r in todo:
            r.status, r.skip_code, r.error = "skipped", "already_applied", problem
        return False, problem
    todo = _measure(rec, todo, "before", conn, db, settings, say)
    if not todo:
        return False, None
    common: dict = {"view": ms.view, "notes": ms.notes}
    problem = None
    try:
        say(f"recommendation {rec['id']}: creating {ms.view} on staging")
        common["create_ms"] = _timed(conn, ms.create)
        for ix in ms.indexes:
            conn.execute(ix)
        for role in _staging_roles(db, todo):  # the statement's role reads the view, as on production
            conn.execute(f"GRANT SELECT ON {ms.view} TO {_qi(role)}")
        common["refresh_ms"] = _timed(conn, f"REFRESH MATERIALIZED VIEW {ms.view}")
        todo = _measure(rec, todo, "after", conn, db, settings, say)
        _same_rows(rec, todo, conn, db, settings, "the statement rewritten to read the view", say)
        common["refresh_concurrently_ms"] = _timed(conn, f"REFRESH MATERIALIZED VIEW CONCURRENTLY {ms.view}")
    except Exception as exc:
        problem = f"creating or refreshing the materialized view on staging failed: {_error_line(exc)}"
        for r in todo:
            if r.status == "measured" and not r.times_after:
                r.status, r.error = "failed", problem
    finally:
        undo_error = _undo(conn, [f"DROP MATERIALIZED VIEW IF EXISTS {ms.view}"], rec, say)
        if undo_error:
            problem = (problem + "; " if problem else "") + undo_error
    est = (rec.get("details") or {}).get("estimate") or {}
    per_interval = float(est.get("calls_per_s") or 0) * float(est.get("refresh_interval_s") or 0)
    refresh = common.get("refresh_concurrently_ms", common.get("refresh_ms"))
    for r in todo:
        r.details.update(common)
        if undo_error:
            r.error = (r.error + "; " if r.error else "") + undo_error
        if r.status != "measured" or refresh is None or r.median_before is None or r.median_after is None:
            continue
        r.details["refresh_interval_s"] = est.get("refresh_interval_s")
        r.details["calls_per_refresh_interval"] = round(per_interval, 2)
        if per_interval > 0:
            # the refresh is part of the cost: spread over the calls of one refresh interval
            r.extra_after_ms = refresh / per_interval
            r.details["benefit_ms_per_refresh"] = round(
                per_interval * (r.median_before - r.median_after) - refresh, 3)
    return True, problem


def _validate_partition(rec: dict, todo: list[StatementResult], check: dict, scratch: str, copy_name: str,
                        conn, db: PsycopgDb, settings: Settings, say) -> tuple[bool, str | None]:
    """A partitioned copy of the table in a scratch schema (step 1 of the plan re-targeted, the rows
    copied, ANALYZE); each statement against the table before and against the copy after, with
    the partitions it scanned and its rows compared; the scratch schema dropped, always."""
    from .validate_sql import NotRunnable, plan_to_scratch

    schema, table = rec["schema_name"], rec["table_name"]
    steps = (rec.get("details") or {}).get("steps") or []
    if not steps or not steps[0].get("sql"):
        raise ValidationRefused(f"partition recommendation {rec['id']} has no migration plan in its details")
    problem: str | None
    rows = (check["tables"].get(f"{schema}.{table}") or {}).get("rows_staging")
    if rows is None or rows > settings.partition_max_rows:
        problem = (f"{schema}.{table} has {'an unknown number of' if rows is None else f'{rows:,}'} rows on staging, "
                   f"above validate_partition_max_rows ({settings.partition_max_rows:,}): the partitioned copy "
                   "would hold all of them; not validated")
        for r in todo:
            r.status, r.skip_code, r.error = "skipped", "too_large", problem
        return False, problem
    try:
        plan = plan_to_scratch(steps[0]["sql"], schema, copy_name, scratch)
    except NotRunnable as exc:
        raise ValidationRefused(f"the partition plan: {exc}") from None
    orig, copy = f"{_qi(schema)}.{_qi(table)}", f"{_qi(scratch)}.{_qi(copy_name)}"
    common: dict = {"scratch_schema": scratch, "copy": f"{scratch}.{copy_name}", "notes": plan.notes,
                    "pg_partman": plan.partman_parent is not None}
    problem = None
    try:
        say(f"recommendation {rec['id']}: building the partitioned copy {scratch}.{copy_name} on staging")
        conn.execute(f"CREATE SCHEMA {_qi(scratch)}")
        for stmt in plan.statements:
            conn.execute(stmt)
        cols = ", ".join(_qi(c["a"]) for c in db.query(
            "SELECT attname::text AS a FROM pg_catalog.pg_attribute WHERE attrelid = $1::regclass AND attnum > 0"
            " AND NOT attisdropped AND attgenerated = '' ORDER BY attnum", [orig]))
        t0 = time.perf_counter()
        cur = conn.execute(f"INSERT INTO {copy} ({cols}) OVERRIDING SYSTEM VALUE SELECT {cols} FROM {orig}")
        common["rows_copied"] = cur.rowcount
        conn.execute(f"ANALYZE {copy}")
        common["copy_ms"] = round(1000.0 * (time.perf_counter() - t0), 1)
        parts = [p["name"] for p in db.query(
            "SELECT c.relname::text AS name, c.relispartition FROM pg_catalog.pg_partition_tree($1::regclass) t"
            " JOIN pg_catalog.pg_class c ON c.oid = t.relid WHERE t.isleaf ORDER BY 1", [copy])]
        common["partitions"] = len(parts)
        for role in _staging_roles(db, todo):  # the role's rights on the table, on the copy
            conn.execute(f"GRANT USAGE ON SCHEMA {_qi(scratch)} TO {_qi(role)}")
            privs = [p for p in ("SELECT", "INSERT", "UPDATE", "DELETE")
                     if db.scalar("SELECT has_table_privilege($1, $2::regclass, $3)", [role, orig, p])]
            if privs:
                conn.execute(f"GRANT {', '.join(privs)} ON {copy} TO {_qi(role)}")
        todo = _measure(rec, todo, "before", conn, db, settings, say)
        todo = _measure(rec, todo, "after", conn, db, settings, say)
        _same_rows(rec, todo, conn, db, settings, "the statement on the partitioned copy", say)
        for r in todo:
            scanned = _scanned(r.plans_after[0] if r.plans_after else None, set(parts))
            r.details.update(partitions_scanned=len(scanned["relations"]), partitions=len(parts),
                             subplans_removed=scanned["removed"],
                             scanned=sorted(scanned["relations"])[:20])
    except Exception as exc:
        problem = f"the partitioned copy on staging failed: {_error_line(exc)}"
        for r in todo:
            if r.status == "measured" and not r.times_after:
                r.status, r.error = "failed", problem
    finally:
        undo_error = _drop_scratch(conn, db, scratch, plan.partman_parent, say)
        if undo_error:
            problem = (problem + "; " if problem else "") + undo_error
    for r in todo:
        r.details = {**common, **r.details}
        if undo_error:
            r.error = (r.error + "; " if r.error else "") + undo_error
    return True, problem


def _scanned(doc, parts: set[str]) -> dict:
    found: set[str] = set()
    removed = 0

    def walk(node: dict) -> None:
        nonlocal removed
        if node.get("Relation Name") in parts:
            found.add(node["Relation Name"])
        removed += int(node.get("Subplans Removed", 0) or 0)
        for c in node.get("Plans", []) or []:
            walk(c)

    if doc:
        walk(doc[0]["Plan"])
    return {"relations": found, "removed": removed}


def _drop_scratch(conn, db: PsycopgDb, scratch: str, partman_parent: str | None, say) -> str | None:
    """DROP SCHEMA scratch CASCADE (and pg_partman's configuration of the copy), retried once."""
    say(f"recommendation: dropping the scratch schema {scratch} on staging")
    errors = []
    if partman_parent:
        try:
            ns = db.scalar("SELECT quote_ident(n.nspname::text) FROM pg_catalog.pg_extension e"
                           " JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_partman'")
            if ns:
                tmpl = db.scalar(f"SELECT template_table FROM {ns}.part_config WHERE parent_table = $1",
                                 [partman_parent])
                db.execute(f"DELETE FROM {ns}.part_config WHERE parent_table = $1", [partman_parent])
                if tmpl:
                    conn.execute(f"DROP TABLE IF EXISTS {tmpl}")
        except Exception as exc:
            errors.append(f"pg_partman configuration of {partman_parent}: {_error_line(exc)}")
    for attempt in range(2):
        try:
            conn.execute(f"DROP SCHEMA IF EXISTS {_qi(scratch)} CASCADE")
            break
        except Exception as exc:
            if attempt:
                errors.append(f"DROP SCHEMA {scratch}: {_error_line(exc)}")
            time.sleep(0.5)
    return ("UNDO FAILED on staging, check by hand: " + "; ".join(errors)) if errors else None


def _undo(conn, undo: list[str], rec: dict, say) -> str | None:
    """The rollback DDL, each statement retried once; statistics: ANALYZE the table again."""
    say(f"recommendation {rec['id']}: undoing on staging")
    errors = []
    for s in undo:
        for attempt in range(2):
            try:
                conn.execute(s)
                break
            except Exception as exc:
                if attempt:
                    errors.append(f"{s[:80]}: {str(exc).strip().splitlines()[0]}")
                time.sleep(0.5)
    if rec["kind"] == "statistics":
        try:
            conn.execute(f"ANALYZE {_qi(rec['schema_name'])}.{_qi(rec['table_name'])}")
        except Exception as exc:
            errors.append(f"ANALYZE: {exc}")
    return ("UNDO FAILED on staging, check by hand: " + "; ".join(errors)) if errors else None


def measured_confidence(rec: dict, results: list[StatementResult]) -> tuple[float | None, float | None]:
    """(measured gain %, confidence with it) — see the module docstring."""
    done = [r for r in results if r.status == "measured" and r.times_before and r.times_after]
    if not done:
        return None, None
    before = sum(statistics.median(r.times_before) for r in done)
    # a statement whose plan did not change and whose difference is within the runs' spread: no gain
    after = sum(statistics.median(r.times_before if r.within_noise(_changes(r)) else r.times_after)
                + r.extra_after_ms for r in done)
    if before <= 0:
        return None, None
    gain = 1 - after / before
    est = max(float(rec["est_gain_pct"] or 0) / 100.0, 0.0)
    conf = float(rec["confidence"])
    value = conf * (max(gain, 0.0) ** 0.5)
    if est > 0:
        value /= est ** 0.5
    return 100.0 * gain, max(0.0, min(1.0, value))


def _changes(r: StatementResult) -> dict:
    if r.plans_before and r.plans_after:
        return plan_changes(parse_plan(r.plans_before[0]), parse_plan(r.plans_after[0]))
    return {}


def _record(prod: PsycopgDb, rec: dict, results: list[StatementResult], check: dict, request_id: int | None,
            applied: bool, problem: str | None, staging_info: dict) -> dict:
    gain, conf = measured_confidence(rec, results)
    batch = str(uuid.uuid4())
    ids = []
    if not results:
        results = [StatementResult(dbid=None, userid=None, queryid=None, status="skipped", skip_code="no_statements",
                                   error=problem or "the recommendation serves no recorded statement")]
    for r in results:
        changes = _changes(r)
        if r.status == "measured" and not (r.times_before and r.times_after):
            r.status, r.error = "failed", r.error or problem or "not measured"
        row = prod.one(
            "INSERT INTO arch.validation (batch, recommendation_id, request_id, dbid, userid, queryid, status,"
            " skip_code,"
            " parameters, parameter_source, runs, times_before_ms, times_after_ms, median_before_ms, median_after_ms,"
            " buffers_before, buffers_after, measured_gain_pct, est_gain_pct, plan_changes, size_check,"
            " confidence_before, confidence_measured, staging, error, noise_pct, within_noise, finished_at, details)"
            " VALUES ($25::uuid, $1, $2::text::bigint, $3::text::bigint::oid, $4::text::bigint::oid,"
            " $5::text::bigint, $6, $7::text,"
            " $8::jsonb, $9::text, $10, ARRAY(SELECT jsonb_array_elements_text($11::jsonb))::float8[],"
            " ARRAY(SELECT jsonb_array_elements_text($12::jsonb))::float8[], $13::text::float8, $14::text::float8,"
            " $15::text::bigint, $16::text::bigint, $17::text::float8, $18::text::float8, $19::jsonb, $20::jsonb,"
            " $21::text::float8, $22::text::float8, $23::jsonb, $24::text, $26::text::float8, $27, clock_timestamp(),"
            " $28::jsonb)"
            " RETURNING id",
            [rec["id"], _t(request_id), _t(r.dbid), _t(r.userid), _t(r.queryid), r.status, r.skip_code,
             r.parameters, r.parameter_source, len(r.times_after) if r.status == "measured" else len(r.times_before),
             r.times_before, r.times_after, _t(r.median_before), _t(r.median_after), _t(r.buffers_before),
             _t(r.buffers_after), _t(r.gain_pct), _t(r.est_gain_pct), changes, check, _t(rec["confidence"]),
             _t(conf if r.status == "measured" else None), staging_info, r.error, batch,
             _t(r.noise_pct), r.within_noise(changes), r.details])
        assert row is not None
        ids.append(int(row["id"]))
    adopted = False
    if conf is not None:
        adopted = bool(prod.scalar("SELECT arch._adopt_validation($1, $2, $3)", [rec["id"], conf, gain]))
    out = {"recommendation": rec["id"], "validations": ids, "applied_on_staging": applied,
           "measured": sum(1 for r in results if r.status == "measured"),
           "skipped": sum(1 for r in results if r.status == "skipped"),
           "failed": sum(1 for r in results if r.status == "failed"),
           "mismatch": sum(1 for r in results if r.status == "mismatch"),
           "measured_gain_pct": None if gain is None else round(gain, 2),
           "confidence": None if conf is None else round(conf, 4), "confidence_adopted": adopted}
    if problem:
        out["problem"] = problem
    return out


def _t(v):
    return None if v is None else str(v)


# ---------------------------------------------------------------------------- entry points
def handle_validate_request(prod_conn, staging_dsn: str | None, request_row: dict, say=lambda m: None) -> dict:
    """The sidecar's ``validate`` request: ``{"recommendation_id": n}``; raises ValidationRefused.
    ``say`` is called between steps (the sidecar keeps its heartbeat fresh with it)."""
    rec_id = (request_row.get("payload") or {}).get("recommendation_id")
    if not isinstance(rec_id, int):
        raise ValidationRefused("validate request without a recommendation_id")
    staging_conn = connect_staging(staging_dsn or "")
    try:
        check_not_production(prod_conn, staging_conn)
        prod = PsycopgDb(prod_conn)
        return validate_recommendation(prod, staging_conn, rec_id, request_id=int(request_row["id"]), say=say)
    finally:
        staging_conn.close()


def validate_many(prod_conn, staging_dsn: str, rec_ids: list[int] | None = None, say=lambda m: None) -> list[dict]:
    """``pg-architect validate``: the given recommendations, else those ``validate_policy`` picks."""
    staging_conn = connect_staging(staging_dsn)
    try:
        check_not_production(prod_conn, staging_conn)
        prod = PsycopgDb(prod_conn)
        settings = load_settings(prod)
        ids = rec_ids if rec_ids else chosen_by_policy(prod, settings.policy)
        out = []
        for rid in ids:
            try:
                out.append(validate_recommendation(prod, staging_conn, rid, settings, say=say))
            except ValidationRefused as exc:
                out.append({"recommendation": rid, "refused": str(exc)})
        return out
    finally:
        staging_conn.close()


def validated_ok(db, recommendation_id: int) -> bool:
    """A successful validation: the latest one of the recommendation measured at least one statement
    (what ``validate_policy = 'before_pr'`` requires before the sidecar opens a pull request)."""
    return bool(db.scalar(
        "SELECT EXISTS (SELECT 1 FROM arch.validation v WHERE v.recommendation_id = $1 AND v.status = 'measured'"
        " AND v.batch = (SELECT w.batch FROM arch.validation w WHERE w.recommendation_id = $1"
        " ORDER BY w.id DESC LIMIT 1))", [recommendation_id]))


# ---------------------------------------------------------------------------- pull request body
def detail_line(d: dict) -> str:
    """What a rewrite / materialized-view / partition validation measured beyond the times, in words."""
    parts = []
    if d.get("same_rows") is True:
        parts.append(f"same rows as the original ({d.get('rows_before'):,} row(s), "
                     f"{d.get('rows_compared_sets', 1)} parameter set(s) compared)")
    if d.get("partitions") is not None and d.get("partitions_scanned") is not None:
        parts.append(f"{d['partitions_scanned']} of {d['partitions']} partitions scanned on the copy "
                     f"({d.get('rows_copied', 0):,} rows copied in {d.get('copy_ms', 0):,.0f} ms)")
    if d.get("refresh_ms") is not None:
        parts.append(f"REFRESH {d['refresh_ms']:,.1f} ms, REFRESH CONCURRENTLY "
                     f"{d.get('refresh_concurrently_ms') or 0:,.1f} ms")
    if d.get("benefit_ms_per_refresh") is not None:
        parts.append(f"measured benefit {d['benefit_ms_per_refresh']:,.0f} ms per refresh interval "
                     f"({d.get('refresh_interval_s')} s)")
    return "; ".join(parts)


def pr_section(db, recommendation_id: int) -> str:
    """The measured numbers of the latest validation of a recommendation, as markdown ('' if none)."""
    rows = db.query(
        "SELECT v.queryid, v.status, v.skip_code, v.within_noise, v.noise_pct, v.runs, v.median_before_ms,"
        " v.median_after_ms, v.buffers_before,"
        " v.buffers_after, v.measured_gain_pct, v.est_gain_pct, v.plan_changes, v.confidence_before,"
        " v.confidence_measured, v.error, v.parameter_source, v.finished_at::text AS finished_at, v.details"
        " FROM arch.validation v WHERE v.recommendation_id = $1"
        " AND v.batch = (SELECT w.batch FROM arch.validation w WHERE w.recommendation_id = $1"
        "                ORDER BY w.id DESC LIMIT 1)"
        " ORDER BY v.id", [recommendation_id])
    if not rows:
        return ""
    lines = ["### Measured on staging", "",
             "`EXPLAIN (ANALYZE, BUFFERS)` on the staging database before and after the change (then undone); "
             "medians of the timed runs.", "",
             "| queryid | status | runs | before (ms) | after (ms) | measured gain | estimated gain"
             " | buffers before → after |",
             "|---|---|---|---|---|---|---|---|"]

    def f(v, fmt="{:,.2f}"):
        return "–" if v is None else fmt.format(v)

    for r in rows:
        status = r["status"] if not r["skip_code"] else f"{r['status']} ({r['skip_code']})"
        if r["within_noise"]:
            status += f" (within noise: runs spread {r['noise_pct']:.0f} %, same plan)"
        lines.append(f"| {r['queryid'] if r['queryid'] is not None else '–'} | {status} | {r['runs']} | "
                     f"{f(r['median_before_ms'], '{:,.3f}')} | {f(r['median_after_ms'], '{:,.3f}')} | "
                     f"{f(r['measured_gain_pct'], '{:.1f} %')} | {f(r['est_gain_pct'], '{:.1f} %')} | "
                     f"{f(r['buffers_before'], '{:,}')} → {f(r['buffers_after'], '{:,}')} |")
    measured = [r for r in rows if r["status"] == "measured"]
    if measured:
        conf = measured[0]["confidence_measured"]
        lines += ["", f"Confidence with the measured gain: {f(conf, '{:.2f}')} "
                  f"(estimate {f(measured[0]['confidence_before'], '{:.2f}')})."]
        for r in measured:
            ch = r["plan_changes"] or {}
            if ch.get("removed") or ch.get("added"):
                lines.append(f"- queryid {r['queryid']}: {', '.join(ch.get('removed') or []) or '–'} → "
                             f"{', '.join(ch.get('added') or []) or '–'}")
            extra = detail_line(r["details"] or {})
            if extra:
                lines.append(f"- queryid {r['queryid']}: {extra}")
    others = [r for r in rows if r["status"] != "measured"]
    for r in others:
        lines.append(f"- queryid {r['queryid']}: {r['status']}: {(r['error'] or '')[:300]}")
    return "\n".join(lines) + "\n"
