"""Step 7: an approved recommendation becomes a pull request (PyGithub), opened by the sidecar.

* The DDL is validated before anything is written: it must parse (sqlglot) as exactly one
  ``CREATE INDEX CONCURRENTLY`` (its rollback as one ``DROP INDEX CONCURRENTLY IF EXISTS``) and
  every identifier must match an existing table and its columns; the migration file is parsed
  again and must hold that one statement and nothing else (comments aside).  On a partitioned
  table the DDL must be exactly the documented procedure (:mod:`pg_architect.index_ddl`: index
  ``ON ONLY`` the parent, ``CONCURRENTLY`` on each partition, ``ATTACH PARTITION``) rebuilt from
  the catalog now, its index definition validated as above, and its rollback exactly the
  procedure's; the migration file(s) must hold those statements in that order and nothing else.
* The migration file follows ``arch.settings.migration_format``: ``sql`` (a plain file),
  ``prisma`` (``<timestamp>_<name>/migration.sql``) or ``flyway`` (``V<version>__<name>.sql`` plus
  its ``.sql.conf`` with ``executeInTransaction=false``); CREATE INDEX CONCURRENTLY cannot run
  inside a transaction block and each file says how its tool must run it.  Prisma Migrate sends
  a migration file as one query string (an implicit transaction block when it holds several
  statements): the partitioned-table procedure becomes one migration per statement.
* Idempotent: branch ``arch/rec-<id>``; the file names and contents are chosen once and kept
  in ``arch.pull_request``; every step first looks at what exists (pull request for the branch,
  branch, file contents), so a crash between any two steps or a retry after a timeout ends
  with one branch and one pull request.
* Transient GitHub errors (5xx, timeouts, connection errors) are retried with backoff; a
  rate limit (403/429 with ``X-RateLimit-Reset`` or ``Retry-After``) is waited out when the wait
  is at most ``github_max_wait_s``, otherwise the request is rescheduled for the reset.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import sqlglot
from sqlglot import exp

import pg_architect

from .. import index_ddl
from ..db import Db
from ..errors import TaskError
from ..sqltext import fold_identifier, quote_ident, quote_literal, several_statements
from . import kinds

log = logging.getLogger("pg_architect.github")

INDEX_METHODS = {"btree", "hash", "gist", "gin", "brin", "spgist"}
FORMATS = ("sql", "prisma", "flyway")
NO_TRANSACTION_NOTE = {
    "sql": "run this file outside a transaction block (psql -f without -1/--single-transaction, "
           "or your migration tool's no-transaction mode).",
    "prisma": "this migration holds only this one statement, so Prisma Migrate runs it on its own "
              "(never add other statements to this file).",
    "prisma_steps": "each migration of this change holds one statement, so Prisma Migrate runs each on its "
                    "own, in order (never add other statements to these files).",
    "flyway": "the .sql.conf file next to this one sets executeInTransaction=false.",
}
FORMAT_NAMES = kinds.FORMAT_NAMES
# Kinds whose advice is structured (arch.recommendation.details): partitioning, materialized view, cache.
ADVICE_KINDS = ("partition", "materialized_view", "cache")


def branch_name(rec_id: int) -> str:
    return f"arch/rec-{int(rec_id)}"


# ------------------------------------------------------------------------------ DDL validation

def _refuse(message: str) -> TaskError:
    return TaskError(f"DDL validation: {message}", refused=True)


def _ident(node: exp.Expr | None) -> str | None:
    if node is None:
        return None
    if isinstance(node, exp.Identifier):
        return node.this if node.args.get("quoted") else fold_identifier(node.this)
    return fold_identifier(node.name) if node.name else None


def _name(node: exp.Expr | None, what: str) -> str:
    """The folded name of ``node``; refused when it has none."""
    name = _ident(node)
    if name is None:
        raise _refuse(f"the {what} has no name")
    return name


def _parse_one(ddl: str, what: str) -> exp.Expr:
    if not ddl or not ddl.strip():
        raise _refuse(f"the {what} is empty")
    if several_statements(ddl):
        raise _refuse(f"the {what} holds more than one statement")
    try:
        trees = [t for t in sqlglot.parse(ddl, read="postgres") if t is not None]
    except sqlglot.errors.SqlglotError as exc:
        raise _refuse(f"the {what} does not parse: {str(exc).splitlines()[0][:200]}") from None
    if len(trees) != 1:
        raise _refuse(f"the {what} holds {len(trees)} statements, not one")
    return trees[0]


def validate_ddl(db: Db, rec: dict):
    """Check ``rec['ddl']`` is exactly one CREATE INDEX CONCURRENTLY on an existing table of the
    recommendation, on existing columns, with a name free in its schema; returns its tree.
    On a partitioned table: exactly the documented procedure for its partitions now (see
    :mod:`pg_architect.index_ddl`); returns that :class:`index_ddl.Procedure`."""
    try:
        tree = index_ddl.partitions(db, rec["schema_name"], rec["table_name"])
    except index_ddl.NotIndexable as exc:
        raise _refuse(f"{exc}: it cannot have an index, so the partitioned table's never becomes valid") from None
    if tree is None:
        if " ON ONLY " in rec["ddl"] or len(index_ddl.statements(rec["ddl"])) > 1:
            raise _refuse(f"{rec['schema_name']}.{rec['table_name']} is not partitioned: the DDL must be one statement")
        return _validate_create(db, rec, rec["ddl"])
    try:
        proc = index_ddl.procedure(rec["schema_name"], rec["table_name"], rec["index_name"],
                                   rec.get("definition") or "", tree)
    except ValueError as exc:
        raise _refuse(str(exc)) from None
    # The index itself (columns, expressions, predicate, name) is checked as for a plain table.
    _validate_create(db, rec, f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {quote_ident(rec['index_name'])} "
                              f"{rec['definition']}")
    if index_ddl.statements(rec["ddl"]) != proc.ddl:
        raise _refuse(f"{rec['schema_name']}.{rec['table_name']} is partitioned: the DDL must be exactly the "
                      "documented procedure (index ON ONLY the parent, CONCURRENTLY on each partition, "
                      "ATTACH PARTITION) for its partitions now")
    for schema, name in proc.index_names[1:]:
        if db.one("SELECT 1 AS x FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                  " WHERE n.nspname = $1 AND c.relname = $2", [schema, name]):
            raise _refuse(f"a relation named {schema}.{name} already exists (the index may already be applied)")
    return proc


def _validate_create(db: Db, rec: dict, ddl: str) -> exp.Create:
    tree = _parse_one(ddl, "DDL")
    if not isinstance(tree, exp.Create) or str(tree.args.get("kind") or "").upper() != "INDEX":
        raise _refuse(f"only CREATE INDEX is allowed, got {type(tree).__name__.upper()}")
    if not tree.args.get("concurrently"):
        raise _refuse("CREATE INDEX without CONCURRENTLY would block writes while it builds")
    if tree.args.get("unique") or tree.args.get("replace"):
        raise _refuse("a UNIQUE index changes what the application may write; not proposed by pg_architect")
    index = tree.this
    if not isinstance(index, exp.Index) or index.this is None:
        raise _refuse("the index has no name")
    name = _name(index.this, "index")
    table = index.args.get("table")
    if not isinstance(table, exp.Table) or not table.args.get("db") or table.args.get("catalog"):
        raise _refuse("the table must be written schema.table")
    schema, relname = _ident(table.args["db"]), _ident(table.this)
    if (schema, relname, name) != (rec["schema_name"], rec["table_name"], rec["index_name"]):
        raise _refuse(f"the DDL is for {schema}.{relname} ({name}), the recommendation for "
                      f"{rec['schema_name']}.{rec['table_name']} ({rec['index_name']})")
    if len(name.encode()) > 63:
        raise _refuse(f"index name {name!r} is longer than 63 bytes")
    params = index.args.get("params")
    if not isinstance(params, exp.IndexParameters) or not params.args.get("columns"):
        raise _refuse("the index has no columns")
    extra = [k for k, v in params.args.items()
             if v not in (None, False, []) and k not in ("using", "columns", "include", "where", "with_storage")]
    if extra or params.args.get("with_storage") not in (None, False):
        raise _refuse(f"unexpected index options: {', '.join(extra) or 'WITH (...)'}")
    method = (params.args["using"].name if params.args.get("using") else "btree").lower()
    if method not in INDEX_METHODS:
        raise _refuse(f"unknown index method {method}")
    rel = db.one("SELECT c.oid::bigint AS oid, c.relkind::text AS kind FROM pg_class c"
                 " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2",
                 [schema, relname])
    if rel is None:
        raise _refuse(f"table {schema}.{relname} does not exist")
    if rel["kind"] not in ("r", "p", "m"):
        raise _refuse(f"{schema}.{relname} is not a table")
    columns = {r["name"] for r in db.query(
        "SELECT attname::text AS name FROM pg_attribute WHERE attrelid = $1::bigint::oid AND attnum > 0"
        " AND NOT attisdropped", [rel["oid"]])}
    used: list[str] = []
    for part in [*params.args["columns"], params.args.get("where")]:
        if part is None:
            continue
        for node in part.walk():
            if isinstance(node, (exp.Query, exp.Subquery)):
                raise _refuse("a subquery is not allowed in an index")
            if isinstance(node, exp.Column):
                if node.args.get("table") is not None:
                    raise _refuse(f"column {node.sql()} is qualified")
                used.append(_name(node.this, f"column {node.sql()}"))
    for inc in params.args.get("include") or []:
        used.append(_name(inc if isinstance(inc, exp.Identifier) else getattr(inc, "this", inc),
                          "INCLUDE column"))
    missing = [c for c in used if c not in columns]
    if missing:
        raise _refuse(f"column(s) {', '.join(missing)} do not exist in {schema}.{relname}")
    if not used:
        raise _refuse("the index refers to no column")
    clash = db.one("SELECT c.relkind::text AS kind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                   " WHERE n.nspname = $1 AND c.relname = $2", [schema, name])
    if clash is not None:
        raise _refuse(f"a relation named {schema}.{name} already exists (the index may already be applied)")
    return tree


def validate_rollback(rec: dict, validated=None) -> exp.Drop | list[str]:
    """The rollback of ``rec``: one DROP INDEX CONCURRENTLY IF EXISTS of its index; for the
    partitioned-table procedure ``validated``, exactly that procedure's rollback."""
    if isinstance(validated, index_ddl.Procedure):
        if index_ddl.statements(rec["rollback_ddl"]) != validated.rollback:
            raise _refuse("the rollback must drop the parent's index, then each partition's (IF EXISTS)")
        return validated.rollback
    tree = _parse_one(rec["rollback_ddl"], "rollback DDL")
    if not isinstance(tree, exp.Drop) or str(tree.args.get("kind") or "").upper() != "INDEX":
        raise _refuse("the rollback must be DROP INDEX")
    if not tree.args.get("concurrently") or not tree.args.get("exists") or tree.args.get("cascade"):
        raise _refuse("the rollback must be DROP INDEX CONCURRENTLY IF EXISTS, without CASCADE")
    targets = tree.args.get("expressions") or tree.args.get("tables") or []
    if len(targets) != 1 or not isinstance(targets[0], exp.Table):
        raise _refuse("the rollback must drop exactly one index")
    t = targets[0]
    if (_ident(t.args.get("db")), _ident(t.this)) != (rec["schema_name"], rec["index_name"]):
        raise _refuse("the rollback drops another index than the one created")
    return tree


