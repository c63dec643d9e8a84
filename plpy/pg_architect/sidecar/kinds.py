"""Pull requests of the ``statistics`` and ``rewrite`` kinds (issue 11): validation and files.

* ``statistics``: the DDL must be exactly what the statistics advisor writes for the
  recommendation's table, columns and statistics object (``CREATE STATISTICS IF NOT EXISTS …
  (dependencies, ndistinct, mcv) ON … FROM …``, an optional ``ALTER STATISTICS … SET STATISTICS
  n``, ``ANALYZE t (cols)``; or ``ALTER TABLE … ALTER COLUMN … SET STATISTICS n`` and
  ``ANALYZE``), one statement per line; the rollback exactly ``DROP STATISTICS IF EXISTS …`` (or
  ``SET STATISTICS -1`` and ``ANALYZE``).  The migration is one file in every format (sql, prisma,
  flyway: these statements may run in a transaction) holding those statements and comments only.
* ``rewrite``: the application's code changes, not the schema: the "DDL" is the rewritten
  statement (one SELECT, UPDATE or DELETE, parsed by PostgreSQL's parser), the rollback the fixed
  comment of :class:`~pg_architect.advisors.rewrite.RewriteCandidate`; the pull request adds one
  markdown note under ``rewrite_docs_dir`` (in every format) and no SQL migration.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pg_architect

from .. import index_ddl
from ..db import Db
from ..errors import TaskError
from ..sqltext import quote_ident

REWRITE_ROLLBACK = "-- keep (or go back to) the original statement in the application"
MAX_TARGET = 10000


def _refuse(message: str) -> TaskError:
    return TaskError(f"DDL validation: {message}", refused=True)


def _one_line(text: Any, limit: int = 200) -> str:
    s = re.sub(r"[\s\u0085\u2028\u2029]+", " ", str(text)).strip()
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _target(text: str) -> int:
    n = int(text)
    if not 1 <= n <= MAX_TARGET:
        raise _refuse(f"statistics target {n} is outside 1..{MAX_TARGET}")
    return n


# ------------------------------------------------------------------------------ statistics

def validate_statistics(db: Db, rec: dict) -> list[str]:
    """The statements of a statistics recommendation, checked against the shapes the advisor
    writes for its own table, columns and object name (and the catalog now); refused otherwise."""
    schema, table, cols = rec["schema_name"], rec["table_name"], list(rec.get("columns") or [])
    if not cols:
        raise _refuse("the statistics recommendation names no column")
    qt = f"{quote_ident(schema)}.{quote_ident(table)}"
    qc = ", ".join(quote_ident(c) for c in cols)
    stmts = index_ddl.statements(rec["ddl"])
    back = index_ddl.statements(rec["rollback_ddl"])
    analyze = f"ANALYZE {qt} ({qc});"
    if rec.get("index_kind") == "extended_statistics":
        if not rec.get("index_name") or len(cols) < 2:
            raise _refuse("extended statistics need a name and two or more columns")
        qn = f"{quote_ident(schema)}.{quote_ident(rec['index_name'])}"
        create = f"CREATE STATISTICS IF NOT EXISTS {qn} (dependencies, ndistinct, mcv) ON {qc} FROM {qt};"
        if len(stmts) == 3:
            m = re.fullmatch(re.escape(f"ALTER STATISTICS {qn} SET STATISTICS ") + r"(\d{1,5});", stmts[1])
            if m is None:
                raise _refuse("the second statement must be ALTER STATISTICS … SET STATISTICS n")
            _target(m.group(1))
            stmts_ok = stmts[0] == create and stmts[2] == analyze
        else:
            stmts_ok = stmts == [create, analyze]
        if not stmts_ok:
            raise _refuse("only CREATE STATISTICS IF NOT EXISTS (dependencies, ndistinct, mcv) on the "
                          "recommendation's columns, then ANALYZE of those columns, is allowed")
        if back != [f"DROP STATISTICS IF EXISTS {qn};"]:
            raise _refuse("the rollback must be exactly DROP STATISTICS IF EXISTS of the object created")
        if db.one("SELECT 1 AS x FROM pg_statistic_ext s JOIN pg_namespace n ON n.oid = s.stxnamespace"
                  " WHERE n.nspname = $1 AND s.stxname = $2", [schema, rec["index_name"]]):
            raise _refuse(f"a statistics object named {schema}.{rec['index_name']} already exists "
                          "(the recommendation may already be applied)")
    elif rec.get("index_kind") == "statistics_target":
        if len(cols) != 1 or len(stmts) != 2:
            raise _refuse("a statistics target is one ALTER TABLE … SET STATISTICS and one ANALYZE, on one column")
        m = re.fullmatch(re.escape(f"ALTER TABLE {qt} ALTER COLUMN {qc} SET STATISTICS ") + r"(\d{1,5});", stmts[0])
        if m is None or stmts[1] != analyze:
            raise _refuse("only ALTER TABLE … ALTER COLUMN … SET STATISTICS n and ANALYZE of that column are allowed")
        _target(m.group(1))
        if back != [f"ALTER TABLE {qt} ALTER COLUMN {qc} SET STATISTICS -1;", analyze]:
            raise _refuse("the rollback must reset the column's statistics target (-1) and ANALYZE it")
    else:
        raise _refuse(f"unknown statistics kind {rec.get('index_kind')!r}")
    rel = db.one("SELECT c.oid::bigint AS oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                 " WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p', 'm')", [schema, table])
    if rel is None:
        raise _refuse(f"table {schema}.{table} does not exist")
    have = {r["name"] for r in db.query("SELECT attname::text AS name FROM pg_attribute WHERE attrelid ="
                                        " $1::bigint::oid AND attnum > 0 AND NOT attisdropped", [rel["oid"]])}
    missing = [c for c in cols if c not in have]
    if missing:
        raise _refuse(f"column(s) {', '.join(missing)} do not exist in {schema}.{table}")
    return stmts


def _slug(rec: dict) -> str:
    s = re.sub(r"[^a-z0-9]+", "_", f"arch_rec_{rec['id']}_{rec.get('index_name') or rec['index_kind'] or ''}"
                                   f"_{rec['table_name']}".lower())
    return s.strip("_")[:80]


def migration_prefix(directory: str) -> str:
    """``directory`` as a path prefix ('' or 'a/b/'), empty segments dropped."""
    prefix = "/".join(p for p in (directory or "").strip("/").split("/") if p)
    return prefix + "/" if prefix else ""


def single_file_migration(fmt: str, prefix: str, ts: str, slug: str, content: str,
                          no_transaction: str | None = None) -> list[dict]:
    """One migration file in ``fmt``'s layout; with ``no_transaction`` (the statement that cannot run
    in a transaction block), Flyway also gets its ``.sql.conf`` with executeInTransaction=false."""
    if fmt == "sql":
        return [{"path": f"{prefix}{ts}_{slug}.sql", "content": content}]
    if fmt == "prisma":
        return [{"path": f"{prefix}{ts}_{slug}/migration.sql", "content": content}]
    path = f"{prefix}V{ts}__{slug}.sql"
    files = [{"path": path, "content": content}]
    if no_transaction:
        files.append({"path": path + ".conf",
                      "content": f"# pg_architect: {no_transaction} cannot run inside a transaction block.\n"
                                 "executeInTransaction=false\n"})
    return files


def render_statistics(rec: dict, fmt: str, directory: str, stamp: dt.datetime) -> list[dict]:
    ts = stamp.astimezone(dt.UTC).strftime("%Y%m%d%H%M%S")
    slug, prefix = _slug(rec), migration_prefix(directory)
    header = [
        f"-- pg_architect recommendation {rec['id']}: {rec['index_kind'].replace('_', ' ')} on "
        f"{_one_line(rec['schema_name'])}.{_one_line(rec['table_name'])}",
        f"-- Estimated {rec['est_gain_pct']:.1f} % lower cost for the statement it was proven on; "
        f"confidence {rec['confidence']:.2f}. The proof is in the pull request.",
        f"-- Generated by pg_architect {pg_architect.__version__} at {stamp.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S} UTC.",
        "-- Rollback: " + " ".join(_one_line(s, 400) for s in index_ddl.statements(rec["rollback_ddl"])),
    ]
    content = "\n".join(header) + "\n\n" + "\n".join(index_ddl.statements(rec["ddl"])) + "\n"
    return single_file_migration(fmt, prefix, ts, slug, content)


def check_statistics_files(files: list[dict], stmts: list[str]) -> None:
    if len(files) != 1 or not files[0]["path"].endswith(".sql"):
        raise _refuse("a statistics migration is exactly one SQL file")
    if index_ddl.statements(files[0]["content"]) != stmts:
        raise _refuse("the migration file holds something else than the validated statements")


# ------------------------------------------------------------------------------ rewrite

def validate_rewrite(rec: dict) -> str:
    """The rewritten statement: one SELECT, UPDATE or DELETE (PostgreSQL's parser), no DDL."""
    from pglast import parse_sql
    from pglast.parser import ParseError

    text = (rec.get("ddl") or "").strip()
    try:
        stmts = parse_sql(text)
    except ParseError as exc:
        raise _refuse(f"the rewritten statement does not parse: {str(exc)[:200]}") from None
    if len(stmts) != 1:
        raise _refuse(f"the rewrite holds {len(stmts)} statements, not one")
    kind = type(stmts[0].stmt).__name__
    if kind not in ("SelectStmt", "UpdateStmt", "DeleteStmt"):
        raise _refuse(f"a rewrite is a SELECT, UPDATE or DELETE, got {kind}")
    if (rec.get("rollback_ddl") or "").strip() != REWRITE_ROLLBACK:
        raise _refuse("the rollback of a rewrite is the fixed comment (keep the original statement)")
    return text


def _fence(text: str, lang: str = "sql") -> str:
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}{lang}\n{text}\n{ticks}"


