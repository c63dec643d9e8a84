#!/usr/bin/env python3
"""Index advisors side by side on one captured workload: pg_architect, postgres-mcp's DTA,
supabase's index_advisor, one index per predicate column, and no index.

    python bench/bench_advisors.py --dsn "host=/tmp/pg port=5432 dbname=app" [--workload tpch|skewed]
    make bench ARGS='advisors --workload skewed'

Steps:
  1. the workload: TPC-H's 22 queries at --sf (loaded with DuckDB's generator into schema ``tpch``,
     see tpch_data.py), or ``--workload skewed``: schema ``bench_skew`` and statements with
     literal values where expression and partial indexes pay (see skew_workload.py);
  2. the capture: pg_stat_statements and the table statistics are reset, every statement is executed
     (TPC-H: --capture-runs times, once when the first run takes over 5 s; skewed: as often as the workload says) under
     --capture-timeout-s (a statement that fails or times out is not in the capture), and the
     pg_stat_statements rows of the workload's query ids are read once.  All advisors get this
     same capture: pg_architect reads pg_stat_statements itself, right after it, before any other
     advisor has run a statement.  A second session calls ``arch.sample_queries()`` after each
     execution (--no-samples: not), so pg_architect also has the texts with their literals in
     arch.query_sample, as ``arch.schedule_sampling()`` gives it in production;
  3. the advisors, each timed:
       pg_architect           ``SELECT arch.run_audit()`` (thresholds lowered for the run, restored
                              afterwards); its proposed index recommendations on the schema;
       pg_architect set       ``SELECT * FROM arch.design_indexes()`` (the same lowered thresholds, on a
                              fresh backend): one set of indexes for the whole workload; statements it
                              skipped are read from its NOTICEs;
       postgres-mcp DTA       workload mode (``analyze_workload(workload=...)``, calls and mean time
                              from the capture) in its own Python >= 3.12 venv (bench/peers.sh), via
                              bench/peer_dta.py: a statement whose normalised text it cannot bind or
                              plan gets one captured literal text of it instead (reported as "bound
                              from literals"; --dta-no-literal-fallback: left out), and candidates
                              naming a column their table lacks are left out, where DTA itself would
                              abort the whole analysis;
       supabase index_advisor its SQL read at run time (--index-advisor-sql FILE, or the newest
                              ``index_advisor--*.sql`` at HEAD of --index-advisor-git), created in
                              schema ``bench_index_advisor``; ``index_advisor(query)`` per captured
                              statement, index statements de-duplicated;
       one per predicate col. a single-column b-tree per column of a WHERE / JOIN ON / HAVING
                              predicate (sqlglot), except columns already leading an index;
       no index               the baseline;
  4. per advisor: the indexes as hypopg hypothetical indexes and the planner's cost of every
     statement (weight = its calls in the capture) against the no-index cost; then the indexes
     built for real (``CREATE INDEX``, tables with an expression index ANALYZEd), their
     ``pg_relation_size``, every statement run warm (one unmeasured run, then --runs measured
     ones, statement_timeout --timeout-s), the median per statement, the weighted ratio to the
     no-index medians and the noise (per statement (max - min) / median of the runs); dropped.

Prints a markdown table and writes the full result as JSON to --out (default bench/out/).
Note: this resets pg_stat_statements of the whole cluster and runs arch.run_audit() -- run it on a
test database.  The bench schemas are kept for the next run unless --drop.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import psycopg
import psycopg.sql

from advisor_metrics import (
    Item,
    ddl_key,
    dedupe_ddl,
    index_shape,
    item_weights,
    median_or_none,
    naive_indexes,
    relative_spread,
    weighted_ratio,
)
from bench_audit import (
    BENCH_SETTINGS,
    AuditSettings,
    BenchError,
    check_arch,
    connect,
    log,
    pgss_max,
    reset_pgss,
    timed_audit,
)

HERE = os.path.dirname(os.path.abspath(__file__))
IA_SCHEMA = "bench_index_advisor"
DEFAULT_IA_GIT = "/work/.mirror/supabase+index_advisor/repo"
#: A statement whose first capture run took longer than this is not repeated (as in bench_tpch.py).
REPEAT_UNDER_S = 5.0
ADVISORS = ("none", "pg_architect", "pg_architect_set", "postgres_mcp_dta", "index_advisor", "naive")
LABELS = {
    "none": "no index",
    "pg_architect": "pg_architect",
    "pg_architect_set": "pg_architect design_indexes (set)",
    "postgres_mcp_dta": "postgres-mcp DTA (workload mode)",
    "index_advisor": "supabase index_advisor",
    "naive": "one index per predicate column",
}


# ---------------------------------------------------------------------------------------
# workload and capture
# ---------------------------------------------------------------------------------------

def tpch_workload(conn, args) -> tuple[str, list[Item]]:
    from tpch_data import SCHEMA, duckdb_tpch, ensure_tpch, tpch_queries

    con = duckdb_tpch()
    queries = tpch_queries(con)
    if args.queries:
        queries = {k: v for k, v in queries.items() if k in set(args.queries)}
    ensure_tpch(conn, con, args.sf, args.reload, log)
    con.close()
    return SCHEMA, [Item(key=f"q{nr:02d}", sql=q, executions=args.capture_runs) for nr, q in queries.items()]


def skewed_workload(conn, args) -> tuple[str, list[Item]]:
    from skew_workload import SCHEMA, ensure_skew, skew_items

    ensure_skew(conn, args.rows, args.reload, log)
    return SCHEMA, skew_items(conn)


def query_id(conn, sql: str) -> int | None:
    """The statement's pg_stat_statements query id (EXPLAIN VERBOSE shows it, PostgreSQL 14+)."""
    try:
        plan = conn.execute("EXPLAIN (VERBOSE, FORMAT JSON) " + sql).fetchone()[0]
    except psycopg.Error:
        return None
    if isinstance(plan, str):
        plan = json.loads(plan)
    return plan[0].get("Query Identifier")