def validate_drop(db: Db, rec: dict) -> exp.Drop:
    """A ``drop_index`` recommendation: exactly one ``DROP INDEX CONCURRENTLY IF EXISTS`` (a
    partitioned index: ``DROP INDEX IF EXISTS``) of its index, without CASCADE; the index exists,
    on the recommendation's table, and backs no constraint.  Returns the statement's tree."""
    tree = _parse_one(rec["ddl"], "DDL")
    if not isinstance(tree, exp.Drop) or str(tree.args.get("kind") or "").upper() != "INDEX":
        raise _refuse("a drop_index recommendation must be DROP INDEX")
    targets = tree.args.get("expressions") or tree.args.get("tables") or []
    if len(targets) != 1 or not isinstance(targets[0], exp.Table):
        raise _refuse("the DDL must drop exactly one index")
    t = targets[0]
    if (_ident(t.args.get("db")), _ident(t.this)) != (rec["schema_name"], rec["index_name"]):
        raise _refuse("the DDL drops another index than the recommendation's")
    ix = db.one("SELECT i.relkind::text AS kind, t.relname::text AS table_name,"
                " EXISTS (SELECT 1 FROM pg_catalog.pg_constraint c WHERE c.conindid = i.oid) AS constrained"
                " FROM pg_catalog.pg_class i JOIN pg_catalog.pg_namespace n ON n.oid = i.relnamespace"
                " JOIN pg_catalog.pg_index x ON x.indexrelid = i.oid JOIN pg_catalog.pg_class t ON t.oid = x.indrelid"
                " WHERE n.nspname = $1 AND i.relname = $2", [rec["schema_name"], rec["index_name"]])
    if ix is None:
        raise _refuse(f"index {rec['schema_name']}.{rec['index_name']} does not exist (already dropped?)")
    if ix["table_name"] != rec["table_name"]:
        raise _refuse(f"index {rec['schema_name']}.{rec['index_name']} is not on {rec['table_name']}")
    if ix["constrained"]:
        raise _refuse(f"index {rec['schema_name']}.{rec['index_name']} backs a constraint: never dropped")
    if not tree.args.get("exists") or tree.args.get("cascade"):
        raise _refuse("the DDL must be DROP INDEX ... IF EXISTS, without CASCADE")
    if ix["kind"] != "I" and not tree.args.get("concurrently"):
        raise _refuse("DROP INDEX without CONCURRENTLY would block the table's reads and writes")
    return tree