def render_rewrite(rec: dict, directory: str, stamp: dt.datetime) -> list[dict]:
    ts = stamp.astimezone(dt.UTC).strftime("%Y%m%d%H%M%S")
    content = "\n".join([
        f"# pg_architect recommendation {rec['id']}: rewrite ({rec['index_kind']})",
        "",
        "A rewrite changes the application's code, not the schema: nothing to migrate. Replace the "
        "statement below in the application (same rows for every parameter value; see the rule's "
        "precondition in pg_architect's README).",
        "",
        "## The statement now",
        _fence(rec.get("query") or "(statement text not available)"),
        "",
        "## The rewritten statement",
        _fence(rec["ddl"].strip()),
        "",
        f"Estimated cost {rec.get('cost_before') or 0:,.1f} → {rec.get('cost_after') or 0:,.1f} "
        f"({rec['est_gain_pct']:.1f} % cheaper, both forms planned as the statement's role); "
        f"confidence {rec['confidence']:.2f}.",
        "",
        f"Why: {rec.get('rationale') or ''}",
        "",
        f"Generated by pg_architect {pg_architect.__version__} at {stamp.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S} UTC.",
        "",
    ])
    return [{"path": f"{migration_prefix(directory)}{ts}_{_slug(rec)}.md", "content": content}]


