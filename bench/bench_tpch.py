#!/usr/bin/env python3
"""Estimated TPC-H workload cost before and after the audit's recommendations.

    python bench/bench_tpch.py --dsn "host=/tmp/pg port=5432 dbname=app" [--sf 0.1] [--keep]

Steps:
  1. generates TPC-H at scale factor --sf with DuckDB's tpch extension (PyPI packages
     ``duckdb==1.5.5`` and ``duckdb-extension-tpch==1.5.5``; the extension file shipped in the
     wheel is LOADed by path, nothing is downloaded) and copies it to schema ``tpch``
     (primary keys only).  Existing ``tpch`` data of the same scale factor is reused;
  2. takes the 22 queries from DuckDB's ``tpch_queries()``, qualifies the tables with
     ``tpch.`` and transpiles them to PostgreSQL with sqlglot;
  3. lowers the audit thresholds in ``arch.settings`` (restored afterwards), resets
     ``pg_stat_statements`` and executes every query --runs times (once when the first run
     takes over 5 s; ``statement_timeout`` --timeout-s each; a query that fails or times out
     is reported and left out);
  4. runs ``SELECT arch.run_audit()``;
  5. for every query, the planner's total cost (``EXPLAIN (FORMAT JSON)``) without, then with
     all proposed index recommendations on ``tpch`` created as hypothetical indexes (hypopg),
     and prints per-query before / after / gain and the workload total.

Note: this resets pg_stat_statements of the whole cluster -- run it on a test database.
``tpch`` is dropped at the end unless --keep.  --no-audit only loads and runs the queries.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_audit import (  # noqa: E402  shared helpers of the benches
    BENCH_SETTINGS,
    AuditSettings,
    BenchError,
    check_arch,
    connect,
    log,
    pgss_max,
    print_table,
    reset_pgss,
    timed_audit,
)

import psycopg  # noqa: E402
import psycopg.sql  # noqa: E402

SCHEMA = "tpch"

TABLES = ("region", "nation", "part", "supplier", "partsupp", "customer", "orders", "lineitem")

PRIMARY_KEYS = {
    "region": ("r_regionkey",),
    "nation": ("n_nationkey",),
    "part": ("p_partkey",),
    "supplier": ("s_suppkey",),
    "partsupp": ("ps_partkey", "ps_suppkey"),
    "customer": ("c_custkey",),
    "orders": ("o_orderkey",),
    "lineitem": ("l_orderkey", "l_linenumber"),
}


# ---------------------------------------------------------------------------------------
# DuckDB side
# ---------------------------------------------------------------------------------------

def duckdb_tpch():
    """A DuckDB connection with the tpch extension loaded, offline."""
    try:
        import duckdb
    except ImportError as e:
        raise BenchError("needs duckdb: python -m pip install duckdb==1.5.5 duckdb-extension-tpch==1.5.5") from e
    con = duckdb.connect()
    errors = []
    try:
        import duckdb_extension_tpch

        base = os.path.join(os.path.dirname(duckdb_extension_tpch.__file__), "extensions")
        paths = [os.path.join(base, f"v{duckdb.__version__}", "tpch.duckdb_extension")]
        paths += sorted(glob.glob(os.path.join(base, "*", "tpch.duckdb_extension")), reverse=True)
        for p in paths:
            if os.path.exists(p):
                try:
                    con.execute(f"LOAD '{p}'")
                    return con
                except duckdb.Error as e:
                    errors.append(f"{p}: {e}")
    except ImportError:
        errors.append("package duckdb-extension-tpch is not installed")
    try:  # already installed in DuckDB's own extension directory?
        con.execute("LOAD tpch")
        return con
    except duckdb.Error as e:
        errors.append(f"LOAD tpch: {e}")
    raise BenchError("cannot load DuckDB's tpch extension (python -m pip install "
                     "duckdb==1.5.5 duckdb-extension-tpch==1.5.5): " + "; ".join(errors))


_PG_TYPES = {"BIGINT": "bigint", "INTEGER": "integer", "VARCHAR": "text", "DATE": "date",
             "DOUBLE": "double precision", "BOOLEAN": "boolean", "SMALLINT": "smallint"}


def _pg_type(t: str) -> str:
    if t.startswith("DECIMAL"):
        return "numeric" + t[len("DECIMAL"):]
    return _PG_TYPES.get(t, "text")


def tpch_queries(con) -> dict[int, str]:
    """The 22 TPC-H queries as PostgreSQL, tables qualified with ``tpch.``."""
    try:
        import sqlglot
        from sqlglot import exp
    except ImportError as e:
        raise BenchError("needs sqlglot (a pg_architect dependency): python -m pip install sqlglot") from e
    out = {}
    for nr, q in con.execute("SELECT query_nr, query FROM tpch_queries() ORDER BY query_nr").fetchall():
        tree = sqlglot.parse_one(q, read="duckdb")
        for t in tree.find_all(exp.Table):
            if t.name in TABLES and not t.db:
                t.set("db", exp.to_identifier(SCHEMA))
        out[int(nr)] = tree.sql(dialect="postgres", pretty=True)
    return out


# ---------------------------------------------------------------------------------------
# PostgreSQL side
# ---------------------------------------------------------------------------------------

def _marker(sf: float) -> str:
    return f"TPC-H sf={sf:g} (bench_tpch.py)"


def ensure_tpch(conn, con, sf: float, reload: bool, log=print) -> bool:
    """Load TPC-H into schema tpch unless the same scale factor is there. True if loaded now."""
    marker = _marker(sf)
    have = conn.execute(
        "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = %s", (SCHEMA,)
    ).fetchone()
    if have and have[0] == marker and not reload:
        n = conn.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = ANY(%s) AND c.relkind = 'r'", (SCHEMA, list(TABLES))
        ).fetchone()[0]
        if n == len(TABLES):
            log(f"reusing schema {SCHEMA} ({marker})")
            return False
    if have and not reload and have[0] and not have[0].startswith("TPC-H sf="):
        raise BenchError(f"schema {SCHEMA} exists and was not made by this bench: drop it or use another database")
    t0 = time.perf_counter()
    con.execute(f"CALL dbgen(sf={sf})")
    log(f"dbgen sf={sf:g}: {time.perf_counter() - t0:.1f}s")
    conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    conn.execute(f"CREATE SCHEMA {SCHEMA}")
    with tempfile.TemporaryDirectory(prefix="bench_tpch_") as tmp:
        for t in TABLES:
            t1 = time.perf_counter()
            cols = con.execute(f"DESCRIBE {t}").fetchall()
            ddl = ", ".join(f"{c[0]} {_pg_type(c[1])} NOT NULL" for c in cols)
            conn.execute(f"CREATE TABLE {SCHEMA}.{t} ({ddl})")
            path = os.path.join(tmp, f"{t}.csv")
            con.execute(f"COPY {t} TO '{path}' (FORMAT csv, HEADER false)")
            with conn.cursor() as cur, open(path, "rb") as f:
                with cur.copy(f"COPY {SCHEMA}.{t} FROM STDIN (FORMAT csv)") as cp:
                    while chunk := f.read(1 << 20):
                        cp.write(chunk)
            os.unlink(path)
            conn.execute(f"ALTER TABLE {SCHEMA}.{t} ADD PRIMARY KEY ({', '.join(PRIMARY_KEYS[t])})")
            n = con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            log(f"  {SCHEMA}.{t}: {n} rows in {time.perf_counter() - t1:.1f}s")
    for t in TABLES:
        conn.execute(f"VACUUM (ANALYZE) {SCHEMA}.{t}")
    conn.execute(f"COMMENT ON SCHEMA {SCHEMA} IS '{marker}'")
    log(f"loaded TPC-H sf={sf:g} into {SCHEMA} in {time.perf_counter() - t0:.1f}s")
    return True


#: A query whose first execution took longer than this is not repeated.
REPEAT_UNDER_MS = 5000


def run_queries(conn, queries: dict[int, str], runs: int, timeout_s: float, log=print) -> dict[int, dict]:
    """Execute each query up to ``runs`` times; returns {nr: {"status", "calls", "mean_ms", "error"}}."""
    res = {}
    conn.execute(psycopg.sql.SQL("SET statement_timeout = {}").format(
        psycopg.sql.Literal(int(timeout_s * 1000))))
    try:
        for nr, q in queries.items():
            times = []
            status, err = "ok", None
            for i in range(runs):
                if i and times[0] > REPEAT_UNDER_MS:
                    break  # one call is enough to be in pg_stat_statements: spare slow ones
                t0 = time.perf_counter()
                try:
                    conn.execute(q).fetchall()
                except psycopg.errors.QueryCanceled:
                    status, err = "timeout", f"> {timeout_s:g}s"
                    break
                except psycopg.Error as e:
                    status, err = "error", str(e).strip().splitlines()[0]
                    break
                times.append((time.perf_counter() - t0) * 1000)
            mean = sum(times) / len(times) if times else None
            res[nr] = {"status": status, "calls": len(times), "mean_ms": mean, "error": err}
            log(f"  q{nr:02d}: {status}" + (f" {mean:.0f} ms" if mean is not None else "")
                + (f" ({err})" if err else ""))
    finally:
        conn.execute("RESET statement_timeout")
    return res


def plan_cost(conn, q: str) -> float | None:
    try:
        plan = conn.execute("EXPLAIN (FORMAT JSON) " + q).fetchone()[0]
    except psycopg.Error:
        return None
    if isinstance(plan, str):
        plan = json.loads(plan)
    return float(plan[0]["Plan"]["Total Cost"])


def hypothetical_recommendations(conn) -> tuple[list[dict], list[dict]]:
    """Create every proposed index recommendation on tpch as a hypothetical index."""
    rows = conn.execute(
        """SELECT id, kind, table_name, ddl, hypo_ddl, est_gain_pct, confidence
           FROM arch.recommendation
           WHERE status = 'proposed' AND schema_name = %s
           ORDER BY id""",
        (SCHEMA,),
    ).fetchall()
    created, other = [], []
    for rid, kind, table, ddl, hypo_ddl, gain, conf in rows:
        r = {"id": rid, "kind": kind, "table": table, "ddl": ddl, "est_gain_pct": gain,
             "confidence": conf}
        if not hypo_ddl:
            other.append(r)
            continue
        try:
            conn.execute("SELECT * FROM hypopg_create_index(%s)", (hypo_ddl,))
            created.append(r)
        except psycopg.Error as e:
            r["error"] = str(e).strip().splitlines()[0]
            other.append(r)
    return created, other


def _fmt(v, nd=1):
    return "" if v is None else f"{v:,.{nd}f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dsn", default=os.environ.get("PGA_DSN", ""), help="libpq connection string")
    ap.add_argument("--sf", type=float, default=0.1, help="TPC-H scale factor (default 0.1)")
    ap.add_argument("--runs", type=int, default=2, help="executions per query (default 2)")
    ap.add_argument("--timeout-s", type=float, default=60, help="statement_timeout per query (default 60)")
    ap.add_argument("--keep", action="store_true", help=f"keep schema {SCHEMA} for the next run")
    ap.add_argument("--reload", action="store_true", help=f"regenerate {SCHEMA} even if present")
    ap.add_argument("--no-audit", action="store_true",
                    help="only load and run the queries and print their plan costs")
    ap.add_argument("--queries", type=int, nargs="+", help="only these query numbers")
    ap.add_argument("--audit-timeout-ms", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = ap.parse_args(argv)

    try:
        with connect(args.dsn) as conn:
            if not args.no_audit:
                check_arch(conn)
                if not conn.execute(
                    "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'hypopg')"
                ).fetchone()[0]:
                    raise BenchError("extension hypopg is not installed in this database")
                mx = pgss_max(conn)
                if mx is not None and mx < 200:
                    log(f"WARNING: pg_stat_statements.max = {mx} is low: queries may be evicted")
            con = duckdb_tpch()
            queries = tpch_queries(con)
            if args.queries:
                queries = {k: v for k, v in queries.items() if k in set(args.queries)}
            ensure_tpch(conn, con, args.sf, args.reload, log)
            con.close()

            audit = None
            if args.no_audit:
                log(f"running {len(queries)} queries x {args.runs} ...")
                runs = run_queries(conn, queries, args.runs, args.timeout_s, log)
            else:
                with AuditSettings(conn, **BENCH_SETTINGS, max_statements=100):
                    reset_pgss(conn)
                    log(f"running {len(queries)} queries x {args.runs} ...")
                    runs = run_queries(conn, queries, args.runs, args.timeout_s, log)
                    log("running arch.run_audit() ...")
                    audit = timed_audit(args.dsn, args.audit_timeout_ms)
                    log(f"audit: {json.dumps(audit.summary)} in {audit.wall_s:.1f}s")

            before = {nr: plan_cost(conn, q) for nr, q in queries.items()}
            after: dict[int, float | None] = {}
            created, other = [], []
            if not args.no_audit:
                # hypopg's hypothetical indexes live in this backend only, across transactions
                conn.execute("SELECT hypopg_reset()")
                try:
                    created, other = hypothetical_recommendations(conn)
                    after = {nr: plan_cost(conn, q) for nr, q in queries.items()}
                finally:
                    conn.execute("SELECT hypopg_reset()")

            if not args.keep:
                conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    except BenchError as e:
        print(f"bench_tpch: {e}", file=sys.stderr)
        return 2

    rows, tb, ta, eb, ea = [], 0.0, 0.0, 0.0, 0.0
    for nr in queries:
        b, a = before.get(nr), after.get(nr)
        gain = (b - a) / b * 100 if (b and a is not None) else None
        r = runs[nr]
        rows.append([f"q{nr:02d}", r["status"] + (f" ({r['error']})" if r["error"] else ""),
                     r["calls"], _fmt(r["mean_ms"], 0), _fmt(b), _fmt(a), _fmt(gain)])
        if b is not None:
            tb += b
            ta += a if a is not None else b
            if r["status"] == "ok":
                eb += b
                ea += a if a is not None else b
    headers = ["query", "executed", "calls", "mean ms", "cost before", "cost after", "gain %"]
    rows.append(["total", f"{sum(r['status'] == 'ok' for r in runs.values())}/{len(runs)} ok", "", "",
                 _fmt(tb), _fmt(ta) if after else "", _fmt((tb - ta) / tb * 100) if after and tb else ""])
    if eb != tb:  # the audit only saw the queries that ran to completion
        rows.append(["executed", "", "", "", _fmt(eb), _fmt(ea) if after else "",
                     _fmt((eb - ea) / eb * 100) if after and eb else ""])
    print(f"TPC-H sf={args.sf:g}: planner total cost per query"
          + (" before / with the audit's proposed indexes (hypothetical)" if after else ""))
    print_table(headers, rows)
    if audit:
        s = audit.summary
        print(f"\naudit: {s.get('statements_selected')} selected, {s.get('statements_analyzed')} analysed, "
              f"{s.get('recommendations_new')} new + {s.get('recommendations_updated')} updated "
              f"recommendations, {audit.wall_s:.1f}s"
              + (f", peak backend RSS {audit.peak_rss_kb / 1024:.0f} MB" if audit.peak_rss_kb else ""))
        print(f"{len(created)} proposed index recommendation(s) on {SCHEMA} costed as hypothetical indexes:")
        for r in created:
            print(f"  #{r['id']} {r['ddl']}  (est. gain {_fmt(r['est_gain_pct'])} %, "
                  f"confidence {r['confidence']})")
        for r in other:
            print(f"  #{r['id']} not costed ({r.get('error') or r['kind']}): {r['ddl']}")
    if args.json:
        print(json.dumps({
            "sf": args.sf,
            "queries": {nr: {**runs[nr], "cost_before": before.get(nr), "cost_after": after.get(nr)}
                        for nr in queries},
            "total_before": tb, "total_after": ta if after else None,
            "executed_before": eb, "executed_after": ea if after else None,
            "audit": audit.summary if audit else None,
            "recommendations": created + other,
        }, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