def validate_drop_rollback(rec: dict) -> list[str]:
    """The rollback of a ``drop_index``: the index created again (CREATE INDEX on the same table,
    under the same name; a partitioned index: its partitions' indexes built and attached)."""
    steps = index_ddl.statements(rec["rollback_ddl"] or "")
    if not steps:
        raise _refuse("the rollback is empty")
    for i, step in enumerate(steps):
        tree = _parse_one(step, "rollback DDL")
        if i == 0:
            if not isinstance(tree, exp.Create) or str(tree.args.get("kind") or "").upper() != "INDEX":
                raise _refuse("the rollback of a drop_index must be CREATE INDEX")
            name = tree.this.this if isinstance(tree.this, exp.Index) else None
            if _ident(name) != rec["index_name"]:
                raise _refuse("the rollback creates another index than the one dropped")
            table = tree.this.args.get("table") if isinstance(tree.this, exp.Index) else None
            if table is None or _ident(table.this) != rec["table_name"]:
                raise _refuse("the rollback creates the index on another table")
        elif not isinstance(tree, exp.Create | exp.Alter) and not re.match(r"(?is)\s*ALTER\s+INDEX\b", step):
            raise _refuse("the rollback of a partitioned index may only create and attach indexes")
    return steps


def check_files(files: list[dict], validated) -> None:
    """The migration files must hold the validated statement(s), in order, and nothing else."""
    sql_files = [f for f in files if f["path"].endswith(".sql")]
    if not isinstance(validated, index_ddl.Procedure):
        for f in sql_files:
            check_file(f["content"], validated)
        return
    found: list[str] = []
    for f in sql_files:
        found.extend(index_ddl.statements(f["content"]))
    if found != validated.ddl:
        raise _refuse("the migration files hold something else than the validated procedure")
    if len(sql_files) > 1 and any(len(index_ddl.statements(f["content"])) != 1 for f in sql_files):
        raise _refuse("a migration of the procedure holds more than one statement")


def check_file(content: str, tree: exp.Expr) -> None:
    """The migration file must parse as the validated statement and nothing else."""
    try:
        trees = [t for t in sqlglot.parse(content, read="postgres") if t is not None]
    except sqlglot.errors.SqlglotError as exc:
        raise _refuse(f"the migration file does not parse: {exc}") from None
    if len(trees) != 1 or several_statements(content) or \
            trees[0].sql("postgres", comments=False) != tree.sql("postgres", comments=False):
        raise _refuse("the migration file holds something else than the validated statement")


# ------------------------------------------------------------------------------ rendering

def _one_line(text: Any, limit: int = 200) -> str:
    s = re.sub(r"[\s\u0085\u2028\u2029]+", " ", str(text)).strip()
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _kind_words(rec: dict) -> str:
    kind = {"single": "single-column", "multi": "multi-column", "expression": "expression", "partial": "partial",
            "covering": "covering"}.get(rec.get("index_kind") or "", "")
    return kind + " " if kind else ""


def _slug(rec: dict) -> str:
    s = re.sub(r"[^a-z0-9]+", "_", f"arch_rec_{rec['id']}_{rec['index_name'] or rec['table_name']}".lower())
    return s.strip("_")[:80]


def render_files(rec: dict, fmt: str, directory: str, stamp: dt.datetime) -> list[dict]:
    """The migration file(s) for ``rec`` in ``fmt``: ``[{"path": ..., "content": ...}]``."""
    if fmt not in FORMATS:
        raise TaskError(f"unknown migration_format {fmt!r}")
    if rec.get("kind") == "drop_index":
        return _render_drop_files(rec, fmt, directory, stamp)
    ts = stamp.astimezone(dt.UTC).strftime("%Y%m%d%H%M%S")
    slug = _slug(rec)
    prefix = kinds.migration_prefix(directory)
    header = [
        f"-- pg_architect recommendation {rec['id']}: {_kind_words(rec)}index on "
        f"{_one_line(rec['schema_name'])}.{_one_line(rec['table_name'])}",
        f"-- Estimated {rec['est_gain_pct']:.1f} % lower cost for the statement it was proven on; "
        f"confidence {rec['confidence']:.2f}. The proof is in the pull request.",
        f"-- Generated by pg_architect {pg_architect.__version__} at {stamp.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S} UTC.",
        f"-- CREATE INDEX CONCURRENTLY cannot run inside a transaction block: {NO_TRANSACTION_NOTE[fmt]}",
        f"-- Rollback: {_one_line(rec['rollback_ddl'], 400)};",
    ]
    steps = index_ddl.statements(rec["ddl"])
    if len(steps) > 1:
        header.insert(4, f"-- {_one_line(rec['schema_name'])}.{_one_line(rec['table_name'])} is partitioned: "
                         "index ON ONLY the parent, CONCURRENTLY on each partition, ATTACH PARTITION; "
                         "each statement runs on its own.")
        header[-1] = "-- Rollback: " + " ".join(_one_line(s, 400) for s in index_ddl.statements(rec["rollback_ddl"]))
    if fmt == "prisma" and len(steps) > 1:
        header[3] = ("-- CREATE INDEX CONCURRENTLY cannot run inside a transaction block: "
                     f"{NO_TRANSACTION_NOTE['prisma_steps']}")
        width = len(str(len(steps)))
        out = []
        for i, step in enumerate(steps, 1):
            lines = header if i == 1 else [f"-- pg_architect recommendation {rec['id']}: step {i} of {len(steps)} "
                                           f"(see step 1 for the whole change and its rollback)."]
            out.append({"path": f"{prefix}{ts}_{slug}_step{i:0{width}d}/migration.sql",
                        "content": "\n".join(lines) + "\n\n" + step + "\n"})
        return out
    content = "\n".join(header) + "\n\n" + rec["ddl"].strip().rstrip(";") + ";\n"
    return kinds.single_file_migration(fmt, prefix, ts, slug, content, no_transaction="CREATE INDEX CONCURRENTLY")