def check_rewrite_files(files: list[dict], text: str) -> None:
    if len(files) != 1 or not files[0]["path"].endswith(".md"):
        raise _refuse("a rewrite's pull request is exactly one markdown note")
    if _fence(text) not in files[0]["content"]:
        raise _refuse("the note does not hold the validated statement")


# ------------------------------------------------------------------------------ both

def render_title(rec: dict) -> str:
    what = "rewrite" if rec["kind"] == "rewrite" else rec["index_kind"].replace("_", " ")
    return (f"pg_architect #{rec['id']}: {what} on {_one_line(rec['schema_name'])}.{_one_line(rec['table_name'])}"
            f" (est. {rec['est_gain_pct']:.0f} % lower cost)")[:250]


def render_body(rec: dict, files: list[dict], policy_note: str) -> str:
    changes = rec.get("plan_changes") or {}
    removed = ", ".join(f"`{_one_line(n, 120)}`" for n in changes.get("removed", [])[:6]) or "—"
    added = ", ".join(f"`{_one_line(n, 120)}`" for n in changes.get("added", [])[:6]) or "—"
    change = ("A rewrite of the application's statement (no schema change): the note "
              if rec["kind"] == "rewrite" else "The migration ")
    return "\n".join([
        f"**pg_architect recommendation #{rec['id']}**: {render_title(rec)}. Nothing has been applied to the "
        "database.",
        "",
        "### The change",
        _fence(rec["ddl"].strip()),
        change + ", ".join(f"`{f['path']}`" for f in files) + ".",
        "",
        "### The statement",
        _fence(rec.get("query") or "(statement text not available)"),
        "",
        "### Plan before → after",
        "| | estimated cost | plan nodes |",
        "|---|---:|---|",
        f"| before | {rec.get('cost_before') or 0:,.1f} | {removed} |",
        f"| after | {rec.get('cost_after') or 0:,.1f} | {added} |",
        "",
        f"- Estimated gain: **{rec['est_gain_pct']:.1f} %**; confidence **{rec['confidence']:.2f}**.",
        f"- Why: {rec.get('rationale') or ''}",
        "",
        "### Rollback",
        _fence(rec["rollback_ddl"].strip()),
        "",
        "### Approval",
        policy_note,
        "",
        f"<!-- pg_architect recommendation {rec['id']} -->",
    ])
