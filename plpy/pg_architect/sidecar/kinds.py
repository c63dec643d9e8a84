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


# ------------------------------------------------------------------------------ partition, materialized_view, cache
# The structured advice of these kinds is ``rec["details"]`` (the advisor's object, frozen and
# covered by the approval hash with the DDL).  Each is accepted only when its DDL and rollback are
# exactly what the advisor generates: the partitioning plan rebuilt from the catalog now (and the
# bounds the advisor read), the materialized view's three statements put together from its parts,
# the cache note rendered from its details.

FORMAT_NAMES = {"sql": "plain SQL", "prisma": "Prisma Migrate", "flyway": "Flyway"}
NO_TRANSACTION_STEPS = {
    2: "the copy runs one INSERT per partition, each its own transaction (batches)",
    4: "the swap is its own short transaction (BEGIN … COMMIT in the file)",
}


def _details(rec: dict, kind: str) -> dict:
    d = rec.get("details")
    if not isinstance(d, dict) or d.get("kind") != kind:
        raise _refuse(f"a {kind} recommendation carries its advice in details: missing or of another kind")
    if (d.get("schema_name"), d.get("table_name")) != (rec["schema_name"], rec["table_name"]):
        raise _refuse("the advice in details is for another table than the recommendation's")
    return d


def _same_scripts(rec: dict, d: dict) -> bool:
    """The recommendation's DDL and rollback are those of its advice."""
    return ((rec.get("ddl") or ""), (rec.get("rollback_ddl") or "")) == ((d.get("ddl") or ""),
                                                                         (d.get("rollback_ddl") or ""))