DROP_NO_TRANSACTION = {
    "sql": "DROP INDEX CONCURRENTLY cannot run inside a transaction block: " + NO_TRANSACTION_NOTE["sql"],
    "prisma": "DROP INDEX CONCURRENTLY cannot run inside a transaction block: " + NO_TRANSACTION_NOTE["prisma"],
    "flyway": "DROP INDEX CONCURRENTLY cannot run inside a transaction block: " + NO_TRANSACTION_NOTE["flyway"],
}


def _render_drop_files(rec: dict, fmt: str, directory: str, stamp: dt.datetime) -> list[dict]:
    """The migration file(s) of a ``drop_index``: the one DROP INDEX statement; its rollback (the
    CREATE INDEX) in the header."""
    ts = stamp.astimezone(dt.UTC).strftime("%Y%m%d%H%M%S")
    slug = re.sub(r"[^a-z0-9]+", "_", f"arch_rec_{rec['id']}_drop_{rec['index_name']}".lower()).strip("_")[:80]
    prefix = kinds.migration_prefix(directory)
    reason = (rec.get("index_kind") or "housekeeping").replace("_", " ")
    header = [
        f"-- pg_architect recommendation {rec['id']}: drop index {_one_line(rec['schema_name'])}."
        f"{_one_line(rec['index_name'])} on {_one_line(rec['table_name'])} ({reason}).",
        f"-- Frees about {_size(rec.get('est_size_bytes'))} and its write cost; confidence {rec['confidence']:.2f}."
        " The evidence is in the pull request.",
        f"-- Generated by pg_architect {pg_architect.__version__} at {stamp.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S} UTC.",
        f"-- {DROP_NO_TRANSACTION[fmt]}",
        "-- Rollback: " + " ".join(_one_line(x, 400) for x in index_ddl.statements(rec["rollback_ddl"] or "")),
    ]
    content = "\n".join(header) + "\n\n" + rec["ddl"].strip().rstrip(";") + ";\n"
    return kinds.single_file_migration(fmt, prefix, ts, slug, content, no_transaction="DROP INDEX CONCURRENTLY")


def render_drop_title(rec: dict) -> str:
    return (f"pg_architect #{rec['id']}: drop index {_one_line(rec['index_name'], 80)} on "
            f"{_one_line(rec['schema_name'])}.{_one_line(rec['table_name'])} "
            f"({(rec.get('index_kind') or 'housekeeping').replace('_', ' ')})")[:250]


def render_drop_body(rec: dict, files: list[dict], fmt: str, policy_note: str) -> str:
    """The pull request of a ``drop_index``: what, the evidence (size, scans, the covering index,
    write cost saved), the rollback and how to verify."""
    f = rec.get("confidence_factors") or {}
    saved = f.get("writes_saved_per_day")
    cover = f.get("covering_index")
    qualified = f"{quote_ident(rec['schema_name'])}.{quote_ident(rec['table_name'])}"
    out = [
        f"**pg_architect recommendation #{rec['id']}**: drop the index `{rec['schema_name']}.{rec['index_name']}` "
        f"on `{rec['schema_name']}.{rec['table_name']}` "
        f"({(rec.get('index_kind') or 'housekeeping').replace('_', ' ')}). Nothing has been applied to the "
        "database: merging and deploying this migration is the change.",
        "",
        "### The change",
        _fence(rec["ddl"].strip().rstrip(";") + ";"),
        f"Migration ({FORMAT_NAMES[fmt]}): " + ", ".join(f"`{x['path']}`" for x in files) + ". "
        f"{DROP_NO_TRANSACTION[fmt]}",
        "",
        "### Evidence",
        f"- Size: {_size(rec.get('est_size_bytes'))}; scans since the statistics reset: "
        f"{_num(f.get('scans'), ',.0f')}.",
        f"- Covering index: `{_one_line(cover)}`" if cover else "- Covering index: none (the index is unused).",
        f"- Write cost saved: {'unknown' if saved is None else f'about {float(saved):,.0f} index entries per day'}.",
        f"- Confidence: **{rec['confidence']:.2f}**.",
        f"- Why: {rec.get('rationale') or ''}",
        "",
        "### Rollback",
        _fence("\n".join(s.rstrip(";") + ";" for s in index_ddl.statements(rec["rollback_ddl"] or ""))),
        "",
        "### How to verify after merge",
        "1. The index is gone:",
        _fence(f"SELECT indexrelid::regclass FROM pg_index WHERE indrelid = {quote_literal(qualified)}::regclass;"),
        "2. The statements on the table keep their speed: the next audits measure them "
        f"(`SELECT * FROM arch.recommendations WHERE id = {rec['id']};`).",
        "",
        "### Approval",
        policy_note,
        "",
        f"<!-- pg_architect recommendation {rec['id']} -->",
    ]
    return "\n".join(out)


def _fence(text: str, lang: str = "sql") -> str:
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}{lang}\n{text.strip()}\n{ticks}"


def _num(v: Any, fmt: str = ",.1f") -> str:
    return "unknown" if v is None else format(float(v), fmt)