def set_timeout(conn, seconds: float) -> None:
    conn.execute(psycopg.sql.SQL("SET statement_timeout = {}").format(
        psycopg.sql.Literal(int(seconds * 1000))))


def capture(conn, items: list[Item], timeout_s: float, sample_dsn: str | None = None
            ) -> tuple[list[Item], list[dict], dict]:
    """Reset pg_stat_statements, run every item, read the capture.  Items get their query id.
    With ``sample_dsn``, a second session calls ``arch.sample_queries()`` after each execution
    (as ``arch.schedule_sampling()`` would every minute): the texts with their literals land in
    ``arch.query_sample`` for pg_architect, and only for it (the peers read the capture)."""
    items = [Item(it.key, it.sql, it.executions, query_id(conn, it.sql)) for it in items]
    status = {}
    reset_pgss(conn)
    # The table write counters start with the capture too: loading the bench schema is not the
    # workload's writes (arch.design_indexes subtracts the write cost of each index).
    conn.execute("SELECT pg_stat_force_next_flush()")
    conn.execute("SELECT 1")
    conn.execute("SELECT pg_stat_reset()")
    set_timeout(conn, timeout_s)
    sampler = connect(sample_dsn) if sample_dsn else None
    if conn.execute("SELECT to_regclass('arch.query_sample') IS NOT NULL").fetchone()[0]:
        conn.execute("DELETE FROM arch.query_sample")  # samples of an earlier run (same query ids)
    try:
        for it in items:
            t0 = time.perf_counter()
            st = "ok"
            for n in range(it.executions):
                if n and time.perf_counter() - t0 > REPEAT_UNDER_S:
                    break  # one call is enough to be in pg_stat_statements: spare slow ones
                try:
                    conn.execute(it.sql).fetchall()
                    if sampler is not None:
                        sampler.execute("SELECT arch.sample_queries()")
                except psycopg.errors.QueryCanceled:
                    st = f"timeout > {timeout_s:g}s"
                    break
                except psycopg.Error as e:
                    st = "error: " + str(e).strip().splitlines()[0]
                    break
            status[it.key] = {"status": st, "ms": (time.perf_counter() - t0) * 1000 / max(n + 1, 1)}
            log(f"  {it.key}: {st} {status[it.key]['ms']:.0f} ms")
    finally:
        conn.execute("RESET statement_timeout")
        if sampler is not None:
            sampler.close()
    qids = sorted({it.queryid for it in items if it.queryid is not None})
    rows = conn.execute(
        """SELECT queryid, query, calls, total_exec_time, total_exec_time / calls AS mean_exec_time
           FROM pg_stat_statements
           WHERE queryid = ANY(%s) AND dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
             AND toplevel AND calls > 0
           ORDER BY total_exec_time DESC""", (qids,)).fetchall()
    cap = [{"queryid": r[0], "query": r[1], "calls": r[2], "total_exec_time": r[3], "mean_exec_time": r[4]}
           for r in rows]
    return items, cap, status