def validate_partition(db: Db, rec: dict) -> dict:
    """The partitioning plan: the DDL and rollback must be, statement by statement, the plan the
    advisor builds for the table now from the advice's column, interval and data bounds; returns
    ``{"steps": [(step, statements)], "rollback": statements}``."""
    from ..advisors import partition

    d = _details(rec, "partition")
    if not _same_scripts(rec, d):
        raise _refuse("the DDL or rollback differs from the migration plan in details")
    b = d.get("bounds") or {}
    if b.get("type") not in partition.TIME_TYPES | partition.INT_TYPES:
        raise _refuse("the advice names no partition key type")
    t = db.one("SELECT n.nspname::text AS schema, c.relname::text AS name, c.oid::bigint AS oid,"
               " pg_total_relation_size(c.oid)::float8 AS bytes, pg_relation_size(c.oid)::float8 AS heap_bytes,"
               " greatest(c.reltuples, 0)::float8 AS reltuples, pg_get_userbyid(c.relowner)::text AS owner,"
               " c.relkind::text AS relkind, c.relispartition AS ispart"
               " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2",
               [rec["schema_name"], rec["table_name"]])
    if t is None:
        raise _refuse(f"table {rec['schema_name']}.{rec['table_name']} does not exist")
    if t["relkind"] != "r" or t["ispart"]:
        raise _refuse(f"{rec['schema_name']}.{rec['table_name']} is not an ordinary unpartitioned table "
                      "(already partitioned?)")
    col = str(d.get("column_name") or "")
    if partition.table_columns(db, t["schema"], t["name"]).get(col) != b["type"]:
        raise _refuse(f"column {col} of {t['schema']}.{t['name']} is missing or changed type")
    # The names the catalog gives (regclass::text) as the audit sees them: schema-qualified.
    saved = db.scalar("SELECT pg_catalog.current_setting('search_path')")
    db.execute("SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', false)")
    try:
        plan = partition.migration_plan(db, t, col, b["type"], d["estimate"]["interval"], float(b["step"]),
                                        float(b["lo"]), float(b["hi"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise _refuse(f"the advice cannot be rebuilt: {exc}") from None
    finally:
        db.execute("SELECT pg_catalog.set_config('search_path', $1, false)", [saved])
    want = index_ddl.statements(plan["migration"]) + ["--"] + index_ddl.statements(plan["rollback"])
    have = index_ddl.statements(rec["ddl"]) + ["--"] + index_ddl.statements(rec["rollback_ddl"])
    if want != have:
        diff = next((f"{_one_line(h, 160)!r} where pg_architect now writes {_one_line(w, 160)!r}"
                     for h, w in zip(have + [""] * len(want), want + [""] * len(have)) if h != w), "")
        raise _refuse(f"the migration plan is not what pg_architect generates for {t['schema']}.{t['name']} now "
                      "(the table, its constraints, indexes, grants or sequences changed since the audit, or the "
                      f"plan was edited): {diff}; reject it and let the next audit propose it again")
    return {"steps": [(s, index_ddl.statements(s["sql"])) for s in plan["steps"]],
            "rollback": index_ddl.statements(plan["rollback"])}


def _slug_of(rec: dict, what: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "_", f"arch_rec_{rec['id']}_{what}_{rec['table_name']}".lower())
    return s.strip("_")[:80]


def _stamp(stamp: dt.datetime) -> tuple[str, str]:
    u = stamp.astimezone(dt.UTC)
    return u.strftime("%Y%m%d%H%M%S"), f"{u:%Y-%m-%d %H:%M:%S} UTC"


def render_partition(rec: dict, fmt: str, directory: str, docs_dir: str, stamp: dt.datetime,
                     validated: dict) -> list[dict]:
    """The plan as ordered migration files (one per step; Prisma: the copy one migration per
    batch; Flyway: ``executeInTransaction=false`` for the copy and the swap), the rollback and the
    runbook under ``docs_dir`` (not migrations: they run only by hand)."""
    d = rec["details"]
    ts, when = _stamp(stamp)
    slug, prefix, docs = _slug_of(rec, "partition"), migration_prefix(directory), migration_prefix(docs_dir)
    titles = {int(s.get("step", 0)): s for s in d.get("steps") or []}
    steps = [(s, stmts) for s, stmts in validated["steps"] if stmts]
    out: list[dict] = []
    for i, (s, stmts) in enumerate(steps, 1):
        n = int(s["step"])
        shown = titles.get(n, s)
        head = [f"-- pg_architect recommendation {rec['id']}: partition {_one_line(rec['schema_name'])}."
                f"{_one_line(rec['table_name'])} by {_one_line(d.get('column_name'))}, step {n} of 4: "
                f"{_one_line(shown.get('title'))}.",
                f"-- Lock: {_one_line(shown.get('lock'))}; estimated {shown.get('est_duration_s')} s.",
                f"-- Generated by pg_architect {pg_architect.__version__} at {when}. Run the steps in order; "
                f"the rollback and the runbook are in {docs or './'}."]
        if n in NO_TRANSACTION_STEPS:
            head.append(f"-- Not inside a transaction block: {NO_TRANSACTION_STEPS[n]}.")
        name = f"{slug}_step{n}"
        if fmt == "prisma" and n == 2:
            width = len(str(len(stmts)))
            for j, st in enumerate(stmts, 1):
                lines = head if j == 1 else [f"-- pg_architect recommendation {rec['id']}: step 2, batch {j} of "
                                             f"{len(stmts)} (its own migration: its own transaction)."]
                out.append({"path": f"{prefix}{ts}_{name}_{j:0{width}d}/migration.sql",
                            "content": "\n".join(lines) + "\n\n" + st + "\n"})
            continue
        content = "\n".join(head) + "\n\n" + "\n".join(stmts) + "\n"
        if fmt == "flyway":
            path = f"{prefix}V{ts}_{i}__{name}.sql"
            out.append({"path": path, "content": content})
            if n in NO_TRANSACTION_STEPS:
                out.append({"path": path + ".conf",
                            "content": f"# pg_architect: {NO_TRANSACTION_STEPS[n]}.\nexecuteInTransaction=false\n"})
        elif fmt == "prisma":
            out.append({"path": f"{prefix}{ts}_{name}/migration.sql", "content": content})
        else:
            out.append({"path": f"{prefix}{ts}_{name}.sql", "content": content})
    out.append({"path": f"{docs}{ts}_{slug}_rollback.sql",
                "content": f"-- pg_architect recommendation {rec['id']}: rollback of the partitioning (run by hand "
                           "with psql, autocommit, only after the swap).\n" + rec["rollback_ddl"].rstrip() + "\n"})
    out.append({"path": f"{docs}{ts}_{slug}_runbook.md",
                "content": (d.get("runbook") or "").rstrip() + "\n\n" + _not_pruned_md(d) + "\n"})
    return out


def _not_pruned_md(d: dict) -> str:
    rows = d.get("not_pruned") or []
    if not rows:
        return "Every statement on the table filters on the partition key: all prune."
    return "\n".join(["Statements that will **not** prune (they read every partition):", ""]
                     + [f"- `{_one_line(s.get('query'), 300)}` ({s.get('calls')} calls, {s.get('total_ms')} ms): "
                        f"{_one_line(s.get('reason'))}" for s in rows[:20]])


def _migration_files(files: list[dict]) -> list[dict]:
    return [f for f in files if f["path"].endswith(".sql") and not f["path"].endswith("_rollback.sql")]


def check_partition_files(files: list[dict], validated: dict) -> None:
    found: list[str] = []
    for f in _migration_files(files):
        found.extend(index_ddl.statements(f["content"]))
    if found != [x for _, stmts in validated["steps"] for x in stmts]:
        raise _refuse("the migration files hold something else than the validated plan")
    back = [f for f in files if f["path"].endswith("_rollback.sql")]
    if len(back) != 1 or index_ddl.statements(back[0]["content"]) != validated["rollback"]:
        raise _refuse("the rollback file holds something else than the validated rollback")


def validate_matview(db: Db, rec: dict) -> list[str]:
    """A materialized view: exactly CREATE MATERIALIZED VIEW of the advice's view (one SELECT),
    its unique index on the advice's columns, the pg_cron refresh (a step the advisor uses); the
    rollback exactly the unschedule and DROP MATERIALIZED VIEW IF EXISTS."""
    from pglast import parse_sql
    from pglast.parser import ParseError

    from ..advisors import matview

    d = _details(rec, "materialized_view")
    if not _same_scripts(rec, d):
        raise _refuse("the DDL or rollback differs from the advice in details")
    name, view_sql, cols = d.get("view_name"), d.get("view_sql") or "", d.get("unique_columns") or []
    if not name or not cols or name != rec.get("index_name"):
        raise _refuse("the advice names no view or no unique columns")
    if d.get("schedule") not in {c for _, c in matview.CRON_STEPS}:
        raise _refuse(f"refresh schedule {d.get('schedule')!r} is not one pg_architect proposes")
    try:
        stmts = parse_sql(view_sql)
    except ParseError as exc:
        raise _refuse(f"the view's query does not parse: {str(exc)[:200]}") from None
    node: Any = stmts[0].stmt if len(stmts) == 1 else None
    if type(node).__name__ != "SelectStmt" or node.intoClause or node.lockingClause or "\n" in view_sql:
        raise _refuse("the view's query must be one SELECT (no INTO, no FOR UPDATE)")

    def q(x: str) -> str:
        return db.scalar("SELECT quote_ident($1)", [x])

    qmv = f"{q(rec['schema_name'])}.{q(name)}"
    job = f"arch_refresh_{name}"
    ucols = ", ".join(quote_ident(c, always=True) for c in cols)
    ddl = (f"CREATE MATERIALIZED VIEW {qmv} AS {view_sql};\n"
           f"CREATE UNIQUE INDEX {q(name[:55] + '_key')} ON {qmv} ({ucols});\n"
           f"SELECT cron.schedule('{job}', '{d['schedule']}', 'REFRESH MATERIALIZED VIEW CONCURRENTLY {qmv}');")
    rollback = (f"SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = '{job}';\n"
                f"DROP MATERIALIZED VIEW IF EXISTS {qmv};")
    if rec["ddl"] != ddl or rec["rollback_ddl"] != rollback or "'" in name:
        raise _refuse("only the materialized view, its unique index and its pg_cron refresh, as pg_architect "
                      "writes them, are allowed (and their removal as the rollback)")
    if db.one("SELECT 1 AS x FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
              " WHERE n.nspname = $1 AND c.relname = $2", [rec["schema_name"], name]):
        raise _refuse(f"a relation named {rec['schema_name']}.{name} already exists (already applied?)")
    if not db.one("SELECT 1 AS x FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                  " WHERE n.nspname = $1 AND c.relname = $2", [rec["schema_name"], rec["table_name"]]):
        raise _refuse(f"table {rec['schema_name']}.{rec['table_name']} does not exist")
    return index_ddl.statements(ddl)


def render_matview(rec: dict, fmt: str, directory: str, stamp: dt.datetime) -> list[dict]:
    d = rec["details"]
    ts, when = _stamp(stamp)
    est = d.get("estimate") or {}
    header = [
        f"-- pg_architect recommendation {rec['id']}: materialized view {_one_line(rec['schema_name'])}."
        f"{_one_line(d.get('view_name'))} over {_one_line(rec['table_name'])}, refreshed by pg_cron "
        f"({_one_line(d.get('schedule'))}, CONCURRENTLY).",
        f"-- Estimated {est.get('benefit_ms_per_refresh')} ms saved per refresh interval; confidence "
        f"{rec['confidence']:.2f}. The application then reads the view (the rewritten statement is in the pull "
        "request).",
        f"-- Generated by pg_architect {pg_architect.__version__} at {when}.",
        "-- Rollback: " + " ".join(_one_line(s, 400) for s in index_ddl.statements(rec["rollback_ddl"])),
    ]
    content = "\n".join(header) + "\n\n" + "\n".join(index_ddl.statements(rec["ddl"])) + "\n"
    return single_file_migration(fmt, migration_prefix(directory), ts, _slug_of(rec, "matview"), content)


def check_matview_files(files: list[dict], stmts: list[str]) -> None:
    sql = [f for f in files if f["path"].endswith(".sql")]
    if len(sql) != 1 or index_ddl.statements(sql[0]["content"]) != stmts:
        raise _refuse("the migration file holds something else than the validated materialized view")


def validate_cache(rec: dict) -> str:
    """A cache: no schema change; the "DDL" must be exactly the note rendered from its details."""
    from ..store_advice import CACHE_ROLLBACK, cache_ddl

    d = _details(rec, "cache")
    if rec.get("ddl") != cache_ddl(d) or rec.get("rollback_ddl") != CACHE_ROLLBACK:
        raise _refuse("a cache recommendation's DDL is its advice as comments, exactly as pg_architect writes it")
    if index_ddl.statements(rec["ddl"]):
        raise _refuse("a cache recommendation changes no schema: its DDL holds only comments")
    return rec["ddl"]


def _cache_facts(rec: dict) -> list[str]:
    d = rec["details"]
    est = d.get("estimate") or {}
    keys = sorted({int(n) for s in d.get("statements") or [] for n in (s.get("cache_key") or [])})
    interval = est.get("mean_write_interval_s")
    return [
        f"- Key: the statement's parameters {', '.join(f'`${n}`' for n in keys) or '(none: one entry)'}"
        f" (columns {', '.join(f'`{c}`' for c in est.get('key_columns') or []) or '—'}; about "
        f"{est.get('keys')} distinct keys).",
        f"- TTL: **{est.get('ttl_s')} s** = min(cache_max_staleness, the tables' mean write interval "
        f"{'(not written in the window)' if interval is None else f'{interval} s'}).",
        f"- Expected hit rate: **{float(est.get('hit_rate') or 0) * 100:.1f} %** ({est.get('calls_per_s')} calls/s, "
        f"{est.get('rows_per_call')} rows per call); database time saved about {est.get('est_time_saved_ms_per_s')} "
        "ms per second.",
        f"- Invalidation: entries expire after the TTL; the application should also delete the keys it "
        f"changes when it writes `{rec['schema_name']}.{rec['table_name']}` ({est.get('write_calls')} writing "
        f"statement call(s) in the window, {est.get('rows_written')} rows written).",
    ]


def render_cache(rec: dict, directory: str, stamp: dt.datetime) -> list[dict]:
    ts, when = _stamp(stamp)
    content = "\n".join([
        f"# pg_architect recommendation {rec['id']}: application cache",
        "",
        "An application cache (the team's Redis) in front of a read-mostly statement: nothing to migrate.",
        "",
        "## The statement",
        _fence(rec.get("query") or "(statement text not available)"),
        "",
        "## The cache",
        *_cache_facts(rec),
        "",
        _fence(rec["ddl"].strip()),
        "",
        f"Why: {rec.get('rationale') or ''}",
        "",
        f"Generated by pg_architect {pg_architect.__version__} at {when}.",
        "",
    ])
    return [{"path": f"{migration_prefix(directory)}{ts}_{_slug_of(rec, 'cache')}.md", "content": content}]


def check_cache_files(files: list[dict], text: str) -> None:
    if len(files) != 1 or not files[0]["path"].endswith(".md") or _fence(text.strip()) not in files[0]["content"]:
        raise _refuse("a cache's pull request is exactly one markdown note holding the validated advice")


def render_advice_title(rec: dict) -> str:
    d = rec.get("details") or {}
    t = f"{_one_line(rec['schema_name'])}.{_one_line(rec['table_name'])}"
    if rec["kind"] == "partition":
        interval = _one_line((d.get("estimate") or {}).get("interval"))
        what = f"partition {t} by {_one_line(d.get('column_name'))} ({interval})"
    elif rec["kind"] == "materialized_view":
        what = f"materialized view {_one_line(d.get('view_name'))} over {t}"
    else:
        what = f"application cache for a statement on {t}"
    return f"pg_architect #{rec['id']}: {what} (est. {rec['est_gain_pct']:.0f} % less time)"[:250]


def render_advice_body(db: Db, rec: dict, files: list[dict], fmt: str, policy_note: str) -> str:
    """The pull request of a partition, materialized_view or cache recommendation."""
    from .. import validate  # the measured numbers of the latest validation on staging, if any

    d = rec.get("details") or {}
    est = d.get("estimate") or {}
    paths = ", ".join(f"`{f['path']}`" for f in files)
    out = [f"**pg_architect recommendation #{rec['id']}**: {render_advice_title(rec)}. Nothing has been applied "
           "to the database.", ""]
    if rec["kind"] == "partition":
        out += [
            "### The change",
            f"Declarative RANGE partitioning by `{_one_line(d.get('column_name'))}`, {est.get('partitions')} "
            f"partitions of {_one_line(est.get('interval'))}, as a migration plan of ordered files "
            f"({FORMAT_NAMES.get(fmt, fmt)}): {paths}. Run the steps in order; the copy and the swap do not run "
            "inside a transaction block"
            + (" (their Flyway .conf files say so)." if fmt == "flyway" else "."),
            "",
            (d.get("runbook") or "").strip(),
            "",
            "### Constraint changes",
            *([f"- {_one_line(c, 400)}" for c in d.get("constraint_changes") or []] or ["_None._"]),
            "",
            "### Statements that will not prune",
            *([f"- `{_one_line(s.get('query'), 300)}`: {_one_line(s.get('reason'))}"
               for s in (d.get("not_pruned") or [])[:20]] or ["_None: every statement filters on the key._"]),
            "",
            "### Estimate",
            f"- {est.get('key_time_share', 0) * 100:.0f} % of the table's statement time filters on the key; "
            f"pruning saves an estimated **{est.get('est_gain_pct')} %** ({est.get('est_time_saved_ms')} ms of "
            f"{est.get('statement_time_ms')} ms; an upper bound, see the model in the README); confidence "
            f"**{rec['confidence']:.2f}**.",
            f"- Why: {rec.get('rationale') or ''}",
            "",
            "### Rollback",
            _fence(rec["rollback_ddl"].strip()),
        ]
    elif rec["kind"] == "materialized_view":
        stale = est.get("refresh_interval_s")
        out += [
            "### The change",
            _fence("\n".join(index_ddl.statements(rec["ddl"]))),
            f"Migration ({FORMAT_NAMES.get(fmt, fmt)}): {paths}. pg_cron refreshes the view CONCURRENTLY "
            f"(`{_one_line(d.get('schedule'))}`).",
            "",
            "### The statement, rewritten to read the view",
            _fence(rec.get("query") or "(statement text not available)"),
            "becomes",
            _fence(d.get("rewritten_query") or ""),
            "",
            "### Staleness it accepts",
            f"- The view is refreshed every {stale} s: the rewritten statement may return results up to "
            f"{stale} s old (plus the refresh time); the tolerated staleness is "
            f"{d.get('max_staleness_s')} s (`matview_max_staleness`).",
            "",
            "### Estimate",
            f"- {est.get('calls')} calls of {est.get('mean_ms')} ms; read from the view about "
            f"{est.get('read_ms_after')} ms; a refresh about {est.get('refresh_ms')} ms: "
            f"**{est.get('benefit_ms_per_refresh')} ms saved per refresh interval**; confidence "
            f"**{rec['confidence']:.2f}**.",
            f"- Why: {rec.get('rationale') or ''}",
            "",
            "### Rollback",
            _fence("\n".join(index_ddl.statements(rec["rollback_ddl"]))),
        ]
    else:
        out += [
            "### The advice (no schema change)",
            f"The note {paths} describes an application cache; nothing to migrate.",
            "",
            "### The statement",
            _fence(rec.get("query") or "(statement text not available)"),
            "",
            *_cache_facts(rec),
            f"- Confidence: **{rec['confidence']:.2f}**. Why: {rec.get('rationale') or ''}",
        ]
    measured = validate.pr_section(db, rec["id"]).rstrip()
    out += ["", *([measured, ""] if measured else []), "### Approval", policy_note, "",
            f"<!-- pg_architect recommendation {rec['id']} -->"]
    return "\n".join(out)