def _size(n: Any) -> str:
    if n is None:
        return "unknown"
    n = float(n)
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def load_recommendation(db: Db, rec_id: int) -> dict | None:
    return db.one(
        "SELECT r.id, r.status, r.kind, r.index_kind, r.schema_name::text AS schema_name,"
        " r.table_name::text AS table_name, r.index_name::text AS index_name, r.ddl, r.rollback_ddl, r.definition,"
        " r.columns::text[] AS columns,"
        " r.rationale, r.query, r.queryid, r.calls, r.total_time_ms, r.time_share, r.cost_before, r.cost_after,"
        " r.est_gain_pct, r.est_size_bytes, r.benefit_ms, r.confidence, r.confidence_factors, r.plan_changes,"
        " r.decided_by::text AS decided_by, r.decided_at, r.decision_note, r.last_audit_run_id,"
        " to_jsonb(r) ->> 'approved_hash' AS approved_hash, r.details, r.details::text AS details_text,"
        " to_jsonb(r) -> 'similar_to' AS similar_to,"
        " x.explanation, a.window_start, a.window_end,"
        " (SELECT count(DISTINCT (s.dbid, s.userid, s.queryid)) FROM arch.recommendation_statement s"
        "   WHERE s.recommendation_id = r.id) AS statements"
        " FROM arch.recommendation r"
        " LEFT JOIN arch.audit_run a ON a.id = r.last_audit_run_id"
        " LEFT JOIN LATERAL (SELECT e.explanation FROM arch.statement_explanation e WHERE e.queryid = r.queryid"
        "                    ORDER BY e.explained_at DESC LIMIT 1) x ON true"
        " WHERE r.id = $1", [rec_id])


def similar_cases(db: Db, rec: dict) -> list[str]:
    """Past cases like this one and how they ended: those the knowledge base cited when it set
    the confidence (``recommendation.similar_to``: similar statements with a measured outcome),
    then earlier recommendations on the same table and what became of them."""
    lines: list[str] = []
    for c in rec.get("similar_to") or []:
        if not isinstance(c, dict):
            continue
        gain = c.get("measured_gain_pct")
        lines.append(f"- #{c.get('recommendation_id')} (similarity {float(c.get('similarity') or 0):.2f}): "
                     f"`{_one_line(c.get('ddl') or '', 200)}` — outcome **{c.get('outcome') or 'not measured'}**"
                     + (f", measured {float(gain):+.1f} %" if gain is not None else "")
                     + (f", applied {str(c['applied_at'])[:10]}" if c.get("applied_at") else ""))
    for r in db.query(
            "SELECT r.id, r.status, r.index_name::text AS index_name, r.est_gain_pct, r.decision_note,"
            " to_jsonb(r) ->> 'outcome' AS outcome, to_jsonb(r) ->> 'measured_gain_pct' AS measured, p.url"
            " FROM arch.recommendation r LEFT JOIN arch.pull_request p ON p.recommendation_id = r.id"
            " WHERE r.schema_name = $1 AND r.table_name = $2 AND r.id <> $3"
            "   AND r.status IN ('rejected', 'merged', 'closed', 'applied', 'superseded', 'pr_open')"
            " ORDER BY r.id DESC LIMIT 5", [rec["schema_name"], rec["table_name"], rec["id"]]):
        note = f": {_one_line(r['decision_note'], 160)}" if r["decision_note"] and r["status"] == "rejected" else ""
        outcome = f", outcome {r['outcome']}" if r["outcome"] else ""
        measured = f" ({float(r['measured']):+.1f} %)" if r["measured"] else ""
        link = f" ({r['url']})" if r["url"] else ""
        lines.append(f"- #{r['id']} `{_one_line(r['index_name'])}` on the same table, est. {r['est_gain_pct']:.1f} %: "
                     f"**{r['status']}**{note}{outcome}{measured}{link}")
    return lines


def render_title(rec: dict) -> str:
    return (f"pg_architect #{rec['id']}: index {_one_line(rec['index_name'], 80)} on "
            f"{_one_line(rec['schema_name'])}.{_one_line(rec['table_name'])} "
            f"(est. {rec['est_gain_pct']:.0f} % lower cost)")[:250]


def render_body(db: Db, rec: dict, files: list[dict], fmt: str, policy_note: str) -> str:
    from .. import validate  # the measured numbers of the latest validation on staging, if any

    qualified = f"{quote_ident(rec['schema_name'])}.{quote_ident(rec['index_name'])}"
    changes = rec.get("plan_changes") or {}
    removed = ", ".join(f"`{_one_line(n, 120)}`" for n in changes.get("removed", [])[:6]) or "—"
    added = ", ".join(f"`{_one_line(n, 120)}`" for n in changes.get("added", [])[:6]) or "—"
    factors = rec.get("confidence_factors") or {}
    share = rec.get("time_share")
    window = (f"{rec['window_start']:%Y-%m-%d %H:%M} → {rec['window_end']:%Y-%m-%d %H:%M}"
              if rec.get("window_start") and rec.get("window_end") else "since statistics were reset")
    out = [
        f"**pg_architect recommendation #{rec['id']}**: a {_kind_words(rec)}index on "
        f"`{rec['schema_name']}.{rec['table_name']}`. Nothing has been applied to the database: "
        "merging and deploying this migration is the change.",
        "",
        "### The change",
        _fence(rec["ddl"].strip().rstrip(";") + ";"),
        f"Migration ({FORMAT_NAMES[fmt]}): " + ", ".join(f"`{f['path']}`" for f in files) + ". "
        f"CREATE INDEX CONCURRENTLY cannot run inside a transaction block: "
        f"{NO_TRANSACTION_NOTE['prisma_steps' if fmt == 'prisma' and len(files) > 1 else fmt]}",
        *([f"`{rec['schema_name']}.{rec['table_name']}` is partitioned: PostgreSQL cannot build its index "
           "CONCURRENTLY in one statement, so this is the documented procedure: an index ON ONLY the parent, "
           "each partition's index built CONCURRENTLY and attached; the parent's index is valid once all are "
           "attached (a partition added before it is applied needs the same two steps)."]
          if len(index_ddl.statements(rec["ddl"])) > 1 else []),
        "",
        "### The statement",
        _fence(rec.get("query") or "(statement text not available)"),
        f"- Calls in the audit window ({window}): {_num(rec.get('calls'), ',.0f')}; total execution time "
        f"{_num((rec.get('total_time_ms') or 0) / 1000.0)} s"
        + (f"; **{share * 100:.1f} %** of all statement time." if share is not None else "."),
        f"- Statements this index speeds up: {rec.get('statements') or 1}.",
        "",
        "### Business purpose",
        ("> " + rec["explanation"].replace("\n", "\n> ")) if rec.get("explanation")
        else "_Not explained yet (the explain request may still be queued, or no LLM is configured)._",
        "",
        "### Plan before → after (the nodes that change)",
        "| | estimated cost | plan nodes |",
        "|---|---:|---|",
        f"| before | {_num(rec.get('cost_before'))} | {removed} |",
        f"| after | {_num(rec.get('cost_after'))} | {added} |",
        "",
        "### Estimated gain and confidence",
        f"- Estimated gain: **{rec['est_gain_pct']:.1f} %** lower cost for the statement; estimated time saved "
        f"over the window {_num((rec.get('benefit_ms') or 0) / 1000.0)} s; "
        f"index size about {_size(rec.get('est_size_bytes'))}.",
        f"- Confidence: **{rec['confidence']:.2f}** = gain {factors.get('gain', '?')} × time share "
        f"{factors.get('share', '?')} × writes {factors.get('writes', '?')} × size {factors.get('size', '?')}.",
        f"- Why: {rec.get('rationale') or ''}",
        "",
        *([measured, ""] if (measured := validate.pr_section(db, rec["id"]).rstrip()) else []),
        "### Similar past cases",
        *(similar_cases(db, rec) or ["_None recorded yet._"]),
        "",
        "### Rollback",
        _fence(rec["rollback_ddl"].strip().rstrip(";") + ";"),
        "",
        "### How to verify after merge",
        "1. The index is valid (a failed CONCURRENTLY build leaves an INVALID index: drop it with the rollback "
        "and retry):",
        _fence(f"SELECT indisvalid FROM pg_index WHERE indexrelid = {quote_literal(qualified)}::regclass;"),
        f"2. `EXPLAIN` the statement: the plan uses `{rec['index_name']}`.",
        f"3. The next audit measures the real before/after: "
        f"`SELECT * FROM arch.recommendations WHERE id = {rec['id']};`",
        "",
        "### Approval",
        policy_note,
        "",
        f"<!-- pg_architect recommendation {rec['id']} -->",
    ]
    return "\n".join(out)