# ---------------------------------------------------------------------------------------
# the advisors: each returns {"ddl": [...], "skipped": [...], "wall_s": ..., ...}
# ---------------------------------------------------------------------------------------

def advise_pg_architect(conn, args, schema: str, cap: list[dict], literals: dict | None = None) -> dict:
    conn.execute("DELETE FROM arch.statement_analysis")  # a first audit: nothing reused from an earlier run
    res = timed_audit(args.dsn, args.audit_timeout_ms)
    s = res.summary
    run_id = s.get("run_id")
    ddl = [r[0] for r in conn.execute(
        """SELECT ddl FROM arch.recommendation
           WHERE kind = 'index' AND status = 'proposed' AND schema_name = %s AND last_audit_run_id = %s
           ORDER BY id""", (schema, run_id)).fetchall()]
    qids = [c["queryid"] for c in cap]
    skipped = [{"queryid": r[0], "reason": f"{r[1]}: {r[2]}"} for r in conn.execute(
        """SELECT queryid, skip_code, skip_reason FROM arch.audit_statement
           WHERE audit_run_id = %s AND outcome = 'skipped' AND queryid = ANY(%s)""", (run_id, qids)).fetchall()]
    analysed = conn.execute(
        "SELECT count(*) FROM arch.audit_statement WHERE audit_run_id = %s"
        " AND outcome IN ('analyzed', 'grouped', 'reused') "
        "AND queryid = ANY(%s)", (run_id, qids)).fetchone()[0]
    not_seen = len(qids) - analysed - len(skipped)
    if not_seen > 0:
        skipped.append({"queryid": None, "reason": f"{not_seen} captured statement(s) not selected by the audit"})
    return {"ddl": ddl, "skipped": skipped, "wall_s": res.wall_s, "summary": s,
            "peak_rss_mb": round(res.peak_rss_kb / 1024, 1) if res.peak_rss_kb else None}


def advise_pg_architect_set(conn, args, schema: str, cap: list[dict], literals: dict | None = None) -> dict:
    import re

    notices: list[str] = []
    with connect(args.dsn) as c2:
        c2.add_notice_handler(lambda d: notices.append(d.message_primary))
        c2.execute(psycopg.sql.SQL("SET statement_timeout = {}").format(psycopg.sql.Literal(args.audit_timeout_ms)))
        t0 = time.perf_counter()
        rows = c2.execute("SELECT table_name, ddl, size_mb, queryids, gain_share, workload_ms_before,"
                          " workload_ms_after FROM arch.design_indexes()").fetchall()
        wall = time.perf_counter() - t0
    qids = {c["queryid"] for c in cap}
    skipped = []
    for n in notices:
        m = re.match(r"pg_architect: queryid (-?\d+) skipped \((\w+)\): (.*)", n)
        if m and int(m.group(1)) in qids:
            skipped.append({"queryid": int(m.group(1)), "reason": f"{m.group(2)}: {m.group(3)}"})
    ddl = [r[1] for r in rows if r[0].startswith(schema + ".")]
    return {"ddl": ddl, "skipped": skipped, "wall_s": wall, "notices": notices,
            "set": [{"table": r[0], "ddl": r[1], "size_mb": float(r[2]), "queryids": r[3], "gain_share": r[4],
                     "workload_ms_before": r[5], "workload_ms_after": r[6]} for r in rows]}


def _dta_python(args) -> str:
    if args.dta_python:
        return args.dta_python
    home = os.environ.get("PGA_HOME")
    if home:
        return os.path.join(home, "peers", "postgres-mcp", "bin", "python")
    raise BenchError("no --dta-python and no PGA_HOME: run bench/peers.sh and pass the python it prints")