def _policy_note(rec: dict, settings: dict) -> str:
    if rec.get("decided_by") and rec["status"] in ("approved", "pr_open", "merged", "closed"):
        note = f" — “{_one_line(rec['decision_note'], 300)}”" if rec.get("decision_note") else ""
        return f"Approved by `{rec['decided_by']}` at {rec['decided_at']:%Y-%m-%d %H:%M:%S %Z}{note}."
    return (f"Opened by the `auto_above_threshold` policy (confidence {rec['confidence']:.2f} ≥ "
            f"{settings['confidence_threshold']:.2f}): **the review of this pull request is the approval.**")


# ------------------------------------------------------------------------------ GitHub client

def _header(headers: dict | None, name: str) -> str | None:
    if not headers:
        return None
    for k, v in headers.items():
        if k.lower() == name:
            return v
    return None


class GitHub:
    """PyGithub with our own retries: PyGithub's are off so that every wait is bounded, logged
    and injectable (``sleep``, ``clock``) for the tests."""

    def __init__(self, api_url: str, token: str, *, timeout: int, max_wait: float,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.time,
                 tries: int = 4, backoff: float = 0.5):
        from github import Auth, Github

        self.gh = Github(base_url=api_url.rstrip("/"), auth=Auth.Token(token), timeout=timeout, retry=None,
                         seconds_between_requests=None, seconds_between_writes=None, per_page=100)
        self.max_wait = max_wait
        self.sleep = sleep
        self.clock = clock
        self.tries = tries
        self.backoff = backoff
        self._repos: dict[str, Any] = {}

    def close(self) -> None:
        try:
            self.gh.close()
        except Exception:
            pass

    def call(self, what: str, fn: Callable[[], Any]) -> Any:
        import requests
        from github import GithubException, RateLimitExceededException

        delay = self.backoff
        last: BaseException | None = None
        for attempt in range(1, self.tries + 1):
            try:
                return fn()
            except RateLimitExceededException as exc:
                now = self.clock()
                retry_after = _header(exc.headers, "retry-after")
                reset = _header(exc.headers, "x-ratelimit-reset")
                until = now + float(retry_after) if retry_after else float(reset) if reset else now + 60.0
                wait = max(0.0, until - now) + 1.0
                if wait > self.max_wait:
                    raise TaskError(f"GitHub rate limit while {what}: it resets in {wait:.0f} s, more than "
                                    f"github_max_wait_s ({self.max_wait:g} s); rescheduled",
                                    transient=True, retry_at=until + 1.0) from None
                log.warning("GitHub rate limit while %s: waiting %.0f s", what, wait)
                self.sleep(wait)
                last = exc
                continue
            except GithubException as exc:
                if exc.status is None or exc.status >= 500 or exc.status == 429:
                    last = exc
                else:
                    raise
            except (requests.Timeout, requests.ConnectionError) as exc:
                last = exc
            if attempt < self.tries:
                log.warning("GitHub: %s failed (%s): retrying in %.1f s", what, _describe(last), delay)
                self.sleep(delay)
                delay *= 2
        raise TaskError(f"GitHub: {what} failed {self.tries} times: {_describe(last)}", transient=True)

    def repo(self, full_name: str):
        from github import GithubException

        if full_name not in self._repos:
            try:
                self._repos[full_name] = self.call(f"reading repository {full_name}",
                                                   lambda: self.gh.get_repo(full_name))
            except GithubException as exc:
                raise TaskError(f"GitHub: repository {full_name}: {_describe(exc)} (check github_repo and "
                                "that the sidecar's token can see it)") from None
        return self._repos[full_name]


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    status = getattr(exc, "status", None)
    if status is not None:
        data = getattr(exc, "data", None)
        msg = data.get("message") if isinstance(data, dict) else data
        return f"HTTP {status}: {_one_line(msg or '', 200)}"
    return f"{type(exc).__name__}: {_one_line(exc, 200)}"


def _find_pr(repo, owner: str, branch: str, base: str):
    pulls = list(repo.get_pulls(state="all", head=f"{owner}:{branch}", base=base))
    # Open first, then the most recent.
    pulls.sort(key=lambda p: (p.state != "open", -p.number))
    return pulls[0] if pulls else None


def _ensure_branch(repo, branch: str, base_sha: str) -> None:
    from github import GithubException, UnknownObjectException

    try:
        _ = repo.get_git_ref(f"heads/{branch}").object.sha
        return
    except UnknownObjectException:
        pass
    try:
        repo.create_git_ref(ref=f"refs/heads/{branch}", sha=base_sha)
    except GithubException as exc:
        if exc.status == 422 and "already exists" in str(exc.data).lower():
            return
        raise


def _ensure_file(repo, branch: str, path: str, content: str, message: str) -> bool:
    """Make ``path`` on ``branch`` hold ``content``; True if a commit was made."""
    from github import UnknownObjectException

    try:
        current = repo.get_contents(path, ref=branch)
    except UnknownObjectException:
        current = None
    if isinstance(current, list):
        raise TaskError(f"GitHub: {path} is a directory in the repository")
    if current is None:
        repo.create_file(path, message, content, branch=branch)
        return True
    if current.decoded_content.decode("utf-8", "replace") == content:
        return False
    repo.update_file(path, message, content, current.sha, branch=branch)
    return True


def _create_pr(repo, owner: str, branch: str, base: str, title: str, body: str):
    from github import GithubException

    try:
        return repo.create_pull(base=base, head=branch, title=title, body=body)
    except GithubException as exc:
        if exc.status == 422 and "already exists" in str(exc.data).lower():
            return _find_pr(repo, owner, branch, base)
        raise


def _pr_state(pr) -> str:
    if getattr(pr, "merged", False):
        return "merged"
    return "open" if pr.state == "open" else "closed"


# ------------------------------------------------------------------------------ the request

def _move(db: Db, rec_id: int, target: str) -> None:
    """Walk the recommendation to ``target`` (pr_open, merged, closed) through valid transitions."""
    path = {"pr_open": {"approved": ["pr_open"], "proposed": ["pr_open"], "closed": ["pr_open"]},
            "merged": {"approved": ["pr_open", "merged"], "proposed": ["pr_open", "merged"],
                       "pr_open": ["merged"], "closed": ["pr_open", "merged"]},
            "closed": {"approved": ["pr_open", "closed"], "proposed": ["pr_open", "closed"],
                       "pr_open": ["closed"]}}[target]
    status = db.scalar("SELECT status FROM arch.recommendation WHERE id = $1", [rec_id])
    for step in path.get(status, []):
        db.execute("UPDATE arch.recommendation SET status = $2 WHERE id = $1", [rec_id, step])


def _record(db: Db, rec_id: int, pr) -> dict:
    state = _pr_state(pr)
    db.execute(
        "UPDATE arch.pull_request SET pr_number = $2, url = $3, state = $4, head_sha = $5::text,"
        " merged_at = $6::text::timestamptz, closed_at = $7::text::timestamptz, updated_at = now(),"
        " synced_at = now() WHERE recommendation_id = $1",
        [rec_id, int(pr.number), pr.html_url, state, getattr(getattr(pr, "head", None), "sha", None),
         None if not getattr(pr, "merged_at", None) else str(pr.merged_at),
         None if not getattr(pr, "closed_at", None) else str(pr.closed_at)])
    _move(db, rec_id, "pr_open" if state == "open" else state)
    return {"pr_number": int(pr.number), "url": pr.html_url, "state": state}


def approval_hash(rec: dict) -> str:
    """sha256 of what a human approved, as arch.approval_hash() computes it in the database."""
    parts = [rec.get("kind"), rec.get("schema_name"), rec.get("table_name"), rec.get("ddl"), rec.get("rollback_ddl")]
    details = rec.get("details_text")  # the jsonb's text, read with the row: {} is the five-part hash
    if details not in (None, "{}"):
        parts.append(details)
    return hashlib.sha256("\x1f".join(p or "" for p in parts).encode("utf-8")).hexdigest()


def check_approved(rec: dict) -> None:
    """Refuse an approved recommendation whose DDL is not what was approved (issue 7): the
    hash recorded with the approval must match the DDL this pull request would carry."""
    if rec["status"] != "approved":
        return
    recorded = rec.get("approved_hash")
    if not recorded:
        raise TaskError(f"recommendation {rec['id']} is approved but carries no approval hash: "
                        "refusing to open a pull request for DDL nobody approved", refused=True)
    if approval_hash(rec) != recorded:
        raise TaskError(f"recommendation {rec['id']}: its DDL, rollback, details, table or kind changed after approval "
                        "(the approval hash does not match): refusing to open a pull request; "
                        "reject it and approve a new one", refused=True)