def advise_dta(conn, args, schema: str, cap: list[dict], literals: dict) -> dict:
    py = _dta_python(args)
    # DTA refuses to run unless some table has a manual ANALYZE (pg_stat_user_tables.last_analyze;
    # autovacuum's last_autoanalyze does not count): give it one, as a DBA would
    for (table,) in conn.execute("SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = %s",
                                 (schema,)).fetchall():
        conn.execute(f"ANALYZE {psycopg.sql.Identifier(schema).as_string(conn)}.{table}")
    if not os.access(py, os.X_OK):
        raise BenchError(f"postgres-mcp's venv python {py} is missing: run bench/peers.sh first")
    req = {
        "dsn": args.dsn,
        "search_path": f"{schema}, public",
        "max_runtime_s": args.dta_max_runtime_s,
        "budget_mb": -1,
        "literal_fallback": not args.dta_no_literal_fallback,
        "workload": [{"queryid": str(c["queryid"]), "query": c["query"], "calls": c["calls"],
                      "avg_exec_time": c["mean_exec_time"], "literal": literals.get(c["queryid"])}
                     for c in cap],
    }
    t0 = time.perf_counter()
    p = subprocess.run([py, os.path.join(HERE, "peer_dta.py")], input=json.dumps(req), text=True,
                       capture_output=True, timeout=args.dta_max_runtime_s * 20 + 120)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise BenchError(f"peer_dta.py failed ({p.returncode}): {p.stderr.strip()[-2000:]}")
    out = json.loads(p.stdout)
    skipped = list(out.get("skipped") or [])
    if out.get("error"):
        skipped.append({"queryid": None, "reason": f"analysis error: {out['error']}"})
    return {"ddl": out.get("indexes") or [], "skipped": skipped, "wall_s": out.get("wall_s") or wall,
            "process_wall_s": wall, "version": out.get("version"), "analysed": out.get("analysed"),
            "error": out.get("error"), "bound_from_literal": out.get("bound_from_literal") or [],
            "candidates_dropped": out.get("candidates_dropped") or []}