def open_pull_request(db: Db, github: Callable[[], GitHub], rec_id: int, settings: dict) -> dict:
    """Open (or find) the pull request of recommendation ``rec_id``; returns the request result."""
    rec = load_recommendation(db, rec_id)
    if rec is None:
        raise TaskError(f"recommendation {rec_id} does not exist")
    row = db.one("SELECT * FROM arch.pull_request WHERE recommendation_id = $1", [rec_id])
    auto = (settings["approval_policy"] == "auto_above_threshold"
            and rec["confidence"] >= settings["confidence_threshold"])
    if rec["status"] in ("rejected", "superseded", "applied") or (rec["status"] == "proposed" and not auto):
        return {"skipped": f"recommendation {rec_id} is {rec['status']}: no pull request"}
    if rec["status"] in ("pr_open", "merged", "closed") and row and row["pr_number"]:
        return {"pr_number": row["pr_number"], "url": row["url"], "state": row["state"], "already": True}
    if rec["kind"] not in ("index", "drop_index", "statistics", "rewrite") + ADVICE_KINDS:
        raise TaskError(f"recommendation {rec_id} is a {rec['kind']}: only index, drop_index, statistics, "
                        "rewrite, partition, materialized_view and cache recommendations become pull requests",
                        refused=True)
    check_approved(rec)
    if not settings.get("github_repo"):
        raise TaskError("no repository to open pull requests in: UPDATE arch.settings SET github_repo = 'owner/name'")
    validated: Any
    if rec["kind"] == "statistics":
        validated = kinds.validate_statistics(db, rec)
    elif rec["kind"] == "rewrite":
        validated = kinds.validate_rewrite(rec)
    elif rec["kind"] == "partition":
        validated = kinds.validate_partition(db, rec)
    elif rec["kind"] == "materialized_view":
        validated = kinds.validate_matview(db, rec)
    elif rec["kind"] == "cache":
        validated = kinds.validate_cache(rec)
    elif rec["kind"] == "drop_index":
        validated = validate_drop(db, rec)
        validate_drop_rollback(rec)
    else:
        validated = validate_ddl(db, rec)
        validate_rollback(rec, validated)

    if row is None or row["pr_number"] is None:
        # The files are chosen once (their name has a timestamp) and kept: a retry writes the same.
        if row is None:
            stamp = db.scalar("SELECT clock_timestamp()")
            if rec["kind"] == "statistics":
                files = kinds.render_statistics(rec, settings["migration_format"], settings["migrations_dir"], stamp)
            elif rec["kind"] == "rewrite":
                files = kinds.render_rewrite(rec, settings.get("rewrite_docs_dir") or "docs/pg_architect", stamp)
            elif rec["kind"] == "partition":
                files = kinds.render_partition(rec, settings["migration_format"], settings["migrations_dir"],
                                               settings.get("rewrite_docs_dir") or "docs/pg_architect", stamp,
                                               validated)
            elif rec["kind"] == "materialized_view":
                files = kinds.render_matview(rec, settings["migration_format"], settings["migrations_dir"], stamp)
            elif rec["kind"] == "cache":
                files = kinds.render_cache(rec, settings.get("rewrite_docs_dir") or "docs/pg_architect", stamp)
            else:
                files = render_files(rec, settings["migration_format"], settings["migrations_dir"], stamp)
            db.execute("INSERT INTO arch.pull_request (recommendation_id, repo, base_branch, branch, migration_format,"
                       " files) VALUES ($1, $2, $3, $4, $5, $6::jsonb) ON CONFLICT (recommendation_id) DO NOTHING",
                       [rec_id, settings["github_repo"], settings["github_base_branch"], branch_name(rec_id),
                        settings["migration_format"], files])
        else:  # not opened yet: a corrected repository or base branch applies
            db.execute("UPDATE arch.pull_request SET repo = $2, base_branch = $3, updated_at = now()"
                       " WHERE recommendation_id = $1 AND pr_number IS NULL",
                       [rec_id, settings["github_repo"], settings["github_base_branch"]])
        row = db.row("SELECT * FROM arch.pull_request WHERE recommendation_id = $1", [rec_id])
    files = row["files"]
    if rec["kind"] == "statistics":
        kinds.check_statistics_files(files, validated)
    elif rec["kind"] == "rewrite":
        kinds.check_rewrite_files(files, validated)
    elif rec["kind"] == "partition":
        kinds.check_partition_files(files, validated)
    elif rec["kind"] == "materialized_view":
        kinds.check_matview_files(files, validated)
    elif rec["kind"] == "cache":
        kinds.check_cache_files(files, validated)
    else:
        check_files(files, validated)
    if rec["kind"] == "index":
        title = render_title(rec)
        body = render_body(db, rec, files, row["migration_format"], _policy_note(rec, settings))
    elif rec["kind"] == "drop_index":
        title = render_drop_title(rec)
        body = render_drop_body(rec, files, row["migration_format"], _policy_note(rec, settings))
    elif rec["kind"] in ADVICE_KINDS:
        title = kinds.render_advice_title(rec)
        body = kinds.render_advice_body(db, rec, files, row["migration_format"], _policy_note(rec, settings))
    else:
        title = kinds.render_title(rec)
        body = kinds.render_body(rec, files, _policy_note(rec, settings))
    message = (f"pg_architect: recommendation {rec_id}: {rec['kind']} {rec['index_name'] or rec['index_kind']} on "
               f"{rec['schema_name']}.{rec['table_name']}")

    gh = github()
    try:
        from github import GithubException

        repo = gh.repo(row["repo"])
        owner = repo.owner.login
        branch, base = row["branch"], row["base_branch"]
        try:
            pr = gh.call("looking for an existing pull request", lambda: _find_pr(repo, owner, branch, base))
            if pr is None:
                base_sha = gh.call(f"reading base branch {base}", lambda: repo.get_git_ref(f"heads/{base}").object.sha)
                gh.call(f"creating branch {branch}", lambda: _ensure_branch(repo, branch, base_sha))
                for f in files:
                    gh.call(f"writing {f['path']}",
                            functools.partial(_ensure_file, repo, branch, f["path"], f["content"], message))
                pr = gh.call("opening the pull request",
                             lambda: _find_pr(repo, owner, branch, base) or _create_pr(repo, owner, branch, base,
                                                                                      title, body))
            if pr is None:
                raise TaskError("GitHub: the pull request was neither created nor found", transient=True)
        except GithubException as exc:
            raise TaskError(f"GitHub: {_describe(exc)}") from None
        out = _record(db, rec_id, pr)
    finally:
        gh.close()
    out.update({"branch": row["branch"], "files": [f["path"] for f in files]})
    return out


def sync_pull_requests(db: Db, github: Callable[[], GitHub], limit: int = 100) -> dict:
    """Bring the state of open pull requests (merged, closed) back into arch."""
    from github import GithubException

    rows = db.query("SELECT recommendation_id, repo, pr_number FROM arch.pull_request"
                    " WHERE state = 'open' AND pr_number IS NOT NULL ORDER BY synced_at NULLS FIRST LIMIT $1",
                    [limit])
    stats = {"checked": 0, "merged": 0, "closed": 0, "errors": 0}
    if not rows:
        return stats
    gh = github()
    try:
        for r in rows:
            try:
                repo = gh.repo(r["repo"])
                number = r["pr_number"]
                pr = gh.call(f"reading pull request #{number}",
                             functools.partial(_read_pull, repo, number))
            except (GithubException, TaskError) as exc:
                stats["errors"] += 1
                log.warning("sync of pull request #%s failed: %s", r["pr_number"], exc)
                continue
            stats["checked"] += 1
            state = _record(db, r["recommendation_id"], pr)["state"]
            if state in ("merged", "closed"):
                stats[state] += 1
    finally:
        gh.close()
    return stats


def _read_pull(repo, number: int):
    return _complete(repo.get_pull(number))


def _complete(pr):
    pr.merged  # noqa: B018 (a lazy PullRequest loads on first attribute access)
    return pr