def index_advisor_sql(args) -> tuple[str, str]:
    """(SQL text, where it came from): --index-advisor-sql FILE, else the newest
    index_advisor--X.Y.Z.sql (not an upgrade script) at HEAD of --index-advisor-git."""
    if args.index_advisor_sql:
        with open(args.index_advisor_sql) as f:
            return f.read(), args.index_advisor_sql
    git = args.index_advisor_git
    try:
        names = subprocess.run(["git", f"--git-dir={git}", "ls-tree", "--name-only", "HEAD"], check=True,
                               capture_output=True, text=True).stdout.split()
    except (OSError, subprocess.CalledProcessError) as e:
        raise BenchError(f"cannot read supabase index_advisor from {git}: {e} (pass --index-advisor-sql FILE)") from e
    import re

    versions = []
    for n in names:
        m = re.fullmatch(r"index_advisor--(\d+)\.(\d+)\.(\d+)\.sql", n)
        if m:
            versions.append((tuple(map(int, m.groups())), n))
    if not versions:
        raise BenchError(f"no index_advisor--X.Y.Z.sql at HEAD of {git}")
    name = max(versions)[1]
    text = subprocess.run(["git", f"--git-dir={git}", "show", f"HEAD:{name}"], check=True,
                          capture_output=True, text=True).stdout
    head = subprocess.run(["git", f"--git-dir={git}", "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    return text, f"{git}:{name}@{head}"


def advise_index_advisor(conn, args, schema: str, cap: list[dict], literals: dict | None = None) -> dict:
    text, source = index_advisor_sql(args)
    hypopg_schema = conn.execute(
        "SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'hypopg'").fetchone()[0]
    path = psycopg.sql.SQL("SET search_path = {}, {}").format(
        psycopg.sql.Identifier(IA_SCHEMA), psycopg.sql.Identifier(hypopg_schema))
    conn.execute(f"DROP SCHEMA IF EXISTS {IA_SCHEMA} CASCADE")
    conn.execute(f"CREATE SCHEMA {IA_SCHEMA}")
    main_conn, conn = conn, connect(args.dsn)
    # index_advisor() runs DEALLOCATE ALL: no prepared statements of psycopg's on its connection
    conn.prepare_threshold = None
    conn.execute(path)
    try:
        conn.execute(text)
        t0 = time.perf_counter()
        ddl, skipped = [], []
        for c in cap:
            try:
                stmts, errors = conn.execute(
                    f"SELECT index_statements, errors FROM {IA_SCHEMA}.index_advisor(%s)", (c["query"],)
                ).fetchone()
            except psycopg.Error as e:
                skipped.append({"queryid": c["queryid"], "reason": str(e).strip().splitlines()[0]})
                continue
            if errors:
                skipped.append({"queryid": c["queryid"], "reason": "; ".join(errors)[:300]})
            ddl.extend(stmts or [])
        wall = time.perf_counter() - t0
    finally:
        conn.close()
        main_conn.execute(f"DROP SCHEMA IF EXISTS {IA_SCHEMA} CASCADE")
    return {"ddl": ddl, "skipped": skipped, "wall_s": wall, "source": source}


def schema_columns(conn, schema: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for t, c in conn.execute(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = %s",
        (schema,)).fetchall():
        out.setdefault(f"{schema}.{t}", set()).add(c)
    return out


def leading_columns(conn, schema: str) -> set[tuple[str, str]]:
    return {(f"{schema}.{r[0]}", r[1]) for r in conn.execute(
        """SELECT t.relname, a.attname
           FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid
           JOIN pg_namespace n ON n.oid = t.relnamespace
           JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = i.indkey[0]
           WHERE n.nspname = %s AND i.indpred IS NULL""", (schema,)).fetchall()}


def advise_naive(conn, args, schema: str, cap: list[dict], literals: dict | None = None) -> dict:
    t0 = time.perf_counter()
    ddl, bad = naive_indexes([c["query"] for c in cap], schema_columns(conn, schema),
                             leading_columns(conn, schema))
    return {"ddl": ddl, "skipped": [{"queryid": None, "reason": f"sqlglot cannot parse: {b[:80]}"} for b in bad],
            "wall_s": time.perf_counter() - t0}


# ---------------------------------------------------------------------------------------
# measuring a set of indexes
# ---------------------------------------------------------------------------------------

def plan_costs(conn, items: list[Item]) -> dict[str, float | None]:
    out = {}
    for it in items:
        try:
            plan = conn.execute("EXPLAIN (FORMAT JSON) " + it.sql).fetchone()[0]
            if isinstance(plan, str):
                plan = json.loads(plan)
            out[it.key] = float(plan[0]["Plan"]["Total Cost"])
        except psycopg.Error:
            out[it.key] = None
    return out


def hypothetical_costs(conn, ddl: list[str], items: list[Item]) -> tuple[dict, list[str]]:
    """Planner cost of every item with ``ddl`` as hypopg indexes (only in this backend)."""
    conn.execute("SELECT hypopg_reset()")
    failed = []
    try:
        for d in ddl:
            try:
                conn.execute("SELECT * FROM hypopg_create_index(%s)", (d,))
            except psycopg.Error as e:
                failed.append(f"{d}: {str(e).strip().splitlines()[0]}")
        return plan_costs(conn, items), failed
    finally:
        conn.execute("SELECT hypopg_reset()")


def schema_indexes(conn, schema: str) -> set[int]:
    return {r[0] for r in conn.execute(
        "SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind = 'i'", (schema,)).fetchall()}


def drop_leftover_indexes(conn, schema: str) -> None:
    """Indexes of an interrupted run: every index of the bench schema not backing a constraint."""
    for (name,) in conn.execute(
        """SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = %s AND c.relkind = 'i'
             AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = c.oid)""", (schema,)).fetchall():
        log(f"dropping leftover index {name}")
        conn.execute(f"DROP INDEX {name}")


def timed_runs(conn, items: list[Item], runs: int, timeout_s: float) -> dict[str, dict]:
    """Per item: one warm-up run, then ``runs`` measured ones (ms); a time-out ends the item."""
    out = {}
    set_timeout(conn, timeout_s)
    try:
        for it in items:
            samples, status = [], "ok"
            for i in range(runs + 1):
                t0 = time.perf_counter()
                try:
                    conn.execute(it.sql).fetchall()
                except psycopg.errors.QueryCanceled:
                    status = "timeout"
                    break
                except psycopg.Error as e:
                    status = "error: " + str(e).strip().splitlines()[0]
                    break
                if i:
                    samples.append((time.perf_counter() - t0) * 1000)
            med = median_or_none(samples)
            if status == "timeout" and med is None:
                med = timeout_s * 1000  # a lower bound, flagged
            out[it.key] = {"status": status, "samples_ms": [round(s, 2) for s in samples], "median_ms": med,
                           "spread": relative_spread(samples)}
    finally:
        conn.execute("RESET statement_timeout")
    return out


def build_and_run(conn, schema: str, ddl: list[str], items: list[Item], args) -> dict:
    before = schema_indexes(conn, schema)
    built, failed = [], []
    t0 = time.perf_counter()
    try:
        for d in ddl:
            try:
                conn.execute(d)
                built.append(d)
            except psycopg.Error as e:
                failed.append(f"{d}: {str(e).strip().splitlines()[0]}")
        build_s = time.perf_counter() - t0
        new = schema_indexes(conn, schema) - before
        sizes = dict(conn.execute(
            "SELECT c.oid::regclass::text, pg_relation_size(c.oid) FROM pg_class c WHERE c.oid = ANY(%s)",
            (list(new),)).fetchall()) if new else {}
        expr_tables = sorted({r[0] for r in conn.execute(
            "SELECT i.indrelid::regclass::text FROM pg_index i WHERE i.indexrelid = ANY(%s) "
            "AND i.indexprs IS NOT NULL", (list(new),)).fetchall()}) if new else []
        for t in expr_tables:  # statistics on the indexed expressions, as a DBA would
            conn.execute(f"ANALYZE {t}")
        runs = timed_runs(conn, items, args.runs, args.timeout_s) if not args.no_real else {}
    finally:
        for oid in schema_indexes(conn, schema) - before:
            conn.execute("DROP INDEX IF EXISTS " + conn.execute("SELECT %s::regclass::text", (oid,)).fetchone()[0])
    return {"built": len(built), "failed": failed, "build_s": build_s, "index_bytes": sum(sizes.values()),
            "sizes": sizes, "analyzed_tables": expr_tables, "runs": runs}


# ---------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------

def _f(v, fmt):
    return "n/a" if v is None else format(v, fmt)


def summarize(name: str, adv: dict, weights: dict, base_cost: dict, base_runs: dict) -> dict:
    r = {"advisor": name, "label": LABELS[name]}
    ddl = adv.get("canonical", [])
    shapes = []
    for d in ddl:
        try:
            shapes.append(index_shape(d))
        except ValueError:
            pass
    r["indexes"] = len(ddl)
    r["expression"] = sum(s["expression"] for s in shapes)
    r["partial"] = sum(s["partial"] for s in shapes)
    m = adv.get("measured") or {}
    r["index_mb"] = m.get("index_bytes", 0) / 1024 / 1024 if m else None
    r["cost_ratio"], r["costed"] = weighted_ratio(base_cost, adv.get("costs") or {}, weights)
    runs = m.get("runs") or {}
    med = {k: v["median_ms"] for k, v in runs.items()}
    base_med = {k: v["median_ms"] for k, v in base_runs.items()}
    r["time_ratio"], r["timed"] = weighted_ratio(base_med, med, weights) if runs else (None, 0)
    spreads = sorted(v["spread"] for v in runs.values() if v["spread"] is not None)
    r["noise_median"] = spreads[len(spreads) // 2] if spreads else None
    r["noise_p90"] = spreads[min(len(spreads) - 1, int(0.9 * len(spreads)))] if spreads else None
    r["timeouts"] = sum(1 for v in runs.values() if v["status"] == "timeout")
    r["skipped"] = len(adv.get("skipped") or [])
    r["from_literal"] = len(adv.get("bound_from_literal") or [])
    r["wall_s"] = adv.get("wall_s")
    return r


def markdown_table(rows: list[dict]) -> str:
    out = ["| advisor | indexes | expr / partial | index MB | est. cost ratio | real time ratio "
           "| noise (median / p90 spread) | skipped | wall s |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        tr = _f(r["time_ratio"], ".3f") + (f" ({r['timeouts']} timeouts)" if r["timeouts"] else "")
        out.append(
            f"| {r['label']} | {r['indexes']} | {r['expression']} / {r['partial']} | {_f(r['index_mb'], '.1f')} "
            f"| {_f(r['cost_ratio'], '.3f')} | {tr} "
            f"| {_f(r['noise_median'], '.0%')} / {_f(r['noise_p90'], '.0%')} | {r['skipped']}"
            + (f" ({r['from_literal']} bound from literals)" if r["from_literal"] else "") + " "
            f"| {_f(r['wall_s'], '.1f')} |")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dsn", default=os.environ.get("PGA_DSN", ""), help="libpq connection string")
    ap.add_argument("--workload", choices=("tpch", "skewed"), default="tpch")
    ap.add_argument("--sf", type=float, default=0.1, help="TPC-H scale factor (default 0.1)")
    ap.add_argument("--rows", type=int, default=600_000, help="skewed: events rows (default 600000)")
    ap.add_argument("--queries", type=int, nargs="+", help="TPC-H: only these query numbers")
    ap.add_argument("--capture-runs", type=int, default=2, help="TPC-H: executions per query in the capture")
    ap.add_argument("--capture-timeout-s", type=float, default=60)
    ap.add_argument("--runs", type=int, default=5, help="measured runs per statement, after one warm-up (default 5)")
    ap.add_argument("--timeout-s", type=float, default=30, help="statement_timeout of the measured runs (default 30)")
    ap.add_argument("--advisors", nargs="+", choices=ADVISORS[1:], default=list(ADVISORS[1:]))
    ap.add_argument("--dta-python",
                    help="python of postgres-mcp's venv (default $PGA_HOME/peers/postgres-mcp/bin/python)")
    ap.add_argument("--dta-max-runtime-s", type=int, default=30, help="DTA's own time limit (its default: 30)")
    ap.add_argument("--dta-no-literal-fallback", action="store_true",
                    help="do not give DTA a statement's literal text when it cannot bind the normalised one")
    ap.add_argument("--index-advisor-sql", help="supabase index_advisor's SQL file")
    ap.add_argument("--index-advisor-git", default=os.environ.get("PGA_INDEX_ADVISOR_GIT", DEFAULT_IA_GIT),
                    help=f"git dir of supabase/index_advisor (default {DEFAULT_IA_GIT})")
    ap.add_argument("--audit-timeout-ms", type=int, default=0)
    ap.add_argument("--no-real", action="store_true", help="skip the real runs (sizes and costs only)")
    ap.add_argument("--no-samples", action="store_true",
                    help="do not sample the capture's texts into arch.query_sample (pg_architect then sees "
                         "only the normalised texts, as the peers do)")
    ap.add_argument("--reload", action="store_true", help="regenerate the bench schema")
    ap.add_argument("--drop", action="store_true", help="drop the bench schema at the end")
    ap.add_argument("--out", default=os.path.join(HERE, "out"), help="directory of the JSON result")
    ap.add_argument("--note", default="", help="a note stored in the JSON (e.g. machine load)")
    args = ap.parse_args(argv)

    t_start = time.perf_counter()
    try:
        with connect(args.dsn) as conn:
            if {"pg_architect", "pg_architect_set"} & set(args.advisors):
                check_arch(conn)
            if not conn.execute("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'hypopg')").fetchone()[0]:
                raise BenchError("extension hypopg is not installed in this database")
            mx = pgss_max(conn)
            if mx is not None and mx < 200:
                log(f"WARNING: pg_stat_statements.max = {mx} is low: statements may be evicted")
            schema, items = (tpch_workload if args.workload == "tpch" else skewed_workload)(conn, args)
            drop_leftover_indexes(conn, schema)
            conn.execute("SELECT hypopg_reset()")

            advisors: dict[str, dict] = {}
            log(f"capture: {len(items)} statements ...")
            with AuditSettings(conn, **BENCH_SETTINGS, max_statements=200) \
                    if {"pg_architect", "pg_architect_set"} & set(args.advisors) \
                    else _Nothing():
                sample_dsn = None if args.no_samples or not {"pg_architect", "pg_architect_set"} & set(
                    args.advisors) else args.dsn
                items, cap, cap_status = capture(conn, items, args.capture_timeout_s, sample_dsn)
                log(f"capture: {len(cap)} pg_stat_statements entries")
                if "pg_architect" in args.advisors:  # first: it reads pg_stat_statements itself
                    log("advisor pg_architect: arch.run_audit() ...")
                    advisors["pg_architect"] = advise_pg_architect(conn, args, schema, cap)
                if "pg_architect_set" in args.advisors:  # reads pg_stat_statements too
                    log("advisor pg_architect_set: arch.design_indexes() ...")
                    advisors["pg_architect_set"] = advise_pg_architect_set(conn, args, schema, cap)
            weights = item_weights(items, {c["queryid"]: c["calls"] for c in cap})
            literals: dict[int, str] = {}  # one executed text per query id, the most executed
            for it in sorted(items, key=lambda i: -i.executions):
                if it.queryid is not None:
                    literals.setdefault(it.queryid, it.sql)
            runners = {"postgres_mcp_dta": advise_dta, "index_advisor": advise_index_advisor,
                       "naive": advise_naive}
            for name in args.advisors:
                if name in runners:
                    log(f"advisor {name} ...")
                    try:
                        advisors[name] = runners[name](conn, args, schema, cap, literals)
                    except BenchError as e:
                        log(f"advisor {name} failed: {e}")
                        advisors[name] = {"ddl": [], "skipped": [], "wall_s": None, "error": str(e)}
            advisors = {"none": {"ddl": [], "skipped": [], "wall_s": 0.0}, **advisors}
            for name, adv in advisors.items():
                adv["canonical"], adv["not_index_ddl"] = dedupe_ddl(adv["ddl"], schema)
                log(f"{name}: {len(adv['canonical'])} index(es)")

            base_cost = plan_costs(conn, items)
            for adv in advisors.values():
                adv["costs"], adv["hypo_failed"] = (hypothetical_costs(conn, adv["canonical"], items)
                                                    if adv["canonical"] else (base_cost, []))
            measured: dict[frozenset, str] = {}
            for name, adv in advisors.items():
                same = frozenset(ddl_key(d) for d in adv["canonical"])
                if same in measured:  # e.g. an advisor that proposed nothing: the no-index runs
                    adv["measured"] = advisors[measured[same]]["measured"]
                    adv["measured_as"] = measured[same]
                    log(f"measuring {name}: the same indexes as {measured[same]}")
                    continue
                measured[same] = name
                log(f"measuring {name}: building {len(adv['canonical'])} index(es), "
                    f"{'no runs' if args.no_real else f'{args.runs} runs per statement'} ...")
                adv["measured"] = build_and_run(conn, schema, adv["canonical"], items, args)
            if args.drop:
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    except BenchError as e:
        print(f"bench_advisors: {e}", file=sys.stderr)
        return 2

    base_runs = advisors["none"]["measured"]["runs"]
    rows = [summarize(n, a, weights, base_cost, base_runs) for n, a in advisors.items()]
    title = (f"TPC-H sf={args.sf:g}" if args.workload == "tpch" else f"skewed workload, {args.rows} events") \
        + f": {len(items)} statements, {len(cap)} captured"
    print(f"\n{title}\n")
    print(markdown_table(rows))
    print()
    for n, a in advisors.items():
        if n == "none":
            continue
        print(f"{LABELS[n]}:" + (f" ERROR {a['error']}" if a.get("error") else ""))
        sizes = a["measured"]["sizes"]
        for d in a["canonical"]:
            print(f"  {d}")
        for f in a["measured"]["failed"] + a["hypo_failed"]:
            print(f"  not built / not costed: {f}")
        for s in a["skipped"]:
            print(f"  skipped {s['queryid']}: {s['reason']}")
        dropped = a.get("candidates_dropped") or []
        if dropped:
            print(f"  {len(dropped)} candidate(s) left out (a column their table does not have), e.g. "
                  + ", ".join(dropped[:4]))
        for s in a.get("bound_from_literal") or []:
            print(f"  bound from its literal text {s['queryid']}: {s['reason']}")
        if not sizes and a["canonical"]:
            print("  (no index built)")
    os.makedirs(args.out, exist_ok=True)
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = os.path.join(args.out, f"advisors-{args.workload}-{stamp}.json")
    with open(path, "w") as f:
        json.dump({"workload": args.workload, "sf": args.sf if args.workload == "tpch" else None,
                   "rows": args.rows if args.workload == "skewed" else None, "args": vars(args),
                   "note": args.note, "loadavg": os.getloadavg(), "wall_s": time.perf_counter() - t_start,
                   "items": [it.__dict__ | {"weight": weights.get(it.key), "capture": cap_status.get(it.key)}
                             for it in items],
                   "capture": cap, "base_cost": base_cost, "summary": rows, "advisors": advisors},
                  f, indent=1, default=str)
    print(f"\nJSON: {path}")
    return 0


class _Nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


if __name__ == "__main__":
    sys.exit(main())
